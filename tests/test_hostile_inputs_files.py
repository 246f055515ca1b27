"""Issue 12, data loss and impossible hyperparameters: each case replayed with the exact sequence
that lost data (mistyped --data_dir with --overwrite_output_dir, --output equal to the source,
a kill between the two renames of a save, two runs at once, Ctrl-C during the export)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dataset_scripts import mosei
from dataset_scripts.loading import load_prepared
from dataset_scripts.saving import save_prepared
from dataset_scripts.synthetic import make_synthetic_dataset, write_source

from .conftest import REPO_ROOT
from .test_dataset_scripts import SMALL
from .test_train import TINY_MODEL, tiny_arguments

sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` with a digest of its bytes."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


def hidden_leftovers(folder: Path) -> list[str]:
    """Temporary folders, backups and locks of `folder` left beside it."""
    return sorted(p.name for p in folder.parent.glob(f".{folder.name}.*"))


# --------------------------------------------------------------------------------------------------
# train.py
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def previous_model(tmp_path_factory):
    """A finished tiny run, with a file of the user's put into its folder afterwards."""
    output_dir = tmp_path_factory.mktemp("previous") / "model"
    train.main(tiny_arguments(output_dir, epochs=1))
    (output_dir / "my_notes.txt").write_text("not written by train.py")
    return output_dir


@pytest.fixture
def model_copy(previous_model, tmp_path):
    copy = tmp_path / "model"
    shutil.copytree(previous_model, copy)
    return copy


def test_mistyped_data_dir_with_overwrite_keeps_the_previous_model(model_copy, tmp_path):
    before = snapshot(model_copy)
    assert "model.safetensors" in before and any(k.startswith("checkpoints/") for k in before)
    arguments = tiny_arguments(
        model_copy, "--dataset", "mosei", "--data_dir", str(tmp_path / "prepared-mosei-typo"),
        "--overwrite_output_dir", "true", epochs=1,
    )  # fmt: skip
    with pytest.raises(Exception):  # noqa: B017  (whatever the loader raises for a missing folder)
        train.main(arguments)
    assert snapshot(model_copy) == before  # previous model, its checkpoints and the notes intact
    assert hidden_leftovers(model_copy) == []

    # The corrected command replaces the model and still keeps the user's file.
    train.main(
        tiny_arguments(model_copy, "--overwrite_output_dir", "true", "--seed", "7", epochs=1)
    )
    assert (model_copy / "my_notes.txt").read_text() == "not written by train.py"
    assert snapshot(model_copy)["model.safetensors"] != before["model.safetensors"]
    assert hidden_leftovers(model_copy) == []


