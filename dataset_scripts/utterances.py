"""IEMOCAP and MELD (single-label utterances) from user-supplied utterance features.

Neither dataset can be downloaded by this package (IEMOCAP is licence-gated), so users bring their
own features, in one of two forms: an index file (CSV or JSONL, one row per utterance) naming one
``.npy`` per utterance and modality (`read_index`), or the utterance-feature pickle of a
conversational-ER code base (DialogueRNN, DialogueGCN, MMGCN, MM-DFN, COGMEN; `read_pickle`,
`PICKLE_LAYOUTS`). Labels map onto a class set of `labels.UTTERANCE_CLASS_SETS`; the splits are
IEMOCAP's leave-one-session-out folds or the source's own train/validation/test, with validation
carved from whole training dialogues (DC) where there is none. Every dataset written is
single-label (one-hot ``labels``). The formats and their checks, the class sets and the splits
are described in docs/data.md, "IEMOCAP and MELD".

Usage::

    python -m dataset_scripts.utterances --dataset iemocap4 --source iemocap/index.csv \\
        --output data/iemocap4 --hub_layout data/iemocap4_hub
    python -m dataset_scripts.utterances --dataset meld7 --source meld/index.jsonl --output data/meld
    python -m dataset_scripts.utterances --dataset iemocap6 --source IEMOCAP_features.pkl \\
        --output data/iemocap6
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import pickle
import re
import sys
import tempfile
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np

from . import saving
from .building import SINGLE_LABEL, build_dataset_dict
from .cli import builder_parser, builder_sources, parse_builder_args
from .conversion import ConversionResult
from .io import write_json_atomic
from .labels import UTTERANCE_CLASS_SETS, UtteranceClassSet, short_repr
from .modalities import MODALITIES, SPLITS
from .safe_load import safe_load_pickle
from .sources import SplitArrays, clean_splits

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_MAX_FILE_BYTES",
    "DEFAULT_MAX_TOTAL_BYTES",
    "FeatureLimitError",
    "PICKLE_LAYOUTS",
    "Utterances",
    "build",
    "iter_configs",
    "main",
    "read_index",
    "read_npy",
    "read_pickle",
]

#: Bytes one `.npy` may cost once read (its values as float32, or wider if stored wider).
DEFAULT_MAX_FILE_BYTES = 256 * 2**20
#: Bytes all feature files together may cost (a pickle counts with its file size).
DEFAULT_MAX_TOTAL_BYTES = 8 * 2**30
DEFAULT_VALIDATION_FRACTION = 0.1
DEFAULT_SEED = 0
IEMOCAP_SESSIONS = (1, 2, 3, 4, 5)

#: Accepted `split` values -> output split.
SPLIT_ALIASES = {
    "train": "train",
    "validation": "validation",
    "valid": "validation",
    "val": "validation",
    "dev": "validation",
    "test": "test",
}
#: IEMOCAP utterance id: session digit, then the dialogue (id without the `_F000` turn suffix).
_IEMOCAP_ID = re.compile(r"^(?P<dialogue>Ses0?(?P<session>[1-5])[MF]_.+)_[MF]\d+$")
_IEMOCAP_DIALOGUE = re.compile(r"^Ses0?(?P<session>[1-5])[MF]_")

#: Pickle layout -> position of each entry used in the tuple, and the tuple's length.
PICKLE_LAYOUTS: dict[str, dict[str, int]] = {
    "iemocap9": {
        "length": 9, "ids": 0, "labels": 2, "text": 3, "audio": 4, "visual": 5, "train": 7,
        "test": 8,
    },
    "meld9": {"length": 9, "ids": 0, "labels": 2, "text": 3, "audio": 4, "train": 6, "test": 7},
    "meld10": {
        "length": 10, "ids": 0, "labels": 2, "text": 3, "audio": 4, "visual": 5, "train": 7,
        "test": 8,
    },
}  # fmt: skip
_PICKLE_SUFFIXES = (".pkl", ".pickle")
_INDEX_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl"}


class FeatureLimitError(ValueError):
    """A feature file (or all of them together) would cost more bytes than the limit allows."""


# --------------------------------------------------------------------------------------------------
# Reading features
# --------------------------------------------------------------------------------------------------


@dataclass
class _ByteBudget:
    """The per-file and total byte limits, and what has been read so far."""

    max_file_bytes: int
    max_total_bytes: int
    used: int = 0

    def charge(self, cost: int, what: str, per_file: bool = True) -> None:
        if per_file and cost > self.max_file_bytes:
            raise FeatureLimitError(
                f"{what} would cost {cost:,} bytes once read, more than the per-file limit of "
                f"{self.max_file_bytes:,} bytes; if the file is genuine, raise the limit "
                "(--max_file_bytes, max_file_bytes=)"
            )
        if self.used + cost > self.max_total_bytes:
            raise FeatureLimitError(
                f"{what} ({cost:,} bytes) would bring the features read to "
                f"{self.used + cost:,} bytes, more than the total limit of "
                f"{self.max_total_bytes:,} bytes; if the data is genuine, raise the limit "
                "(--max_total_bytes, max_total_bytes=)"
            )
        self.used += cost


def read_npy(path: Path, where: str, budget: _ByteBudget) -> np.ndarray:
    """One utterance's features as float32 `[frames, dim]` (a `[dim]` vector becomes one frame).

    The header is checked before any data is read: format version 1 or 2, a real numeric dtype
    (no object, structured or complex arrays), rank 1 or 2, no empty axis, and the byte cost
    against the limits. The data is then read from the same open file with
    `np.load(allow_pickle=False)`.
    """
    fmt = np.lib.format
    with path.open("rb") as handle:
        try:
            version = fmt.read_magic(handle)
            if version == (1, 0):
                shape, fortran_order, dtype = fmt.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran_order, dtype = fmt.read_array_header_2_0(handle)
            else:
                raise ValueError(f"unsupported .npy format version {version}")
        except ValueError as error:
            raise ValueError(f"{where}: {path} is not a readable .npy file ({error})") from None
        if dtype.hasobject or dtype.fields is not None or dtype.kind not in "fiu":
            raise ValueError(
                f"{where}: {path} holds dtype {dtype}; features must be float (or integer) numbers"
            )
        if len(shape) not in (1, 2) or 0 in shape:
            raise ValueError(
                f"{where}: {path} has shape {shape}; expected [frames, dim] or [dim], no empty axis"
            )
        count = int(np.prod(shape))
        budget.charge(count * max(dtype.itemsize, 4), f"{where}: {path} (shape {shape}, {dtype})")
        available = os.fstat(handle.fileno()).st_size - handle.tell()
        if available < count * dtype.itemsize:
            raise ValueError(
                f"{where}: {path} is truncated: shape {shape} and dtype {dtype} need "
                f"{count * dtype.itemsize} bytes of data, the file has {available}"
            )
        handle.seek(0)
        array = np.load(handle, allow_pickle=False)
    with np.errstate(over="ignore"):  # float64 beyond float32's range -> inf, counted later
        array = np.asarray(array, dtype=np.float32)
    return array.reshape(1, -1) if array.ndim == 1 else np.ascontiguousarray(array)


def _resolve_feature_path(root: Path, value: str, where: str) -> Path:
    """`value` (relative to `root`) as a path inside `root`; refuses escapes and missing files."""
    if not value:
        raise ValueError(f"{where} is empty; expected the path of a .npy file")
    relative = Path(value)
    if relative.is_absolute() or value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        raise ValueError(
            f"{where}: {value!r} is an absolute path; feature paths must be relative to the "
            f"index file's folder {root}"
        )
    candidate = root / relative
    resolved = candidate.resolve()
    if resolved != root and root not in resolved.parents:
        raise ValueError(
            f"{where}: {value!r} leads outside the index file's folder {root} (to {resolved}, "
            "through '..' or a symbolic link); feature files must lie inside that folder"
        )
    if not resolved.is_file():
        raise FileNotFoundError(f"{where}: the feature file {candidate} does not exist")
    return resolved


# --------------------------------------------------------------------------------------------------
# The sources, read into one `Utterances`
# --------------------------------------------------------------------------------------------------


@dataclass
class Utterances:
    """Every kept utterance of a source, in source order, with what the splits need."""

    ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    features: dict[str, list[np.ndarray]] = field(default_factory=dict)
    dialogues: list[str] = field(default_factory=list)
    sessions: list[int | None] = field(default_factory=list)
    splits: list[str | None] = field(default_factory=list)
    report: dict[str, Any] = field(default_factory=dict)


def _session_of(value: Any, utterance_id: str, where: str) -> int | None:
    """The IEMOCAP session from the `session` cell, else from the id; None if neither gives one."""
    if value not in (None, ""):
        text = str(value).strip()
        if text.isdigit() and int(text) in IEMOCAP_SESSIONS:
            return int(text)
        raise ValueError(f"{where}: session {value!r} is not one of {list(IEMOCAP_SESSIONS)}")
    match = _IEMOCAP_ID.match(utterance_id) or _IEMOCAP_DIALOGUE.match(utterance_id)
    return int(match.group("session")) if match else None


def _dialogue_of(value: Any, utterance_id: str) -> str | None:
    if value not in (None, ""):
        return str(value)
    match = _IEMOCAP_ID.match(utterance_id)
    return match.group("dialogue") if match else None


def _read_index_rows(path: Path, max_bytes: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, row) of a CSV or JSONL index."""
    size = path.stat().st_size
    if size > max_bytes:
        raise FeatureLimitError(
            f"The index {path} has {size:,} bytes, more than the per-file limit of "
            f"{max_bytes:,}; raise it with --max_file_bytes if the file is genuine"
        )
    kind = _INDEX_SUFFIXES[path.suffix.lower()]
    with path.open(encoding="utf-8", newline="") as handle:
        if kind == "csv":
            reader = csv.DictReader(handle)
            if not reader.fieldnames:
                raise ValueError(f"{path} has no header row")
            for row in reader:
                if None in row:
                    raise ValueError(
                        f"{path}, line {reader.line_num}: more cells than the header has columns"
                    )
                yield reader.line_num, row
            return
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path}, line {line_number}: not valid JSON ({error})") from None
            if not isinstance(row, dict):
                raise ValueError(
                    f"{path}, line {line_number}: expected a JSON object, got {short_repr(row)}"
                )
            bad = {
                key: value
                for key, value in row.items()
                if value is not None
                and (isinstance(value, bool) or not isinstance(value, (str, int)))
            }
            if bad:
                raise ValueError(
                    f"{path}, line {line_number}: values must be strings or integers; got "
                    f"{short_repr(bad)}"
                )
            yield line_number, {key: "" if v is None else str(v) for key, v in row.items()}


