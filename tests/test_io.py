"""Tests of dataset_scripts.io: atomic writes and output-folder preparation."""

import json
import os
import stat

import numpy as np
import pytest
import torch

from dataset_scripts.io import (
    atomic_write,
    prepare_output_dir,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)


def leftovers(folder):
    return sorted(path.name for path in folder.iterdir() if path.name.endswith(".tmp"))


def test_write_text_bytes_and_json(tmp_path):
    text_path = write_text_atomic(tmp_path / "a.md", "line one\r\nline two\n")
    assert text_path.read_bytes() == b"line one\r\nline two\n"  # line endings untouched
    assert write_bytes_atomic(tmp_path / "b.bin", b"\x00\x01").read_bytes() == b"\x00\x01"
    data = {"f1": np.float32(0.5), "counts": np.arange(3), "loss": torch.tensor([1.5]), "n": 2}
    json_path = write_json_atomic(tmp_path / "c.json", data)
    assert json.loads(json_path.read_text()) == {
        "f1": 0.5,
        "counts": [0, 1, 2],
        "loss": [1.5],
        "n": 2,
    }
    assert leftovers(tmp_path) == []


def test_new_files_are_world_readable_and_existing_modes_are_kept(tmp_path):
    path = write_text_atomic(tmp_path / "card.md", "x")
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    os.chmod(path, 0o600)
    write_text_atomic(path, "y")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text() == "y"


def test_exception_leaves_previous_content_and_no_temporary_file(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text("old")
    with pytest.raises(RuntimeError, match="boom"), atomic_write(path) as handle:
        handle.write("partial new content")
        raise RuntimeError("boom")
    assert path.read_text() == "old"
    assert leftovers(tmp_path) == []


def test_exception_on_a_new_file_creates_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt), atomic_write(tmp_path / "new.bin", "wb") as handle:
        handle.write(b"partial")
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unserialisable_json_touches_nothing(tmp_path):
    path = tmp_path / "out.json"
    path.write_text("{}")
    with pytest.raises(TypeError, match="not JSON serializable"):
        write_json_atomic(path, {"bad": object()})
    assert path.read_text() == "{}"
    assert leftovers(tmp_path) == []


def test_argument_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_text_atomic(tmp_path / "missing" / "a.txt", "x")
    with pytest.raises(TypeError):
        write_bytes_atomic(tmp_path / "a.bin", "not bytes")
    with pytest.raises(TypeError):
        write_text_atomic(tmp_path / "a.txt", b"not text")
    with pytest.raises(ValueError, match="`mode`"), atomic_write(tmp_path / "a.txt", "a"):
        pass


def test_prepare_output_dir(tmp_path):
    nested = prepare_output_dir(tmp_path / "runs" / "one")
    assert nested.is_dir()
    assert prepare_output_dir(nested) == nested  # empty existing folder: fine
    (nested / "config.json").write_text("{}")
    with pytest.raises(
        FileExistsError, match=r"not empty \(1 entries: config.json\).*overwrite=True"
    ):
        prepare_output_dir(nested)
    assert prepare_output_dir(nested, overwrite=True) == nested
    assert (nested / "config.json").read_text() == "{}"  # overwrite never deletes
    with pytest.raises(NotADirectoryError):
        prepare_output_dir(nested / "config.json")


def test_check_output_file_refuses_an_existing_file_unless_overwrite(tmp_path):
    from dataset_scripts.io import check_output_file

    target = tmp_path / "report.json"
    check_output_file(None)
    check_output_file(target)  # absent: fine
    target.write_text("{}")
    with pytest.raises(FileExistsError, match="report.json already exists"):
        check_output_file(target)
    check_output_file(target, overwrite=True)
    with pytest.raises(IsADirectoryError, match="is a folder"):
        check_output_file(tmp_path, overwrite=True)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        check_output_file(tmp_path / "missing" / "report.json")
    assert target.read_text() == "{}"
