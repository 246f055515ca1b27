"""Metrics for multimodal emotion recognition, multi-label and single-label (numpy + scikit-learn
only). The single-label metrics are in their own section at the end of this module.

All functions take numpy arrays, torch tensors (any device, any float dtype) or nested lists, with
samples on the first axis and labels on the second: `y_true` / predictions `[n_samples, n_labels]` with
values in {0, 1}, `scores` `[n_samples, n_labels]` with one probability per (sample, label).

The conventions (precision and recall the standard way round, the two Jaccard accuracies,
zero_division = 0, strict decisions `score > threshold` in float64) and how they relate to the
authors' code are listed in docs/training.md, "Metrics".
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import hamming_loss as sklearn_hamming_loss
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_THRESHOLD_GRID",
    "REFERENCE_THRESHOLD_GRID",
    "TUNABLE_METRICS",
    "ReliabilityCurve",
    "ThresholdSearchResult",
    "chance_level_metrics",
    "confusion_matrix_counts",
    "error_detection_auroc",
    "expected_calibration_error",
    "global_average_precision",
    "multilabel_metrics",
    "multilabel_metrics_from_scores",
    "multilabel_sample_errors",
    "reliability_curve",
    "scores_to_predictions",
    "single_label_chance_metrics",
    "single_label_errors",
    "single_label_metrics",
    "single_label_metrics_from_confusion",
    "single_label_predictions",
    "top_label_calibration_error",
    "top_label_reliability_curve",
    "tune_threshold",
    "uncertainty_error_auroc",
]


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


#: Default grid for threshold tuning: 0.050, 0.055, ..., 0.950 (181 values, rounded to 3 decimals so
#: that the values print cleanly and compare exactly).
DEFAULT_THRESHOLD_GRID: np.ndarray = _read_only(np.round(np.arange(0.05, 0.951, 0.005), 3))

#: The grid of the authors' `search_binary`: 0.150, 0.155, ..., 0.295 (30 values). Its upper end is
#: often the arg-max in their log, i.e. the grid is truncated; use it only to reproduce their protocol.
REFERENCE_THRESHOLD_GRID: np.ndarray = _read_only(np.round(np.arange(0.150, 0.2951, 0.005), 3))

# Label names that would make a per-label key collide with an aggregate key (`f1_micro`, ...).
_RESERVED_LABEL_NAMES = frozenset({"micro", "macro", "samples", "weighted"})


# ----------------------------------------------------------------------------------------------------
# Input handling
# ----------------------------------------------------------------------------------------------------


def _to_numpy(values: Any, name: str) -> np.ndarray:
    """Return `values` as a numpy array; torch tensors are detached and moved to CPU (no torch import)."""
    if hasattr(values, "detach") and hasattr(values, "cpu"):
        tensor = values.detach().cpu()
        if str(tensor.dtype) in ("torch.bfloat16", "torch.float16"):
            tensor = tensor.float()
        return tensor.numpy()
    try:
        return np.asarray(values)
    except (TypeError, ValueError) as error:
        raise ValueError(f"`{name}` could not be converted to an array: {error}") from error


def _as_matrix(values: Any, name: str, *, binary: bool = False, probabilities: bool = False):
    """A 2-D array: booleans for `binary` (checked to hold only 0 and 1), float64 otherwise (checked
    finite, and in [0, 1] for `probabilities`)."""
    array = _to_numpy(values, name)
    if array.ndim != 2:
        raise ValueError(
            f"`{name}` must have shape (n_samples, n_labels), got an array of shape {array.shape}."
        )
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(
            f"`{name}` must have at least one sample and one label, got {array.shape}."
        )
    numeric = np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    if binary:
        if array.dtype == np.bool_:
            return array
        if not numeric:
            raise ValueError(f"`{name}` must be numeric or boolean, got dtype {array.dtype}.")
        is_binary = np.isin(array, (0, 1))
        if not is_binary.all():
            bad = np.unique(array[~is_binary])[:5]
            raise ValueError(f"`{name}` must contain only 0 and 1, found e.g. {bad.tolist()}.")
        return array.astype(bool)
    if not numeric:
        raise ValueError(f"`{name}` must be numeric, got dtype {array.dtype}.")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"`{name}` contains NaN or infinite values.")
    if probabilities and (array.min() < 0.0 or array.max() > 1.0):
        raise ValueError(
            f"`{name}` must hold probabilities in [0, 1], got values in "
            f"[{array.min():.6g}, {array.max():.6g}]."
        )
    return array


def _check_same_shape(first: np.ndarray, first_name: str, second: np.ndarray, second_name: str):
    if first.shape != second.shape:
        raise ValueError(
            f"`{first_name}` and `{second_name}` must have the same shape, got {first.shape} and "
            f"{second.shape}."
        )


def _scores_and_labels(scores: Any, y_true: Any, *, probabilities: bool = False):
    """`scores` as float64 and `y_true` as booleans, validated and of the same shape."""
    score_matrix = _as_matrix(scores, "scores", probabilities=probabilities)
    true = _as_matrix(y_true, "y_true", binary=True)
    _check_same_shape(score_matrix, "scores", true, "y_true")
    return score_matrix, true


def _resolve_label_names(label_names: Sequence[str] | None, num_labels: int) -> list[str]:
    if label_names is None:
        return [f"label_{index}" for index in range(num_labels)]
    if isinstance(label_names, str):
        raise TypeError("`label_names` must be a sequence of strings, got a single string.")
    names = list(label_names)
    if len(names) != num_labels:
        raise ValueError(
            f"`label_names` has {len(names)} names but the arrays have {num_labels} labels."
        )
    for name in names:
        if not isinstance(name, str) or not name:
            raise ValueError(f"Every label name must be a non-empty string, got {name!r}.")
        if name in _RESERVED_LABEL_NAMES:
            raise ValueError(
                f"Label name {name!r} is reserved (it would collide with aggregate keys such as "
                f"'f1_{name}'); rename the label."
            )
    if len(set(names)) != len(names):
        raise ValueError(f"`label_names` must be unique, got {names}.")
    return names


def _resolve_threshold(threshold: Any, num_labels: int) -> float | np.ndarray:
    """Return a float, or a float64 array of shape [num_labels]."""
    array = _to_numpy(threshold, "threshold").astype(np.float64)
    if array.ndim == 0:
        if not np.isfinite(array):
            raise ValueError(f"`threshold` must be finite, got {float(array)}.")
        return float(array)
    if array.shape != (num_labels,):
        raise ValueError(
            f"`threshold` must be a number or an array of shape ({num_labels},) (one per label), "
            f"got shape {array.shape}."
        )
    if not np.isfinite(array).all():
        raise ValueError("`threshold` contains NaN or infinite values.")
    return array


# ----------------------------------------------------------------------------------------------------
# Decision and threshold metrics
# ----------------------------------------------------------------------------------------------------


def scores_to_predictions(scores: Any, threshold: Any) -> np.ndarray:
    """Binarise scores: 1 where `score > threshold` (strictly), else 0.

    Args:
        scores: `[n_samples, n_labels]` scores (probabilities, or logits with a logit threshold).
        threshold: One number for all labels, or one per label (`[n_labels]`).

    Returns:
        `np.ndarray` of dtype int64 and shape `[n_samples, n_labels]`.
    """
    score_matrix = _as_matrix(scores, "scores")
    resolved = _resolve_threshold(threshold, score_matrix.shape[1])
    return (score_matrix > resolved).astype(np.int64)


def _safe_ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """``numerator / denominator`` in float64, 0 where the denominator is 0 (zero_division = 0)."""
    return np.divide(
        numerator,
        denominator,
        out=np.zeros(np.shape(numerator), dtype=np.float64),
        where=denominator > 0,
    )


def _jaccard_per_sample(true: np.ndarray, pred: np.ndarray, empty_score: float) -> np.ndarray:
    intersection = np.logical_and(true, pred).sum(axis=1)
    union = np.logical_or(true, pred).sum(axis=1)
    return np.where(union == 0, empty_score, intersection / np.maximum(union, 1))


def multilabel_metrics(
    y_true: Any, y_pred_binary: Any, label_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Compute the multi-label classification metrics used for MMER.

    Args:
        y_true: Gold labels, `[n_samples, n_labels]`, values in {0, 1}.
        y_pred_binary: Predicted labels, same shape, values in {0, 1}.
        label_names: One name per label for the per-label keys; defaults to `label_0`, `label_1`, ...
            Names must be unique and must not be `micro`, `macro`, `samples` or `weighted`.

    Returns:
        A dict of Python floats with the keys `accuracy_jaccard`, `accuracy_jaccard_reference`,
        `hamming_loss`, `precision_micro`, `recall_micro`, `f1_micro`, `precision_macro`,
        `recall_macro`, `f1_macro`, then `f1_<label>`, `precision_<label>`, `recall_<label>` for every
        label. See docs/training.md, "Metrics", for the conventions (empty sets, zero division,
        the authors' precision/recall swap).
    """
    true = _as_matrix(y_true, "y_true", binary=True)
    pred = _as_matrix(y_pred_binary, "y_pred_binary", binary=True)
    _check_same_shape(true, "y_true", pred, "y_pred_binary")
    names = _resolve_label_names(label_names, true.shape[1])

    true_int = true.astype(np.int64)
    pred_int = pred.astype(np.int64)
    results: dict[str, float] = {
        "accuracy_jaccard": float(_jaccard_per_sample(true, pred, empty_score=1.0).mean()),
        "accuracy_jaccard_reference": float(
            _jaccard_per_sample(true, pred, empty_score=0.0).mean()
        ),
        "hamming_loss": float(sklearn_hamming_loss(true_int, pred_int)),
    }
    for average in ("micro", "macro"):
        precision, recall, f1, _ = precision_recall_fscore_support(
            true_int, pred_int, average=average, zero_division=0
        )
        results[f"precision_{average}"] = float(precision)
        results[f"recall_{average}"] = float(recall)
        results[f"f1_{average}"] = float(f1)
    precision, recall, f1, _ = precision_recall_fscore_support(
        true_int, pred_int, average=None, labels=list(range(true.shape[1])), zero_division=0
    )
    for prefix, values in (("f1", f1), ("precision", precision), ("recall", recall)):
        results.update({f"{prefix}_{name}": float(value) for name, value in zip(names, values)})
    return results