def _raise_unknown_labels(unknown: Mapping[str, list[str]], class_set: UtteranceClassSet, source):
    details = "; ".join(
        f"{name!r} ({len(places)} rows, first at {places[0]})"
        for name, places in sorted(unknown.items())
    )
    known = sorted(set(class_set.aliases) | set(class_set.excluded))
    raise ValueError(
        f"{source} holds label names unknown to the {class_set.name} class set: {details}. Known "
        f"names: {', '.join(known)} (dataset_scripts/labels.py)"
    )


def read_index(
    path: str | os.PathLike,
    class_set: UtteranceClassSet,
    modalities: Sequence[str] | None = None,
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Utterances:
    """Reads a CSV/JSONL index and the `.npy` files it names (format in docs/data.md).

    Labels are checked first, over all rows (unknown names are one error listing them); rows whose
    label is outside the class set are left out before their files are read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The index file {path} does not exist")
    root = path.parent.resolve()
    budget = _ByteBudget(max_file_bytes, max_total_bytes)
    rows = list(_read_index_rows(path, max_file_bytes))
    if not rows:
        raise ValueError(f"{path} holds no rows")
    columns = set().union(*(row.keys() for _, row in rows))
    missing = [name for name in ("id", "label") if name not in columns]
    if missing:
        raise ValueError(f"{path} lacks the column(s) {missing}; columns found: {sorted(columns)}")
    present = [m for m in MODALITIES if m in columns]
    chosen = list(modalities) if modalities else present
    absent = [m for m in chosen if m not in present]
    if absent:
        raise ValueError(
            f"{path} has the feature columns {present}; asked for {absent}, which it lacks"
        )
    if not chosen:
        raise ValueError(
            f"{path} has no feature column; it needs at least one of {list(MODALITIES)}"
        )
    has_split = "split" in columns

    # Pass 1: ids, labels, splits, sessions and dialogues of every row (no feature file read).
    kept: list[tuple[str, dict[str, Any], int]] = []
    utterances = Utterances(features={m: [] for m in chosen})
    dropped: Counter[str] = Counter()
    unknown: dict[str, list[str]] = {}
    seen: dict[str, int] = {}
    for line, row in rows:
        utterance_id = str(row.get("id", "")).strip()
        where = f"{path.name}, line {line} (id {utterance_id!r})"
        if not utterance_id:
            raise ValueError(f"{path.name}, line {line}: empty id")
        if utterance_id in seen:
            raise ValueError(f"{where}: the id also appears on line {seen[utterance_id]}")
        seen[utterance_id] = line
        label = str(row.get("label", "")).strip()
        found = class_set.lookup(label)
        if found == "unknown":
            unknown.setdefault(label, []).append(f"line {line}")
            continue
        if found == "excluded":
            dropped[label] += 1
            continue
        split = None
        if has_split:
            split = SPLIT_ALIASES.get(str(row.get("split", "")).strip().lower())
            if split is None:
                raise ValueError(
                    f"{where}: split {row.get('split')!r} is not one of {sorted(SPLIT_ALIASES)}"
                )
        session = (
            _session_of(row.get("session"), utterance_id, where)
            if class_set.dataset == "iemocap"
            else None
        )
        utterances.ids.append(utterance_id)
        utterances.labels.append(int(found))
        utterances.splits.append(split)
        utterances.sessions.append(session)
        utterances.dialogues.append(_dialogue_of(row.get("dialogue"), utterance_id) or "")
        kept.append((where, row, line))
    if unknown:
        _raise_unknown_labels(unknown, class_set, path)
    if not kept:
        raise ValueError(f"{path}: no row has a label of the {class_set.name} class set")

    # Pass 2: the feature files of the kept rows.
    first_dim: dict[str, tuple[int, str]] = {}
    for where, row, _ in kept:
        for modality in chosen:
            cell = f"{where}, column {modality!r}"
            file = _resolve_feature_path(root, str(row.get(modality, "")).strip(), cell)
            array = read_npy(file, cell, budget)
            dim = array.shape[1]
            expected, first_where = first_dim.setdefault(modality, (dim, where))
            if dim != expected:
                raise ValueError(
                    f"{cell}: {modality} features have dim {dim}, but {first_where} has dim "
                    f"{expected}; every {modality} file must have the same dim"
                )
            utterances.features[modality].append(array)

    without_dialogue = sum(not name for name in utterances.dialogues)
    if without_dialogue:
        logger.warning(
            "%s: %d rows have no dialogue (no 'dialogue' column and not an IEMOCAP id); each "
            "counts as its own dialogue when a validation split is carved",
            path.name,
            without_dialogue,
        )
        utterances.dialogues = [
            name or f"utterance:{utterance_id}"
            for name, utterance_id in zip(utterances.dialogues, utterances.ids, strict=True)
        ]
    utterances.report = {
        "source": str(path),
        "source_format": f"index ({_INDEX_SUFFIXES[path.suffix.lower()]})",
        "rows_read": len(rows),
        "rows_kept": len(kept),
        "dropped_by_label": dict(sorted(dropped.items())),
        "rows_without_dialogue": without_dialogue,
        "feature_bytes_read": budget.used,
        "has_split_column": has_split,
    }
    return utterances


def _pickle_ids(value: Any, what: str, source: str) -> list[Any]:
    """A dialogue id collection of a pickle (list, tuple, set, dict keys) as a list."""
    if isinstance(value, Mapping):
        value = list(value)
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple, set, frozenset)):
        raise ValueError(
            f"{source}: the {what} dialogue ids must be a list or set; got {type(value).__name__}"
        )
    items = list(value)
    if isinstance(value, (set, frozenset)):
        items = sorted(items, key=str)  # sets have no order; sorted for reproducible output
    return items


def _dialogue_features(value: Any, count: int, where: str) -> list[np.ndarray]:
    """The `count` utterance vectors of one dialogue as `[1, dim]` float32 arrays."""
    try:
        array = np.asarray(value)
    except ValueError as error:
        raise ValueError(f"{where}: the utterance vectors do not form an array ({error})") from None
    if array.dtype.kind not in "fiu" or array.ndim != 2 or array.shape[0] != count:
        raise ValueError(
            f"{where}: expected {count} utterance vectors (a [{count}, dim] array of numbers); got "
            f"shape {array.shape}, dtype {array.dtype}"
        )
    if array.shape[1] == 0:
        raise ValueError(f"{where}: the utterance vectors are empty (dim 0)")
    with np.errstate(over="ignore"):
        array = np.asarray(array, dtype=np.float32)
    return [array[index : index + 1] for index in range(count)]


def read_pickle(
    path: str | os.PathLike,
    class_set: UtteranceClassSet,
    modalities: Sequence[str] | None = None,
    layout: str = "auto",
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Utterances:
    """Reads one of the conversational-ER pickles (`PICKLE_LAYOUTS`) through `safe_load`.

    `layout="auto"` picks `iemocap9` for IEMOCAP, and `meld9` or `meld10` from the tuple's length
    for MELD. Each utterance's split is the pickle's `train` or `test`; dialogues in neither list
    are left out (counted).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"The pickle {path} does not exist")
    size = path.stat().st_size
    _ByteBudget(max_total_bytes, max_total_bytes).charge(size, f"The pickle {path}", per_file=False)
    raw = safe_load_pickle(path, encoding="latin1")
    if not isinstance(raw, (tuple, list)):
        raise ValueError(
            f"{path} holds a {type(raw).__name__}; expected the tuple of one of the layouts "
            f"{sorted(PICKLE_LAYOUTS)}"
        )
    if layout == "auto":
        candidates = ["iemocap9"] if class_set.dataset == "iemocap" else ["meld9", "meld10"]
        matching = [name for name in candidates if PICKLE_LAYOUTS[name]["length"] == len(raw)]
        if not matching:
            raise ValueError(
                f"{path} holds a tuple of {len(raw)} entries; the {class_set.dataset} layouts "
                + ", ".join(f"{n} ({PICKLE_LAYOUTS[n]['length']} entries)" for n in candidates)
                + " are accepted (see --pickle_layout)"
            )
        layout = matching[0]
    if layout not in PICKLE_LAYOUTS:
        raise ValueError(f"pickle layout must be 'auto' or one of {sorted(PICKLE_LAYOUTS)}")
    positions = PICKLE_LAYOUTS[layout]
    if len(raw) != positions["length"]:
        raise ValueError(
            f"{path} holds a tuple of {len(raw)} entries; layout {layout} has {positions['length']}"
        )
    present = [m for m in MODALITIES if m in positions]
    chosen = list(modalities) if modalities else present
    absent = [m for m in chosen if m not in present]
    if absent:
        raise ValueError(f"layout {layout} of {path} has modalities {present}, not {absent}")
    entries = {name: raw[position] for name, position in positions.items() if name != "length"}
    for name in ("ids", "labels", *chosen):
        if not isinstance(entries[name], Mapping):
            raise ValueError(
                f"{path} (layout {layout}): entry {positions[name]} ({name}) must be a dict keyed "
                f"by dialogue id; got {type(entries[name]).__name__}"
            )
    train, test = (_pickle_ids(entries[s], s, str(path)) for s in ("train", "test"))
    overlap = sorted(set(train) & set(test), key=str)
    if overlap:
        raise ValueError(f"{path}: dialogues in both train and test: {short_repr(overlap)}")

    utterances = Utterances(features={m: [] for m in chosen})
    dropped: Counter[str] = Counter()
    seen: set[str] = set()
    for split, dialogue_ids in (("train", train), ("test", test)):
        for dialogue in dialogue_ids:
            where = f"{path.name}, dialogue {dialogue!r}"
            missing = [name for name in ("ids", "labels", *chosen) if dialogue not in entries[name]]
            if missing:
                raise ValueError(f"{where} (in the {split} list) has no entry in {missing}")
            utterance_ids = list(entries["ids"][dialogue])
            labels = entries["labels"][dialogue]
            labels = labels.tolist() if hasattr(labels, "tolist") else list(labels)
            if len(labels) != len(utterance_ids):
                raise ValueError(
                    f"{where}: {len(labels)} labels for {len(utterance_ids)} utterances"
                )
            vectors = {
                m: _dialogue_features(entries[m][dialogue], len(utterance_ids), f"{where}, {m}")
                for m in chosen
            }
            for position, (utterance, label) in enumerate(zip(utterance_ids, labels, strict=True)):
                try:
                    name = class_set.pickle_class_name(label)
                except ValueError as error:
                    raise ValueError(f"{where}, utterance {position}: {error}") from None
                found = class_set.lookup(name)
                if found == "excluded":
                    dropped[name] += 1
                    continue
                text_id = str(utterance)
                utterance_id = (
                    text_id if text_id.startswith(str(dialogue)) else f"{dialogue}/{text_id}"
                )
                if utterance_id in seen:
                    raise ValueError(f"{where}: utterance id {utterance_id!r} appears twice")
                seen.add(utterance_id)
                utterances.ids.append(utterance_id)
                utterances.labels.append(int(found))
                utterances.splits.append(split)
                utterances.dialogues.append(str(dialogue))
                session = None
                if class_set.dataset == "iemocap":
                    session = _session_of(None, text_id, where) or _session_of(
                        None, str(dialogue), where
                    )
                utterances.sessions.append(session)
                for modality in chosen:
                    utterances.features[modality].append(vectors[modality][position])
    listed = set(train) | set(test)
    unlisted = [d for d in entries["ids"] if d not in listed]
    if not utterances.ids:
        raise ValueError(f"{path}: no utterance has a label of the {class_set.name} class set")
    utterances.report = {
        "source": str(path),
        "source_format": f"pickle ({layout})",
        "rows_read": len(utterances.ids) + sum(dropped.values()),
        "rows_kept": len(utterances.ids),
        "dropped_by_label": dict(sorted(dropped.items())),
        "pickle_dialogues": {"train": len(train), "test": len(test), "unlisted": len(unlisted)},
        "feature_bytes_read": size,
        "has_split_column": True,
    }
    if class_set.dataset == "iemocap":
        tested = zip(utterances.sessions, utterances.splits, strict=True)
        test_sessions = {session for session, split in tested if split == "test"}
        utterances.report["pickle_test_sessions"] = sorted(test_sessions - {None})
    return utterances


