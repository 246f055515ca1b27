"""Deterministic synthetic data with MOSEI's shapes and label statistics (built-in data).

Every label has a unit-norm prototype direction per modality, planted on top of standard normal
noise in a random 30-90% of a sample's frames with a per-sample, per-modality strength (zero for 15%
of the pairs), then offset and scaled per dimension: a model that learns beats chance by a wide
margin, and how much each sample and modality carries varies, so uncertainty has something to
capture. `signal_split` and `missing_rate` (off by default) make it a missing-modality benchmark.
The generative model, its formula and its defaults: docs/data.md, "Synthetic data".

`make_synthetic_dataset` returns the same columns and features as the real builders, and
`write_source` writes raw source files in every supported format (for the builders' tests).
"""

from __future__ import annotations

import argparse
import pickle
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import datasets
import numpy as np

from . import sources
from .building import MULTI_LABEL, SINGLE_LABEL, build_dataset_dict
from .cli import builder_parser, parse_builder_args
from .labels import M3ED_LABELS, MOSEI_LABELS, LabelSpec, multi_hot_to_target_tokens
from .modalities import MODALITIES, SPLITS
from .saving import save_prepared, write_hub_layout
from .sources import MMSA_LENGTH_KEYS, MODALITY_SOURCE_KEYS, SplitArrays, clean_splits

__all__ = [
    "IEMOCAP4_CLASS_SHARES",
    "IEMOCAP4_LABEL_NAMES",
    "MOSEI_LABEL_PREVALENCE",
    "SOURCE_FORMATS",
    "generate_synthetic_splits",
    "make_synthetic_dataset",
    "write_source",
]

#: Approximate share of CMU-MOSEI samples showing each emotion, in MOSEI's class order.
MOSEI_LABEL_PREVALENCE: tuple[float, ...] = (0.53, 0.25, 0.21, 0.10, 0.17, 0.08)
#: The four classes of the usual IEMOCAP setup (happy merged with excited) and their shares of its
#: 5531 utterances (1708 neutral, 1636 happy, 1103 angry, 1084 sad): the single-label default.
IEMOCAP4_LABEL_NAMES: tuple[str, ...] = ("neutral", "happy", "angry", "sad")
IEMOCAP4_CLASS_SHARES: tuple[float, ...] = (0.309, 0.296, 0.199, 0.196)
#: How informative each modality is, relative to `signal_strength`.
MODALITY_WEIGHTS: dict[str, float] = {"text": 1.0, "audio": 0.7, "visual": 0.5}
#: Share of (sample, modality) pairs that carry no label signal at all.
UNINFORMATIVE_FRACTION = 0.15
#: With `signal_split`: the share of a label's signal in its primary modality.
SIGNAL_SPLIT_PRIMARY_SHARE = 0.7
SOURCE_FORMATS: tuple[str, ...] = ("mmsa_pkl", "tailor_pt", "carat_m3ed_pt")

LengthSpec = int | tuple[int, int]
"""A fixed sequence length, or an inclusive `(min, max)` range drawn per sample."""

_CHUNK_SIZE = 1024


def _default_label_names(num_labels: int, single_label: bool = False) -> tuple[str, ...]:
    if single_label and num_labels == len(IEMOCAP4_LABEL_NAMES):
        return IEMOCAP4_LABEL_NAMES
    for spec in (MOSEI_LABELS, M3ED_LABELS):
        if spec.num_labels == num_labels:
            return spec.label_names
    return tuple(f"label_{index}" for index in range(num_labels))


def _draw_lengths(rng: np.random.Generator, length: LengthSpec, num_samples: int) -> np.ndarray:
    if isinstance(length, int):
        if length < 1:
            raise ValueError(f"sequence lengths must be >= 1; got {length}")
        return np.full(num_samples, length, dtype=np.int64)
    low, high = length
    if not 1 <= low <= high:
        raise ValueError(f"a length range must satisfy 1 <= min <= max; got {length}")
    return rng.integers(low, high + 1, size=num_samples)