def global_average_precision(scores: Any, y_true: Any) -> float:
    """Global average precision (GAP, YouTube-8M style) over all (sample, label) pairs.

    All `n_samples * n_labels` scores are pooled and ranked by score, highest first, and
    `GAP = sum over ranks i holding a positive of (positives within the top i / i)`, divided by the
    total number of gold positives. Returns 0.0 when there is no gold positive.

    This equals the authors' `calculate_gap(scores, gold, top_k=n_labels)` except for the order of tied
    scores: they shuffle the pooled list with `random.seed(0)` (resetting Python's global RNG) before a
    stable sort; here the sort is stable on the unshuffled row-major order (sample by sample, labels in
    order), so nothing global is touched and the result is deterministic. The two differ only when
    tied scores have different gold values.
    """
    score_matrix, true = _scores_and_labels(scores, y_true)

    flat_scores = score_matrix.ravel()
    flat_true = true.ravel()
    number_of_positives = int(flat_true.sum())
    if number_of_positives == 0:
        return 0.0
    order = np.argsort(-flat_scores, kind="stable")
    ranked_hits = flat_true[order]
    precision_at_rank = np.cumsum(ranked_hits) / np.arange(1, ranked_hits.size + 1)
    return float(precision_at_rank[ranked_hits].sum() / number_of_positives)