# --------------------------------------------------------------------------------------------------
# Splits and configurations
# --------------------------------------------------------------------------------------------------


def carve_validation(
    dialogues_by_group: Mapping[Any, Sequence[str]], fraction: float, rng: np.random.Generator
) -> list[str]:
    """The validation dialogues (DC): in each group, a random `fraction` of its dialogues (rounded,
    at least one when the group has two or more), whole dialogues only; sorted."""
    chosen: list[str] = []
    for group in sorted(dialogues_by_group, key=str):
        names = sorted(set(dialogues_by_group[group]))
        if len(names) < 2:
            continue
        count = min(len(names) - 1, max(1, round(fraction * len(names))))
        chosen += [names[i] for i in rng.permutation(len(names))[:count]]
    return sorted(chosen)


def _split_arrays(utterances: Utterances, indices: Sequence[int], num_labels: int) -> SplitArrays:
    labels = np.zeros((len(indices), num_labels), dtype=np.float32)
    labels[np.arange(len(indices)), [utterances.labels[i] for i in indices]] = 1.0
    return SplitArrays(
        ids=[utterances.ids[i] for i in indices],
        features={m: [arrays[i] for i in indices] for m, arrays in utterances.features.items()},
        labels=labels,
    )


def _plan_folds(
    utterances: Utterances, folds: Sequence[int], fraction: float, seed: int, source: str
) -> Iterator[tuple[str, dict[str, list[int]], dict[str, Any]]]:
    """(config name, split -> utterance indices, split report) per leave-one-session-out fold."""
    missing = [utterances.ids[i] for i, s in enumerate(utterances.sessions) if s is None]
    if missing:
        raise ValueError(
            f"{source}: leave-one-session-out folds need every utterance's IEMOCAP session (a "
            f"'session' column or ids like 'Ses01F_impro01_F000'); {len(missing)} have none, e.g. "
            f"{short_repr(missing[:3])}. Give sessions, or a 'split' column with --protocol split"
        )
    for fold in folds:
        pool = [i for i, s in enumerate(utterances.sessions) if s != fold]
        test = [i for i, s in enumerate(utterances.sessions) if s == fold]
        if not test:
            raise ValueError(f"{source}: fold{fold} has no utterance of session {fold}")
        by_session: dict[int, list[str]] = {}
        for i in pool:
            by_session.setdefault(utterances.sessions[i], []).append(utterances.dialogues[i])
        validation_dialogues = set(
            carve_validation(by_session, fraction, np.random.default_rng([seed, fold]))
        )
        validation = [i for i in pool if utterances.dialogues[i] in validation_dialogues]
        train = [i for i in pool if utterances.dialogues[i] not in validation_dialogues]
        if not validation or not train:
            raise ValueError(
                f"{source}: fold{fold} cannot carve a validation split from whole dialogues of the "
                "training sessions (too few dialogues)"
            )
        split_report = {
            "protocol": "leave-one-session-out",
            "test_session": fold,
            "validation": {
                "policy": "DC: in each training session a seeded random fraction of its "
                "dialogues (at least one), whole dialogues only",
                "fraction": fraction,
                "seed": seed,
                "dialogues": sorted(validation_dialogues),
            },
        }
        yield f"fold{fold}", {"train": train, "validation": validation, "test": test}, split_report


