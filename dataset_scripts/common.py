"""The conversion pipeline shared by every dataset: source dict -> validated, cleaned `DatasetDict`.

Steps, in order (each dataset module only supplies a `DatasetSpec`):

1. load the file safely (`safe_load.load_source_file`);
2. find the splits `train`, `valid` (or `validation`) and `test`, and in each the features of every
   modality (`src-<modality>` keys of the TAILOR/CARAT `.pt` format first, the MMSA `text`/`audio`/
   `vision` keys second) and the `tgt` label lists;
3. check ranks, per-sample feature dims, sample counts and empty splits;
4. cut padded sequences to their real lengths where the source stores them (`len_list`,
   `audio_lengths`, ...) unless `use_lengths=False`;
5. check that each modality's dim agrees across splits, then resolve which modality is which
   from the dims (`resolve_modality_dims`);
6. replace non-finite values (-inf, +inf, NaN) by 0 on copies, and count them per split and
   modality;
7. build one Arrow table per split with explicit `Features` (`Array2D` float32 sequences, multi-hot
   `labels`) and the dataset metadata (label names, dims, cleaning report) as JSON in
   `DatasetInfo.description`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from datasets.features.features import Array2DExtensionType
from datasets.table import InMemoryTable

from .labels import LabelSpec, check_target_vocabulary, target_tokens_to_multi_hot
from .safe_load import load_source_file

logger = logging.getLogger(__name__)

__all__ = [
    "MODALITIES",
    "SPLITS",
    "ConversionResult",
    "DatasetSpec",
    "SplitArrays",
    "build_dataset_dict",
    "build_features",
    "clean_non_finite",
    "clean_splits",
    "convert_source",
    "metadata_from_dataset",
    "parse_source",
    "resolve_modality_dims",
    "run_conversion_cli",
]

#: One modality order everywhere: the order of the model's inputs.
MODALITIES: tuple[str, ...] = ("text", "audio", "visual")
#: Output split names, in order.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
#: Output split -> accepted source split names, first match wins.
SOURCE_SPLIT_NAMES: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "validation": ("valid", "validation"),
    "test": ("test",),
}
#: Modality -> accepted source keys, first match wins (TAILOR/CARAT `.pt` first, then MMSA).
MODALITY_SOURCE_KEYS: dict[str, tuple[str, ...]] = {
    "text": ("src-text", "text"),
    "audio": ("src-audio", "audio"),
    "visual": ("src-visual", "vision"),
}
TARGET_KEY = "tgt"
ID_KEY = "id"

# Arrow's list type has int32 offsets: keep each chunk's float count below 2**31.
_MAX_VALUES_PER_CHUNK = 2**30

Samples = np.ndarray | list[np.ndarray]
"""One modality of one split: a float32 `[N, L, D]` array, or a list of N `[L_i, D]` arrays."""


@dataclass(frozen=True)
class DatasetSpec:
    """What distinguishes one dataset configuration from another.

    Args:
        name: Dataset name (`"mosei"`, `"m3ed"`).
        config_name: Configuration name; also the folder of its parquet files in the Hub layout.
        label_spec: Emotion classes and `tgt` token map.
        expected_dims: Feature dim each modality must have (`None`: any). Also decides whether the
            audio and visual features came swapped (see `resolve_modality_dims`).
        length_keys: Modality (as named by the source keys) -> source key holding each sample's real
            sequence length. Sequences are cut to those lengths when `use_lengths` is on.
        pretty_name: Human-readable name for the dataset card.
        description: One paragraph for the dataset card.
    """

    name: str
    config_name: str
    label_spec: LabelSpec
    expected_dims: Mapping[str, int | None]
    length_keys: Mapping[str, str] = field(default_factory=dict)
    pretty_name: str = ""
    description: str = ""


@dataclass
class SplitArrays:
    """One validated split: ids, features per modality (`Samples`) and the multi-hot labels."""

    ids: list[str]
    features: dict[str, Samples]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)


@dataclass
class ConversionResult:
    """What `convert_source` returns: the dataset and the report of what was checked and changed."""

    dataset_dict: datasets.DatasetDict
    report: dict[str, Any]


# --------------------------------------------------------------------------------------------------
# Per-modality array helpers
# --------------------------------------------------------------------------------------------------


def _to_numpy(value: Any) -> np.ndarray:
    """numpy view of an array-like; torch tensors are detached, moved to CPU, half types widened."""
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if value.dtype.is_floating_point and value.element_size() < 4:
            value = value.float()
        return value.numpy()
    return np.asarray(value)


def _as_float32(array: np.ndarray) -> np.ndarray:
    """float32 version of `array`; values too large for float32 become +-inf (counted later)."""
    with np.errstate(over="ignore"):
        return np.asarray(array, dtype=np.float32)


def _to_samples(value: Any, modality: str, where: str) -> Samples:
    """Accepts a `[N, L, D]` array/tensor or a sequence of `[L, D]` arrays/tensors."""
    expected = (
        f"{modality} features must be a [samples, length, dim] array "
        "or a list of [length, dim] arrays"
    )
    if isinstance(value, (list, tuple)) or (
        isinstance(value, np.ndarray) and value.dtype == object
    ):
        samples = []
        for index, sample in enumerate(value):
            sample = _to_numpy(sample)
            if sample.ndim != 2:
                raise ValueError(f"{where}: {expected}; sample {index} has shape {sample.shape}")
            samples.append(_as_float32(sample))
        return samples
    array = _to_numpy(value)
    if array.ndim != 3 or array.dtype == object:
        raise ValueError(f"{where}: {expected}; got an array of shape {array.shape}")
    return _as_float32(array)


def _sequence_lengths(samples: Samples) -> np.ndarray:
    if isinstance(samples, np.ndarray):
        return np.full(samples.shape[0], samples.shape[1], dtype=np.int64)
    return np.array([sample.shape[0] for sample in samples], dtype=np.int64)


def _feature_dim(samples: Samples, modality: str, where: str) -> int | None:
    """The modality's feature dim; `None` for an empty split. Raises if samples disagree."""
    if isinstance(samples, np.ndarray):
        return int(samples.shape[2])
    if not samples:
        return None
    dims = np.array([sample.shape[1] for sample in samples])
    differing = np.flatnonzero(dims != dims[0])
    if differing.size:
        other = int(differing[0])
        raise ValueError(
            f"{where}: {modality} feature dims differ between samples (sample 0: {dims[0]}, "
            f"sample {other}: {dims[other]})"
        )
    return int(dims[0])


