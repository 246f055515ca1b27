"""Atomic file writing and output-folder preparation.

Every artefact a run produces (metrics JSON, model card, plots) is written through these helpers, so a
crash or an exception half-way through a write never leaves a truncated file behind: the data goes to a
hidden temporary file in the *same* folder, is flushed and fsynced, and is then moved over the target
with `os.replace`, which is atomic on POSIX and Windows as long as source and target share a file
system (hence the same folder).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Literal

logger = logging.getLogger(__name__)

__all__ = [
    "atomic_write",
    "prepare_output_dir",
    "write_bytes_atomic",
    "write_json_atomic",
    "write_text_atomic",
]

# Mode given to files that did not exist before. `tempfile` creates files readable by the owner only
# (0o600); files written here are meant to be shared (model cards, metrics), so they get the usual
# 0o644. An existing target keeps its own mode.
_NEW_FILE_MODE = 0o644


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str],
    mode: Literal["w", "wb"] = "w",
    *,
    encoding: str | None = "utf-8",
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary file next to `path` and move it over `path` when the block exits cleanly.

    If the block raises, the temporary file is removed and `path` is left exactly as it was (absent
    or with its previous content). The parent folder must already exist.

    Args:
        path: Final location of the file.
        mode: `"w"` for text, `"wb"` for bytes.
        encoding: Text encoding (ignored in binary mode).
        newline: Passed to `open` in text mode (`""` keeps line endings untouched).

    Yields:
        The open file object to write to.

    Example:
        ```python
        with atomic_write("out/metrics.csv") as handle:
            handle.write("name,value\\n")
        ```
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"`mode` must be 'w' or 'wb', got {mode!r}.")
    target = Path(path)
    parent = target.parent
    if not parent.is_dir():
        raise FileNotFoundError(f"Cannot write {target}: the folder {parent} does not exist.")

    file_descriptor, temporary_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=".tmp", dir=parent
    )
    temporary_path = Path(temporary_name)
    try:
        if mode == "wb":
            handle = os.fdopen(file_descriptor, "wb")
        else:
            handle = os.fdopen(file_descriptor, "w", encoding=encoding, newline=newline)
        with handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        try:
            file_mode = target.stat().st_mode & 0o777
        except FileNotFoundError:
            file_mode = _NEW_FILE_MODE
        os.chmod(temporary_path, file_mode)
        os.replace(temporary_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary_path.unlink()
        raise
    _fsync_directory(parent)


def _fsync_directory(directory: Path) -> None:
    """Best-effort fsync of a folder so that a rename survives a power cut (no-op where unsupported)."""
    with contextlib.suppress(OSError):
        directory_descriptor = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(directory_descriptor)
        finally:
            os.close(directory_descriptor)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write `data` to `path` atomically and return the path."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"`data` must be bytes-like, got {type(data).__name__}.")
    with atomic_write(path, "wb") as handle:
        handle.write(data)
    return Path(path)


def write_text_atomic(
    path: str | os.PathLike[str], text: str, *, encoding: str = "utf-8", newline: str | None = ""
) -> Path:
    """Write `text` to `path` atomically and return the path.

    `newline=""` (the default) writes the line endings contained in `text` unchanged on every platform.
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str, got {type(text).__name__}.")
    with atomic_write(path, "w", encoding=encoding, newline=newline) as handle:
        handle.write(text)
    return Path(path)


def _json_default(value: Any) -> Any:
    """Convert numpy / torch scalars and arrays (and paths) to JSON-native values."""
    if hasattr(value, "detach") and hasattr(value, "tolist"):  # torch.Tensor
        return value.detach().cpu().tolist()
    if hasattr(value, "tolist"):  # numpy arrays and numpy scalars
        return value.tolist()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable.")


def write_json_atomic(
    path: str | os.PathLike[str], data: Any, *, indent: int | None = 2, sort_keys: bool = False
) -> Path:
    """Serialise `data` as JSON and write it to `path` atomically.

    numpy and torch scalars/arrays and `os.PathLike` values are converted to plain JSON values.
    Non-finite floats are written as `NaN` / `Infinity`, like `json.dumps` and Trainer's own state
    files do; readers that need strict JSON should replace them before calling this.
    The whole document is serialised before the file is opened, so an unserialisable object never
    touches the target.
    """
    text = json.dumps(data, indent=indent, sort_keys=sort_keys, default=_json_default)
    return write_text_atomic(path, text + "\n")


def prepare_output_dir(path: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
    """Create `path` (with parents) or check that it can be written into.

    An existing non-empty folder is refused unless `overwrite=True`. Even then nothing is deleted:
    files are replaced one by one as they are written, and files that the new run does not write stay
    in place (as with transformers' `overwrite_output_dir`). Use a fresh folder for anything that will
    be published with a tool that uploads every file it finds (such as the Hub publisher).

    Raises:
        NotADirectoryError: `path` exists and is not a folder.
        FileExistsError: `path` is a non-empty folder and `overwrite` is False.
    """
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"Output path {folder} exists and is not a folder.")
    if folder.is_dir():
        entries = sorted(entry.name for entry in folder.iterdir())
        if entries:
            shown = ", ".join(entries[:5]) + (", ..." if len(entries) > 5 else "")
            if not overwrite:
                raise FileExistsError(
                    f"Output folder {folder} is not empty ({len(entries)} entries: {shown}). Pass "
                    "overwrite=True to write into it anyway, or choose another folder."
                )
            logger.warning(
                "Writing into non-empty output folder %s (overwrite=True); existing entries are kept "
                "unless replaced: %s",
                folder,
                shown,
            )
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_output_file(path: str | os.PathLike[str] | None, *, overwrite: bool = False) -> None:
    """Refuse, before any work starts, to replace an existing result file unless `overwrite`.

    Scripts that take minutes before writing their report call this first, so that a name clash is
    reported at once rather than after the run (and nothing is replaced silently).

    Raises:
        IsADirectoryError: `path` is a folder.
        FileExistsError: `path` exists and `overwrite` is False.
        FileNotFoundError: the parent folder of `path` does not exist.
    """
    if path is None:
        return
    target = Path(path)
    if target.is_dir():
        raise IsADirectoryError(f"Output file {target} is a folder.")
    if target.exists() and not overwrite:
        raise FileExistsError(
            f"Output file {target} already exists. Pass --overwrite to replace it, or choose "
            "another name."
        )
    if not target.parent.is_dir():
        raise FileNotFoundError(
            f"The folder of output file {target} does not exist: {target.parent}"
        )