def _plan_split(
    utterances: Utterances, fraction: float, seed: int, source: str
) -> tuple[dict[str, list[int]], dict[str, Any]]:
    """The given train/validation/test; validation carved from train (DC) when there is none."""
    if any(split is None for split in utterances.splits):
        raise ValueError(
            f"{source}: --protocol split needs a 'split' column (train/validation/test)"
        )
    indices = {
        split: [i for i, s in enumerate(utterances.splits) if s == split] for split in SPLITS
    }
    split_report: dict[str, Any] = {"protocol": "given split"}
    if not indices["validation"]:
        train_dialogues = {"train": [utterances.dialogues[i] for i in indices["train"]]}
        carved = set(carve_validation(train_dialogues, fraction, np.random.default_rng(seed)))
        indices["validation"] = [i for i in indices["train"] if utterances.dialogues[i] in carved]
        indices["train"] = [i for i in indices["train"] if utterances.dialogues[i] not in carved]
        split_report["validation"] = {
            "policy": "DC: the source has no validation split; a seeded random fraction of the "
            "training dialogues, whole dialogues only",
            "fraction": fraction,
            "seed": seed,
            "dialogues": sorted(carved),
        }
    else:
        split_report["validation"] = {"policy": "given by the source"}
    empty = [split for split in SPLITS if not indices[split]]
    if empty:
        raise ValueError(f"{source}: the split(s) {empty} are empty")
    return indices, split_report