def _num_samples(samples: Samples) -> int:
    return samples.shape[0] if isinstance(samples, np.ndarray) else len(samples)


def clean_non_finite(samples: Samples) -> tuple[Samples, dict[str, int]]:
    """Replaces NaN, +inf and -inf by 0 without touching the input.

    Returns the input object itself when every value is finite (no copy), otherwise new arrays, and
    the counts `{"nan": ..., "posinf": ..., "neginf": ..., "samples_affected": ...}`.
    """
    counts = {"nan": 0, "posinf": 0, "neginf": 0, "samples_affected": 0}

    def all_finite(array: np.ndarray) -> bool:
        # The float64 sum of float32 values is finite exactly when every value is (it cannot
        # overflow), and it needs no boolean temporary of the array's size.
        return bool(np.isfinite(array.sum(dtype=np.float64)))

    def clean_one(array: np.ndarray) -> np.ndarray:
        if all_finite(array):
            return array
        finite = np.isfinite(array)
        counts["nan"] += int(np.isnan(array).sum())
        counts["posinf"] += int(np.isposinf(array).sum())
        counts["neginf"] += int(np.isneginf(array).sum())
        return np.where(finite, array, np.float32(0.0))

    if isinstance(samples, np.ndarray):
        if all_finite(samples):
            return samples, counts
        counts["samples_affected"] = int((~np.isfinite(samples)).any(axis=(1, 2)).sum())
        return clean_one(samples), counts
    cleaned = []
    for sample in samples:
        cleaned_sample = clean_one(sample)
        counts["samples_affected"] += int(cleaned_sample is not sample)
        cleaned.append(cleaned_sample)
    return cleaned, counts


