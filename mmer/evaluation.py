"""The end-of-training evaluation protocol, shared by every model family of this package.

The problem type (``config.problem_type``, read by train.py from the data) picks one of two
protocols: `_evaluate_multi_label` (thresholds tuned on validation, then the test split once) or
`_evaluate_single_label` (arg-max decisions, nothing tuned). Prediction by field name, the
modality combinations and the results layout are shared. What each protocol computes and reports:
docs/training.md, "Protocol" and "Single-label data".
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .family import MODALITIES, MULTI_LABEL, SINGLE_LABEL, problem_type_of
from .metrics import (
    chance_level_metrics,
    confusion_matrix_counts,
    error_detection_auroc,
    expected_calibration_error,
    multilabel_metrics,
    multilabel_metrics_from_scores,
    multilabel_sample_errors,
    scores_to_predictions,
    single_label_chance_metrics,
    single_label_errors,
    single_label_metrics,
    top_label_calibration_error,
    tune_threshold,
    uncertainty_error_auroc,
)

logger = logging.getLogger(__name__)

#: Every non-empty subset of the modalities, named by their initials: t, a, v, ta, tv, av, tav.
MODALITY_COMBINATIONS: tuple[str, ...] = tuple(
    "".join(modality[0] for modality in subset)
    for size in range(1, len(MODALITIES) + 1)
    for subset in itertools.combinations(MODALITIES, size)
)
_MODALITY_BY_INITIAL = {modality[0]: modality for modality in MODALITIES}

#: The validation metrics `make_compute_metrics` returns, per problem type (what
#: ``--metric_for_best_model`` may name, besides the loss).
VALIDATION_METRICS: dict[str, tuple[str, ...]] = {
    MULTI_LABEL: (
        "f1_micro",
        "f1_macro",
        "accuracy_jaccard",
        "hamming_loss",
        "precision_micro",
        "recall_micro",
        "threshold",
    ),
    SINGLE_LABEL: ("accuracy", "unweighted_accuracy", "f1_weighted", "f1_macro", "f1_micro"),
}

#: The validation metric that selects the best checkpoint unless one is named (a design choice
#: for single-label data: weighted F1, the headline metric of IEMOCAP and MELD papers, which
#: accuracy alone would let a majority-class model win on imbalanced classes).
DEFAULT_SELECTION_METRIC: dict[str, str] = {MULTI_LABEL: "f1_micro", SINGLE_LABEL: "f1_weighted"}

#: The metrics of each modality-combination row (and of the summary), per problem type.
HEADLINE_METRICS: dict[str, tuple[str, ...]] = {
    MULTI_LABEL: ("f1_micro", "f1_macro", "accuracy_jaccard"),
    SINGLE_LABEL: ("accuracy", "unweighted_accuracy", "f1_weighted", "f1_macro"),
}


@dataclass(frozen=True)
class Predictions:
    """What a prediction pass returns: each collected output field by name, and the labels."""

    fields: dict[str, np.ndarray]
    labels: np.ndarray

    @property
    def scores(self) -> np.ndarray:
        return self.fields["scores"]

    def uncertainties(self) -> dict[str, np.ndarray]:
        """The ``uncertainty`` / ``<name>_uncertainty`` fields, keyed by their AUROC's result name."""
        return {
            ("uncertainty_" if name == "uncertainty" else name.removesuffix("uncertainty"))
            + "error_auroc": values
            for name, values in self.fields.items()
            if name == "uncertainty" or name.endswith("_uncertainty")
        }


@dataclass(frozen=True)
class EvaluationReport:
    """``results``: JSON-ready figures; ``test``: the test predictions."""

    results: dict
    test: Predictions


class ModalitySubsetDataset(torch.utils.data.Dataset):
    """A view of a multimodal dataset in which the modalities not in ``keep`` are absent (their
    masks are all zero), for evaluating a model on fewer modalities than it was trained with."""

    def __init__(self, dataset, keep: Sequence[str]):
        unknown = set(keep) - set(MODALITIES)
        if unknown:
            raise ValueError(f"Unknown modalities {sorted(unknown)}; use {list(MODALITIES)}.")
        self.dataset = dataset
        self.absent = [m for m in MODALITIES if m not in keep]

    def __len__(self) -> int:
        return len(self.dataset)

    def _blank(self, sample: dict) -> dict:
        sample = dict(sample)
        for modality in self.absent:
            key = f"{modality}_mask"
            if key in sample:
                sample[key] = torch.zeros_like(torch.as_tensor(sample[key]))
        return sample

    def __getitem__(self, index):
        return self._blank(self.dataset[index])

    def __getitems__(self, indices):
        if hasattr(self.dataset, "__getitems__"):
            samples = self.dataset.__getitems__(indices)
        else:
            samples = [self.dataset[index] for index in indices]
        if isinstance(samples, dict):  # a batch dict
            return self._blank(samples)
        return [self._blank(sample) for sample in samples]