def multilabel_metrics_from_scores(
    scores: Any,
    y_true: Any,
    threshold: Any,
    label_names: Sequence[str] | None = None,
    *,
    n_bins: int = 15,
) -> dict[str, float]:
    """`multilabel_metrics` at `threshold`, plus the threshold-free `global_average_precision` and
    `expected_calibration_error` (with `n_bins` bins; only when the scores lie in [0, 1])."""
    score_matrix, true = _scores_and_labels(scores, y_true)
    results = multilabel_metrics(true, scores_to_predictions(score_matrix, threshold), label_names)
    results["global_average_precision"] = global_average_precision(score_matrix, true)
    if score_matrix.min() >= 0.0 and score_matrix.max() <= 1.0:
        results["expected_calibration_error"] = expected_calibration_error(
            score_matrix, true, n_bins=n_bins
        )
    return results


# ----------------------------------------------------------------------------------------------------
# Threshold tuning
# ----------------------------------------------------------------------------------------------------


def _per_label_f1(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    true_positive = np.logical_and(true, pred).sum(axis=0)
    return _safe_ratio(
        2.0 * true_positive, 2 * true_positive + np.logical_xor(true, pred).sum(axis=0)
    )


def _count_statistics(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The tunable metrics from confusion counts (vectorised; equal to `multilabel_metrics`)."""
    true_positive = int(np.logical_and(true, pred).sum())
    errors = int(np.logical_xor(true, pred).sum())  # false positives + false negatives
    micro_denominator = 2 * true_positive + errors
    return {
        "f1_micro": 2.0 * true_positive / micro_denominator if micro_denominator else 0.0,
        "f1_macro": float(_per_label_f1(true, pred).mean()),
        "accuracy_jaccard": float(_jaccard_per_sample(true, pred, 1.0).mean()),
        "accuracy_jaccard_reference": float(_jaccard_per_sample(true, pred, 0.0).mean()),
        "hamming_loss": errors / true.size,
    }


#: Metrics `tune_threshold` can optimise, with `True` where larger is better.
TUNABLE_METRICS: Mapping[str, bool] = {
    "f1_micro": True,
    "f1_macro": True,
    "accuracy_jaccard": True,
    "accuracy_jaccard_reference": True,
    "hamming_loss": False,
}


@dataclass(frozen=True)
class ThresholdSearchResult:
    """Outcome of `tune_threshold`."""

    threshold: float | np.ndarray  # a float (global search) or float64 `[n_labels]` (per label)
    metric_name: str  # reported in `metric_value` (and optimised by a global search)
    metric_value: float  # `metric_name` on the tuning data at `threshold`
    grid: np.ndarray  # the candidate thresholds, in the order searched
    # Global search: `metric_name` at each grid value, `[len(grid)]`. Per-label search: each label's
    # F1 at each grid value, `[len(grid), n_labels]`.
    curve: np.ndarray


def _validate_grid(grid: Any) -> np.ndarray:
    if grid is None:
        return DEFAULT_THRESHOLD_GRID.copy()
    values = _to_numpy(grid, "grid").astype(np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"`grid` must be a non-empty 1-D sequence, got shape {values.shape}.")
    if not np.isfinite(values).all():
        raise ValueError("`grid` contains NaN or infinite values.")
    return values


def tune_threshold(
    scores: Any,
    y_true: Any,
    grid: Any = None,
    per_label: bool = False,
    metric: str = "f1_micro",
) -> ThresholdSearchResult:
    """Search the decision threshold on a grid (use VALIDATION data, never the test split).

    Global search (`per_label=False`): the single threshold that optimises `metric`
    (maximised, or minimised for `hamming_loss`). Per-label search (`per_label=True`): each label gets
    the threshold that maximises *that label's* F1; `metric` is then only what is reported in
    `metric_value`. A label without any gold positive in `y_true` has F1 = 0 at every threshold, so it
    gets the globally best threshold instead (with a warning).

    Ties are broken by grid order: the first grid value reaching the best value wins, i.e. the lowest
    threshold for an ascending grid. This is also the authors' rule ("first strict maximum" while
    scanning `REFERENCE_THRESHOLD_GRID` upwards).

    Args:
        scores: `[n_samples, n_labels]` scores.
        y_true: `[n_samples, n_labels]` gold labels in {0, 1}.
        grid: Candidate thresholds (1-D); defaults to `DEFAULT_THRESHOLD_GRID` (0.05 to 0.95, step
            0.005). Pass `REFERENCE_THRESHOLD_GRID` to reproduce the authors' search.
        per_label: Search one threshold per label.
        metric: One of `TUNABLE_METRICS`.

    Returns:
        A `ThresholdSearchResult`.
    """
    if metric not in TUNABLE_METRICS:
        raise ValueError(f"`metric` must be one of {sorted(TUNABLE_METRICS)}, got {metric!r}.")
    score_matrix, true = _scores_and_labels(scores, y_true)
    candidates = _validate_grid(grid)

    global_curve = np.array(
        [_count_statistics(true, score_matrix > value)[metric] for value in candidates]
    )
    # np.argmax / np.argmin return the FIRST best index: ties go to the earliest grid value.
    global_best = int((np.argmax if TUNABLE_METRICS[metric] else np.argmin)(global_curve))
    if not per_label:
        return ThresholdSearchResult(
            threshold=float(candidates[global_best]),
            metric_name=metric,
            metric_value=float(global_curve[global_best]),
            grid=candidates,
            curve=global_curve,
        )

    label_curves = np.stack([_per_label_f1(true, score_matrix > value) for value in candidates])
    thresholds = candidates[np.argmax(label_curves, axis=0)]
    labels_without_positives = np.flatnonzero(true.sum(axis=0) == 0)
    if labels_without_positives.size:
        warnings.warn(
            f"Labels {labels_without_positives.tolist()} have no positive example in `y_true`; "
            f"they get the global best threshold {candidates[global_best]:g} instead of a per-label "
            "one.",
            RuntimeWarning,
            stacklevel=2,
        )
        thresholds[labels_without_positives] = candidates[global_best]
    achieved = _count_statistics(true, score_matrix > thresholds)[metric]
    return ThresholdSearchResult(
        threshold=thresholds,
        metric_name=metric,
        metric_value=float(achieved),
        grid=candidates,
        curve=label_curves,
    )


# ----------------------------------------------------------------------------------------------------
# Uncertainty quality and calibration
# ----------------------------------------------------------------------------------------------------


def uncertainty_error_auroc(uncertainty: Any, scores: Any, y_true: Any, threshold: Any) -> float:
    """How well an uncertainty score flags wrong decisions (AUROC, higher is better).

    For every (sample, label) pair the decision `score > threshold` is either right or wrong; this is
    `sklearn.metrics.roc_auc_score(is_wrong, uncertainty)` over all pairs. 0.5 means the uncertainty is
    unrelated to errors, 1.0 that every wrong decision is more uncertain than every right one.

    Args:
        uncertainty: `[n_samples, n_labels]`, larger = less certain.
        scores: `[n_samples, n_labels]` scores the decisions are made from.
        y_true: `[n_samples, n_labels]` gold labels in {0, 1}.
        threshold: A number or one per label.

    Returns:
        The AUROC as a float, or `nan` (with a `RuntimeWarning`) when all decisions are right or all
        are wrong, because the AUROC is then undefined.
    """
    uncertainty_matrix = _as_matrix(uncertainty, "uncertainty")
    score_matrix, true = _scores_and_labels(scores, y_true)
    _check_same_shape(uncertainty_matrix, "uncertainty", score_matrix, "scores")
    is_wrong = (scores_to_predictions(score_matrix, threshold).astype(bool) != true).ravel()
    return _auroc_of_errors(uncertainty_matrix.ravel(), is_wrong, "uncertainty_error_auroc")


def _auroc_of_errors(uncertainty: np.ndarray, is_wrong: np.ndarray, what: str) -> float:
    """`roc_auc_score(is_wrong, uncertainty)`; `nan` with a `RuntimeWarning` (about `what`, at the
    public function's caller) when every decision is right or every one is wrong."""
    if is_wrong.all() or not is_wrong.any():
        warnings.warn(
            f"{what} is undefined because "
            + ("every decision is wrong" if is_wrong.all() else "no decision is wrong")
            + "; returning nan.",
            RuntimeWarning,
            stacklevel=3,
        )
        return float("nan")
    return float(roc_auc_score(is_wrong.astype(np.int64), uncertainty))


@dataclass(frozen=True)
class ReliabilityCurve:
    """Per-bin calibration statistics of `reliability_curve`."""

    bin_edges: np.ndarray  # [n_bins + 1] equal-width edges from 0 to 1
    confidence: np.ndarray  # [n_bins] mean predicted probability in each bin (nan when empty)
    accuracy: np.ndarray  # [n_bins] fraction of gold positives in each bin (nan when empty)
    count: np.ndarray  # [n_bins] number of (sample, label) pairs in each bin

    def calibration_error(self) -> float:
        """`ECE = sum over non-empty bins of (count_b / total) * |accuracy_b - confidence_b|`."""
        filled = self.count > 0
        weights = self.count[filled] / self.count.sum()
        return float(np.sum(weights * np.abs(self.accuracy[filled] - self.confidence[filled])))


def reliability_curve(scores: Any, y_true: Any, n_bins: int = 15) -> ReliabilityCurve:
    """Bin every (sample, label) probability and compare it with the observed positive rate.

    Each label decision is a binary event, so a bin's "accuracy" is the empirical frequency of the
    positive class among the pairs in the bin and its "confidence" the mean predicted probability of
    the positive class; a calibrated model has accuracy ≈ confidence in every bin. Bins are
    equal-width: bin `b` holds probabilities in `[b / n_bins, (b + 1) / n_bins)`, the last bin also
    holds 1.0.
    """
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"`n_bins` must be a positive integer, got {n_bins!r}.")
    score_matrix, true = _scores_and_labels(scores, y_true, probabilities=True)

    probabilities = score_matrix.ravel()
    outcomes = true.ravel().astype(np.float64)
    bin_index = np.minimum((probabilities * n_bins).astype(np.int64), n_bins - 1)
    count = np.bincount(bin_index, minlength=n_bins)
    probability_sum = np.bincount(bin_index, weights=probabilities, minlength=n_bins)
    positive_sum = np.bincount(bin_index, weights=outcomes, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.where(count > 0, probability_sum / count, np.nan)
        accuracy = np.where(count > 0, positive_sum / count, np.nan)
    return ReliabilityCurve(
        bin_edges=np.linspace(0.0, 1.0, n_bins + 1),
        confidence=confidence,
        accuracy=accuracy,
        count=count,
    )


def expected_calibration_error(scores: Any, y_true: Any, n_bins: int = 15) -> float:
    """Expected calibration error over all (sample, label) probabilities.

    `ECE = sum over non-empty bins of (count_b / total) * |accuracy_b - confidence_b|`, with the bins
    and definitions of `reliability_curve` (`ReliabilityCurve.calibration_error`).
    """
    return reliability_curve(scores, y_true, n_bins=n_bins).calibration_error()


# ----------------------------------------------------------------------------------------------------
# Chance level
# ----------------------------------------------------------------------------------------------------


def chance_level_metrics(
    y_train: Any,
    y_test: Any,
    label_names: Sequence[str] | None = None,
    seed: int = 0,
    *,
    n_draws: int = 10,
) -> dict[str, dict[str, float]]:
    """Metrics of predictors that never look at the inputs, for printing beside the test metrics.

    Everything is fitted on `y_train` only and scored on `y_test` with `multilabel_metrics`:

    * `"prior_sampling"`: each label is drawn independently with probability equal to its training
      prevalence (`numpy.random.default_rng(seed)`, metrics averaged over `n_draws` draws).
    * `"all_positive"`: every label is predicted for every sample.
    * `"most_frequent"`: each label gets its majority value in training (positive if its prevalence
      is above 0.5).
    * `"best_constant"`: the constant label set with the best micro-F1 *on the training labels*.
      Micro-F1 of a constant set depends only on the label counts, and the best set of size k is the k
      most frequent labels, so the search is exact and cheap.

    Args:
        y_train: Training labels `[n_train, n_labels]`.
        y_test: Labels to score on `[n_test, n_labels]`.
        label_names: Passed to `multilabel_metrics`.
        seed: Seed of the local generator (the global numpy / Python RNGs are untouched).
        n_draws: Number of random draws averaged for `"prior_sampling"`.

    Returns:
        A dict mapping each predictor name to its metrics dict.
    """
    train = _as_matrix(y_train, "y_train", binary=True)
    test = _as_matrix(y_test, "y_test", binary=True)
    if train.shape[1] != test.shape[1]:
        raise ValueError(
            f"`y_train` and `y_test` must have the same number of labels, got shapes {train.shape} "
            f"and {test.shape}."
        )
    if isinstance(n_draws, bool) or not isinstance(n_draws, (int, np.integer)) or n_draws < 1:
        raise ValueError(f"`n_draws` must be a positive integer, got {n_draws!r}.")
    names = _resolve_label_names(label_names, train.shape[1])
    num_test, num_labels = test.shape
    prevalence = train.mean(axis=0)

    generator = np.random.default_rng(seed)
    sampled = [
        multilabel_metrics(test, generator.random((num_test, num_labels)) < prevalence, names)
        for _ in range(n_draws)
    ]

    positives_per_label = train.sum(axis=0)
    order = np.argsort(-positives_per_label, kind="stable")
    total_positives = int(positives_per_label.sum())
    best_size, best_f1 = 0, -1.0
    for size in range(num_labels + 1):
        chosen_positives = int(positives_per_label[order[:size]].sum())
        # TP = chosen positives, FP = size * n_train - TP, FN = total positives - TP.
        denominator = chosen_positives + size * train.shape[0] + total_positives
        f1 = 2.0 * chosen_positives / denominator if denominator else 0.0
        if f1 > best_f1:
            best_size, best_f1 = size, f1
    best_constant_row = np.zeros(num_labels, dtype=bool)
    best_constant_row[order[:best_size]] = True
    logger.info(
        "Best constant predictor on the training labels: %s",
        [names[index] for index in np.flatnonzero(best_constant_row)],
    )

    def constant(row: np.ndarray) -> np.ndarray:
        return np.broadcast_to(row, test.shape)

    return {
        "prior_sampling": {
            key: float(np.mean([draw[key] for draw in sampled])) for key in sampled[0]
        },
        "all_positive": multilabel_metrics(test, constant(np.ones(num_labels, bool)), names),
        "most_frequent": multilabel_metrics(test, constant(prevalence > 0.5), names),
        "best_constant": multilabel_metrics(test, constant(best_constant_row), names),
    }


# ----------------------------------------------------------------------------------------------------
# Single-label classification (one emotion per sample)
# ----------------------------------------------------------------------------------------------------
#
# Gold labels are one-hot rows `[n_samples, n_labels]` (the dataset's `labels` column) or class
# indices `[n_samples]`; scores are `[n_samples, n_labels]`. The decision is the arg-max of the
# scores (the first class on ties, as `numpy.argmax`): no threshold. Metrics are computed from the
# confusion matrix (rows: gold class, columns: predicted class), with zero_division = 0.


def single_label_predictions(scores: Any) -> np.ndarray:
    """The predicted class of each sample: the arg-max of its scores (first on ties), int64 `[n]`."""
    return np.argmax(_as_matrix(scores, "scores"), axis=1).astype(np.int64)


def _class_indices(y_true: Any, num_labels: int) -> np.ndarray:
    """Gold class indices `[n]` from one-hot rows `[n, num_labels]` or indices `[n]`."""
    array = _to_numpy(y_true, "y_true")
    if array.ndim == 2:
        one_hot = _as_matrix(array, "y_true", binary=True)
        if one_hot.shape[1] != num_labels:
            raise ValueError(
                f"`y_true` has {one_hot.shape[1]} labels but `scores` has {num_labels}."
            )
        positives = one_hot.sum(axis=1)
        if not (positives == 1).all():
            row = int(np.flatnonzero(positives != 1)[0])
            raise ValueError(
                f"Single-label `y_true` needs exactly one positive per row; row {row} has "
                f"{int(positives[row])}."
            )
        return np.argmax(one_hot, axis=1).astype(np.int64)
    if array.ndim != 1 or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(
            "`y_true` must be one-hot rows (n_samples, n_labels) or integer class indices "
            f"(n_samples,), got an array of shape {array.shape} and dtype {array.dtype}."
        )
    if array.size and (array.min() < 0 or array.max() >= num_labels):
        raise ValueError(f"Class indices must lie in [0, {num_labels}), got {array.tolist()[:5]}.")
    return array.astype(np.int64)


def confusion_matrix_counts(scores: Any, y_true: Any) -> np.ndarray:
    """Counts `[n_labels, n_labels]` (int64): row = gold class, column = predicted (arg-max) class."""
    predicted = single_label_predictions(scores)
    num_labels = _as_matrix(scores, "scores").shape[1]
    gold = _class_indices(y_true, num_labels)
    if gold.shape[0] != predicted.shape[0]:
        raise ValueError(
            f"`scores` has {predicted.shape[0]} samples but `y_true` has {gold.shape[0]}."
        )
    counts = np.zeros((num_labels, num_labels), dtype=np.int64)
    np.add.at(counts, (gold, predicted), 1)
    return counts


def single_label_metrics_from_confusion(
    confusion: Any, label_names: Sequence[str] | None = None
) -> dict[str, float]:
    """The single-label metrics of a confusion matrix (counts, or expected counts as floats).

    Keys: `accuracy` (weighted accuracy, WA), `unweighted_accuracy` (UA: the mean recall over the
    classes that have gold samples, as `sklearn.metrics.balanced_accuracy_score`), `f1_weighted`
    (per-class F1 weighted by gold support), `f1_macro` (over every class), `f1_micro` (equal to the
    accuracy when every sample gets one class), `precision_macro`, `precision_weighted`, then
    `f1_<label>`, `precision_<label>`, `recall_<label>`.
    """
    counts = np.asarray(confusion, dtype=np.float64)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.shape[0] == 0:
        raise ValueError(f"`confusion` must be a square matrix, got shape {counts.shape}.")
    names = _resolve_label_names(label_names, counts.shape[0])
    total = counts.sum()
    if total <= 0:
        raise ValueError("`confusion` holds no sample.")
    true_positive = np.diag(counts)
    support, predicted = counts.sum(axis=1), counts.sum(axis=0)
    recall = _safe_ratio(true_positive, support)
    precision = _safe_ratio(true_positive, predicted)
    f1 = _safe_ratio(2.0 * true_positive, support + predicted)
    results = {
        "accuracy": float(true_positive.sum() / total),
        "unweighted_accuracy": float(recall[support > 0].mean()),
        "f1_weighted": float((f1 * support).sum() / total),
        "f1_macro": float(f1.mean()),
        "f1_micro": float(true_positive.sum() / total),
        "precision_macro": float(precision.mean()),
        "precision_weighted": float((precision * support).sum() / total),
    }
    for prefix, values in (("f1", f1), ("precision", precision), ("recall", recall)):
        results.update({f"{prefix}_{name}": float(value) for name, value in zip(names, values)})
    return results


def single_label_metrics(
    scores: Any, y_true: Any, label_names: Sequence[str] | None = None, *, n_bins: int = 15
) -> dict[str, float]:
    """`single_label_metrics_from_confusion` of the arg-max decisions, plus the top-label
    `expected_calibration_error` (only when the scores lie in [0, 1])."""
    score_matrix = _as_matrix(scores, "scores")
    results = single_label_metrics_from_confusion(
        confusion_matrix_counts(score_matrix, y_true), label_names
    )
    if score_matrix.min() >= 0.0 and score_matrix.max() <= 1.0:
        results["expected_calibration_error"] = top_label_calibration_error(
            score_matrix, y_true, n_bins=n_bins
        )
    return results


def single_label_errors(scores: Any, y_true: Any) -> np.ndarray:
    """Booleans `[n]`: the arg-max class of the sample is not its gold class."""
    score_matrix = _as_matrix(scores, "scores")
    return single_label_predictions(score_matrix) != _class_indices(y_true, score_matrix.shape[1])


def multilabel_sample_errors(scores: Any, y_true: Any, threshold: Any) -> np.ndarray:
    """Booleans `[n]`: at least one label of the sample is decided wrongly at `threshold`."""
    score_matrix, true = _scores_and_labels(scores, y_true)
    return (scores_to_predictions(score_matrix, threshold).astype(bool) != true).any(axis=1)


def error_detection_auroc(uncertainty: Any, is_wrong: Any) -> float:
    """`roc_auc_score(is_wrong, uncertainty)` over paired 1-D arrays (one value per decision):
    how well the uncertainty tells wrong decisions from right ones (0.5 = unrelated, 1.0 = every
    wrong one is more uncertain than every right one). `nan` with a `RuntimeWarning` when every
    decision is right or every one is wrong."""
    values = _to_numpy(uncertainty, "uncertainty").astype(np.float64)
    wrong = _to_numpy(is_wrong, "is_wrong").astype(bool)
    if values.ndim != 1 or values.shape != wrong.shape:
        raise ValueError(
            "`uncertainty` and `is_wrong` must be 1-D of the same length (one per decision), got "
            f"shapes {values.shape} and {wrong.shape}."
        )
    if not np.isfinite(values).all():
        raise ValueError("`uncertainty` contains NaN or infinite values.")
    return _auroc_of_errors(values, wrong, "The error AUROC")


def top_label_reliability_curve(scores: Any, y_true: Any, n_bins: int = 15) -> ReliabilityCurve:
    """`reliability_curve` of the top-label decisions: one (confidence, correct) pair per sample,
    where the confidence is the score of the arg-max class and `accuracy` in a bin is the share of
    samples whose arg-max class is right."""
    score_matrix = _as_matrix(scores, "scores", probabilities=True)
    confidence = score_matrix.max(axis=1)
    correct = ~single_label_errors(score_matrix, y_true)
    return reliability_curve(confidence[:, None], correct[:, None], n_bins=n_bins)


def top_label_calibration_error(scores: Any, y_true: Any, n_bins: int = 15) -> float:
    """Expected calibration error of the top-label confidence (the usual multi-class ECE)."""
    return top_label_reliability_curve(scores, y_true, n_bins=n_bins).calibration_error()


def single_label_chance_metrics(
    y_train: Any, y_test: Any, label_names: Sequence[str] | None = None
) -> dict[str, dict[str, float]]:
    """Metrics of input-blind predictors fitted on `y_train`, scored on `y_test` (one-hot rows or
    class indices; `n_labels` from the one-hot rows, else from `label_names`).

    * `"majority_class"`: every sample gets the most frequent training class (the lowest index on
      ties).
    * `"prior_stratified"`: each sample gets a class drawn from the training class shares; the
      metrics are those of the expected confusion matrix (`support_test[i] * share_train[j]`), so
      accuracy and UA are the exact expectations and nothing random is drawn.
    """
    num_labels = _label_count(y_train, y_test, label_names)
    train = _class_indices(y_train, num_labels)
    test = _class_indices(y_test, num_labels)
    if train.size == 0 or test.size == 0:
        raise ValueError("`y_train` and `y_test` need at least one sample each.")
    shares = np.bincount(train, minlength=num_labels) / train.size
    support = np.bincount(test, minlength=num_labels).astype(np.float64)
    majority = np.zeros((num_labels, num_labels))
    majority[:, int(np.argmax(shares))] = support
    return {
        "majority_class": single_label_metrics_from_confusion(majority, label_names),
        "prior_stratified": single_label_metrics_from_confusion(
            np.outer(support, shares), label_names
        ),
    }


def _label_count(y_train: Any, y_test: Any, label_names: Sequence[str] | None) -> int:
    for values in (y_train, y_test):
        array = _to_numpy(values, "labels")
        if array.ndim == 2:
            return int(array.shape[1])
    if label_names is None:
        raise ValueError("With class indices, pass `label_names` to give the number of classes.")
    return len(label_names)