def clean_splits(
    splits: Mapping[str, SplitArrays], source: str
) -> dict[str, dict[str, dict[str, int]]]:
    """Runs `clean_non_finite` on every split and modality.

    The cleaned arrays replace those in `splits` (the arrays themselves are never modified). Logs a
    warning per affected split and modality and returns the counts as
    `{split: {modality: {"nan": ..., "posinf": ..., "neginf": ..., "samples_affected": ...}}}`.
    """
    report: dict[str, dict[str, dict[str, int]]] = {}
    for split, arrays in splits.items():
        report[split] = {}
        for modality in MODALITIES:
            arrays.features[modality], counts = clean_non_finite(arrays.features[modality])
            report[split][modality] = counts
            replaced = counts["nan"] + counts["posinf"] + counts["neginf"]
            if replaced:
                logger.warning(
                    "%s, split %s, %s: replaced %d non-finite values by 0 "
                    "(NaN %d, +inf %d, -inf %d) in %d samples",
                    source,
                    split,
                    modality,
                    replaced,
                    counts["nan"],
                    counts["posinf"],
                    counts["neginf"],
                    counts["samples_affected"],
                )
    return report


def _cut_to_lengths(samples: Samples, lengths: np.ndarray) -> Samples:
    """Keeps the first `lengths[i]` frames of sample `i` (views, no copy)."""
    if isinstance(samples, np.ndarray) and (lengths == samples.shape[1]).all():
        return samples
    return [sample[:length] for sample, length in zip(samples, lengths, strict=True)]


# --------------------------------------------------------------------------------------------------
# Parsing and validation
# --------------------------------------------------------------------------------------------------


def _find_key(mapping: Mapping[str, Any], candidates: Sequence[str]) -> str | None:
    return next((key for key in candidates if key in mapping), None)


def _read_lengths(
    split_raw: Mapping[str, Any], key: str, num_samples: int, stored: np.ndarray, where: str
) -> tuple[np.ndarray, dict[str, int]]:
    """Reads per-sample real lengths, clipped to `[1, stored length]`; counts what was clipped."""
    lengths = _to_numpy(split_raw[key]).reshape(-1)
    if lengths.shape[0] != num_samples:
        raise ValueError(
            f"{where}: {key!r} holds {lengths.shape[0]} lengths for {num_samples} samples"
        )
    if not np.issubdtype(lengths.dtype, np.number) or (lengths != np.round(lengths)).any():
        raise ValueError(
            f"{where}: {key!r} must hold integer sequence lengths; got {lengths[:5]}..."
        )
    lengths = lengths.astype(np.int64)
    counts = {
        "raised_to_one": int((lengths < 1).sum()),
        "clipped_to_stored_length": int((lengths > stored).sum()),
    }
    return np.clip(lengths, 1, stored), counts