def predict(trainer, dataset) -> Predictions:
    """Run ``trainer.predict`` (an ``EmotionTrainer``) without ``compute_metrics``, so that nothing
    is tuned on what is predicted, and name the arrays by the fields they came from."""
    compute_metrics, trainer.compute_metrics = trainer.compute_metrics, None
    try:
        output = trainer.predict(dataset)
    finally:
        trainer.compute_metrics = compute_metrics
    fields = _by_name(trainer.prediction_fields, output.predictions)
    return Predictions(
        fields={name: np.asarray(value, dtype=np.float64) for name, value in fields.items()},
        labels=np.asarray(output.label_ids),
    )


def _by_name(prediction_fields: Sequence[str], values) -> dict:
    """The prediction arrays by field name (``values``: one array per field, or the one array)."""
    if not isinstance(values, (tuple, list)):
        values = (values,)
    return dict(zip(prediction_fields, values, strict=True))


def check_selection_metric(name: str, problem_type: str) -> str:
    """``name`` (``--metric_for_best_model``, with or without ``eval_``) if the validation pass of
    ``problem_type`` computes it, else a ValueError listing those it computes."""
    bare = name.removeprefix("eval_")
    # The tuned threshold is reported, not a measure of quality to select by.
    available = (*(m for m in VALIDATION_METRICS[problem_type] if m != "threshold"), "loss")
    if bare not in available:
        raise ValueError(
            f"--metric_for_best_model {name!r} is not computed on {problem_type} data; the "
            f"validation pass computes {list(available)}."
        )
    return name


def make_compute_metrics(
    label_names: list[str], prediction_fields: Sequence[str], problem_type: str = MULTI_LABEL
):
    """Validation metrics for model selection during training (`VALIDATION_METRICS`)."""
    validation_metrics = _VALIDATION_METRIC_FUNCTIONS[problem_type]

    def compute_metrics(eval_prediction) -> dict[str, float]:
        scores = np.asarray(_by_name(prediction_fields, eval_prediction.predictions)["scores"])
        return validation_metrics(scores, np.asarray(eval_prediction.label_ids), label_names)

    return compute_metrics


def _multi_label_validation_metrics(scores, labels, label_names) -> dict[str, float]:
    """Micro-F1 etc. at the best global threshold of this same validation pass (the threshold is
    re-tuned on validation at the end, never on test)."""
    search = tune_threshold(scores, labels)
    metrics = multilabel_metrics(
        labels, scores_to_predictions(scores, search.threshold), label_names
    )
    result = {key: float(metrics[key]) for key in VALIDATION_METRICS[MULTI_LABEL][:-1]}
    result["threshold"] = float(search.threshold)
    return result


def _single_label_validation_metrics(scores, labels, label_names) -> dict[str, float]:
    """Accuracy, UA and the F1s of the arg-max decisions (nothing is tuned)."""
    metrics = single_label_metrics(scores, labels, label_names)
    return {key: float(metrics[key]) for key in VALIDATION_METRICS[SINGLE_LABEL]}


_VALIDATION_METRIC_FUNCTIONS = {
    MULTI_LABEL: _multi_label_validation_metrics,
    SINGLE_LABEL: _single_label_validation_metrics,
}


def set_model_thresholds(config, threshold) -> None:
    """Store tuned thresholds (one number, or one per label) in the config the model will carry."""
    if np.ndim(threshold) == 0:
        config.decision_threshold = float(threshold)
        config.label_thresholds = None
    else:
        config.label_thresholds = [float(value) for value in np.asarray(threshold)]


@dataclass(frozen=True)
class _EvaluationRun:
    """What both protocols read: the trainer, the splits and the caller's choices."""

    trainer: object
    validation_dataset: object
    test_dataset: object
    train_labels: np.ndarray
    label_names: list[str]
    threshold_tuning: str
    modality_combinations: Sequence[str]
    selection_metric: str | None


