"""Loading of untrusted pickle and torch source files without running code from them.

The dataset files hold only numpy arrays, numpy scalars and plain Python containers. `.pkl` files
go through `RestrictedUnpickler`: globals only from `ALLOWED_GLOBALS`, and every opcode that builds,
shares or changes an object checked (`_GuardedUnpickler`), since a small pickle can describe an
exponentially large object or a huge allocation without naming any code. `.pt` files go through
`torch.load(weights_only=True)` with the same numpy globals, after the same checks of their pickle.
The rules and their limits: docs/promises.md, "What the loader enforces".
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
import math
import os
import pickle
import pickletools
import re
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)

__all__ = [
    "ALLOWED_GLOBALS",
    "CorruptSourceError",
    "MAX_DEPTH",
    "MAX_SHARED_ITEMS",
    "RestrictedUnpickler",
    "SourceLimitError",
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


#: Nesting depth above which a file is refused (the dataset files nest 5 or 6 levels deep).
MAX_DEPTH = 32
#: A container may be referenced twice (memo GET or DUP) only if it holds at most this many
#: items and no container: this is what keeps a small file from describing an exponential tree.
MAX_SHARED_ITEMS = 16
#: Wall-clock budget of one load, checked every 4096 opcodes.
MAX_SECONDS = 300.0

_CONTAINERS = (list, tuple, dict, set, frozenset, bytearray, argparse.Namespace)
_LATIN1 = ("latin1", "latin-1", "iso-8859-1", "iso8859-1")


class SourceLimitError(UnsafeSourceError):
    """A source file exceeds a limit of the loader (depth, sharing, sizes, allowed state)."""


class CorruptSourceError(pickle.UnpicklingError):
    """A source file is empty, truncated or not in the format its name or content claims."""


def _depth_of_items(items: Any, depths: dict[int, tuple[Any, int]]) -> int:
    """1 + the largest recorded depth among `items` (scalars, strings and arrays count 0)."""
    return 1 + max((depths.get(id(item), (None, 0))[1] for item in items), default=0)


def _items_of(obj: Any) -> list[Any]:
    """The direct children of a container, for depth bookkeeping."""
    if isinstance(obj, dict):
        return [*obj.keys(), *obj.values()]
    if isinstance(obj, argparse.Namespace):
        return list(vars(obj).values())
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        return obj.ravel().tolist()
    if isinstance(obj, (list, tuple, set, frozenset)):
        return list(obj)
    return []


class _GuardedUnpickler(pickle._Unpickler):
    """The pure-Python unpickler with every opcode that builds, shares or changes an object checked.

    Rules (each refusal raises `SourceLimitError` naming the file, the opcode and its byte offset):
    globals come only from `find_class`; only the allowed callables may be called, each with
    checked arguments (`_checked_call`); arrays are built only from bytes in the file; BUILD
    (state setting) only on arrays, dtypes and `argparse.Namespace`/`OrderedDict` instances;
    APPEND/SETITEM only on lists/dicts/sets that were not shared; nesting at most `MAX_DEPTH`;
    a container referenced twice must be flat and small (`MAX_SHARED_ITEMS`) and is frozen.
    """

    dispatch = dict(pickle._Unpickler.dispatch)

    def __init__(
        self,
        file: Any,
        owner: RestrictedUnpickler,
        file_size: int | None,
        encoding: str = "ASCII",
    ) -> None:
        super().__init__(file, encoding=encoding)
        self._owner = owner
        self._source = owner.source
        self._file = file
        self._file_size = file_size
        self._depths: dict[int, tuple[Any, int]] = {}  # id -> (object kept alive, depth)
        self._frozen: dict[int, Any] = {}
        self._opcode = "?"
        self._offset = 0

    # -- reporting ---------------------------------------------------------------------------
    def refuse(self, what: str) -> SourceLimitError:
        return SourceLimitError(
            f"Refusing to load {self._source}: {what} (opcode {self._opcode} near byte "
            f"{self._offset}). Nothing from the file was executed; see 'What the loader "
            "enforces' in docs/promises.md."
        )

    def find_class(self, module: str, name: str) -> Any:
        return self._owner.find_class(module, name)

    def load(self) -> Any:
        # The standard loop plus the opcode name/offset for messages and the time budget.
        self._unframer = pickle._Unframer(self._file_read, self._file_readline)
        self.read = self._unframer.read
        self.readinto = self._unframer.readinto
        self.readline = self._unframer.readline
        self.metastack, self.stack = [], []
        self.append = self.stack.append
        self.proto = 0
        deadline = time.monotonic() + MAX_SECONDS
        steps = 0
        while True:
            key = self.read(1)
            if not key:
                raise EOFError
            self._opcode = _OPCODE_NAMES.get(key[0], repr(key))
            self._offset = self._position()
            steps += 1
            if steps % 4096 == 0 and time.monotonic() > deadline:
                raise self.refuse(f"the load took longer than {MAX_SECONDS:.0f} s")
            try:
                self.dispatch[key[0]](self)
            except pickle._Stop as stop:
                return stop.value

    def _position(self) -> int:
        try:
            return self._file.tell()
        except (AttributeError, OSError):
            return -1

    # -- depth, sharing, freezing ------------------------------------------------------------
    def _record(self, obj: Any, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise self.refuse(f"nesting deeper than {MAX_DEPTH} levels")
        self._depths[id(obj)] = (obj, depth)

    def _depth(self, obj: Any) -> int:
        return self._depths.get(id(obj), (None, 0))[1]

    def _record_top(self) -> None:
        top = self.stack[-1]
        if isinstance(top, (*_CONTAINERS, np.ndarray)):
            self._record(top, _depth_of_items(_items_of(top), self._depths))

    def _share_top(self) -> None:
        top = self.stack[-1]
        if isinstance(top, np.ndarray) and not top.dtype.hasobject:
            return
        if isinstance(top, (*_CONTAINERS, np.ndarray)):
            items = _items_of(top) if not isinstance(top, bytearray) else []
            if len(items) > MAX_SHARED_ITEMS or self._depth(top) > 1:
                raise self.refuse(
                    f"a second reference to a {type(top).__name__} of {len(items)} items that "
                    f"holds containers or more than {MAX_SHARED_ITEMS} items (shared nested "
                    "containers can describe an exponentially large object in a few bytes)"
                )
            self._frozen[id(top)] = top

    def _mutable_target(self, target: Any, kinds: tuple[type, ...]) -> None:
        if type(target) not in kinds:
            raise self.refuse(f"adding items to a {type(target).__name__}")
        if id(target) in self._frozen:
            raise self.refuse(f"changing a {type(target).__name__} that is referenced twice")

    def _grow(self, target: Any, new_items: list[Any]) -> None:
        depth = max(self._depth(target), _depth_of_items(new_items, self._depths))
        self._record(target, depth)

    # -- opcodes -----------------------------------------------------------------------------
    def load_append(self) -> None:
        target = self.stack[-2]
        self._mutable_target(target, (list,))
        self._grow(target, [self.stack[-1]])
        target.append(self.stack.pop())

    def load_appends(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        self._mutable_target(target, (list,))
        self._grow(target, items)
        target.extend(items)

    def load_setitem(self) -> None:
        target = self.stack[-3]
        self._mutable_target(target, (dict, collections.OrderedDict))
        self._check_keys([self.stack[-2]])
        self._grow(target, self.stack[-2:])
        value = self.stack.pop()
        target[self.stack.pop()] = value

    def load_setitems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        self._mutable_target(target, (dict, collections.OrderedDict))
        self._check_keys(items[::2])
        self._grow(target, items)
        for index in range(0, len(items), 2):
            target[items[index]] = items[index + 1]

    def load_additems(self) -> None:
        items = self.pop_mark()
        target = self.stack[-1]
        self._mutable_target(target, (set,))
        self._check_keys(items)
        self._grow(target, items)
        target.update(items)

    def _check_keys(self, keys: list[Any]) -> None:
        for key in keys:
            if isinstance(key, (list, dict, set, bytearray, argparse.Namespace, np.ndarray)):
                raise self.refuse(f"an unhashable {type(key).__name__} used as a key")

    def load_reduce(self) -> None:
        args = self.stack.pop()
        func = self.stack[-1]
        self.stack[-1] = self._checked_call(func, args)
        self._record_top()

    def load_newobj(self) -> None:
        args = self.stack.pop()
        cls = self.stack.pop()
        if cls not in (argparse.Namespace, collections.OrderedDict) or args != ():
            raise self.refuse(f"creating {getattr(cls, '__name__', cls)!r} with NEWOBJ")
        self.append(cls.__new__(cls))

    def load_build(self) -> None:
        state = self.stack.pop()
        inst = self.stack[-1]
        if isinstance(inst, np.ndarray) and type(inst) is np.ndarray:
            state = _python2_array_state(state, self.encoding)
            _check_array_state(inst, state, self.refuse)
            inst.__setstate__(state)
            self._record_top()
        elif isinstance(inst, np.dtype):
            inst.__setstate__(state)
        elif type(inst) is argparse.Namespace and id(inst) not in self._frozen:
            if not isinstance(state, dict) or not all(
                isinstance(key, str) and not key.startswith("__") for key in state
            ):
                raise self.refuse("argparse.Namespace state that is not a dict of plain names")
            vars(inst).update(state)
            self._record_top()
        elif type(inst) is collections.OrderedDict and not state:
            pass
        else:
            raise self.refuse(f"setting state (attributes) on {_describe(inst)}")

    def refused_opcode(self) -> None:
        raise self.refuse("an opcode that calls a class directly (INST/OBJ/NEWOBJ_EX)")

    def _checked_call(self, func: Any, args: Any) -> Any:
        if not isinstance(args, tuple):
            raise self.refuse("call arguments that are not a tuple")
        return _checked_call(func, args, self._file_size, self.refuse)


def _describe(obj: Any) -> str:
    if isinstance(obj, type) or callable(obj):
        return f"the global {getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', obj)}"
    return f"a {type(obj).__name__}"


_OPCODE_NAMES = {opcode.code.encode("latin-1")[0]: opcode.name for opcode in pickletools.opcodes}


def _wrap_get(key: int) -> Any:
    def load(self: _GuardedUnpickler) -> None:
        pickle._Unpickler.dispatch[key](self)
        self._share_top()

    return load


def _wrap_builder(key: int) -> Any:
    def load(self: _GuardedUnpickler) -> None:
        pickle._Unpickler.dispatch[key](self)
        self._record_top()

    return load


_D = _GuardedUnpickler.dispatch
for _opcode in (pickle.GET, pickle.BINGET, pickle.LONG_BINGET, pickle.DUP):
    _D[_opcode[0]] = _wrap_get(_opcode[0])
for _opcode in (
    pickle.TUPLE, pickle.TUPLE1, pickle.TUPLE2, pickle.TUPLE3, pickle.LIST, pickle.DICT,
    pickle.FROZENSET,
):  # fmt: skip
    _D[_opcode[0]] = _wrap_builder(_opcode[0])
for _name in ("APPEND", "APPENDS", "SETITEM", "SETITEMS", "ADDITEMS", "REDUCE", "NEWOBJ", "BUILD"):
    _D[getattr(pickle, _name)[0]] = getattr(_GuardedUnpickler, f"load_{_name.lower()}")
for _opcode in (pickle.INST, pickle.OBJ, pickle.NEWOBJ_EX):
    _D[_opcode[0]] = _GuardedUnpickler.refused_opcode


def _python2_array_state(state: Any, encoding: str) -> Any:
    """An array state read from a Python 2 pickle with `encoding="latin1"` carries its data as a
    `str` (Python 2's `str` was bytes); it is turned back into those bytes, as numpy itself does."""
    if (
        str(encoding).lower() in _LATIN1
        and isinstance(state, tuple)
        and len(state) in (4, 5)
        and isinstance(state[-1], str)
    ):
        return (*state[:-1], state[-1].encode("latin1"))
    return state


def _check_array_state(array: np.ndarray, state: Any, refuse: Any) -> None:
    """An ndarray's BUILD state must carry exactly the data its shape and dtype declare."""
    if array.size != 0:
        raise refuse("setting the state of an array that already holds data")
    if not isinstance(state, tuple) or len(state) not in (4, 5):
        raise refuse("array state that is not numpy's (version, shape, dtype, order, data)")
    shape, dtype, data = state[-4], state[-3], state[-1]
    if not isinstance(dtype, np.dtype) or not isinstance(shape, tuple):
        raise refuse("array state without a dtype or a shape tuple")
    if not all(isinstance(n, int) and n >= 0 for n in shape):
        raise refuse(f"array shape {shape!r} with a negative or non-integer dimension")
    count = math.prod(shape)
    if dtype.hasobject:
        if not isinstance(data, list) or len(data) != count:
            raise refuse(f"object array of shape {shape} whose data is not a list of {count} items")
        return
    if not isinstance(data, (bytes, bytearray)):
        raise refuse(f"array data of type {type(data).__name__} (bytes expected)")
    if len(data) != count * dtype.itemsize:
        raise refuse(
            f"an array of shape {shape} and dtype {dtype} declares {count * dtype.itemsize} "
            f"bytes but the file supplies {len(data)}"
        )


def _checked_call(func: Any, args: tuple, file_size: int | None, refuse: Any) -> Any:
    """Calls one allowed global with arguments checked so that nothing is allocated beyond what
    the file itself holds; all other calls are refused."""
    limit = file_size if file_size is not None else 1 << 30
    if func is _multiarray._reconstruct:
        # numpy's own pickles always start an array at shape (0,); the data comes with BUILD.
        if len(args) != 3 or args[0] is not np.ndarray or math.prod(args[1] or (1,)) != 0:
            raise refuse(f"numpy _reconstruct{args!r}: only empty arrays, filled by BUILD")
        return np.ndarray.__new__(np.ndarray, (0,), np.uint8)
    if func is _numeric._frombuffer:
        buffer, dtype, shape, order = args
        if not isinstance(buffer, (bytes, bytearray)) or not isinstance(dtype, np.dtype):
            raise refuse("numpy _frombuffer without bytes and a dtype")
        if dtype.hasobject or len(buffer) != math.prod(shape) * dtype.itemsize:
            raise refuse(
                f"numpy _frombuffer of shape {shape} and dtype {dtype} with {len(buffer)} bytes"
            )
        return func(buffer, dtype, shape, order)
    if func is _multiarray.scalar:
        if len(args) == 2 and isinstance(args[1], str):  # a Python 2 pickle read with latin1
            args = (args[0], args[1].encode("latin1"))
        if len(args) == 2 and not args[0].hasobject and len(args[1]) != args[0].itemsize:
            raise refuse(f"numpy scalar of dtype {args[0]} with {len(args[1])} bytes")
        return func(*args)
    if func in (bytes, bytearray, str) and args and isinstance(args[0], int):
        raise refuse(f"{func.__name__}({args[0]}): allocations by count are refused")
    if func in (list, tuple, set, frozenset, dict, collections.OrderedDict) and args:
        if isinstance(args[0], (str, bytes, bytearray)) or len(args) > 1:
            raise refuse(f"{func.__name__}() of a {type(args[0]).__name__}")
        if hasattr(args[0], "__len__") and len(args[0]) > limit:
            raise refuse(f"{func.__name__}() of more items than the file has bytes ({limit})")
    if func is _codecs.encode and (len(args) != 2 or str(args[1]).lower() not in _LATIN1):
        raise refuse("_codecs.encode with an encoding other than latin1")
    if func is copyreg._reconstructor:
        if len(args) != 3 or args[0] not in (argparse.Namespace, collections.OrderedDict):
            raise refuse("copyreg._reconstructor of a class other than Namespace/OrderedDict")
        if args[1] not in (object, dict):
            raise refuse("copyreg._reconstructor with a base other than object or dict")
    if func in (np.ndarray, argparse.Namespace, object) or id(func) not in _CALLABLE:
        raise refuse(f"calling {_describe(func)}")
    return func(*args)


_CALLABLE = {id(obj) for obj in ALLOWED_GLOBALS.values()}


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler whose `find_class` resolves only names in `ALLOWED_GLOBALS`, and whose `load`
    bounds what the file can cost (`_GuardedUnpickler`: depth, sharing, array sizes from the
    bytes in the file, no state on classes).

    Python 2 names (`__builtin__.list`, `copy_reg`) are mapped to their Python 3 names first, as the
    standard unpickler does. Everything else raises `UnsafeSourceError` naming `module.name`, so a
    malicious `__reduce__` payload is never called.
    """

    def __init__(
        self,
        file: io.BufferedIOBase,
        source: str = "<stream>",
        file_size: int | None = None,
        encoding: str = "ASCII",
    ) -> None:
        super().__init__(file)
        self.source = source
        self._guarded = _GuardedUnpickler(file, self, file_size, encoding=encoding)

    def load(self) -> Any:
        return self._guarded.load()

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


def safe_load_pickle(path: str | os.PathLike, encoding: str = "ASCII") -> Any:
    """Loads a pickle file with `RestrictedUnpickler`.

    `encoding` is how Python 2 `str` objects are decoded, as for `pickle.load`: `"latin1"` reads
    the Python 2 pickles of the conversational-ER code bases (numpy array data included; Python 3
    `bytes` stay bytes either way).

    Raises:
        UnsafeSourceError: If the file references a global that is not allowed.
        SourceLimitError: If the file exceeds a limit (see `_GuardedUnpickler`).
        CorruptSourceError: If the file is empty or truncated.
    """
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise CorruptSourceError(f"{path} is empty (0 bytes); expected a pickle")
    with path.open("rb") as file:
        try:
            return RestrictedUnpickler(
                file, source=str(path), file_size=size, encoding=encoding
            ).load()
        except (EOFError, pickle.UnpicklingError) as error:
            if isinstance(error, UnsafeSourceError) or type(error) is CorruptSourceError:
                raise
            if isinstance(error, pickle.UnpicklingError) and "exhausted" not in str(error):
                raise CorruptSourceError(
                    f"{path} is not a valid pickle of a dataset (UnpicklingError: {error})"
                ) from error
            raise CorruptSourceError(
                f"{path} ends before its pickle is complete ({size} bytes): the file is truncated"
            ) from None
        except (ValueError, TypeError, IndexError, KeyError) as error:
            raise CorruptSourceError(
                f"{path} is not a valid pickle of a dataset ({type(error).__name__}: {error})"
            ) from error


def _torch_safe_globals() -> list[Any]:
    """`ALLOWED_GLOBALS` in the form torch's allow-list takes.

    Objects, or `(object, name)` pairs where the file's spelling differs from the object's own
    (numpy 1 names under numpy 2), plus the numpy dtype classes that torch's BUILD check needs
    since numpy 1.25.
    """
    entries: list[Any] = [
        obj if f"{obj.__module__}.{obj.__qualname__}" == name else (obj, name)
        for name, obj in ALLOWED_GLOBALS.items()
    ]
    entries.extend(sorted({type(np.dtype(code)) for code in "?bBhHiIlLqQefdgFDOUS"}, key=str))
    return entries


class _TorchPlaceholder:
    """Stands for a torch global or storage while `_TorchScanUnpickler` checks a `.pt` pickle."""

    def __call__(self, *args: Any) -> _TorchPlaceholder:
        return _TorchPlaceholder()


class _TorchScanUnpickler(_GuardedUnpickler):
    """Runs the checks of `_GuardedUnpickler` over the `data.pkl` of a torch zip archive without
    building tensors: torch globals and storages become placeholders (torch's own
    `weights_only` allow-list judges them when the file is really loaded)."""

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" or module.startswith("torch."):
            return _TorchPlaceholder()
        return super().find_class(module, name)

    def persistent_load(self, pid: Any) -> Any:
        return _TorchPlaceholder()

    def _checked_call(self, func: Any, args: Any) -> Any:
        if isinstance(func, _TorchPlaceholder):
            return _TorchPlaceholder()
        return super()._checked_call(func, args)

    def load_build(self) -> None:
        if isinstance(self.stack[-1], _TorchPlaceholder):
            self.stack.pop()
            return
        super().load_build()


_TorchScanUnpickler.dispatch = dict(_GuardedUnpickler.dispatch)
_TorchScanUnpickler.dispatch[pickle.BUILD[0]] = _TorchScanUnpickler.load_build


def _scan_torch_pickle(path: Path) -> None:
    """Applies the loader's limits to the pickle inside a torch zip archive before torch reads it."""
    with zipfile.ZipFile(path) as archive:
        names = [name for name in archive.namelist() if name.endswith("/data.pkl")]
        for name in names[:1]:
            info = archive.getinfo(name)
            with archive.open(info) as file:
                owner = RestrictedUnpickler(io.BytesIO(), source=f"{path} ({name})")
                _TorchScanUnpickler(file, owner, info.file_size).load()


def _refuse_unsafe_torch_globals(path: Path) -> None:
    import torch

    refused = sorted(
        set(torch.serialization.get_unsafe_globals_in_checkpoint(path)) - set(ALLOWED_GLOBALS)
    )
    if refused:
        raise UnsafeSourceError(
            f"Refusing to load {path}: it references the global(s) {refused}, which are not "
            "on the allow-list of dataset_scripts.safe_load. Nothing from the file was executed."
        )


def safe_load_torch(path: str | os.PathLike) -> Any:
    """Loads a torch `.pt` file with `torch.load(weights_only=True)`.

    Tensors and Python containers are always allowed by torch; numpy arrays, numpy scalars and
    `argparse.Namespace` are added through `torch.serialization.safe_globals` for this call only.

    Raises:
        UnsafeSourceError: If the file references any other global.
    """
    import torch

    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            # Scan first (no code runs): the loader's limits on the archive's pickle, then
            # torch's scan, so that the error names every global that would be refused.
            _scan_torch_pickle(path)
            _refuse_unsafe_torch_globals(path)
        with torch.serialization.safe_globals(_torch_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)
    except UnsafeSourceError:
        raise
    except (RuntimeError, EOFError, zipfile.BadZipFile) as error:
        raise CorruptSourceError(
            f"{path} is not a readable torch file ({type(error).__name__}: {error}); it may be "
            "truncated or corrupt"
        ) from error
    except pickle.UnpicklingError as error:
        match = re.search(r"GLOBAL (\S+)", str(error))
        refused_global = repr(match.group(1)) if match else "(named in the chained error)"
        raise UnsafeSourceError(
            f"Refusing to load {path}: torch.load(weights_only=True) refused the global "
            f"{refused_global}, which is not on the allow-list of dataset_scripts.safe_load. "
            "Nothing from the file was executed."
        ) from error


#: The first pickled object of a legacy (pre-1.6, non-zip) torch file.
_TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


def load_source_file(path: str | os.PathLike) -> Any:
    """Loads a dataset source file safely: torch files (`.pt`, `.pth` or a zip archive) with
    `safe_load_torch`, anything else with `safe_load_pickle`.

    Raises:
        FileNotFoundError: If `path` does not exist.
        UnsafeSourceError: If the file references a global outside the allow-list.
        CorruptSourceError: If the file is empty, truncated or corrupt.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Source file {path} does not exist")
    if path.stat().st_size == 0:
        raise CorruptSourceError(f"{path} is empty (0 bytes)")
    if zipfile.is_zipfile(path):
        logger.info("Loading %s with torch.load(weights_only=True)", path)
        return safe_load_torch(path)
    if path.suffix in (".pt", ".pth"):
        # Not a zip archive: either torch's legacy format (a pickled magic number first) or a
        # plain pickle renamed `.pt`; the restricted unpickler reads the first object of both.
        try:
            first = safe_load_pickle(path)
        except CorruptSourceError as error:
            raise CorruptSourceError(
                f"{path} is neither a torch zip archive nor a complete pickle ({error})"
            ) from error
        if first == _TORCH_LEGACY_MAGIC:
            logger.info("Loading legacy torch file %s with torch.load(weights_only=True)", path)
            return safe_load_torch(path)
        logger.warning(
            "%s is named like a torch file but is a plain pickle, not a torch zip archive; it "
            "was read with the restricted unpickler",
            path,
        )
        return first
    logger.info("Loading %s with the restricted unpickler", path)
    return safe_load_pickle(path)