def _parse_split(
    split_raw: Any,
    split: str,
    spec: DatasetSpec,
    source: str,
    use_lengths: bool,
    report: dict[str, Any],
) -> SplitArrays:
    """Validates one source split; its features stay keyed by the source's modality names."""
    where = f"Split {split!r} of {source}"
    if not isinstance(split_raw, Mapping):
        raise ValueError(f"{where} must be a dict of arrays; got {type(split_raw).__name__}")
    keys_found = sorted(map(str, split_raw))

    features: dict[str, Samples] = {}
    for modality in MODALITIES:
        key = _find_key(split_raw, MODALITY_SOURCE_KEYS[modality])
        if key is None:
            looked_for = " or ".join(repr(name) for name in MODALITY_SOURCE_KEYS[modality])
            raise ValueError(
                f"{where} has no {modality} features: looked for {looked_for}; keys found: "
                f"{keys_found}"
            )
        features[modality] = _to_samples(split_raw[key], modality, where)
    if TARGET_KEY not in split_raw:
        raise ValueError(
            f"{where} has no labels: looked for {TARGET_KEY!r}; keys found: {keys_found}"
        )
    targets = split_raw[TARGET_KEY]
    if hasattr(targets, "tolist") and getattr(targets, "ndim", 1) == 2:
        targets = targets.tolist()

    counts = {modality: _num_samples(samples) for modality, samples in features.items()}
    counts["labels"] = len(targets)
    if len(set(counts.values())) > 1:
        details = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise ValueError(
            f"{where}: the modalities and labels disagree on the number of samples ({details})"
        )
    num_samples = counts["labels"]
    if num_samples == 0:
        raise ValueError(f"{where} is empty (0 samples)")
    for modality, samples in features.items():
        _feature_dim(samples, modality, where)

    labels = target_tokens_to_multi_hot(targets, spec.label_spec, split=split)

    if use_lengths:
        for modality, key in spec.length_keys.items():
            if key not in split_raw:
                logger.info(
                    "%s has no %r; %s sequences are kept at their stored length",
                    where,
                    key,
                    modality,
                )
                continue
            lengths, clip_counts = _read_lengths(
                split_raw, key, num_samples, _sequence_lengths(features[modality]), where
            )
            features[modality] = _cut_to_lengths(features[modality], lengths)
            report["lengths"].setdefault(split, {})[modality] = {"source_key": key, **clip_counts}
            if clip_counts["raised_to_one"]:
                logger.warning(
                    "%s: %d %s sequences have length < 1 in %r; they keep one (padding) frame",
                    where,
                    clip_counts["raised_to_one"],
                    modality,
                    key,
                )

    ids = None
    if ID_KEY in split_raw:
        raw_ids = _to_numpy(split_raw[ID_KEY]).reshape(-1)
        if raw_ids.shape[0] == num_samples:
            ids = [str(sample_id) for sample_id in raw_ids.tolist()]
        else:
            logger.warning(
                "%s: %r has %d entries for %d samples; ids are generated",
                where,
                ID_KEY,
                raw_ids.shape[0],
                num_samples,
            )
    if ids is None:
        ids = [f"{split}-{index:06d}" for index in range(num_samples)]
    return SplitArrays(ids=ids, features=features, labels=labels)


def resolve_modality_dims(
    dims: Mapping[str, int], expected_dims: Mapping[str, int | None], source: str
) -> bool:
    """Decides from the feature dims whether the audio and visual features are stored swapped.

    Rule: if every modality matches `expected_dims` (a `None` entry matches anything), nothing is
    swapped. Otherwise, if exchanging audio and visual makes every modality match, and the two
    expected dims differ, the features are swapped (returns True; a warning is logged). Otherwise
    a ValueError names the modality, its dim and the expected one.

    CARAT's M3ED file is the known case: its `src-visual` key holds the 1024-dim wav2vec audio
    features and `src-audio` the 342-dim DenseFace visual features.
    """

    def matches(candidate: Mapping[str, int]) -> bool:
        return all(
            expected_dims.get(m) is None or candidate[m] == expected_dims[m] for m in MODALITIES
        )

    if matches(dims):
        return False
    swapped = {**dims, "audio": dims["visual"], "visual": dims["audio"]}
    expected_audio, expected_visual = expected_dims.get("audio"), expected_dims.get("visual")
    if matches(swapped) and expected_audio is not None and expected_audio != expected_visual:
        logger.warning(
            "%s: the features stored as audio have dim %d and those stored as visual have dim %d; "
            "the expected dims are audio %d and visual %d, so the two are swapped.",
            source,
            dims["audio"],
            dims["visual"],
            expected_audio,
            expected_visual,
        )
        return True
    wrong = [
        m for m in MODALITIES if expected_dims.get(m) is not None and dims[m] != expected_dims[m]
    ]
    details = ", ".join(f"{m} has dim {dims[m]} but {expected_dims[m]} is expected" for m in wrong)
    raise ValueError(
        f"{source}: unexpected feature dims ({details}). If the features come from another "
        "extractor, pass the dims explicitly, e.g. --feature_dims "
        + ",".join(f"{m}={dims[m]}" for m in MODALITIES)
    )


