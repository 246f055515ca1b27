"""Output folders that a run may replace without losing anything it did not write.

Every tool that writes a whole folder (`train.py`, the dataset builders) goes through this module:
`check_output_target` validates before any work (sources, overwrite flag, the tool's manifest
`MANIFEST_FILENAME`), `output_lock` holds `.<name>.lock` for the run, `recover_leftovers` settles
what a killed run left beside the output, and `replace_output` moves a complete folder into place.
The rules and their limits: docs/promises.md, "What is never deleted" and "How outputs are
replaced".
"""

from __future__ import annotations

import contextlib
import difflib
import glob
import json
import logging
import os
import shutil
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

__all__ = [
    "MANIFEST_FILENAME",
    "OutputInUseError",
    "check_output_target",
    "nearest_name_hint",
    "output_lock",
    "read_manifest",
    "recover_leftovers",
    "replace_output",
    "temporary_output_dir",
    "write_manifest",
]

MANIFEST_FILENAME = ".mmer-output.json"


class OutputInUseError(RuntimeError):
    """Another live process holds the output folder's lock."""


def _sibling(target: Path, kind: str) -> Path:
    return target.parent / f".{target.name}.{kind}"


def read_manifest(folder: str | os.PathLike) -> dict | None:
    """The manifest a tool wrote into `folder`, or None (absent or unreadable)."""
    path = Path(folder) / MANIFEST_FILENAME
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


def write_manifest(folder: str | os.PathLike, tool: str) -> Path:
    """Records in `folder` that `tool` wrote it, with the top-level entries it holds now.

    Written last: a folder with a manifest is complete."""
    from .io import write_json_atomic

    folder = Path(folder)
    entries = sorted(entry.name for entry in folder.iterdir() if entry.name != MANIFEST_FILENAME)
    return write_json_atomic(folder / MANIFEST_FILENAME, {"tool": tool, "entries": entries})


def _contains(outer: Path, inner: Path) -> bool:
    return inner == outer or outer in inner.parents


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_target(
    target: str | os.PathLike,
    *,
    tool: str,
    overwrite: bool,
    sources: Iterable[str | os.PathLike | None] = (),
    recognised: Callable[[Path], bool] | None = None,
    flag: str = "--overwrite",
) -> Path:
    """Refuses, before any work, an output that this run could not replace without losing data.

    Args:
        target: The output folder.
        tool: Who writes it (`"train.py"`, `"dataset_scripts"`); a folder with another tool's
            manifest, or none, is never replaced.
        overwrite: Whether the user asked to replace an existing output.
        sources: Inputs of the run; the output may neither be one nor contain one.
        recognised: For outputs written before manifests existed: True when every entry of the
            folder is one the tool writes.
        flag: The command-line flag named in the messages.

    Raises:
        ValueError: The output is, or contains, a source.
        NotADirectoryError: The output exists and is not a folder.
        FileExistsError: The output is a non-empty folder and may not be replaced.
        PermissionError: The output's folder is not writable.
    """
    target = Path(target).resolve()  # symlinks and '..' resolved: renames act on the real folder
    for source in filter(None, sources):
        source = Path(source).absolute().resolve()
        if _contains(target, source):
            raise ValueError(
                f"The output {target} {'is' if source == target else 'contains'} the source "
                f"{source}; choose an output outside the source. Nothing was written."
            )
    if target.exists() and not target.is_dir():
        raise NotADirectoryError(f"The output {target} exists and is not a folder.")
    if target.is_dir() and any(target.iterdir()):
        manifest = read_manifest(target)
        ours = (manifest or {}).get("tool") == tool or (
            manifest is None and recognised is not None and recognised(target)
        )
        if not overwrite:
            raise FileExistsError(f"{target} exists; pass {flag} to replace it")
        if not ours:
            raise FileExistsError(
                f"{target} is not empty and was not written by {tool} (no {MANIFEST_FILENAME} of "
                f"{tool} in it), so {flag} will not replace it: empty it yourself or choose "
                "another folder."
            )
    parent = _nearest_existing(target.parent)
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"Cannot write the output {target}: {parent} is not writable.")
    return target


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@contextlib.contextmanager
def output_lock(target: str | os.PathLike) -> Iterator[Path]:
    """Holds `.<name>.lock` beside `target` for the block; refuses if a live process holds it.

    Raises:
        OutputInUseError: Another running process (named by pid) holds the lock.
    """
    target = Path(target).resolve()  # symlinks and '..' resolved: renames act on the real folder
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = _sibling(target, "lock")
    for _ in range(2):
        try:
            descriptor = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(lock.read_text().strip() or 0)
            except (OSError, ValueError):
                holder = 0
            if not holder:  # being written by a run that is starting (or left by a crash then)
                raise OutputInUseError(
                    f"{target} is in use by another run that is starting (empty lock {lock}); "
                    "if no run is using it, delete the lock file."
                ) from None
            if holder == os.getpid() or _pid_alive(holder):  # our pid: another container's run
                raise OutputInUseError(
                    f"{target} is in use by another run (pid {holder}, lock {lock}); wait for it "
                    "to finish or choose another output."
                ) from None
            logger.warning("Taking over the stale lock %s (pid %s is gone).", lock, holder)
            with contextlib.suppress(FileNotFoundError):
                lock.unlink()
            continue
        with os.fdopen(descriptor, "w") as handle:
            handle.write(f"{os.getpid()}\n")
        break
    else:
        raise OutputInUseError(f"Could not take the lock {lock} on {target}.")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError, ValueError):
            if int(lock.read_text().strip()) == os.getpid():
                lock.unlink()


