"""Validated splits (`SplitArrays`) -> `datasets.DatasetDict` with explicit `Features` and metadata.

Each split's Arrow table is built straight from the numpy buffers (no per-row Python work), with
the schema of the explicit `Features` (`features.arrow_schema`): `Array2D` float32 sequences per
modality and multi-hot `labels`. See `build_dataset_dict` for the one place where datasets'
internals are used, and why. The metadata is JSON under `METADATA_KEY` in each split's
`DatasetInfo.description`, the one field that travels with the dataset object itself (why, and how
the Hub layout keeps it: docs/data.md, "What a prepared dataset looks like").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
from datasets.table import InMemoryTable

from .modalities import MODALITIES
from .sources import Samples, SplitArrays, sample_count, sequence_lengths, split_feature_dims

__all__ = [
    "METADATA_KEY",
    "MULTI_LABEL",
    "PROBLEM_TYPES",
    "SINGLE_LABEL",
    "build_dataset_dict",
    "build_features",
    "metadata_from_dataset",
    "metadata_to_description",
]

#: Key of the metadata in the JSON of `DatasetInfo.description`.
METADATA_KEY = "dataset_metadata"

#: The two kinds of label a dataset can hold (the names transformers gives them in
#: `PreTrainedConfig.problem_type`). Both are stored as one `labels` row of 0/1 float32 per sample:
#: any number of ones for multi-label data, exactly one (a one-hot row) for single-label data.
MULTI_LABEL = "multi_label_classification"
SINGLE_LABEL = "single_label_classification"
PROBLEM_TYPES = (MULTI_LABEL, SINGLE_LABEL)

# Arrow's list type has int32 offsets: keep each chunk's float count below 2**31.
_MAX_VALUES_PER_CHUNK = 2**30


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


def metadata_to_description(metadata: Mapping[str, Any]) -> str:
    """The `DatasetInfo.description` that holds `metadata` (read back by `metadata_from_dataset`)."""
    return json.dumps({METADATA_KEY: dict(metadata)})


def metadata_from_dataset(
    dataset: datasets.Dataset | datasets.DatasetDict,
) -> dict[str, Any] | None:
    """The metadata `build_dataset_dict` stored in `info.description`, or None if there is none.

    It survives `save_to_disk`/`load_from_disk`, but not parquet; `loading.load_prepared` puts it
    back for a Hub layout (from its `dataset_metadata.json`).
    """
    if isinstance(dataset, datasets.DatasetDict):
        dataset = next(iter(dataset.values()))
    try:
        return json.loads(dataset.info.description)[METADATA_KEY]
    except (TypeError, ValueError, KeyError):
        return None


def _sequence_column(samples: Samples, dim: int) -> pa.ChunkedArray:
    """A `list<list<float32>>` column (the storage of `Array2D`) straight from numpy buffers."""
    lengths = sequence_lengths(samples)
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
        chunks.append(rows)
        start = stop
    return pa.chunked_array(chunks)


def _fingerprint(description: str, split: str, arrays: SplitArrays) -> str:
    """Deterministic fingerprint from the metadata, ids, labels and shapes (cheap, no full hash)."""
    digest = hashlib.blake2b(digest_size=8)
    digest.update(description.encode())
    digest.update(split.encode())
    digest.update("\n".join(arrays.ids).encode())
    digest.update(np.ascontiguousarray(arrays.labels).tobytes())
    for modality in (m for m in MODALITIES if m in arrays.features):
        samples = arrays.features[modality]
        digest.update(modality.encode())
        digest.update(sequence_lengths(samples).tobytes())
        first = samples[0] if sample_count(samples) else np.zeros(0, np.float32)
        digest.update(np.ascontiguousarray(first).tobytes())
    return digest.hexdigest()


def _check_problem_type(
    splits: Mapping[str, SplitArrays], problem_type: str, dataset_name: str
) -> None:
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(
            f"{dataset_name}: problem_type must be one of {PROBLEM_TYPES}; got {problem_type!r}"
        )
    if problem_type != SINGLE_LABEL:
        return
    for split, arrays in splits.items():
        positives = (np.asarray(arrays.labels) > 0).sum(axis=1)
        wrong = np.flatnonzero(positives != 1)
        if wrong.size:
            index = int(wrong[0])
            raise ValueError(
                f"{dataset_name}: single-label data needs exactly one label per sample; split "
                f"{split!r} sample {arrays.ids[index]!r} has {int(positives[index])} "
                f"({wrong.size} such samples in the split)"
            )


def _modalities_of(splits: Mapping[str, SplitArrays], dataset_name: str) -> list[str]:
    """The modalities of the splits, in `MODALITIES` order; raises unless every split has them."""
    first = next(iter(splits.values()))
    modalities = [m for m in MODALITIES if m in first.features]
    for split, arrays in splits.items():
        if sorted(arrays.features) != sorted(modalities) or not modalities:
            raise ValueError(
                f"{dataset_name}: every split needs the same modalities among {MODALITIES}; "
                f"split {split!r} has {sorted(arrays.features)}, the first split {modalities}"
            )
    return modalities


def _fixed_length(splits: Mapping[str, SplitArrays], modality: str) -> int | None:
    """The modality's sequence length if every sample of every split has it, else None."""
    lengths = np.concatenate(
        [sequence_lengths(arrays.features[modality]) for arrays in splits.values()]
    )
    return int(lengths[0]) if lengths.size and (lengths == lengths[0]).all() else None