def parse_source(
    raw: Any,
    spec: DatasetSpec,
    source: str,
    feature_dims: Mapping[str, int | None] | None = None,
    use_lengths: bool = True,
) -> tuple[dict[str, SplitArrays], dict[str, Any]]:
    """Validates, reorders and cleans a loaded source object.

    Args:
        raw: The loaded file: `{'train': split, 'valid': split, 'test': split, ...}`.
        spec: The dataset configuration.
        source: Name of the file, used in messages.
        feature_dims: Overrides of `spec.expected_dims`.
        use_lengths: Cut sequences to the lengths stored under `spec.length_keys`.

    Returns:
        The splits keyed by output split name, and a report dict with the keys `source`,
        `num_samples`, `feature_dims`, `swapped_audio_visual`, `lengths` and `non_finite` (per
        split and modality: counts of NaN, +inf, -inf and affected samples, all replaced by 0).
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source} must hold a dict of splits; got {type(raw).__name__}")
    report: dict[str, Any] = {"source": source, "lengths": {}}

    # Labels first: a CARAT file carries its own tgt vocabulary, which must agree with labels.py.
    vocabulary = raw.get("dict", {}).get("tgt") if isinstance(raw.get("dict"), Mapping) else None
    if isinstance(vocabulary, Mapping):
        check_target_vocabulary(vocabulary, spec.label_spec, source)

    splits: dict[str, SplitArrays] = {}
    for split, candidates in SOURCE_SPLIT_NAMES.items():
        key = _find_key(raw, candidates)
        if key is None:
            also = (
                f" (also looked for {', '.join(repr(c) for c in candidates[1:])})"
                if len(candidates) > 1
                else ""
            )
            raise ValueError(
                f"{source} has no split {candidates[0]!r}{also}; top-level keys found: "
                f"{sorted(map(str, raw))}"
            )
        splits[split] = _parse_split(raw[key], split, spec, source, use_lengths, report)

    # Each modality must have one dim across splits.
    dims: dict[str, int] = {}
    for modality in MODALITIES:
        per_split = {
            split: _feature_dim(arrays.features[modality], modality, source)
            for split, arrays in splits.items()
        }
        if len(set(per_split.values())) > 1:
            details = ", ".join(f"{split} {dim}" for split, dim in per_split.items())
            raise ValueError(f"{source}: {modality} feature dims differ between splits ({details})")
        dims[modality] = per_split["train"]

    expected_dims = {**spec.expected_dims, **(feature_dims or {})}
    swapped = resolve_modality_dims(dims, expected_dims, source)
    if swapped:
        dims["audio"], dims["visual"] = dims["visual"], dims["audio"]
        for arrays in splits.values():
            features = arrays.features
            features["audio"], features["visual"] = features["visual"], features["audio"]
        for split_lengths in report["lengths"].values():
            renamed = {
                {"audio": "visual", "visual": "audio"}.get(m, m): v
                for m, v in split_lengths.items()
            }
            split_lengths.clear()
            split_lengths.update(renamed)

    report["non_finite"] = clean_splits(splits, source)
    report["num_samples"] = {split: len(arrays) for split, arrays in splits.items()}
    report["feature_dims"] = dims
    report["swapped_audio_visual"] = swapped
    return splits, report


# --------------------------------------------------------------------------------------------------
# Arrow building
# --------------------------------------------------------------------------------------------------


def build_features(
    feature_dims: Mapping[str, int], sequence_lengths: Mapping[str, int | None], num_labels: int
) -> datasets.Features:
    """The explicit schema of every prepared split.

    `id` string; one `Array2D((L, D), "float32")` column per modality, with `L = None` where lengths
    vary; `labels` a fixed-length list of `num_labels` float32 (multi-hot).
    """
    columns: dict[str, Any] = {"id": datasets.Value("string")}
    for modality in (m for m in MODALITIES if m in feature_dims):
        columns[modality] = datasets.Array2D(
            shape=(sequence_lengths[modality], feature_dims[modality]), dtype="float32"
        )
    columns["labels"] = datasets.List(datasets.Value("float32"), length=num_labels)
    return datasets.Features(columns)


def _array2d_column(samples: Samples, dim: int, fixed_length: int | None) -> pa.ChunkedArray:
    """Builds an `Array2D` column straight from numpy buffers (no per-row Python work)."""
    extension_type = Array2DExtensionType((fixed_length, dim), "float32")
    lengths = _sequence_lengths(samples)
    frame_offsets = np.concatenate([[0], np.cumsum(lengths)])
    max_frames_per_chunk = max(1, _MAX_VALUES_PER_CHUNK // max(dim, 1))
    chunks = []
    start = 0
    while start < len(lengths) or not chunks:
        # The last row that still fits in the chunk, but at least one row per chunk.
        frame_limit = frame_offsets[start] + max_frames_per_chunk
        stop = int(np.searchsorted(frame_offsets, frame_limit, side="right")) - 1
        stop = min(max(stop, start + 1), len(lengths))
        if isinstance(samples, np.ndarray):
            values = np.ascontiguousarray(samples[start:stop]).reshape(-1)
        else:
            values = np.concatenate(
                [sample.reshape(-1) for sample in samples[start:stop]] or [np.zeros(0, np.float32)]
            )
        chunk_lengths = lengths[start:stop]
        frame_count = int(chunk_lengths.sum())
        frames = pa.ListArray.from_arrays(
            pa.array(np.arange(frame_count + 1, dtype=np.int32) * dim),
            pa.array(values, type=pa.float32()),
        )
        rows = pa.ListArray.from_arrays(
            pa.array(np.concatenate([[0], np.cumsum(chunk_lengths)]).astype(np.int32)), frames
        )
        chunks.append(pa.ExtensionArray.from_storage(extension_type, rows))
        start = stop
    return pa.chunked_array(chunks, type=extension_type)


def _fingerprint(metadata_json: str, split: str, arrays: SplitArrays) -> str:
    """Deterministic fingerprint from the metadata, ids, labels and shapes (cheap, no full hash)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(metadata_json.encode())
    digest.update(split.encode())
    digest.update("\n".join(arrays.ids).encode())
    digest.update(np.ascontiguousarray(arrays.labels).tobytes())
    for modality in (m for m in MODALITIES if m in arrays.features):
        samples = arrays.features[modality]
        digest.update(modality.encode())
        digest.update(_sequence_lengths(samples).tobytes())
        first = samples[0] if _num_samples(samples) else np.zeros(0, np.float32)
        digest.update(np.ascontiguousarray(first).tobytes())
    return digest.hexdigest()


