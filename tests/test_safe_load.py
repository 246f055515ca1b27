"""Safe loading of source files: allowed content loads, anything else is refused before it runs."""

from __future__ import annotations

import argparse
import builtins
import collections
import os
import pickle
import subprocess
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from dataset_scripts.safe_load import (
    RestrictedUnpickler,
    UnsafeSourceError,
    load_source_file,
    safe_load_pickle,
    safe_load_torch,
)


class _SystemPayload:
    """Unpickling this calls `os.system("touch <marker>")`."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


class _OpenPayload:
    """Unpickling this calls `open(<marker>, "w")`, which creates the file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return builtins.open, (str(self.marker), "w")


class _SubprocessPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return subprocess.call, (["touch", str(self.marker)],)


PAYLOADS = {
    "os.system": _SystemPayload,
    "builtins.open": _OpenPayload,
    "subprocess.call": _SubprocessPayload,
}


def _source_like(payload: object) -> dict:
    """A real-looking source dict with the payload hidden inside one split."""
    return {
        "train": {
            "text": np.zeros((2, 3, 4), np.float32),
            "tgt": [[2, 4, 3], [2, 3]],
            "extra": payload,
        },
        "valid": {},
        "test": {},
    }


def test_payloads_really_run_when_unpickled_unsafely(tmp_path):
    # Guard for the tests below: the payloads do create the marker with a plain pickle.loads.
    for name, payload_class in PAYLOADS.items():
        marker = tmp_path / f"plain-{name}"
        result = pickle.loads(pickle.dumps(payload_class(marker)))
        if hasattr(result, "close"):
            result.close()
        assert marker.exists(), name


@pytest.mark.parametrize("payload_name", sorted(PAYLOADS))
@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
def test_malicious_pickle_is_refused_and_never_runs(tmp_path, payload_name, protocol):
    marker = tmp_path / "created-by-payload"
    source = tmp_path / "evil.pkl"
    source.write_bytes(
        pickle.dumps(_source_like(PAYLOADS[payload_name](marker)), protocol=protocol)
    )

    with pytest.raises(UnsafeSourceError) as error:
        load_source_file(source)

    assert not marker.exists()
    message = str(error.value)
    assert str(source) in message
    assert "Nothing from the file was executed" in message
    refused = {"os.system": "system", "builtins.open": "open", "subprocess.call": "subprocess.call"}
    assert refused[payload_name] in message


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_malicious_torch_file_is_refused_and_never_runs(tmp_path, zip_format):
    marker = tmp_path / "created-by-payload"
    source = tmp_path / "evil.pt"
    torch.save(
        _source_like(_SystemPayload(marker)), source, _use_new_zipfile_serialization=zip_format
    )

    with pytest.raises(UnsafeSourceError, match="system") as error:
        load_source_file(source)

    assert not marker.exists()
    assert str(source) in str(error.value)


def test_refusal_names_the_global(tmp_path):
    source = tmp_path / "odd.pkl"
    source.write_bytes(pickle.dumps({"when": __import__("datetime").date(2024, 1, 1)}))
    with pytest.raises(UnsafeSourceError, match=r"'datetime\.date'"):
        safe_load_pickle(source)


def _allowed_content() -> dict:
    return {
        "train": {
            "text": np.arange(24, dtype=np.float32).reshape(2, 3, 4),
            "audio": [np.ones((3, 2)), np.full((1, 2), -np.inf)],
            "id": np.array(["a$_$0", "b$_$1"]),
            "raw_text": np.array(["hello", None], dtype=object),
            "scalar": np.float64(2.5),
            "integer": np.int64(7),
            "flags": np.array([True, False]),
            "tgt": [[2, 4, 3], (2, 5, 3)],
            "set": {1, 2},
            "frozen": frozenset({3}),
            "blob": b"\x00\x01",
            "complex": 1 + 2j,
        },
        "ordered": collections.OrderedDict(a=1),
        "settings": argparse.Namespace(max_len=60, name="x"),
    }


def _assert_same_content(loaded: dict, expected: dict) -> None:
    train, want = loaded["train"], expected["train"]
    np.testing.assert_array_equal(train["text"], want["text"])
    assert train["text"].dtype == np.float32
    for got_audio, want_audio in zip(train["audio"], want["audio"], strict=True):
        np.testing.assert_array_equal(got_audio, want_audio)
    assert list(train["id"]) == list(want["id"])
    assert list(train["raw_text"]) == ["hello", None]
    assert train["scalar"] == 2.5 and train["integer"] == 7
    assert [list(target) for target in train["tgt"]] == [[2, 4, 3], [2, 5, 3]]
    assert train["set"] == {1, 2} and train["frozen"] == frozenset({3})
    assert train["blob"] == b"\x00\x01" and train["complex"] == 1 + 2j
    assert loaded["ordered"] == collections.OrderedDict(a=1)
    assert vars(loaded["settings"]) == {"max_len": 60, "name": "x"}


@pytest.mark.parametrize("protocol", [0, 1, 2, 3, 4, 5])
def test_numpy_and_containers_load_from_pickle(tmp_path, protocol):
    source = tmp_path / "ok.pkl"
    content = _allowed_content()
    source.write_bytes(pickle.dumps(content, protocol=protocol))
    _assert_same_content(load_source_file(source), content)


def test_pickles_written_under_numpy_1_load_without_deprecation_warning(tmp_path):
    # Protocol 2 spells globals as text, so numpy 2's module names can be turned into numpy 1's.
    content = {"x": np.arange(6, dtype=np.float32).reshape(2, 3), "s": np.float32(1.5)}
    data = pickle.dumps(content, protocol=2)
    assert b"numpy._core.multiarray" in data
    source = tmp_path / "numpy1.pkl"
    source.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = safe_load_pickle(source)
    np.testing.assert_array_equal(loaded["x"], content["x"])
    assert loaded["s"] == np.float32(1.5)


def test_restricted_unpickler_is_a_pickle_unpickler():
    assert issubclass(RestrictedUnpickler, pickle.Unpickler)
    assert issubclass(UnsafeSourceError, pickle.UnpicklingError)


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_numpy_and_tensors_load_from_torch_files(tmp_path, zip_format):
    source = tmp_path / "ok.pt"
    content = _allowed_content()
    content["train"]["tensor"] = torch.arange(4.0)
    torch.save(content, source, _use_new_zipfile_serialization=zip_format)
    loaded = load_source_file(source)
    _assert_same_content(loaded, content)
    assert torch.equal(loaded["train"]["tensor"], torch.arange(4.0))


def test_torch_file_with_numpy_1_names_loads(tmp_path):
    source = tmp_path / "new.pt"
    torch.save({"x": np.ones((2, 2), np.float32), "s": np.float64(3.0)}, source)
    rewritten = tmp_path / "numpy1.pt"
    with zipfile.ZipFile(source) as original, zipfile.ZipFile(rewritten, "w") as target:
        for item in original.infolist():
            data = original.read(item.filename)
            if item.filename.endswith("data.pkl"):
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            target.writestr(item, data)
    loaded = safe_load_torch(rewritten)
    np.testing.assert_array_equal(loaded["x"], np.ones((2, 2), np.float32))
    assert loaded["s"] == 3.0


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_source_file(tmp_path / "nope.pkl")