def build_dataset_dict(
    splits: Mapping[str, SplitArrays],
    label_names: Sequence[str],
    dataset_name: str,
    config_name: str,
    report: Mapping[str, Any] | None = None,
    problem_type: str = MULTI_LABEL,
) -> datasets.DatasetDict:
    """Turns validated splits into a `DatasetDict` with explicit `Features` and metadata.

    A modality is stored at fixed length (`Array2D((L, D))`) when every sample of every split has
    the same length, else as `Array2D((None, D))`. The metadata (dataset and config name, label
    names, modalities, feature dims, sequence lengths, report) is stored as JSON in each split's
    `info.description`; `metadata_from_dataset` reads it back.

    A dataset may have only some of the modalities (e.g. text only): the modalities are those in
    the splits' `features`, the same in every split; absent ones get no column.

    `problem_type` (`MULTI_LABEL` or `SINGLE_LABEL`) is stored in the metadata; single-label data
    must have exactly one positive per `labels` row.
    """
    _check_problem_type(splits, problem_type, dataset_name)
    modalities = _modalities_of(splits, dataset_name)
    feature_dims = split_feature_dims(splits, modalities, dataset_name)
    fixed_lengths = {modality: _fixed_length(splits, modality) for modality in modalities}
    num_labels = next(iter(splits.values())).labels.shape[1]
    if len(label_names) != num_labels:
        raise ValueError(f"{len(label_names)} label names given for {num_labels} label columns")

    features = build_features(feature_dims, fixed_lengths, num_labels)
    description = metadata_to_description(
        {
            "dataset_name": dataset_name,
            "config_name": config_name,
            "label_names": list(label_names),
            "problem_type": problem_type,
            "modalities": modalities,
            "feature_dims": feature_dims,
            "sequence_lengths": fixed_lengths,
            "num_samples": {split: len(arrays) for split, arrays in splits.items()},
            "report": dict(report or {}),
        }
    )
    schema = features.arrow_schema
    dataset_dict = datasets.DatasetDict()
    for split, arrays in splits.items():
        columns: dict[str, Any] = {"id": pa.chunked_array([pa.array(arrays.ids, type=pa.string())])}
        for modality in modalities:
            rows = _sequence_column(arrays.features[modality], feature_dims[modality])
            extension_type = schema.field(modality).type
            columns[modality] = pa.chunked_array(
                [pa.ExtensionArray.from_storage(extension_type, chunk) for chunk in rows.chunks],
                type=extension_type,
            )
        labels = np.ascontiguousarray(arrays.labels, dtype=np.float32)
        columns["labels"] = pa.chunked_array(
            [pa.FixedSizeListArray.from_arrays(pa.array(labels.reshape(-1)), num_labels)]
        )
        # datasets internals, measured: the public `Dataset.from_dict(columns, features=...)`
        # builds the same table but then fingerprints it by pickling and hashing every byte. For
        # the loading benchmark's default data (16,000 samples, text [50, 768], audio [50, 74],
        # visual [50, 35]; 2.7 GB) that took 21.7-42.4 s and a pickled copy of the data in RAM,
        # against 0.13 s for the `Dataset(InMemoryTable(...), fingerprint=...)` below (2 CPU
        # cores). So the table is wrapped in `InMemoryTable` and given the cheap deterministic
        # fingerprint of `_fingerprint` (metadata, ids, labels, lengths, first sample).
        dataset_dict[split] = datasets.Dataset(
            InMemoryTable(pa.table(columns, schema=schema)),
            info=datasets.DatasetInfo(description=description, features=features),
            split=datasets.NamedSplit(split),
            fingerprint=_fingerprint(description, split, arrays),
        )
    return dataset_dict