def build_dataset_dict(
    splits: Mapping[str, SplitArrays],
    label_names: Sequence[str],
    dataset_name: str,
    config_name: str,
    report: Mapping[str, Any] | None = None,
) -> datasets.DatasetDict:
    """Turns validated splits into a `DatasetDict` with explicit `Features` and metadata.

    A modality is stored at fixed length (`Array2D((L, D))`) when every sample of every split has
    the same length, else as `Array2D((None, D))`. The metadata (dataset and config name, label
    names, modalities, feature dims, sequence lengths, report) is stored as JSON in each split's
    `info.description`; `metadata_from_dataset` reads it back.

    A dataset may have only some of the modalities (e.g. text only): the modalities are those in
    the splits' `features`, the same in every split; absent ones get no column.
    """
    first = next(iter(splits.values()))
    modalities = [m for m in MODALITIES if m in first.features]
    for split, arrays in splits.items():
        if sorted(arrays.features) != sorted(modalities) or not modalities:
            raise ValueError(
                f"{dataset_name}: every split needs the same modalities among {MODALITIES}; "
                f"split {split!r} has {sorted(arrays.features)}, the first split {modalities}"
            )
    feature_dims: dict[str, int] = {}
    sequence_lengths: dict[str, int | None] = {}
    for modality in modalities:
        dims = {
            _feature_dim(arrays.features[modality], modality, dataset_name)
            for arrays in splits.values()
        }
        dims.discard(None)
        if len(dims) != 1:
            raise ValueError(
                f"{dataset_name}: {modality} feature dims differ between splits: {sorted(dims)}"
            )
        feature_dims[modality] = dims.pop()
        lengths = np.concatenate(
            [_sequence_lengths(arrays.features[modality]) for arrays in splits.values()]
        )
        sequence_lengths[modality] = (
            int(lengths[0]) if lengths.size and (lengths == lengths[0]).all() else None
        )
    num_labels = first.labels.shape[1]
    if len(label_names) != num_labels:
        raise ValueError(f"{len(label_names)} label names given for {num_labels} label columns")

    features = build_features(feature_dims, sequence_lengths, num_labels)
    metadata = {
        "dataset_name": dataset_name,
        "config_name": config_name,
        "label_names": list(label_names),
        "modalities": modalities,
        "feature_dims": feature_dims,
        "sequence_lengths": sequence_lengths,
        "num_samples": {split: len(arrays) for split, arrays in splits.items()},
        "report": dict(report or {}),
    }
    metadata_json = json.dumps({"lddu_metadata": metadata})

    dataset_dict = datasets.DatasetDict()
    for split, arrays in splits.items():
        columns = {"id": pa.chunked_array([pa.array(arrays.ids, type=pa.string())])}
        for modality in modalities:
            columns[modality] = _array2d_column(
                arrays.features[modality], feature_dims[modality], sequence_lengths[modality]
            )
        labels = np.ascontiguousarray(arrays.labels, dtype=np.float32)
        columns["labels"] = pa.chunked_array(
            [pa.FixedSizeListArray.from_arrays(pa.array(labels.reshape(-1)), num_labels)]
        )
        table = pa.table(columns).replace_schema_metadata(features.arrow_schema.metadata)
        info = datasets.DatasetInfo(features=features, description=metadata_json)
        dataset_dict[split] = datasets.Dataset(
            InMemoryTable(table),
            info=info,
            split=datasets.NamedSplit(split),
            fingerprint=_fingerprint(metadata_json, split, arrays),
        )
    return dataset_dict