def _label_distribution(
    num_labels: int, label_prevalence: Sequence[float] | None, single_label: bool
) -> np.ndarray:
    """Per-label prevalences (multi-label) or class shares summing to 1 (single-label)."""
    if label_prevalence is None:
        default = IEMOCAP4_CLASS_SHARES if single_label else MOSEI_LABEL_PREVALENCE
        if num_labels == len(default):
            label_prevalence = default
        else:
            label_prevalence = np.linspace(0.5, 0.08, num_labels)
    values = np.asarray(label_prevalence, dtype=np.float64)
    if values.shape != (num_labels,) or not ((values >= 0) & (values <= 1)).all():
        raise ValueError(
            f"label_prevalence must hold {num_labels} probabilities; got {list(label_prevalence)}"
        )
    if single_label:
        if values.sum() <= 0:
            raise ValueError(f"single-label class shares must not all be 0; got {values.tolist()}")
        values = values / values.sum()
    return values


def _draw_labels(
    rng: np.random.Generator, num_samples: int, distribution: np.ndarray, single_label: bool
) -> np.ndarray:
    """`[num_samples, num_labels]` float32 rows: multi-hot, or one-hot for single-label data."""
    num_labels = distribution.shape[0]
    if not single_label:
        return (rng.random((num_samples, num_labels)) < distribution).astype(np.float32)
    classes = rng.choice(num_labels, size=num_samples, p=distribution)
    return np.eye(num_labels, dtype=np.float32)[classes]


