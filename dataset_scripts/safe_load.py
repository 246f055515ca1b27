"""Loading of untrusted pickle and torch source files without running code from them.

Pickles can call any importable function while they load. The dataset files this package reads
only ever hold numpy arrays, numpy scalars and plain Python containers, so both loaders below
refuse every other global *before* anything is called:

* `.pkl` files go through `RestrictedUnpickler`, whose `find_class` answers only an allow-list.
* `.pt` files go through `torch.load(weights_only=True)` with exactly the numpy globals of that
  allow-list added via `torch.serialization.safe_globals`; the file is scanned for globals first
  so that the error can name what was refused.
"""

from __future__ import annotations

import _codecs
import _compat_pickle
import argparse
import builtins
import collections
import copyreg
import io
import logging
import os
import pickle
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "ALLOWED_GLOBALS",
    "RestrictedUnpickler",
    "UnsafeSourceError",
    "load_source_file",
    "safe_load_pickle",
    "safe_load_torch",
]


class UnsafeSourceError(pickle.UnpicklingError):
    """A source file references a global that is not on the allow-list; nothing from it was run."""


try:  # numpy 2 (numpy.core is its deprecated alias)
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # numpy < 2
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric

_BUILTIN_NAMES = (
    "dict list tuple set frozenset str bytes bytearray int float complex bool slice object"
)

#: Fully qualified name -> object, for every global a source file may reference.
ALLOWED_GLOBALS: dict[str, Any] = {
    "numpy.ndarray": np.ndarray,
    "numpy.dtype": np.dtype,
    # Files written under numpy 1.x spell these `numpy.core...`, under numpy 2.x `numpy._core...`.
    **{
        f"{core}.{name}": getattr(module, name.rpartition(".")[2])
        for core in ("numpy.core", "numpy._core")
        for name, module in (
            ("multiarray._reconstruct", _multiarray),
            ("multiarray.scalar", _multiarray),
            ("numeric._frombuffer", _numeric),
        )
    },
    **{f"builtins.{name}": getattr(builtins, name) for name in _BUILTIN_NAMES.split()},
    # Pickles written with protocol <= 2 store bytes as `_codecs.encode(str, "latin1")`.
    "_codecs.encode": _codecs.encode,
    "collections.OrderedDict": collections.OrderedDict,
    # Protocol 0/1 pickles rebuild plain objects (an OrderedDict, a Namespace) through this
    # helper; the classes it receives come through `find_class` too, so they are held to this list.
    "copyreg._reconstructor": copyreg._reconstructor,
    # CARAT's M3ED file stores its preprocessing options as an argparse.Namespace under 'settings'.
    "argparse.Namespace": argparse.Namespace,
}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose `find_class` resolves only names in `ALLOWED_GLOBALS`.

    Python 2 names (`__builtin__.list`, `copy_reg`) are mapped to their Python 3 names first, as the
    standard unpickler does. Everything else raises `UnsafeSourceError` naming `module.name`, so a
    malicious `__reduce__` payload is never called.
    """

    def __init__(self, file: io.BufferedIOBase, source: str = "<stream>") -> None:
        super().__init__(file)
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        # The same Python 2 -> 3 renames the standard library applies (fix_imports=True).
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        elif module in _compat_pickle.IMPORT_MAPPING:
            module = _compat_pickle.IMPORT_MAPPING[module]
        qualified_name = f"{module}.{name}"
        if qualified_name not in ALLOWED_GLOBALS:
            raise UnsafeSourceError(
                f"Refusing to load {self.source}: it references the global {qualified_name!r}, "
                "which is not on the allow-list of dataset_scripts.safe_load (numpy arrays, "
                "dtypes and scalars, Python containers and scalars, collections.OrderedDict, "
                "argparse.Namespace). Nothing from the file was executed."
            )
        return ALLOWED_GLOBALS[qualified_name]


def safe_load_pickle(path: str | os.PathLike) -> Any:
    """Loads a pickle file with `RestrictedUnpickler`.

    Raises:
        UnsafeSourceError: If the file references a global that is not allowed.
    """
    path = Path(path)
    with path.open("rb") as file:
        return RestrictedUnpickler(file, source=str(path)).load()


def _torch_safe_globals() -> list[Any]:
    """`ALLOWED_GLOBALS` in the form torch's allow-list takes.

    Objects, or `(object, name)` pairs where the file's spelling differs from the object's own
    (numpy 1 names under numpy 2), plus the numpy dtype classes that torch's BUILD check needs
    since numpy 1.25.
    """
    entries: list[Any] = []
    for qualified_name, obj in ALLOWED_GLOBALS.items():
        if f"{obj.__module__}.{obj.__qualname__}" == qualified_name:
            entries.append(obj)
        else:
            entries.append((obj, qualified_name))
    entries.extend(sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDOUS"}, key=str))
    return entries


def safe_load_torch(path: str | os.PathLike) -> Any:
    """Loads a torch `.pt` file with `torch.load(weights_only=True)`.

    Tensors and Python containers are always allowed by torch; numpy arrays, numpy scalars and
    `argparse.Namespace` are added through `torch.serialization.safe_globals` for this call only.

    Raises:
        UnsafeSourceError: If the file references any other global.
    """
    import torch

    path = Path(path)
    if zipfile.is_zipfile(path):
        # Scan first (no code runs) so that the error names every global that would be refused.
        refused = sorted(
            set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - set(ALLOWED_GLOBALS)
        )
        if refused:
            raise UnsafeSourceError(
                f"Refusing to load {path}: it references the global(s) {refused}, which are not "
                "on the allow-list of dataset_scripts.safe_load. Nothing from the file was "
                "executed."
            )
    try:
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        match = re.search(r"GLOBAL (\S+)", str(error))
        refused_global = repr(match.group(1)) if match else "(named in the chained error)"
        raise UnsafeSourceError(
            f"Refusing to load {path}: torch.load(weights_only=True) refused the global "
            f"{refused_global}, which is not on the allow-list of dataset_scripts.safe_load. "
            "Nothing from the file was executed."
        ) from error


def load_source_file(path: str | os.PathLike) -> Any:
    """Loads a dataset source file safely: torch files (`.pt`, `.pth` or a zip archive) with
    `safe_load_torch`, anything else with `safe_load_pickle`.

    Raises:
        FileNotFoundError: If `path` does not exist.
        UnsafeSourceError: If the file references a global outside the allow-list.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Source file {path} does not exist")
    if path.suffix in (".pt", ".pth") or zipfile.is_zipfile(path):
        logger.info("Loading %s with torch.load(weights_only=True)", path)
        return safe_load_torch(path)
    logger.info("Loading %s with the restricted unpickler", path)
    return safe_load_pickle(path)
