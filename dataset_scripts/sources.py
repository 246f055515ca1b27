"""Reading a source file: load it safely, find its splits and modalities, validate and clean them.

`parse_source` (each dataset module only supplies a `DatasetSpec`) finds the splits and, in each,
every modality's features (`MODALITY_SOURCE_KEYS`) and the `tgt` labels; checks ranks, dims and
counts; cuts padded sequences to the lengths the source stores; resolves from the dims which
modality is which; checks the label set and the splits' ids; and replaces non-finite values by 0
on copies, counting them. Every check and its message: docs/data.md, "Validation" and "Cleaning"
(and docs/promises.md, "Builders"). The resulting `SplitArrays` go to `building.build_dataset_dict`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .labels import LabelSpec, check_label_set, check_target_vocabulary, target_tokens_to_multi_hot
from .modalities import MODALITIES

logger = logging.getLogger(__name__)

__all__ = [
    "DatasetSpec",
    "Samples",
    "SplitArrays",
    "clean_non_finite",
    "check_ids_and_overlap",
    "clean_splits",
    "feature_dim",
    "non_finite_total",
    "parse_source",
    "resolve_modality_dims",
    "sample_count",
    "sequence_lengths",
    "split_feature_dims",
    "swap_audio_visual",
]

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
#: Where MMSA's unaligned pickle stores the real lengths of its zero-padded sequences.
MMSA_LENGTH_KEYS: dict[str, str] = {"audio": "audio_lengths", "visual": "vision_lengths"}
TARGET_KEY = "tgt"
ID_KEY = "id"

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


def sequence_lengths(samples: Samples) -> np.ndarray:
    if isinstance(samples, np.ndarray):
        return np.full(samples.shape[0], samples.shape[1], dtype=np.int64)
    return np.array([sample.shape[0] for sample in samples], dtype=np.int64)


def feature_dim(samples: Samples, modality: str, where: str) -> int | None:
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


def split_feature_dims(
    splits: Mapping[str, SplitArrays], modalities: Sequence[str], where: str
) -> dict[str, int]:
    """Each modality's feature dim; raises unless it is the same in every (non-empty) split."""
    dims: dict[str, int] = {}
    for modality in modalities:
        per_split = {
            split: feature_dim(arrays.features[modality], modality, where)
            for split, arrays in splits.items()
        }
        found = set(per_split.values()) - {None}
        if len(found) != 1:
            details = ", ".join(f"{split} {dim}" for split, dim in per_split.items())
            raise ValueError(f"{where}: {modality} feature dims differ between splits ({details})")
        dims[modality] = found.pop()
    return dims


def sample_count(samples: Samples) -> int:
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
        counts["nan"] += int(np.isnan(array).sum())
        counts["posinf"] += int(np.isposinf(array).sum())
        counts["neginf"] += int(np.isneginf(array).sum())
        return np.nan_to_num(array, nan=0.0, posinf=0.0, neginf=0.0)

    if isinstance(samples, np.ndarray):
        if all_finite(samples):
            return samples, counts
        counts["samples_affected"] = int((~np.isfinite(samples)).any(axis=(1, 2)).sum())
        return clean_one(samples), counts
    cleaned = [clean_one(sample) for sample in samples]
    counts["samples_affected"] = sum(new is not old for new, old in zip(cleaned, samples))
    return cleaned, counts


def non_finite_total(counts: Mapping[str, int]) -> int:
    """How many values `clean_non_finite` replaced (NaN, +inf and -inf together)."""
    return counts["nan"] + counts["posinf"] + counts["neginf"]