# Over 80 lines: about 30 are the docstring, and the body follows the generative model of
# docs/data.md step by step (prototypes, labels, lengths, strength, gate, noise), read top to bottom.
def generate_synthetic_splits(
    num_train: int = 512,
    num_validation: int = 128,
    num_test: int = 128,
    seed: int = 0,
    text_dim: int = 768,
    audio_dim: int = 74,
    visual_dim: int = 35,
    text_length: LengthSpec = 50,
    audio_length: LengthSpec = 50,
    visual_length: LengthSpec = 50,
    num_labels: int | None = None,
    label_prevalence: Sequence[float] | None = None,
    signal_strength: float = 1.0,
    non_finite_fraction: float = 0.0,
    shared_lengths: bool = False,
    signal_split: bool = False,
    missing_rate: float | Mapping[str, float] = 0.0,
    missing_splits: Sequence[str] = SPLITS,
    single_label: bool = False,
    modalities: Sequence[str] = MODALITIES,
) -> dict[str, SplitArrays]:
    """Generates the raw splits (the model: docs/data.md, "Synthetic data").

    Each split draws from its own child of `numpy.random.SeedSequence(seed)`, so a split does not
    change when another split's size changes.

    Args:
        num_train, num_validation, num_test: Samples per split (0 allowed).
        seed: Seed of everything.
        text_dim, audio_dim, visual_dim: Feature dims.
        text_length, audio_length, visual_length: Fixed length, or `(min, max)` for variable
            lengths.
        num_labels: Number of emotion classes (default 6, or 4 with `single_label`).
        label_prevalence: Probability of each label; defaults to MOSEI's for 6 labels and to a range
            from 0.5 down to 0.08 otherwise. With `single_label`: the class shares (normalised to
            sum to 1); default IEMOCAP-4's for 4 classes, else that range normalised.
        signal_strength: Scale of the planted label signal (0 gives pure noise).
        non_finite_fraction: Share of audio values replaced by -inf (MOSEI's COVAREP has some).
        shared_lengths: One length per sample for all modalities (M3ED: utterances per dialogue);
            the three length specs must then be equal.
        signal_split: Split each label's signal unevenly across the modalities (see
            docs/data.md).
        missing_rate: Probability that a (sample, modality) pair has zero frames, one number or
            `{modality: probability}`; 0 (default) for complete data.
        missing_splits: The splits in which modalities go missing.
        single_label: Exactly one class per sample (a one-hot `labels` row), drawn from the class
            shares; the features follow the same planted-signal model.
        modalities: The modalities the data will keep (`make_synthetic_dataset` drops the
            others). Used only by `missing_rate`: only these go missing, and every sample keeps
            at least one of them; the others are returned complete. Every modality is generated
            either way, with the same values.

    Returns:
        `{"train": SplitArrays, "validation": ..., "test": ...}` with float32 `[N, L, D]` arrays for
        fixed lengths and lists of `[L_i, D]` arrays for variable ones.
    """
    dims = {"text": text_dim, "audio": audio_dim, "visual": visual_dim}
    length_specs = {"text": text_length, "audio": audio_length, "visual": visual_length}
    if shared_lengths and len({str(spec) for spec in length_specs.values()}) != 1:
        raise ValueError(
            f"shared_lengths needs the same length spec for every modality; got {length_specs}"
        )
    if num_labels is None:
        num_labels = len(IEMOCAP4_CLASS_SHARES) if single_label else 6
    distribution = _label_distribution(num_labels, label_prevalence, single_label)

    kept = _checked_modalities(modalities)
    missing_rates = _missing_rates(missing_rate)
    unknown_splits = sorted(set(missing_splits) - set(SPLITS))
    if unknown_splits:
        raise ValueError(f"missing_splits has unknown split(s) {unknown_splits}; use {SPLITS}")
    shares = _signal_shares(num_labels) if signal_split else None

    world_seed, *split_seeds = np.random.SeedSequence(seed).spawn(1 + len(SPLITS))
    world = np.random.default_rng(world_seed)
    prototypes, offsets, scales = {}, {}, {}
    for modality in MODALITIES:
        directions = world.standard_normal((num_labels, dims[modality]))
        prototypes[modality] = (
            directions / np.linalg.norm(directions, axis=1, keepdims=True)
        ).astype(np.float32)
        offsets[modality] = world.normal(0.0, 0.5, dims[modality]).astype(np.float32)
        scales[modality] = world.uniform(0.5, 1.5, dims[modality]).astype(np.float32)

    sizes = {"train": num_train, "validation": num_validation, "test": num_test}
    splits = {}
    for split, split_seed in zip(SPLITS, split_seeds, strict=True):
        rng = np.random.default_rng(split_seed)
        num_samples = sizes[split]
        labels = _draw_labels(rng, num_samples, distribution, single_label)
        shared = _draw_lengths(rng, text_length, num_samples) if shared_lengths else None
        features = {}
        for modality in MODALITIES:
            length_spec = length_specs[modality]
            lengths = shared if shared is not None else _draw_lengths(rng, length_spec, num_samples)
            weight = signal_strength * MODALITY_WEIGHTS[modality]
            strength = rng.uniform(0.0, 2.0 * weight, num_samples) * (
                rng.random(num_samples) >= UNINFORMATIVE_FRACTION
            )
            gate_probability = rng.uniform(0.3, 0.9, num_samples)
            label_weights = labels if shares is None else labels * shares[modality]
            directions = label_weights @ prototypes[modality]  # [N, D]
            fixed = isinstance(length_specs[modality], int)
            samples: np.ndarray | list[np.ndarray] = []
            if fixed:
                samples = np.empty(
                    (num_samples, length_specs[modality], dims[modality]), np.float32
                )
            for start in range(0, num_samples, _CHUNK_SIZE):
                stop = min(start + _CHUNK_SIZE, num_samples)
                chunk_lengths = lengths[start:stop]
                total_frames = int(chunk_lengths.sum())
                # Noise, plus the label signal in the gated frames, then the per-dim offset/scale.
                frames = rng.standard_normal((total_frames, dims[modality]), dtype=np.float32)
                sample_of_frame = np.repeat(np.arange(start, stop), chunk_lengths)
                gate = rng.random(total_frames) < gate_probability[sample_of_frame]
                signal = directions[sample_of_frame]
                signal *= (strength[sample_of_frame] * gate).astype(np.float32)[:, None]
                frames += signal
                frames *= scales[modality]
                frames += offsets[modality]
                if modality == "audio" and non_finite_fraction > 0:
                    frames[rng.random(frames.shape) < non_finite_fraction] = -np.inf
                if fixed:
                    samples[start:stop] = frames.reshape(
                        stop - start, length_specs[modality], dims[modality]
                    )
                else:
                    samples.extend(np.split(frames, np.cumsum(chunk_lengths)[:-1]))
            features[modality] = samples
        if split in missing_splits and any(missing_rates.values()):
            missing = _draw_missing(split_seed, num_samples, missing_rates, kept)
            for modality, absent in missing.items():
                features[modality] = _without_frames(features[modality], absent)
        ids = [f"synthetic-{split}-{index:06d}" for index in range(num_samples)]
        splits[split] = SplitArrays(ids=ids, features=features, labels=labels)
    return splits