def metadata_from_dataset(
    dataset: datasets.Dataset | datasets.DatasetDict,
) -> dict[str, Any] | None:
    """The metadata `build_dataset_dict` stored in `info.description`, or None if there is none.

    It survives `save_to_disk`/`load_from_disk`, but not parquet; for a Hub layout read the
    `lddu_metadata.json` beside the parquet files (`loading.load_metadata` does both).
    """
    if isinstance(dataset, datasets.DatasetDict):
        dataset = next(iter(dataset.values()))
    try:
        return json.loads(dataset.info.description)["lddu_metadata"]
    except (TypeError, ValueError, KeyError):
        return None


# --------------------------------------------------------------------------------------------------
# Whole conversion and command line
# --------------------------------------------------------------------------------------------------


def convert_source(
    source: str | os.PathLike,
    spec: DatasetSpec,
    feature_dims: Mapping[str, int | None] | None = None,
    use_lengths: bool = True,
) -> ConversionResult:
    """Loads `source` safely and converts it into a `DatasetDict` (train/validation/test).

    Args:
        source: Path of the `.pkl` or `.pt` file.
        spec: The dataset configuration (`mosei.MOSEI_SPECS[...]`, `m3ed.M3ED_SPEC`).
        feature_dims: Overrides of the expected feature dims, e.g. `{"text": 300}`.
        use_lengths: Cut padded sequences to the real lengths the source stores
            (`spec.length_keys`).

    Returns:
        `ConversionResult(dataset_dict, report)`.
    """
    source = Path(source)
    raw = load_source_file(source)
    splits, report = parse_source(
        raw, spec, source.name, feature_dims=feature_dims, use_lengths=use_lengths
    )
    report["source_path"] = str(source)
    dataset_dict = build_dataset_dict(
        splits, spec.label_spec.label_names, spec.name, spec.config_name, report=report
    )
    return ConversionResult(dataset_dict=dataset_dict, report=report)


def _parse_feature_dims(text: str) -> dict[str, int]:
    dims = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        modality, _, value = item.partition("=")
        if modality not in MODALITIES or not value.isdigit():
            raise argparse.ArgumentTypeError(
                f"expected MODALITY=DIM pairs with MODALITY in {MODALITIES}, e.g. "
                f"text=768,audio=74; got {item!r}"
            )
        dims[modality] = int(value)
    return dims