def _resolve_protocol(protocol: str, utterances: Utterances, class_set: UtteranceClassSet) -> str:
    if protocol not in ("auto", "folds", "split"):
        raise ValueError(f"protocol must be 'auto', 'folds' or 'split'; got {protocol!r}")
    if protocol == "folds" and class_set.dataset != "iemocap":
        raise ValueError(
            f"leave-one-session-out folds exist for IEMOCAP only, not {class_set.name}"
        )
    if protocol != "auto":
        return protocol
    if class_set.dataset != "iemocap":
        return "split"
    from_pickle = utterances.report["source_format"].startswith("pickle")
    return "folds" if from_pickle or not utterances.report["has_split_column"] else "split"


def _resolve_class_set(class_set: str | UtteranceClassSet) -> UtteranceClassSet:
    if isinstance(class_set, UtteranceClassSet):
        return class_set
    if class_set not in UTTERANCE_CLASS_SETS:
        raise ValueError(
            f"class set must be one of {sorted(UTTERANCE_CLASS_SETS)}; got {class_set!r}"
        )
    return UTTERANCE_CLASS_SETS[class_set]


def read_source(
    source: str | os.PathLike,
    class_set: str | UtteranceClassSet,
    modalities: Sequence[str] | None = None,
    pickle_layout: str = "auto",
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> Utterances:
    """`read_index` or `read_pickle`, by the file's suffix."""
    source, class_set = Path(source), _resolve_class_set(class_set)
    suffix = source.suffix.lower()
    if suffix in _PICKLE_SUFFIXES:
        return read_pickle(source, class_set, modalities, pickle_layout, max_total_bytes)
    if suffix in _INDEX_SUFFIXES:
        return read_index(source, class_set, modalities, max_file_bytes, max_total_bytes)
    raise ValueError(
        f"{source}: unknown source type {suffix!r}; expected an index "
        f"({', '.join(_INDEX_SUFFIXES)}) or a pickle ({', '.join(_PICKLE_SUFFIXES)})"
    )


def iter_configs(
    utterances: Utterances,
    class_set: str | UtteranceClassSet,
    protocol: str = "auto",
    folds: Sequence[int] | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = DEFAULT_SEED,
) -> Iterator[tuple[str, ConversionResult]]:
    """(config name, `ConversionResult`) for each configuration, one at a time (a fold's dataset
    can be saved and dropped before the next is built)."""
    class_set = _resolve_class_set(class_set)
    if not 0 < validation_fraction < 1:
        raise ValueError(f"validation_fraction must be in (0, 1); got {validation_fraction}")
    source = utterances.report.get("source", "source")
    protocol = _resolve_protocol(protocol, utterances, class_set)
    if protocol == "folds":
        folds = list(folds or IEMOCAP_SESSIONS)
        wrong = [fold for fold in folds if fold not in IEMOCAP_SESSIONS]
        if wrong:
            raise ValueError(f"folds must be among {list(IEMOCAP_SESSIONS)}; got {wrong}")
        plans = _plan_folds(utterances, folds, validation_fraction, seed, source)
    else:
        plans = iter([("default", *_plan_split(utterances, validation_fraction, seed, source))])
    for config_name, indices, split_report in plans:
        splits = {
            split: _split_arrays(utterances, indices[split], class_set.num_labels)
            for split in SPLITS
        }
        label_counts = {
            split: splits[split].labels.sum(axis=0).astype(int).tolist() for split in SPLITS
        }
        report: dict[str, Any] = {
            **utterances.report,
            "class_set": class_set.name,
            "label_names": list(class_set.label_names),
            "splits": split_report,
            "num_samples": {split: len(indices[split]) for split in SPLITS},
            "dialogues": {
                split: len({utterances.dialogues[i] for i in indices[split]}) for split in SPLITS
            },
            "label_counts": {
                split: dict(zip(class_set.label_names, label_counts[split], strict=True))
                for split in SPLITS
            },
        }
        if class_set.dataset == "iemocap" and None not in utterances.sessions:
            report["sessions"] = {
                split: sorted({utterances.sessions[i] for i in indices[split]}) for split in SPLITS
            }
        report["non_finite"] = clean_splits(splits, f"{source} ({config_name})")
        dataset_dict = build_dataset_dict(
            splits,
            class_set.label_names,
            class_set.name,
            config_name,
            report=report,
            problem_type=SINGLE_LABEL,
        )
        yield config_name, ConversionResult(dataset_dict=dataset_dict, report=report)


def _log_dropped(utterances: Utterances, class_set: UtteranceClassSet) -> None:
    dropped = utterances.report["dropped_by_label"]
    if dropped:
        logger.warning(
            "Left out %d of %d rows whose label is outside the %s class set: %s",
            sum(dropped.values()),
            utterances.report["rows_read"],
            class_set.name,
            ", ".join(f"{name} {count}" for name, count in dropped.items()),
        )


def build(
    source: str | os.PathLike,
    class_set: str | UtteranceClassSet,
    protocol: str = "auto",
    folds: Sequence[int] | None = None,
    modalities: Sequence[str] | None = None,
    validation_fraction: float = DEFAULT_VALIDATION_FRACTION,
    seed: int = DEFAULT_SEED,
    pickle_layout: str = "auto",
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES,
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES,
) -> dict[str, ConversionResult]:
    """Reads `source` and builds every configuration in memory: `{"fold1": ..., ...}` for the
    IEMOCAP folds, `{"default": ...}` for a given split. See docs/data.md."""
    class_set = _resolve_class_set(class_set)
    utterances = read_source(
        source, class_set, modalities, pickle_layout, max_file_bytes, max_total_bytes
    )
    _log_dropped(utterances, class_set)
    return dict(iter_configs(utterances, class_set, protocol, folds, validation_fraction, seed))


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _parse_bytes(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+)\s*([KMGT]?)i?B?\s*", text, flags=re.IGNORECASE)
    if not match:
        raise argparse.ArgumentTypeError(f"expected a byte count like 512M or 16G; got {text!r}")
    return int(match.group(1)) * 1024 ** " KMGT".index(match.group(2).upper() or " ")


def _parse_list(text: str, allowed: Sequence[Any], convert=str) -> list[Any]:
    try:
        items = [convert(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a comma-separated list; got {text!r}") from None
    wrong = [item for item in items if item not in allowed]
    if wrong or not items:
        raise argparse.ArgumentTypeError(f"expected items of {list(allowed)}; got {text!r}")
    return items


def _summary(results: Mapping[str, Mapping[str, Any]], written: Mapping[str, str]) -> str:
    first = next(iter(results.values()))
    lines = [f"{first['class_set']} from {first['source']} ({first['source_format']})"]
    lines.append(f"labels: {', '.join(first['label_names'])}")
    dropped = first["dropped_by_label"]
    lines.append(
        f"rows: {first['rows_read']} read, {first['rows_kept']} kept, "
        f"{sum(dropped.values())} left out (label outside the class set"
        + (": " + ", ".join(f"{k} {v}" for k, v in dropped.items()) if dropped else "")
        + ")"
    )
    header = f"{'config':<10}{'split':<12}{'samples':>9}{'dialogues':>11}  labels"
    lines += [header, "-" * len(header)]
    for config, report in results.items():
        for split in SPLITS:
            counts = " ".join(f"{k} {v}" for k, v in report["label_counts"][split].items())
            lines.append(
                f"{config:<10}{split:<12}{report['num_samples'][split]:>9}"
                f"{report['dialogues'][split]:>11}  {counts}"
            )
    lines += [f"{name}: {path}" for name, path in written.items()]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = builder_parser(
        "python -m dataset_scripts.utterances",
        "Build single-label IEMOCAP or MELD datasets from user-supplied utterance features (an "
        "index file with one .npy per utterance and modality, or a conversational-ER pickle).",
        output_help="Folder for the saved dataset: one save_to_disk folder, or for the IEMOCAP "
        "folds one per fold (OUTPUT/fold1 ... OUTPUT/fold5).",
        overwrite_help="Replace an existing --output (and Hub configuration folders); folds of an "
        "earlier run that --folds leaves out are never deleted (the run is refused instead).",
        epilog="The source formats, class sets and splits: docs/data.md.",
    )
    parser.add_argument(
        "--source", required=True, type=Path, help="Index (.csv, .jsonl) or pickle (.pkl)."
    )
    parser.add_argument(
        "--dataset", required=True, choices=sorted(UTTERANCE_CLASS_SETS), help="The class set."
    )
    parser.add_argument(
        "--protocol",
        choices=["auto", "folds", "split"],
        default="auto",
        help="folds: IEMOCAP leave-one-session-out (fold1..fold5); split: the source's "
        "train/validation/test. auto: folds for IEMOCAP pickles and indexes without a split "
        "column, else split.",
    )
    parser.add_argument(
        "--folds",
        type=lambda text: _parse_list(text, IEMOCAP_SESSIONS, int),
        default=None,
        metavar="1,2,...",
        help="The folds to write (default all five).",
    )
    parser.add_argument(
        "--modalities",
        type=lambda text: _parse_list(text, MODALITIES),
        default=None,
        metavar="text,audio",
        help="Keep only these modalities (default: every modality the source has).",
    )
    parser.add_argument("--validation_fraction", type=float, default=DEFAULT_VALIDATION_FRACTION)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="Seed of the carved splits.")
    parser.add_argument(
        "--pickle_layout", choices=["auto", *PICKLE_LAYOUTS], default="auto", help="Pickle layout."
    )
    parser.add_argument(
        "--max_file_bytes",
        type=_parse_bytes,
        default=DEFAULT_MAX_FILE_BYTES,
        help="Most bytes one .npy (or the index) may cost once read (default 256M).",
    )
    parser.add_argument(
        "--max_total_bytes",
        type=_parse_bytes,
        default=DEFAULT_MAX_TOTAL_BYTES,
        help="Most bytes all feature files (or the pickle) together may cost (default 8G).",
    )
    parser.add_argument(
        "--hub_layout",
        type=Path,
        default=None,
        help="Also write the Hub layout here, one configuration per fold (or 'default').",
    )
    parser.add_argument(
        "--push_to_hub", metavar="REPO", default=None, help="Upload the Hub layout to this repo."
    )
    parser.add_argument("--private", action="store_true", help="Create the Hub repo as private.")
    return parser


def _description(class_set: UtteranceClassSet, config: str, report: Mapping[str, Any]) -> str:
    name = "IEMOCAP" if class_set.dataset == "iemocap" else "MELD"
    text = (
        f"{name} utterances, single-label ({class_set.num_labels} classes: "
        f"{', '.join(class_set.label_names)}), from user-supplied features "
        f"({report['source_format']})."
    )
    if "test_session" in report["splits"]:
        text += (
            f" Leave-one-session-out fold: test = session {report['splits']['test_session']}; "
            "validation = whole dialogues of the training sessions (seeded)."
        )
    return text


def _refuse_losing_folds(output: Path, configs: Sequence[str]) -> None:
    """Refuses to replace `output` when it holds fold folders (an earlier run's) that `configs`
    does not rebuild: replacing the folder as a whole would delete them.

    Raises:
        FileExistsError: Naming the folds that would be lost and the two ways out.
    """
    if not output.is_dir():
        return
    existing = sorted(
        entry.name
        for entry in output.iterdir()
        if entry.is_dir() and re.fullmatch(r"fold[1-5]", entry.name)
    )
    lost = [name for name in existing if name not in configs]
    if lost:
        everything = sorted(set(existing) | set(configs))
        raise FileExistsError(
            f"{output} holds {', '.join(lost)} from an earlier run, which this run does not "
            f"rebuild; --overwrite replaces the whole folder and would delete "
            f"{'it' if len(lost) == 1 else 'them'}. Rebuild {'it' if len(lost) == 1 else 'them'} "
            f"too (--folds {','.join(name[4:] for name in everything)}, or leave --folds out for "
            "all five) or write this run to another --output."
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parse_builder_args(parser, argv)
    class_set = UTTERANCE_CLASS_SETS[args.dataset]
    sources = builder_sources(args)
    try:
        utterances = read_source(
            args.source,
            class_set,
            args.modalities,
            args.pickle_layout,
            args.max_file_bytes,
            args.max_total_bytes,
        )
        _log_dropped(utterances, class_set)
        protocol = _resolve_protocol(args.protocol, utterances, class_set)
        folds = [f"fold{k}" for k in args.folds or IEMOCAP_SESSIONS]
        if args.hub_layout is not None:
            for config in folds if protocol == "folds" else ["default"]:
                saving.check_dataset_output(
                    args.hub_layout / config, args.overwrite, sources, flag="--overwrite"
                )
        reports: dict[str, dict[str, Any]] = {}
        configs_iter = iter_configs(
            utterances, class_set, protocol, args.folds, args.validation_fraction, args.seed
        )
        if protocol == "folds":
            # One output folder holding one saved dataset per fold, replaced as a whole: refused
            # (under the output's lock, before any fold is built) when that would delete folds
            # of an earlier run that this run does not rebuild.
            with saving.atomic_output_dir(args.output, args.overwrite, sources) as temporary:
                _refuse_losing_folds(args.output, folds)
                for config, result in configs_iter:
                    result.dataset_dict.save_to_disk(str(temporary / config))
                    write_json_atomic(
                        temporary / config / saving.CLEANING_REPORT_FILENAME, result.report
                    )
                    reports[config] = result.report
                    del result
            folders = {config: args.output / config for config in reports}
        else:
            config, result = next(configs_iter)
            saving.save_prepared(result.dataset_dict, args.output, args.overwrite, sources)
            reports[config] = result.report
            folders = {config: args.output}
            del result
    except (ValueError, OSError, pickle.UnpicklingError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    written = {"saved dataset": str(args.output)}
    with tempfile.TemporaryDirectory() as scratch:
        hub_dir = args.hub_layout or (Path(scratch) if args.push_to_hub else None)
        if hub_dir is not None:
            for config, folder in folders.items():
                saving.write_hub_layout(
                    datasets.load_from_disk(str(folder)),
                    hub_dir,
                    config,
                    overwrite=args.overwrite,
                    pretty_name=f"{class_set.name} utterance emotions (user-supplied features)",
                    card_description=_description(class_set, config, reports[config]),
                )
        if args.hub_layout is not None:
            written["hub layout"] = str(args.hub_layout)
        if args.push_to_hub:
            for config in folders:
                written[f"pushed {config}"] = saving.push_hub_layout(
                    hub_dir, args.push_to_hub, config, private=args.private
                )
    print(_summary(reports, written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