def _checked_modalities(modalities: Sequence[str]) -> tuple[str, ...]:
    """`modalities` in the package order, refused unless a non-empty subset of `MODALITIES`."""
    names = tuple(modalities)
    unknown = sorted(set(names) - set(MODALITIES))
    if unknown or not names:
        raise ValueError(f"modalities must be a non-empty subset of {MODALITIES}; got {modalities}")
    return tuple(modality for modality in MODALITIES if modality in names)


def _missing_rates(missing_rate: float | Mapping[str, float]) -> dict[str, float]:
    rates = (
        dict(missing_rate)
        if isinstance(missing_rate, Mapping)
        else dict.fromkeys(MODALITIES, missing_rate)
    )
    unknown = sorted(set(rates) - set(MODALITIES))
    if unknown:
        raise ValueError(f"missing_rate has unknown modalities {unknown}; use {MODALITIES}")
    for modality, rate in rates.items():
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0.0 <= rate < 1.0:
            raise ValueError(f"missing_rate[{modality!r}] must be in [0, 1); got {rate!r}")
    return {modality: float(rates.get(modality, 0.0)) for modality in MODALITIES}


def _signal_shares(num_labels: int) -> dict[str, np.ndarray]:
    """`{modality: [num_labels]}` shares of each label's signal, summing to `len(MODALITIES)` over
    the modalities (so the average signal per modality is unchanged)."""
    count = len(MODALITIES)
    secondary = (1.0 - SIGNAL_SPLIT_PRIMARY_SHARE) / (count - 1)
    primary = np.arange(num_labels) % count
    return {
        modality: np.where(
            primary == index, SIGNAL_SPLIT_PRIMARY_SHARE * count, secondary * count
        ).astype(np.float32)
        for index, modality in enumerate(MODALITIES)
    }


def _draw_missing(
    split_seed: np.random.SeedSequence,
    num_samples: int,
    rates: dict[str, float],
    kept: tuple[str, ...] = MODALITIES,
) -> dict[str, np.ndarray]:
    """`{modality: [N] bool}`, True = missing; only the `kept` modalities go missing, never all
    of them for one sample. Drawn from a child of the split's seed, so that the features drawn
    before do not change.

    The draws of the three-modality data come first, whatever `kept` is: one per (sample,
    modality), then which modality a sample that lost all three keeps; a second choice, among the
    kept ones, replaces a dropped modality there. A kept modality's pattern is therefore that of
    the three-modality data except for samples that have none of the kept modalities there."""
    rng = np.random.default_rng(split_seed.spawn(1)[0])
    missing = np.stack(
        [rng.random(num_samples) < rates[modality] for modality in MODALITIES], axis=1
    )  # [N, M]
    kept_columns = np.array([MODALITIES.index(modality) for modality in kept])
    missing[:, np.setdiff1d(np.arange(len(MODALITIES)), kept_columns)] = False
    keep = rng.integers(0, len(MODALITIES), num_samples)
    fallback = kept_columns[rng.integers(0, len(kept_columns), num_samples)]
    keep = np.where(np.isin(keep, kept_columns), keep, fallback)  # uniform among the kept
    emptied = missing[:, kept_columns].all(axis=1)
    missing[emptied, keep[emptied]] = False
    return {modality: missing[:, index] for index, modality in enumerate(MODALITIES)}