def _size_text(folder: Path) -> str:
    total = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    return f"{total / 2**20:.1f} MB"


def recover_leftovers(target: str | os.PathLike) -> list[str]:
    """Finds and settles what an interrupted run left beside `target`; call it under the lock.

    The previous output (`.<name>.old-*`) is put back when `target` is missing (a kill between the
    two renames of `replace_output`), else the user's entries in it are moved into `target` and the
    rest removed; incomplete new outputs (`.<name>.tmp-*`) are removed. Returns one line per action, each also logged as a warning.
    """
    target = Path(target).resolve()  # symlinks and '..' resolved: renames act on the real folder
    actions = []
    if not target.parent.is_dir():
        return actions
    name = glob.escape(target.name)  # an output named `run[1]` must not match `.run1.*`
    leftovers = sorted(target.parent.glob(f".{name}.old-*")) + sorted(
        target.parent.glob(f".{name}.tmp-*")
    )
    for folder in leftovers:
        if not folder.is_dir():
            continue
        if ".old-" in folder.name and not target.exists():
            folder.rename(target)
            actions.append(f"restored the previous output {target} from {folder.name}")
        elif ".old-" in folder.name:  # replaced, but the user's files may still be in it
            actions.append(_settle_backup(folder, target))
        elif any(folder.glob("checkpoints/checkpoint-*/trainer_state.json")):
            kept = keep_interrupted_run(folder, target)
            actions.append(
                f"kept the checkpoints of an interrupted training run in {kept} (resume with "
                f"--resume_from_checkpoint {kept}/checkpoints/checkpoint-N)"
            )
        else:
            size = _size_text(folder)
            shutil.rmtree(folder)
            actions.append(f"removed {folder} ({size}) left by an interrupted run")
    for action in actions:
        logger.warning("Found after an interrupted run: %s.", action)
    return actions


def keep_interrupted_run(staging: Path, target: str | os.PathLike) -> Path:
    """Rename the staging folder of a run that stopped after writing checkpoints to a visible
    ``<name>.interrupted-N`` beside `target`, so that it can be resumed and is never cleaned up."""
    target = Path(target).resolve()  # symlinks and '..' resolved: renames act on the real folder
    number = 1
    while (kept := target.parent / f"{target.name}.interrupted-{number}").exists():
        number += 1
    staging.rename(kept)
    return kept


def temporary_output_dir(target: str | os.PathLike, tag: str | None = None) -> Path:
    """A fresh, empty `.<name>.tmp-<tag>` folder beside `target` (tag: this process's pid)."""
    target = Path(target).resolve()  # symlinks and '..' resolved: renames act on the real folder
    temporary = _sibling(target, f"tmp-{tag or os.getpid()}")
    if temporary.exists():
        shutil.rmtree(temporary)
    temporary.mkdir(parents=True)
    return temporary


def _carry_over_unlisted(old: Path, new: Path) -> list[str]:
    """Moves the entries of the previous output that its manifest does not list (files the user put
    there) into the new output; an entry whose name the new output also uses stays in `old`."""
    manifest = read_manifest(old)
    if manifest is None:  # no record of what the tool wrote: keep all of it, delete nothing
        return sorted(entry.name for entry in old.iterdir())
    listed = set(manifest.get("entries", [])) | {MANIFEST_FILENAME}
    kept = []
    for entry in sorted(old.iterdir()):
        if entry.name in listed:
            continue
        if (new / entry.name).exists():
            kept.append(entry.name)
            continue
        entry.rename(new / entry.name)
    return kept


def replace_output(new: Path, target: str | os.PathLike, tool: str, manifest: bool = True) -> Path:
    """Moves the complete folder `new` to `target`, replacing a previous output of `tool`.

    The manifest is written into `new` first; the previous output is renamed aside, `new` renamed
    into place, and only then is the previous output deleted. Entries of the previous output that it
    did not list (the user's) are moved into the new one. Call under `output_lock`. `manifest=False` is for folders whose
    every entry the tool recognises by name (e.g. a Hub layout's config folder, which is uploaded
    as it is).
    """
    target = Path(target).resolve()  # symlinks and '..' resolved: renames act on the real folder
    if manifest:
        write_manifest(new, tool)
    if not target.exists():
        new.rename(target)
        return target
    backup = _sibling(target, f"old-{os.getpid()}")
    target.rename(backup)
    try:
        new.rename(target)
    except BaseException:
        backup.rename(target)
        raise
    # Only now, with the new output in place, the user's files follow it (a kill before this point
    # leaves them in the backup, which the next run's `recover_leftovers` settles the same way).
    _settle_backup(backup, target)
    return target


def _settle_backup(backup: Path, target: Path) -> str:
    """Moves the user's entries of a replaced output into `target`, then deletes the rest of it;
    keeps it whole when a user's entry has a name `target` also uses. Returns what was done."""
    conflicts = _carry_over_unlisted(backup, target)
    if conflicts:
        logger.warning(
            "Kept the previous output in %s: it holds %s, which the tool has no record of writing "
            "(no manifest) or whose names the new output also uses.",
            backup,
            conflicts,
        )
        return f"kept {backup}: it holds {conflicts}, not written by the tool"
    size = _size_text(backup)
    shutil.rmtree(backup, ignore_errors=True)
    return f"removed {backup} ({size}) left by an interrupted run"


def nearest_name_hint(name: str, valid: Iterable[str]) -> str:
    """`"; did you mean 'x'?"` for the closest valid name, or `""`."""
    matches = difflib.get_close_matches(name, list(valid), n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""