def final_evaluation(
    *,
    trainer,
    validation_dataset,
    test_dataset,
    train_labels: np.ndarray,
    label_names: list[str],
    threshold_tuning: str = "global",
    modality_combinations: Sequence[str] = (),
    problem_type: str | None = None,
    selection_metric: str | None = None,
) -> EvaluationReport:
    """Run the protocol of ``problem_type`` (default: the model config's; see docs/training.md).
    ``threshold_tuning`` is for multi-label data only; ``selection_metric`` (the validation metric
    that selected the checkpoint) picks the single-label chance predictor."""
    problem_type = problem_type or problem_type_of(trainer.model.config)
    run = _EvaluationRun(
        trainer=trainer,
        validation_dataset=validation_dataset,
        test_dataset=test_dataset,
        train_labels=train_labels,
        label_names=label_names,
        threshold_tuning=threshold_tuning,
        modality_combinations=tuple(modality_combinations),
        selection_metric=selection_metric,
    )
    results, test = _PROTOCOLS[problem_type](run)
    return EvaluationReport(results=results, test=test)


def _evaluate_multi_label(run: _EvaluationRun) -> tuple[dict, Predictions]:
    """Thresholds tuned on validation (or the config's), then the test split once."""
    config = run.trainer.model.config
    validation = predict(run.trainer, run.validation_dataset)
    if run.threshold_tuning == "none":
        threshold = (
            np.asarray(config.thresholds)
            if config.label_thresholds
            else float(config.decision_threshold)
        )
    else:
        threshold = tune_threshold(
            validation.scores, validation.labels, per_label=run.threshold_tuning == "per_label"
        ).threshold
        set_model_thresholds(config, threshold)
    test = predict(run.trainer, run.test_dataset)

    def metrics(predictions: Predictions, label_names) -> dict[str, float]:
        return _float_metrics(
            multilabel_metrics_from_scores(
                predictions.scores, predictions.labels, threshold, label_names
            )
        )

    results = {
        "problem_type": MULTI_LABEL,
        "thresholds": {
            "mode": run.threshold_tuning,
            "value": float(threshold) if np.ndim(threshold) == 0 else _floats(threshold),
            "per_label": [float(value) for value in config.thresholds],
            "tuned_on": "not tuned" if run.threshold_tuning == "none" else "validation",
        },
        "validation": metrics(validation, run.label_names),
        "test": metrics(test, run.label_names),
        "chance": _chance(run.train_labels, test.labels, run.label_names),
        "uncertainty": _uncertainty(
            test,
            lambda values: _multi_label_error_auroc(values, test, threshold),
            expected_calibration_error(test.scores, test.labels),
        ),
        **_combination_results(
            run,
            metrics,
            HEADLINE_METRICS[MULTI_LABEL],
            lambda values, predictions: _multi_label_error_auroc(values, predictions, threshold),
        ),
        "num_samples": _num_samples(validation, test),
    }
    return results, test


def _evaluate_single_label(run: _EvaluationRun) -> tuple[dict, Predictions]:
    """Arg-max decisions: nothing is tuned on validation; the test split once."""
    validation = predict(run.trainer, run.validation_dataset)
    test = predict(run.trainer, run.test_dataset)

    def metrics(predictions: Predictions, label_names) -> dict[str, float]:
        return _float_metrics(
            single_label_metrics(predictions.scores, predictions.labels, label_names)
        )

    counts = confusion_matrix_counts(test.scores, test.labels)
    results = {
        "problem_type": SINGLE_LABEL,
        "decision": {
            "rule": "argmax",
            "threshold_tuning": "none",
            "note": "single-label: each sample is given the class with the highest score; no "
            "threshold is tuned or used",
        },
        "validation": metrics(validation, run.label_names),
        "test": metrics(test, run.label_names),
        "confusion_matrix": {
            "labels": list(run.label_names),
            "rows": "gold",
            "columns": "predicted",
            "counts": counts.tolist(),
        },
        "chance": _single_label_chance(run, test.labels),
        "uncertainty": _uncertainty(
            test,
            lambda values: _single_label_error_auroc(values, test),
            top_label_calibration_error(test.scores, test.labels),
        ),
        **_combination_results(
            run, metrics, HEADLINE_METRICS[SINGLE_LABEL], _single_label_error_auroc
        ),
        "num_samples": _num_samples(validation, test),
    }
    return results, test