def _without_frames(
    samples: np.ndarray | list[np.ndarray], absent: np.ndarray
) -> np.ndarray | list[np.ndarray]:
    """The samples with zero frames where `absent` (a list of arrays if any is)."""
    if not absent.any():
        return samples
    return [
        sample[:0] if is_absent else sample
        for sample, is_absent in zip(samples, absent, strict=True)
    ]


def make_synthetic_dataset(
    num_train: int = 512,
    num_validation: int = 128,
    num_test: int = 128,
    seed: int = 0,
    label_names: Sequence[str] | None = None,
    modalities: Sequence[str] = MODALITIES,
    **generator_kwargs,
) -> datasets.DatasetDict:
    """A synthetic `DatasetDict` with the same columns and features as the real builders.

    Columns: `id`, `text`, `audio`, `visual` (`Array2D` float32; fixed length unless a `(min, max)`
    length is given), `labels` (multi-hot float32; one-hot with `single_label=True`, and the
    metadata's `problem_type` is then `single_label_classification`). Splits of size 0 are left out
    (datasets cannot reload an empty split). The label names (MOSEI's for 6 labels, M3ED's for 7,
    IEMOCAP-4's for 4 single-label classes, `label_<i>` otherwise) are in the metadata, as for the
    real datasets.

    Args:
        num_train, num_validation, num_test, seed: See `generate_synthetic_splits`.
        label_names: Names of the labels; their count sets `num_labels`.
        modalities: The modality columns kept (e.g. `("text", "audio")` for audio + text data).
            All three are generated either way, so a kept modality's values do not depend on
            this choice; with `missing_rate`, every sample keeps at least one of these.
        **generator_kwargs: Further arguments of `generate_synthetic_splits` (dims, lengths,
            `label_prevalence`, `signal_strength`, `non_finite_fraction`, ...).
    """
    if label_names is not None:
        generator_kwargs["num_labels"] = len(label_names)
    single_label = bool(generator_kwargs.get("single_label", False))
    num_labels = generator_kwargs.get("num_labels") or (4 if single_label else 6)
    kept = _checked_modalities(modalities)
    splits = generate_synthetic_splits(
        num_train, num_validation, num_test, seed, modalities=kept, **generator_kwargs
    )
    splits = {
        split: SplitArrays(
            ids=arrays.ids,
            features={m: arrays.features[m] for m in kept},
            labels=arrays.labels,
        )
        for split, arrays in splits.items()
        if len(arrays)
    }
    if not splits:
        raise ValueError("make_synthetic_dataset needs at least one sample")
    report = {
        "source": "synthetic",
        "seed": seed,
        "generator_kwargs": {key: repr(value) for key, value in generator_kwargs.items()},
        **({} if tuple(modalities) == MODALITIES else {"modalities": list(modalities)}),
        "non_finite": clean_splits(splits, "synthetic data"),
    }
    return build_dataset_dict(
        splits,
        label_names or _default_label_names(num_labels, single_label),
        "synthetic",
        "default",
        report=report,
        problem_type=SINGLE_LABEL if single_label else MULTI_LABEL,
    )


def _pad_to(samples: np.ndarray | list[np.ndarray], length: int) -> np.ndarray:
    """Zero-pads (or cuts, as CARAT does beyond 60 steps) every sample to `length` frames."""
    if isinstance(samples, np.ndarray) and samples.shape[1] == length:
        return samples
    padded = np.zeros((len(samples), length, samples[0].shape[1]), dtype=np.float32)
    for index, sample in enumerate(samples):
        kept = sample[:length]
        padded[index, : kept.shape[0]] = kept
    return padded


