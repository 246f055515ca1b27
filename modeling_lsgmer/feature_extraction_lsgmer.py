# Copied from modeling_lddu.feature_extraction_lddu with LDDU->Lsgmer, lddu->lsgmer
"""Feature extractor for Lsgmer: pre-extracted text/audio/visual feature sequences -> model inputs.

It pads every modality to a common length, fits sequences longer than the modality's maximum
length to it by the `truncation` policy (resampled along time by default; never silently: the
count is logged), builds the frame masks (1 = real frame), replaces non-finite values (MOSEI's
COVAREP audio holds -inf) by 0 and, optionally, standardises each feature dimension with
statistics fitted on the training split.

This file is shipped as remote code next to a checkpoint: it imports only numpy, torch,
transformers and its sibling configuration file.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from transformers.feature_extraction_utils import BatchFeature, FeatureExtractionMixin
from transformers.utils import logging

from .configuration_lsgmer import MODALITIES

logger = logging.get_logger(__name__)

__all__ = ["LsgmerFeatureExtractor"]

_DEFAULT_FEATURE_DIMS = {"text": 768, "audio": 74, "visual": 35}
_DEFAULT_MAX_LENGTHS = {"text": 50, "audio": 50, "visual": 50}
_MIN_STD = 1e-6
_FIT_CHUNK_SIZE = 1024
#: What `__call__` does with a sequence longer than its modality's `max_lengths` entry.
TRUNCATION_POLICIES = ("resample", "cut", "error")


class _RunningMoments:
    """Per-dimension mean and variance of rows added in chunks (Chan et al.'s update, float64)."""

    def __init__(self, dim: int) -> None:
        self.count = 0
        self.mean = np.zeros(dim, dtype=np.float64)
        self.sum_squared_deviations = np.zeros(dim, dtype=np.float64)

    def update(self, rows: np.ndarray) -> None:
        if rows.shape[0] == 0:
            return
        rows = rows.astype(np.float64)
        chunk_count = rows.shape[0]
        chunk_mean = rows.mean(axis=0)
        chunk_deviations = ((rows - chunk_mean) ** 2).sum(axis=0)
        total = self.count + chunk_count
        delta = chunk_mean - self.mean
        self.mean = self.mean + delta * (chunk_count / total)
        self.sum_squared_deviations += chunk_deviations + delta**2 * (
            self.count * chunk_count / total
        )
        self.count = total

    @property
    def std(self) -> np.ndarray:
        return np.sqrt(self.sum_squared_deviations / max(self.count, 1))


class LsgmerFeatureExtractor(FeatureExtractionMixin):
    r"""
    Prepares pre-extracted feature sequences for [`LsgmerForEmotionRecognition`].

    For each modality given to `__call__` it returns `{modality}_features` (float32 `[batch,
    length, dim]`) and `{modality}_mask` (int64 `[batch, length]`, 1 for real frames, 0 for
    padding). A modality that is not given is absent from the output; the model treats it as
    missing. A sample given zero frames of a modality (`[0, dim]`) gets an all-zero mask row: the
    modality is missing for that sample only.

    Args:
        feature_dims (`dict[str, int]`, *optional*):
            Feature dim per modality (keys among `"text"`, `"audio"`, `"visual"`); inputs of another
            dim are rejected. Defaults to `{"text": 768, "audio": 74, "visual": 35}` (CMU-MOSEI).
        max_lengths (`dict[str, int | None]`, *optional*, defaults to 50 for each modality):
            Length each modality is padded to with `padding="max_length"` and that no sequence
            exceeds with `truncation=True` (training sets it to the longest training sequence).
            `None` means no limit (pad to the longest sequence in the batch).
        truncation (`str`, *optional*, defaults to `"resample"`):
            What happens to a sequence longer than `max_lengths[modality]`: `"resample"` keeps the
            whole utterance by resampling it along time to `max_lengths[modality]` frames (linear
            interpolation between neighbouring frames, deterministic), `"cut"` keeps
            `max_lengths[modality]` frames on `truncation_side`, `"error"` refuses the input.
            Either way the number of changed sequences is logged as a warning.
        padding_side (`str`, *optional*, defaults to `"right"`):
            `"right"` or `"left"`: where padding frames go.
        truncation_side (`str`, *optional*, defaults to `"right"`):
            With `truncation="cut"`: `"right"` keeps the first frames, `"left"` the last ones.
        padding_value (`float`, *optional*, defaults to 0.0):
            Feature value of padding frames.
        do_normalize (`bool`, *optional*, defaults to `False`):
            Standardise each feature dimension with `normalization_stats` (real frames only).
        normalization_stats (`dict`, *optional*):
            `{modality: {"mean": [dim floats], "std": [dim floats]}}`, usually from
            `fit_normalization`.
    """

    model_input_names = [
        "text_features",
        "text_mask",
        "audio_features",
        "audio_mask",
        "visual_features",
        "visual_mask",
    ]

    def __init__(
        self,
        feature_dims: Mapping[str, int] | None = None,
        max_lengths: Mapping[str, int | None] | None = None,
        padding_side: str = "right",
        truncation_side: str = "right",
        truncation: str = "resample",
        padding_value: float = 0.0,
        do_normalize: bool = False,
        normalization_stats: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        feature_dims = dict(_DEFAULT_FEATURE_DIMS if feature_dims is None else feature_dims)
        if max_lengths is None:
            max_lengths = {
                modality: _DEFAULT_MAX_LENGTHS.get(modality) for modality in feature_dims
            }
        max_lengths = dict(max_lengths)
        for modality, dim in feature_dims.items():
            if modality not in MODALITIES:
                raise ValueError(
                    f"feature_dims has an unknown modality {modality!r}; expected one of "
                    f"{MODALITIES}"
                )
            if not isinstance(dim, int) or dim <= 0:
                raise ValueError(f"feature_dims[{modality!r}] must be a positive int; got {dim!r}")
        for modality, length in max_lengths.items():
            if modality not in feature_dims:
                raise ValueError(f"max_lengths has modality {modality!r}, which feature_dims lacks")
            if length is not None and (not isinstance(length, int) or length <= 0):
                raise ValueError(
                    f"max_lengths[{modality!r}] must be a positive int or None; got {length!r}"
                )
        for name, side in (("padding_side", padding_side), ("truncation_side", truncation_side)):
            if side not in ("left", "right"):
                raise ValueError(f"{name} must be 'left' or 'right'; got {side!r}")
        if truncation not in TRUNCATION_POLICIES:
            raise ValueError(f"truncation must be one of {TRUNCATION_POLICIES}; got {truncation!r}")

        self.feature_dims = feature_dims
        self.max_lengths = {modality: max_lengths.get(modality) for modality in feature_dims}
        self.padding_side = padding_side
        self.truncation_side = truncation_side
        self.truncation = truncation
        self.padding_value = float(padding_value)
        self.do_normalize = bool(do_normalize)
        self.normalization_stats = None
        if normalization_stats is not None:
            self.normalization_stats = {}
            for modality, stats in normalization_stats.items():
                self._set_stats(modality, stats["mean"], stats["std"])

    def _check_dim(self, modality: str, dim: int) -> None:
        expected = self.feature_dims[modality]
        if dim != expected:
            raise ValueError(
                f"{modality} features have dim {dim} but this feature extractor expects {expected} "
                f"(feature_dims[{modality!r}])"
            )

    @staticmethod
    def _as_array(value: Any) -> np.ndarray:
        if isinstance(value, torch.Tensor):
            return value.detach().to(device="cpu", dtype=torch.float32).numpy()
        return np.asarray(value, dtype=np.float32)

    def _to_samples(self, value: Any, modality: str) -> np.ndarray | list[np.ndarray]:
        """A float32 `[batch, length, dim]` array, or a list of float32 `[length_i, dim]` arrays."""
        if modality not in self.feature_dims:
            raise ValueError(
                f"This feature extractor has no feature dim for {modality!r} (feature_dims: "
                f"{self.feature_dims})"
            )
        is_sequence = isinstance(value, (list, tuple)) or (
            isinstance(value, np.ndarray) and value.dtype == object
        )
        if not is_sequence:
            array = self._as_array(value)
            if array.ndim == 2:
                array = array[None]
            if array.ndim != 3:
                raise ValueError(
                    f"{modality} features must have rank 2 ([length, dim]) for one sample or rank "
                    f"3 ([batch, length, dim]) for a batch; got rank {array.ndim} (shape "
                    f"{array.shape})"
                )
            self._check_dim(modality, array.shape[2])
            return array
        if len(value) == 0:
            raise ValueError(f"{modality} features are an empty list")
        elements = [self._as_array(element) for element in value]
        ranks = {element.ndim for element in elements}
        if ranks == {1}:  # one sample given as a list of frames
            elements = [np.stack(elements)]
        elif ranks != {2}:
            raise ValueError(
                f"{modality} features given as a list must hold [length, dim] samples (rank 2), or "
                f"the frames of one sample (rank 1); got elements of rank {sorted(ranks)}"
            )
        for element in elements:
            self._check_dim(modality, element.shape[1])
        return elements

    def _clean(self, values: np.ndarray, modality: str) -> np.ndarray:
        # The float64 sum of float32 values is finite exactly when every value is (it cannot
        # overflow), and it needs no [B, L, D] boolean temporary.
        if np.isfinite(values.sum(dtype=np.float64)):
            return values
        finite = np.isfinite(values)
        logger.warning_once(
            f"Replacing non-finite values (NaN, +inf, -inf) in the {modality} features by 0."
        )
        return np.where(finite, values, np.float32(0.0))

    def _normalize(self, values: np.ndarray, modality: str) -> np.ndarray:
        if not self.do_normalize:
            return values
        if not self.normalization_stats or modality not in self.normalization_stats:
            raise ValueError(
                f"do_normalize is set but there are no normalization_stats for {modality}; call "
                "fit_normalization on the training split first"
            )
        stats = self.normalization_stats[modality]
        mean = np.asarray(stats["mean"], dtype=np.float32)
        std = np.asarray(stats["std"], dtype=np.float32)
        return (values - mean) / std

    def _shorten(
        self, values: np.ndarray, length: int, axis: int, modality: str, policy: str | None
    ) -> np.ndarray:
        """`values` with at most `length` frames along `axis`: resampled or cut by `policy`."""
        frames = values.shape[axis]
        if frames <= length:
            return values
        if policy == "resample":
            # Linear interpolation at `length` evenly spaced positions from the first frame to the
            # last; cleaned first, so that a non-finite frame does not spread to its neighbours.
            values = self._clean(values, modality)
            positions = np.linspace(0.0, frames - 1, length)
            lower = np.floor(positions).astype(np.int64)
            upper = np.minimum(lower + 1, frames - 1)
            shape = [1] * values.ndim
            shape[axis] = length
            weight = (positions - lower).astype(np.float32).reshape(shape)
            return (
                np.take(values, lower, axis=axis) * (np.float32(1.0) - weight)
                + np.take(values, upper, axis=axis) * weight
            )
        keep = slice(0, length) if self.truncation_side == "right" else slice(frames - length, None)
        return values[(slice(None),) * axis + (keep,)]

    def _truncation_policy(self, truncation: bool | str) -> str | None:
        """The policy for one call: `self.truncation` for True, None (no limit) for False."""
        if truncation is True:
            return self.truncation
        if truncation is False or truncation is None:
            return None
        if truncation not in TRUNCATION_POLICIES:
            raise ValueError(
                f"truncation must be True, False or one of {TRUNCATION_POLICIES}; got {truncation!r}"
            )
        return truncation

    def _check_lengths(
        self, lengths: np.ndarray, modality: str, max_length: int | None, policy: str | None
    ) -> np.ndarray:
        """`lengths` capped at `max_length` by `policy`; logs (or, for "error", refuses) it."""
        if policy is None or max_length is None:
            return lengths
        too_long = np.flatnonzero(lengths > max_length)
        if too_long.size == 0:
            return lengths
        first = int(too_long[0])
        if policy == "error":
            raise ValueError(
                f"{too_long.size} {modality} sequence(s) exceed max_lengths[{modality!r}] = "
                f"{max_length} frames (sample {first} has {int(lengths[first])}). Shorten them, "
                "or call with truncation='resample' (keeps the whole sequence, resampled in time) "
                "or truncation='cut' (keeps the first frames), or set the feature extractor's "
                "`truncation` attribute."
            )
        action = "resampled in time" if policy == "resample" else f"cut ({self.truncation_side})"
        logger.warning(
            f"{too_long.size} {modality} sequence(s) longer than max_lengths[{modality!r}] = "
            f"{max_length} frames (the longest has {int(lengths.max())}) were {action} to "
            f"{max_length} frames (truncation={policy!r})."
        )
        return np.minimum(lengths, max_length)

    def _pad(
        self,
        samples: np.ndarray | list[np.ndarray],
        modality: str,
        padding: str,
        policy: str | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        max_length = self.max_lengths.get(modality)
        if isinstance(samples, np.ndarray):
            lengths = np.full(samples.shape[0], samples.shape[1], dtype=np.int64)
        else:
            lengths = np.array([sample.shape[0] for sample in samples], dtype=np.int64)
        # A sample with zero frames (the modality is missing for it) gets an all-zero mask row.
        lengths = self._check_lengths(lengths, modality, max_length, policy)
        longest = int(lengths.max())
        target = longest if padding == "longest" or max_length is None else max(max_length, longest)
        target = max(target, 1)  # at least one (padding) frame, also when every sample has none
        batch_size, dim = len(lengths), self.feature_dims[modality]

        if isinstance(samples, np.ndarray):
            values = self._normalize(
                self._clean(self._shorten(samples, longest, 1, modality, policy), modality),
                modality,
            )
            if longest == target:
                # Every frame is real: no copy unless cleaning or normalising made one.
                mask = np.ones((batch_size, target), dtype=np.int64)
                return np.require(values, dtype=np.float32, requirements=["C", "W"]), mask
            samples = list(values)
        else:
            samples = [
                self._normalize(
                    self._clean(self._shorten(sample, length, 0, modality, policy), modality),
                    modality,
                )
                for sample, length in zip(samples, lengths, strict=True)
            ]

        features = np.full((batch_size, target, dim), self.padding_value, dtype=np.float32)
        mask = np.zeros((batch_size, target), dtype=np.int64)
        for index, (sample, length) in enumerate(zip(samples, lengths, strict=True)):
            frames = (
                slice(0, length) if self.padding_side == "right" else slice(target - length, target)
            )
            features[index, frames] = sample
            mask[index, frames] = 1
        return features, mask

    def __call__(
        self,
        text: Any = None,
        audio: Any = None,
        visual: Any = None,
        padding: str | bool = "max_length",
        truncation: bool | str = True,
        return_tensors: str | None = "pt",
    ) -> BatchFeature:
        """Pads, truncates, masks, cleans and (optionally) normalises the given modalities.

        Args:
            text, audio, visual: One sample (`[length, dim]`) or a batch (`[batch, length, dim]`,
                or a list of `[length_i, dim]`), as numpy arrays, torch tensors or nested lists. At
                least one modality must be given; all given modalities must have the same batch
                size.
            padding: `"max_length"` pads to `max_lengths[modality]` (or to the longest sequence
                when that is None or when `truncation=False` leaves longer sequences); `"longest"`
                (or `True`) pads to the longest sequence in the batch.
            truncation: True fits sequences longer than `max_lengths[modality]` to it by the
                `truncation` attribute's policy (`"resample"`, `"cut"` or `"error"`, see the class
                docstring), a policy name uses that policy for this call, False leaves every
                sequence whole (a batch is then padded to its longest sequence).
            return_tensors: `"pt"` for torch tensors, `"np"` or `None` for numpy arrays.

        Returns:
            `BatchFeature` as described in the class docstring. A float32 numpy batch that needs no
            padding, truncation, cleaning or normalisation is returned without a copy (the output
            shares its memory).
        """
        if padding is True:
            padding = "longest"
        if padding not in ("max_length", "longest"):
            raise ValueError(f"padding must be 'max_length', 'longest' or True; got {padding!r}")
        policy = self._truncation_policy(truncation)
        if return_tensors not in ("pt", "np", None):
            raise ValueError(f"return_tensors must be 'pt', 'np' or None; got {return_tensors!r}")
        given = {
            modality: value
            for modality, value in zip(MODALITIES, (text, audio, visual), strict=True)
            if value is not None
        }
        if not given:
            raise ValueError(
                "Pass the features of at least one modality (text=, audio= or visual=)"
            )

        data: dict[str, np.ndarray] = {}
        batch_sizes: dict[str, int] = {}
        for modality, value in given.items():
            samples = self._to_samples(value, modality)
            batch_sizes[modality] = len(samples)
            data[f"{modality}_features"], data[f"{modality}_mask"] = self._pad(
                samples, modality, padding, policy
            )
        if len(set(batch_sizes.values())) > 1:
            raise ValueError(f"All modalities must have the same batch size; got {batch_sizes}")
        return BatchFeature(data, tensor_type="pt" if return_tensors == "pt" else None)

    def _set_stats(self, modality: str, mean: Sequence[float], std: Sequence[float]) -> None:
        if modality not in self.feature_dims:
            raise ValueError(
                f"normalization_stats has modality {modality!r}, which feature_dims lacks"
            )
        mean = [float(value) for value in mean]
        std = [float(value) for value in std]
        dim = self.feature_dims[modality]
        if len(mean) != dim or len(std) != dim:
            raise ValueError(
                f"normalization_stats[{modality!r}] must hold {dim} means and stds; got "
                f"{len(mean)} and {len(std)}"
            )
        # Checked as float32, the precision they are applied in: a finite float64 that overflows
        # or underflows to 0 there would still turn every frame into NaN or inf.
        with np.errstate(over="ignore"):  # an overflow is what the check below reports
            mean32 = np.asarray(mean, dtype=np.float64).astype(np.float32)
            std32 = np.asarray(std, dtype=np.float64).astype(np.float32)
        for name, values in (("mean", mean32), ("std", std32)):
            if not np.isfinite(values).all():
                index = int(np.flatnonzero(~np.isfinite(values))[0])
                raise ValueError(
                    f"normalization_stats[{modality!r}][{name!r}] must be finite within float32; "
                    f"value {index} is {[mean, std][name == 'std'][index]!r}"
                )
        if not (std32 > 0).all():
            raise ValueError(f"normalization_stats[{modality!r}]['std'] must be positive")
        self.normalization_stats[modality] = {"mean": mean, "std": std}

    @staticmethod
    def _real_frames(
        samples: np.ndarray | list[np.ndarray], masks: np.ndarray | None
    ) -> np.ndarray:
        """All frames of `samples` as one `[frames, dim]` array, only those masked 1 if given."""
        if masks is None:
            return np.concatenate([sample.reshape(-1, sample.shape[-1]) for sample in samples])
        return np.concatenate(
            [sample[mask[: len(sample)]] for sample, mask in zip(samples, masks, strict=True)]
        )

    def _iterate_real_frames(
        self, features: Any, masks: Mapping[str, Any] | None
    ) -> Iterator[tuple[str, np.ndarray]]:
        """Yields `(modality, [frames, dim] array of real frames)`, a chunk of samples at a time."""
        # The output of this feature extractor: features and masks side by side.
        if isinstance(features, Mapping) and any(f"{m}_features" in features for m in MODALITIES):
            masks = {m: features[f"{m}_mask"] for m in MODALITIES if f"{m}_mask" in features}
            features = {
                m: features[f"{m}_features"] for m in MODALITIES if f"{m}_features" in features
            }
        # A DatasetDict (or any mapping of splits): the training split.
        if isinstance(features, Mapping) and "train" in features:
            features = features["train"]
        # A datasets.Dataset (duck-typed, so that this file does not import datasets).
        if hasattr(features, "with_format") and hasattr(features, "column_names"):
            columns = [
                m for m in MODALITIES if m in features.column_names and m in self.feature_dims
            ]
            batches = features.with_format("numpy", columns=columns).iter(_FIT_CHUNK_SIZE)
            for batch in batches:
                for modality in columns:
                    yield (
                        modality,
                        self._real_frames(self._to_samples(batch[modality], modality), None),
                    )
            return
        if not isinstance(features, Mapping):
            raise ValueError(
                "fit_normalization takes a dict {modality: features}, the output of this feature "
                f"extractor, a datasets.Dataset or a DatasetDict; got {type(features).__name__}"
            )
        for modality in MODALITIES:
            if features.get(modality) is None:
                continue
            samples = self._to_samples(features[modality], modality)
            mask = None
            if masks is not None and masks.get(modality) is not None:
                mask = self._as_array(masks[modality]) > 0
            for start in range(0, len(samples), _FIT_CHUNK_SIZE):
                chunk = slice(start, start + _FIT_CHUNK_SIZE)
                yield (
                    modality,
                    self._real_frames(samples[chunk], None if mask is None else mask[chunk]),
                )

    def fit_normalization(
        self, features: Any, masks: Mapping[str, Any] | None = None
    ) -> LsgmerFeatureExtractor:
        """Computes per-dimension mean and std over the real frames of the training data.

        The statistics are stored in `normalization_stats` as plain lists (so they are saved in
        `preprocessor_config.json`) and used by `__call__` when `do_normalize` is True; this
        method does not change `do_normalize`. Non-finite values count as 0, as in `__call__`. A
        dimension with a standard deviation below 1e-6 gets std 1 (it is only centred).

        Args:
            features: Training features: a dict `{modality: [N, L, D] array or list of [L_i, D]
                arrays}`, the output of this feature extractor (its masks are used), a
                `datasets.Dataset` with `text`/`audio`/`visual` columns, or a `DatasetDict` (its
                `train` split is used).
            masks: Optional `{modality: [N, L]}` masks (1 = real frame) for a dict of padded arrays.

        Returns:
            `self`, for chaining.
        """
        moments: dict[str, _RunningMoments] = {}
        for modality, frames in self._iterate_real_frames(features, masks):
            frames = self._clean(frames, modality)
            if modality not in moments:
                moments[modality] = _RunningMoments(self.feature_dims[modality])
            moments[modality].update(frames)
        if not moments:
            raise ValueError("fit_normalization found no features of a known modality")
        if self.normalization_stats is None:
            self.normalization_stats = {}
        for modality, modality_moments in moments.items():
            if modality_moments.count == 0:
                raise ValueError(f"fit_normalization found no real {modality} frames")
            std = modality_moments.std
            std[std < _MIN_STD] = 1.0
            self._set_stats(modality, modality_moments.mean.tolist(), std.tolist())
        logger.info(f"Fitted normalisation statistics for {sorted(moments)}")
        return self


LsgmerFeatureExtractor.register_for_auto_class("AutoFeatureExtractor")