def clean_splits(
    splits: Mapping[str, SplitArrays], source: str
) -> dict[str, dict[str, dict[str, int]]]:
    """Runs `clean_non_finite` on every split and on each modality it has.

    The cleaned arrays replace those in `splits` (the arrays themselves are never modified). Logs a
    warning per affected split and modality and returns the counts as
    `{split: {modality: {"nan": ..., "posinf": ..., "neginf": ..., "samples_affected": ...}}}`.
    """
    report: dict[str, dict[str, dict[str, int]]] = {}
    for split, arrays in splits.items():
        report[split] = {}
        for modality in (m for m in MODALITIES if m in arrays.features):
            arrays.features[modality], counts = clean_non_finite(arrays.features[modality])
            report[split][modality] = counts
            if non_finite_total(counts):
                logger.warning(
                    "%s, split %s, %s: replaced %d non-finite values by 0 "
                    "(NaN %d, +inf %d, -inf %d) in %d samples",
                    source,
                    split,
                    modality,
                    non_finite_total(counts),
                    *(counts[key] for key in ("nan", "posinf", "neginf", "samples_affected")),
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


def _require_key(
    mapping: Mapping[str, Any], candidates: Sequence[str], what: str, where: str
) -> str:
    """The first of `candidates` in `mapping`; raises naming them and the keys found."""
    key = _find_key(mapping, candidates)
    if key is None:
        raise ValueError(
            f"{where} has no {what}: looked for {' or '.join(map(repr, candidates))}; keys found: "
            f"{sorted(map(str, mapping))}"
        )
    return key


def _read_features(split_raw: Mapping[str, Any], where: str) -> dict[str, Samples]:
    """Each modality's samples, found under the first of its accepted source keys."""
    features: dict[str, Samples] = {}
    for modality in MODALITIES:
        key = _require_key(split_raw, MODALITY_SOURCE_KEYS[modality], f"{modality} features", where)
        features[modality] = _to_samples(split_raw[key], modality, where)
    return features


def _read_targets(split_raw: Mapping[str, Any], where: str) -> Sequence[Any]:
    """The `tgt` token lists (a 2-D array becomes a list of rows)."""
    targets = split_raw[_require_key(split_raw, [TARGET_KEY], "labels", where)]
    if hasattr(targets, "tolist") and getattr(targets, "ndim", 1) == 2:
        targets = targets.tolist()
    return targets


def _check_sample_counts(
    features: Mapping[str, Samples], targets: Sequence[Any], where: str
) -> int:
    """The split's sample count; raises if the modalities and labels disagree or it is 0."""
    counts = {modality: sample_count(samples) for modality, samples in features.items()}
    counts["labels"] = len(targets)
    if len(set(counts.values())) > 1:
        details = ", ".join(f"{name} {count}" for name, count in counts.items())
        raise ValueError(
            f"{where}: the modalities and labels disagree on the number of samples ({details})"
        )
    if counts["labels"] == 0:
        raise ValueError(f"{where} is empty (0 samples)")
    for modality, samples in features.items():
        feature_dim(samples, modality, where)
    return counts["labels"]


def _apply_lengths(
    split_raw: Mapping[str, Any],
    features: dict[str, Samples],
    length_keys: Mapping[str, str],
    where: str,
) -> dict[str, dict[str, Any]]:
    """Cuts each modality named in `length_keys` to the real lengths the source stores.

    Returns the per-modality report: the source key and how many lengths were clipped.
    """
    report: dict[str, dict[str, Any]] = {}
    for modality, key in length_keys.items():
        if key not in split_raw:
            logger.info(
                "%s has no %r; %s sequences are kept at their stored length", where, key, modality
            )
            continue
        samples = features[modality]
        lengths = _to_numpy(split_raw[key]).reshape(-1)
        if lengths.shape[0] != sample_count(samples):
            raise ValueError(
                f"{where}: {key!r} holds {lengths.shape[0]} lengths for {sample_count(samples)} "
                "samples"
            )
        if not np.issubdtype(lengths.dtype, np.number) or (lengths != np.round(lengths)).any():
            raise ValueError(
                f"{where}: {key!r} must hold integer sequence lengths; got {lengths[:5]}..."
            )
        # Real lengths are clipped to [1, stored length], and what was clipped is counted.
        lengths, stored = lengths.astype(np.int64), sequence_lengths(samples)
        report[modality] = {
            "source_key": key,
            "raised_to_one": int((lengths < 1).sum()),
            "clipped_to_stored_length": int((lengths > stored).sum()),
        }
        features[modality] = _cut_to_lengths(samples, np.clip(lengths, 1, stored))
        if report[modality]["raised_to_one"]:
            logger.warning(
                "%s: %d %s sequences have length < 1 in %r; they keep one (padding) frame",
                where,
                report[modality]["raised_to_one"],
                modality,
                key,
            )
    return report


def _read_ids(split_raw: Mapping[str, Any], split: str, num_samples: int, where: str) -> list[str]:
    """The source's sample ids, or generated `<split>-000000`... when it has none (or too few)."""
    if ID_KEY in split_raw:
        raw_ids = _to_numpy(split_raw[ID_KEY]).reshape(-1)
        if raw_ids.shape[0] == num_samples:
            return [str(sample_id) for sample_id in raw_ids.tolist()]
        logger.warning(
            "%s: %r has %d entries for %d samples; ids are generated",
            where,
            ID_KEY,
            raw_ids.shape[0],
            num_samples,
        )
    return [f"{split}-{index:06d}" for index in range(num_samples)]


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
    features = _read_features(split_raw, where)
    targets = _read_targets(split_raw, where)
    num_samples = _check_sample_counts(features, targets, where)
    labels = target_tokens_to_multi_hot(targets, spec.label_spec, split=split)
    if use_lengths:
        cut = _apply_lengths(split_raw, features, spec.length_keys, where)
        if cut:
            report["lengths"][split] = cut
    ids = _read_ids(split_raw, split, num_samples, where)
    return SplitArrays(ids=ids, features=features, labels=labels)


def _same_split(left: SplitArrays, right: SplitArrays) -> bool:
    """Whether two splits hold the same samples in the same order (labels and every feature)."""
    if len(left) != len(right) or not np.array_equal(left.labels, right.labels):
        return False
    for modality, samples in left.features.items():
        other = right.features.get(modality)
        if other is None or len(other) != len(samples):
            return False
        if not all(np.array_equal(a, b, equal_nan=True) for a, b in zip(samples, other)):
            return False
    return True


def check_ids_and_overlap(splits: Mapping[str, SplitArrays], source: str) -> dict[str, Any]:
    """Refuses two identical splits; warns about repeated sample ids and returns their counts.

    A test (or validation) split identical to another split makes every score meaningless, so it is
    an error. Repeated ids are only warned about (with counts in the report): real files can carry
    ids that repeat for distinct segments, and the features, not the ids, are what is trained on.
    """
    names = list(splits)
    for index, first in enumerate(names):
        for second in names[index + 1 :]:
            if _same_split(splits[first], splits[second]):
                raise ValueError(
                    f"{source}: split {second!r} is identical to split {first!r} "
                    f"({len(splits[first])} samples, same features and labels); scores on it "
                    "would mean nothing"
                )
    report: dict[str, Any] = {"within_split": {}, "across_splits": 0}
    seen: dict[str, str] = {}
    for split, arrays in splits.items():
        repeated = len(arrays.ids) - len(set(arrays.ids))
        if repeated:
            report["within_split"][split] = repeated
            logger.warning("%s: split %r repeats %d sample id(s)", source, split, repeated)
        shared = sorted({i for i in set(arrays.ids) if seen.get(i, split) != split})
        if shared:
            report["across_splits"] += len(shared)
            logger.warning(
                "%s: %d sample id(s) of split %r also occur in an earlier split, e.g. %r",
                source,
                len(shared),
                split,
                shared[:3],
            )
        seen.update({sample_id: split for sample_id in arrays.ids if sample_id not in seen})
    return report


def swap_audio_visual(mapping: Mapping[str, Any]) -> dict[str, Any]:
    """`mapping` (keyed by modality) with its audio and visual entries exchanged, in `MODALITIES`
    order; a modality absent from `mapping` stays absent."""
    renamed = {{"audio": "visual", "visual": "audio"}.get(m, m): v for m, v in mapping.items()}
    return {modality: renamed[modality] for modality in MODALITIES if modality in renamed}


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
        `num_samples`, `feature_dims`, `swapped_audio_visual`, `lengths`, `duplicate_ids` and
        `non_finite` (per split and modality: counts of NaN, +inf, -inf and affected samples, all
        replaced by 0).
    """
    if not isinstance(raw, Mapping):
        raise ValueError(f"{source} must hold a dict of splits; got {type(raw).__name__}")
    report: dict[str, Any] = {"source": source, "lengths": {}}

    # Labels first: a CARAT file carries its own tgt vocabulary, which must agree with labels.py.
    vocabulary = raw["dict"].get("tgt") if isinstance(raw.get("dict"), Mapping) else None
    vocabulary = vocabulary if isinstance(vocabulary, Mapping) else None
    if vocabulary is not None:
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

    dims = split_feature_dims(splits, MODALITIES, source)
    expected_dims = {**spec.expected_dims, **(feature_dims or {})}
    swapped = resolve_modality_dims(dims, expected_dims, source)
    if swapped:
        dims = swap_audio_visual(dims)
        for arrays in splits.values():
            arrays.features = swap_audio_visual(arrays.features)
        report["lengths"] = {
            split: swap_audio_visual(cut) for split, cut in report["lengths"].items()
        }

    all_labels = np.concatenate([arrays.labels for arrays in splits.values()])
    check_label_set(vocabulary, spec.label_spec, all_labels, source)
    report["duplicate_ids"] = check_ids_and_overlap(splits, source)
    report["non_finite"] = clean_splits(splits, source)
    report["num_samples"] = {split: len(arrays) for split, arrays in splits.items()}
    report["feature_dims"] = dims
    report["swapped_audio_visual"] = swapped
    return splits, report