# Over 80 lines: about 30 are the docstring of the three formats; the body is one branch per format
# that mirrors the layout the docstring lists, so it stays in one place.
def write_source(
    path: str | Path,
    format: str = "mmsa_pkl",
    array_type: str = "numpy",
    swap_audio_visual: bool | None = None,
    padded_length: int | None = None,
    **generator_kwargs,
) -> Path:
    """Writes a synthetic raw source file in one of `SOURCE_FORMATS` (for tests and demos).

    * `"mmsa_pkl"` (MOSEI, pickle): `{'train'|'valid'|'test': {'id', 'raw_text', 'text', 'audio',
      'vision', 'regression_labels', 'tgt'}}`; variable-length audio/visual are zero-padded and
      their lengths written to `audio_lengths`/`vision_lengths`, as in MMSA's unaligned file.
    * `"tailor_pt"` (MOSEI, torch): `{'train'|'valid'|'test': {'src-text', 'src-audio',
      'src-visual', 'tgt'}}`; fixed lengths as one `[N, L, D]` array, variable lengths as a list of
      arrays.
    * `"carat_m3ed_pt"` (M3ED, torch): CARAT's layout: per split lists of `[padded_length, D]`
      arrays under `src-*`, `len_list`, `tgt`; plus `dict` (with the `tgt` vocabulary) and
      `settings` (an `argparse.Namespace`). As in CARAT's file, audio is stored under `src-visual`
      and visual under `src-audio` unless `swap_audio_visual=False`.

    Args:
        path: File to write.
        format: One of `SOURCE_FORMATS`.
        array_type: `"numpy"` or `"torch"` (torch formats only): type of the stored arrays.
        swap_audio_visual: Store audio under the visual key and vice versa (default: CARAT only).
        padded_length: CARAT format: length every sequence is zero-padded to (default: longest).
        **generator_kwargs: Arguments of `generate_synthetic_splits`. For the CARAT format the
            default dims are M3ED's (768/1024/342), lengths (4, 60) shared by all modalities, and
            7 labels.
    """
    if format not in SOURCE_FORMATS:
        raise ValueError(f"format must be one of {SOURCE_FORMATS}; got {format!r}")
    if array_type not in ("numpy", "torch"):
        raise ValueError(f"array_type must be 'numpy' or 'torch'; got {array_type!r}")
    label_spec: LabelSpec = M3ED_LABELS if format == "carat_m3ed_pt" else MOSEI_LABELS
    if format == "carat_m3ed_pt":
        defaults = {"text_dim": 768, "audio_dim": 1024, "visual_dim": 342, "shared_lengths": True}
        defaults.update({f"{m}_length": (4, 60) for m in MODALITIES})
        generator_kwargs = {**defaults, **generator_kwargs}
    generator_kwargs.setdefault("num_labels", label_spec.num_labels)
    if generator_kwargs["num_labels"] != label_spec.num_labels:
        raise ValueError(
            f"{format} files hold {label_spec.num_labels} labels; got "
            f"num_labels={generator_kwargs['num_labels']}"
        )
    if swap_audio_visual is None:
        swap_audio_visual = format == "carat_m3ed_pt"
    splits = generate_synthetic_splits(**generator_kwargs)

    def convert(array: np.ndarray) -> object:
        if array_type == "torch":
            import torch

            return torch.from_numpy(np.ascontiguousarray(array))
        return array

    # The MMSA keys (`text`, `audio`, `vision`) for the pickle, the `src-*` keys for torch files.
    source_keys = {
        modality: keys[1 if format == "mmsa_pkl" else 0]
        for modality, keys in MODALITY_SOURCE_KEYS.items()
    }
    if swap_audio_visual:
        source_keys = sources.swap_audio_visual(source_keys)

    content: dict[str, object] = {}
    for split, source_split in zip(SPLITS, ("train", "valid", "test"), strict=True):
        arrays = splits[split]
        targets = multi_hot_to_target_tokens(arrays.labels, label_spec)
        entry: dict[str, object] = {"tgt": targets}
        for modality in MODALITIES:
            samples = arrays.features[modality]
            lengths = [sample.shape[0] for sample in samples]
            if format == "mmsa_pkl":
                if not isinstance(samples, np.ndarray) and modality == "text":
                    raise ValueError(
                        "mmsa_pkl needs a fixed text_length (MMSA text is always 50 steps)"
                    )
                entry[source_keys[modality]] = _pad_to(samples, max(lengths, default=1))
                if not isinstance(samples, np.ndarray):
                    entry[MMSA_LENGTH_KEYS[modality]] = lengths
            elif format == "tailor_pt":
                entry[source_keys[modality]] = (
                    convert(samples)
                    if isinstance(samples, np.ndarray)
                    else [convert(s) for s in samples]
                )
            else:
                padded = _pad_to(samples, padded_length or max(lengths, default=1))
                entry[source_keys[modality]] = [convert(sample) for sample in padded]
                entry["len_list"] = lengths
        if format == "mmsa_pkl":
            entry["id"] = np.array(arrays.ids)
            entry["raw_text"] = np.array(
                [f"utterance {sample_id}" for sample_id in arrays.ids], dtype=object
            )
            entry["regression_labels"] = np.zeros(len(arrays), dtype=np.float32)
        content[source_split] = entry
    if format == "carat_m3ed_pt":
        emotions = {
            name.capitalize(): label_spec.class_to_token[index]
            for index, name in label_spec.id2label.items()
        }
        vocabulary = {"<blank>": 0, "<unk>": 1, "<s>": 2, "</s>": 3, **emotions}
        content["dict"] = {"tgt": vocabulary, "src": {}}
        content["settings"] = argparse.Namespace(max_len=padded_length, source="synthetic")

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if format == "mmsa_pkl":
        path.write_bytes(pickle.dumps(content, protocol=4))
    else:
        import torch

        torch.save(content, path)
    return path