def test_overwrite_refuses_a_folder_train_py_did_not_write(tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    (folder / "thesis.tex").write_text("years of work")
    with pytest.raises(FileExistsError, match="not written by train.py"):
        train.main(tiny_arguments(folder, "--overwrite_output_dir", "true", epochs=1))
    assert snapshot(folder) == {"thesis.tex": hashlib.sha256(b"years of work").hexdigest()}


def test_ctrl_c_during_the_export_leaves_the_previous_model_complete(model_copy, monkeypatch):
    import mmer.export

    before = snapshot(model_copy)

    def interrupted(*args, **kwargs):  # the weights and config are written, the card not yet
        raise KeyboardInterrupt

    monkeypatch.setattr(mmer.export, "_write_widget_examples", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train.main(tiny_arguments(model_copy, "--overwrite_output_dir", "true", epochs=1))
    assert snapshot(model_copy) == before
    assert hidden_leftovers(model_copy) == []


def test_two_runs_at_once_the_second_stops_at_start_up_naming_the_first(tmp_path):
    from transformers import TrainerCallback

    output_dir = tmp_path / "shared"
    arguments = tiny_arguments(output_dir, epochs=1)
    second = {}

    class StartASecondRun(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            second["run"] = subprocess.run(
                [sys.executable, str(REPO_ROOT / "train.py"), *arguments],
                cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
            )  # fmt: skip

    train.run(*train.parse_arguments(arguments), extra_callbacks=[StartASecondRun()])
    assert second["run"].returncode != 0
    assert f"pid {os.getpid()}" in second["run"].stderr
    assert (output_dir / "model.safetensors").is_file()
    assert hidden_leftovers(output_dir) == []


@pytest.mark.parametrize(
    "flag, value",
    [
        ("--weight_decay", "-5"),
        ("--max_grad_norm", "-1"),
        ("--learning_rate", "0"),
        ("--num_train_epochs", "-1"),
        ("--per_device_train_batch_size", "0"),
        ("--adam_beta2", "1.5"),
        ("--max_grad_norm", "nan"),
    ],
)
def test_impossible_hyperparameters_are_refused_naming_the_flag(tmp_path, flag, value):
    with pytest.raises(ValueError, match=flag):
        train.parse_arguments(tiny_arguments(tmp_path / "out", flag, value))
    assert not (tmp_path / "out").exists()


def test_a_mistyped_config_field_is_refused_with_the_nearest_name(tmp_path):
    model = {**TINY_MODEL, "hiden_size": 64}
    with pytest.raises(ValueError, match="'hiden_size'.*did you mean 'hidden_size'"):
        train.main(tiny_arguments(tmp_path / "out", model=model, epochs=1))
    assert not (tmp_path / "out").exists()
    assert hidden_leftovers(tmp_path / "out") == []


# --------------------------------------------------------------------------------------------------
# Dataset builders
# --------------------------------------------------------------------------------------------------


def mosei_arguments(source: Path, output: Path) -> list[str]:
    return [
        "--source", str(source), "--output", str(output), "--overwrite",
        "--feature_dims", "audio=7,visual=5", "--log_level", "WARNING",
    ]  # fmt: skip


def test_output_equal_to_the_source_folder_is_refused(tmp_path, capsys):
    folder = tmp_path / "d"
    source = write_source(folder / "aligned.pkl", "mmsa_pkl", **SMALL)
    (folder / "README.txt").write_text("where the features came from")
    before = snapshot(folder)
    with pytest.raises(SystemExit) as exit_info:
        mosei.main(mosei_arguments(source, folder))
    assert exit_info.value.code == 2
    assert "contains the source" in capsys.readouterr().err
    assert snapshot(folder) == before
    assert hidden_leftovers(folder) == []


def test_output_equal_to_the_source_file_is_refused(tmp_path, capsys):
    source = write_source(tmp_path / "aligned.pkl", "mmsa_pkl", **SMALL)
    before = source.read_bytes()
    with pytest.raises(SystemExit) as exit_info:
        mosei.main(mosei_arguments(source, source))
    assert exit_info.value.code == 2
    assert "is the source" in capsys.readouterr().err
    assert source.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["aligned.pkl"]


KILLED_BETWEEN_RENAMES = """
import os, signal, sys
from pathlib import Path
from dataset_scripts.saving import save_prepared
from dataset_scripts.synthetic import make_synthetic_dataset

rename = Path.rename
def rename_then_die(self, target):
    if ".tmp-" in self.name:  # the second rename: the previous output is already aside
        os.kill(os.getpid(), signal.SIGKILL)
    return rename(self, target)

Path.rename = rename_then_die
save_prepared(make_synthetic_dataset(4, 2, 2, seed=1), sys.argv[1], overwrite=True)
"""


def small_dataset(seed: int, num_train: int):
    return make_synthetic_dataset(num_train, 2, 2, seed=seed)


def test_kill_between_the_two_renames_of_a_save_loses_nothing(tmp_path, caplog):
    target = tmp_path / "saved"
    save_prepared(small_dataset(0, 6), target)
    killed = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(KILLED_BETWEEN_RENAMES), str(target)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -9, killed.stderr
    assert not target.exists()  # the sequence of the issue: the target is gone, data hidden

    # The next run puts the previous dataset back and says so (and refuses without --overwrite).
    with pytest.raises(FileExistsError):
        save_prepared(small_dataset(2, 5), target)
    assert load_prepared(target)["train"].num_rows == 6
    assert "restored the previous output" in caplog.text
    assert hidden_leftovers(target) == []
    save_prepared(small_dataset(2, 5), target, overwrite=True)
    assert load_prepared(target)["train"].num_rows == 5


def test_temporary_folders_of_a_killed_save_are_found_and_removed(tmp_path, caplog):
    target = tmp_path / "saved"
    leftover = tmp_path / ".saved.tmp-4242"
    (leftover / "train").mkdir(parents=True)
    (leftover / "train" / "data-00000-of-00001.arrow").write_bytes(b"\0" * 4096)
    save_prepared(small_dataset(0, 4), target)
    assert not leftover.exists()
    assert ".saved.tmp-4242" in caplog.text and "interrupted run" in caplog.text


def test_a_dataset_folder_is_replaced_only_when_the_package_wrote_it(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "table.csv").write_text("a,b\n")
    with pytest.raises(FileExistsError, match="not written by dataset_scripts"):
        save_prepared(small_dataset(0, 4), folder, overwrite=True)
    assert snapshot(folder) == {"table.csv": hashlib.sha256(b"a,b\n").hexdigest()}


def test_manifest_lists_what_the_builder_wrote(tmp_path):
    target = save_prepared(small_dataset(0, 4), tmp_path / "saved")
    manifest = json.loads((target / ".mmer-output.json").read_text())
    assert manifest["tool"] == "dataset_scripts"
    assert {"dataset_dict.json", "train", "validation", "test"} <= set(manifest["entries"])


def test_a_kill_after_the_renames_still_carries_the_users_files_over(tmp_path, caplog):
    from dataset_scripts.outputs import recover_leftovers, replace_output, write_manifest

    target = tmp_path / "model"
    previous = tmp_path / "previous"
    previous.mkdir()
    (previous / "config.json").write_text("{}")
    replace_output(previous, target, "train.py")
    (target / "my_notes.txt").write_text("mine")  # added by the user after the run
    new = tmp_path / "new"
    new.mkdir()
    (new / "config.json").write_text('{"new": 1}')
    write_manifest(new, "train.py")
    # The state a kill leaves after both renames, before the user's files followed the output:
    target.rename(tmp_path / ".model.old-4242")
    new.rename(target)
    recover_leftovers(target)
    assert (target / "my_notes.txt").read_text() == "mine"
    assert json.loads((target / "config.json").read_text()) == {"new": 1}
    assert hidden_leftovers(target) == []
    assert ".model.old-4242" in caplog.text


def test_an_output_without_a_manifest_is_kept_whole_when_replaced(tmp_path):
    """A folder that appeared (or was filled) while the run went is not the tool's to delete."""
    from dataset_scripts.outputs import replace_output

    target = tmp_path / "out"
    target.mkdir()
    (target / "thesis.tex").write_text("mine")
    new = tmp_path / ".out.tmp-1"
    new.mkdir()
    (new / "model.safetensors").write_bytes(b"weights")
    replace_output(new, target, "train.py")
    assert (target / "model.safetensors").is_file()
    kept = [path for path in tmp_path.glob(".out.old-*/thesis.tex")]
    assert kept and kept[0].read_text() == "mine"


def test_a_folder_of_foreign_parquet_files_is_not_taken_for_a_saved_dataset(tmp_path):
    from dataset_scripts.saving import _is_saved_dataset

    lake = tmp_path / "lake"
    lake.mkdir()
    (lake / "sales-0.parquet").write_bytes(b"PAR1")
    assert not _is_saved_dataset(lake)


def test_recovery_does_not_touch_another_outputs_leftovers(tmp_path):
    """`run[1]` is a glob pattern that matches `run1`: recovery must take the name literally."""
    from dataset_scripts.outputs import recover_leftovers

    other = tmp_path / ".run1.tmp-123"
    other.mkdir()
    (other / "part").write_text("a live build of another output")
    recover_leftovers(tmp_path / "run[1]")
    assert other.is_dir()