_PROTOCOLS: dict[str, Callable[[_EvaluationRun], tuple[dict, Predictions]]] = {
    MULTI_LABEL: _evaluate_multi_label,
    SINGLE_LABEL: _evaluate_single_label,
}


def _float_metrics(metrics: dict) -> dict[str, float]:
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float, np.floating))
    }


def _num_samples(validation: Predictions, test: Predictions) -> dict[str, int]:
    return {"validation": int(validation.labels.shape[0]), "test": int(test.labels.shape[0])}


def _chance(train_labels, test_labels, label_names) -> dict:
    """The best, by test micro-F1, of the input-blind predictors fitted on the training labels."""
    chance = chance_level_metrics(train_labels, test_labels, label_names)
    best = max(chance, key=lambda name: chance[name]["f1_micro"])
    return {**_float_metrics(chance[best]), "predictor": best}


def _single_label_chance(run: _EvaluationRun, test_labels) -> dict:
    """The best input-blind predictor fitted on the training labels (majority class, or classes
    drawn from the training shares), by the selection metric (weighted F1 when the selection
    metric is not one of the chance metrics, e.g. the loss)."""
    chance = single_label_chance_metrics(run.train_labels, test_labels, run.label_names)
    key = (run.selection_metric or "").removeprefix("eval_")
    key = key if key in chance["majority_class"] else DEFAULT_SELECTION_METRIC[SINGLE_LABEL]
    best = max(chance, key=lambda name: chance[name][key])
    return {**_float_metrics(chance[best]), "predictor": best, "selected_by": key}


def _uncertainty(test: Predictions, error_auroc, calibration_error: float) -> dict:
    """The error AUROC of every uncertainty field (``error_auroc(values)``), then the ECE."""
    uncertainty = {}
    for name, values in test.uncertainties().items():
        if values.shape not in ((test.scores.shape[0],), test.scores.shape):
            raise ValueError(
                f"The uncertainty field behind {name!r} has shape {values.shape}; the contract "
                f"allows [batch] {test.scores.shape[:1]} or [batch, labels] {test.scores.shape}."
            )
        uncertainty[name] = _finite(error_auroc(values))
    uncertainty["expected_calibration_error"] = float(calibration_error)
    return uncertainty


def _multi_label_error_auroc(values: np.ndarray, test: Predictions, threshold) -> float:
    """Per (sample, emotion) decision for ``[batch, labels]`` fields; per sample (any label
    wrong) for ``[batch]`` fields."""
    if values.ndim == 2:
        return uncertainty_error_auroc(values, test.scores, test.labels, threshold)
    return error_detection_auroc(
        values, multilabel_sample_errors(test.scores, test.labels, threshold)
    )


def _single_label_error_auroc(values: np.ndarray, test: Predictions) -> float:
    """Per sample (arg-max wrong); a ``[batch, labels]`` field gives the value of the arg-max
    class, i.e. the uncertainty of the decision made."""
    if values.ndim == 2:
        values = values[np.arange(values.shape[0]), np.argmax(test.scores, axis=1)]
    return error_detection_auroc(values, single_label_errors(test.scores, test.labels))


def _combination_results(
    run: _EvaluationRun, metrics, headline: Sequence[str], error_auroc: Callable
) -> dict:
    """``modality_combinations`` (one row per combination: the ``headline`` metrics, then the
    error AUROC of each uncertainty field, ``error_auroc(values, predictions)``) and
    ``modality_combinations_mean`` (their unweighted mean; empty without combinations)."""
    rows = {}
    for combination in run.modality_combinations:
        keep = [_MODALITY_BY_INITIAL[initial] for initial in combination]
        predictions = predict(run.trainer, ModalitySubsetDataset(run.test_dataset, keep))
        values = metrics(predictions, None)
        rows[combination] = {key: values[key] for key in headline}
        for name, uncertainty in predictions.uncertainties().items():
            rows[combination][name] = _finite(error_auroc(uncertainty, predictions))
    mean = {}
    for key in next(iter(rows.values()), {}):
        numbers = [row[key] for row in rows.values() if row[key] is not None]
        mean[key] = float(np.mean(numbers)) if len(numbers) == len(rows) else None
    return {"modality_combinations": rows, "modality_combinations_mean": mean}


def _floats(values) -> list[float]:
    return [float(value) for value in np.asarray(values)]


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