def _length_argument(text: str) -> LengthSpec:
    low, _, high = text.partition("-")
    return int(low) if not high else (int(low), int(high))


def main(argv: Sequence[str] | None = None) -> int:
    parser = builder_parser(
        prog="python -m dataset_scripts.synthetic",
        description="Write the built-in synthetic dataset (MOSEI shapes and label statistics).",
        output_help="Folder for the saved dataset.",
        overwrite_help="Replace an existing --output.",
    )
    parser.add_argument("--num_train", type=int, default=2048)
    parser.add_argument("--num_validation", type=int, default=256)
    parser.add_argument("--num_test", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    for modality, dim in zip(MODALITIES, (768, 74, 35), strict=True):
        parser.add_argument(f"--{modality}_dim", type=int, default=dim)
        parser.add_argument(
            f"--{modality}_length", type=_length_argument, default=50, metavar="L or MIN-MAX"
        )
    parser.add_argument(
        "--num_labels", type=int, default=None, help="Default 6, or 4 with --single_label."
    )
    parser.add_argument(
        "--single_label",
        action="store_true",
        help="One emotion per sample, drawn from IEMOCAP-4-like class shares.",
    )
    parser.add_argument("--signal_strength", type=float, default=1.0)
    parser.add_argument(
        "--missing_rate",
        type=float,
        default=0.0,
        help="Probability that a (sample, modality) pair has zero frames (missing modalities).",
    )
    parser.add_argument(
        "--signal_split",
        action="store_true",
        help="Split each label's signal unevenly across the modalities.",
    )
    parser.add_argument(
        "--hub_layout", type=Path, default=None, help="Also write the Hub layout here."
    )
    parser.add_argument(
        "--source_format",
        choices=SOURCE_FORMATS,
        default=None,
        help="Instead of a dataset, write a raw source file of this format to --output.",
    )
    args = parse_builder_args(parser, argv)
    # Every other option is an argument of `generate_synthetic_splits`.
    not_generator = ("output", "overwrite", "log_level", "hub_layout", "source_format")
    generator_kwargs = {
        k: v for k, v in vars(args).items() if k not in not_generator and v is not None
    }
    # The missing-modality options only when set (the arguments are recorded in the metadata).
    for key in ("missing_rate", "signal_split"):
        if not generator_kwargs.get(key):
            generator_kwargs.pop(key, None)
    if args.source_format is not None:
        path = write_source(args.output, format=args.source_format, **generator_kwargs)
        print(f"wrote a synthetic {args.source_format} source file to {path}")
        return 0
    dataset_dict = make_synthetic_dataset(**generator_kwargs)
    save_prepared(dataset_dict, args.output, overwrite=args.overwrite)
    if args.hub_layout is not None:
        write_hub_layout(dataset_dict, args.hub_layout, "default", overwrite=args.overwrite)
    print(dataset_dict)
    print(f"saved to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