def build_argument_parser(
    prog: str, description: str, source_help: str, config_names: Sequence[str], default_config: str
) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description=description,
        epilog=source_help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--source", required=True, type=Path, help="The downloaded .pkl or .pt file."
    )
    parser.add_argument(
        "--output", required=True, type=Path, help="Folder for the saved dataset (save_to_disk)."
    )
    if len(config_names) > 1:
        parser.add_argument(
            "--config", choices=config_names, default=default_config, help="Dataset configuration."
        )
    parser.add_argument(
        "--hub_layout",
        type=Path,
        default=None,
        help="Also write the Hub layout here: <config>/<split>-*.parquet and a README.md dataset "
        "card. Other configurations already in that folder are kept.",
    )
    parser.add_argument(
        "--push_to_hub",
        metavar="REPO",
        default=None,
        help="Upload the Hub layout to this dataset repository (needs a token with write access).",
    )
    parser.add_argument(
        "--private", action="store_true", help="Create the Hub repository as private."
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="Replace an existing --output (and Hub config folder).",
    )
    parser.add_argument(
        "--feature_dims",
        type=_parse_feature_dims,
        default=None,
        metavar="M=D,...",
        help="Expected feature dims, overriding the configuration's (e.g. text=300 for GloVe).",
    )
    parser.add_argument(
        "--keep_padding",
        action="store_true",
        help="Do not cut padded sequences to the real lengths the source stores (len_list, "
        "audio_lengths, vision_lengths).",
    )
    parser.add_argument(
        "--log_level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    return parser


def _summary(result: ConversionResult, spec: DatasetSpec, written: Mapping[str, str]) -> str:
    report = result.report
    lines = [f"{spec.name} ({spec.config_name}) from {report['source_path']}"]
    lines.append(f"labels: {', '.join(spec.label_spec.label_names)}")
    lines.append(
        "feature dims: " + ", ".join(f"{m} {d}" for m, d in report["feature_dims"].items())
    )
    if report["swapped_audio_visual"]:
        lines.append(
            "audio and visual features were stored swapped in the source and have been exchanged"
        )
    header = f"{'split':<12}{'samples':>9}" + "".join(f"{m + ' length':>16}" for m in MODALITIES)
    header += f"{'non-finite -> 0':>18}"
    lines += [header, "-" * len(header)]
    for split, dataset in result.dataset_dict.items():
        row = f"{split:<12}{dataset.num_rows:>9}"
        for modality in MODALITIES:
            length = dataset.features[modality].shape[0]
            row += f"{'variable' if length is None else length:>16}"
        replaced = sum(
            counts["nan"] + counts["posinf"] + counts["neginf"]
            for counts in report["non_finite"][split].values()
        )
        lines.append(row + f"{replaced:>18}")
    lines += [f"{name}: {path}" for name, path in written.items()]
    return "\n".join(lines)


def run_conversion_cli(
    argv: Sequence[str] | None,
    specs: Mapping[str, DatasetSpec],
    prog: str,
    description: str,
    source_help: str,
    default_config: str,
) -> int:
    """The command line shared by `python -m dataset_scripts.mosei` and `... .m3ed`."""
    from .saving import push_hub_layout, save_prepared, write_hub_layout

    parser = build_argument_parser(prog, description, source_help, list(specs), default_config)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    spec = specs[getattr(args, "config", default_config)]

    # Fail before the (long) conversion if an output exists.
    if args.output.exists() and not args.overwrite:
        parser.error(f"--output {args.output} exists; pass --overwrite to replace it")
    hub_config_dir = args.hub_layout / spec.config_name if args.hub_layout else None
    if hub_config_dir is not None and hub_config_dir.exists() and not args.overwrite:
        parser.error(f"{hub_config_dir} exists; pass --overwrite to replace it")

    result = convert_source(
        args.source, spec, feature_dims=args.feature_dims, use_lengths=not args.keep_padding
    )
    written = {
        "saved dataset": str(
            save_prepared(result.dataset_dict, args.output, overwrite=args.overwrite)
        )
    }
    card_text = {"pretty_name": spec.pretty_name, "card_description": spec.description}
    if args.hub_layout is not None:
        write_hub_layout(
            result.dataset_dict,
            args.hub_layout,
            spec.config_name,
            overwrite=args.overwrite,
            **card_text,
        )
        written["hub layout"] = str(args.hub_layout)
    if args.push_to_hub:
        if args.hub_layout is not None:
            written["pushed"] = push_hub_layout(
                args.hub_layout, args.push_to_hub, spec.config_name, private=args.private
            )
        else:
            with tempfile.TemporaryDirectory() as hub_dir:
                write_hub_layout(result.dataset_dict, Path(hub_dir), spec.config_name, **card_text)
                written["pushed"] = push_hub_layout(
                    Path(hub_dir), args.push_to_hub, spec.config_name, private=args.private
                )
    print(_summary(result, spec, written), file=sys.stdout)
    return 0
