"""The end-of-training evaluation protocol, shared by every model family of this package.

1. Predict the VALIDATION split; tune the decision threshold(s) there; store them in the model's
   config (``decision_threshold`` / ``label_thresholds``).
2. Predict the TEST split once, with those thresholds: classification metrics, the chance level,
   uncertainty quality (AUROC of each uncertainty the model outputs for predicting errors, ECE of
   the scores).
3. Optionally predict the test split again with only some modalities given (the others marked
   absent through all-zero masks): one metrics row per modality combination.

Predictions are read by field name (``EmotionTrainer`` collects the fields the model declares in
``prediction_fields``); the results are JSON only, the test arrays travel beside them.
"""

from __future__ import annotations

import itertools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .family import MODALITIES
from .metrics import (
    chance_level_metrics,
    expected_calibration_error,
    multilabel_metrics,
    multilabel_metrics_from_scores,
    scores_to_predictions,
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
    values = output.predictions
    if not isinstance(values, (tuple, list)):
        values = (values,)
    fields = {
        name: np.asarray(value, dtype=np.float64)
        for name, value in zip(trainer.prediction_fields, values, strict=True)
    }
    return Predictions(fields=fields, labels=np.asarray(output.label_ids))


def make_compute_metrics(label_names: list[str], prediction_fields: Sequence[str]):
    """Validation metrics for model selection during training: micro-F1 etc. at the best global
    threshold of that same validation pass (the threshold is re-tuned on validation at the end,
    never on test)."""
    kept = ("f1_micro", "f1_macro", "accuracy_jaccard", "hamming_loss")
    kept += ("precision_micro", "recall_micro")

    def compute_metrics(eval_prediction) -> dict[str, float]:
        values = eval_prediction.predictions
        if not isinstance(values, (tuple, list)):
            values = (values,)
        scores = np.asarray(dict(zip(prediction_fields, values, strict=True))["scores"])
        labels = np.asarray(eval_prediction.label_ids)
        search = tune_threshold(scores, labels)
        predictions = scores_to_predictions(scores, search.threshold)
        metrics = multilabel_metrics(labels, predictions, label_names)
        result = {key: float(metrics[key]) for key in kept}
        result["threshold"] = float(search.threshold)
        return result

    return compute_metrics


def set_model_thresholds(config, threshold) -> None:
    """Store tuned thresholds (one number, or one per label) in the config the model will carry."""
    if np.ndim(threshold) == 0:
        config.decision_threshold = float(threshold)
        config.label_thresholds = None
    else:
        config.label_thresholds = [float(value) for value in np.asarray(threshold)]


def final_evaluation(
    *,
    trainer,
    validation_dataset,
    test_dataset,
    train_labels: np.ndarray,
    label_names: list[str],
    threshold_tuning: str = "global",
    modality_combinations: Sequence[str] = (),
) -> EvaluationReport:
    """Run the protocol above."""
    config = trainer.model.config
    validation = predict(trainer, validation_dataset)
    if threshold_tuning == "none":
        threshold = (
            np.asarray(config.thresholds)
            if config.label_thresholds
            else float(config.decision_threshold)
        )
    else:
        search = tune_threshold(
            validation.scores, validation.labels, per_label=threshold_tuning == "per_label"
        )
        threshold = search.threshold
        set_model_thresholds(config, threshold)
    test = predict(trainer, test_dataset)
    results = {
        "thresholds": {
            "mode": threshold_tuning,
            "value": float(threshold) if np.ndim(threshold) == 0 else _floats(threshold),
            "per_label": [float(value) for value in config.thresholds],
            "tuned_on": "not tuned" if threshold_tuning == "none" else "validation",
        },
        "validation": _metrics(validation, threshold, label_names),
        "test": _metrics(test, threshold, label_names),
        "chance": _chance(train_labels, test.labels, label_names),
        "uncertainty": _uncertainty(test, threshold),
        "modality_combinations": {
            combination: _combination_row(trainer, test_dataset, combination, threshold)
            for combination in modality_combinations
        },
        "num_samples": {
            "validation": int(validation.labels.shape[0]),
            "test": int(test.labels.shape[0]),
        },
    }
    return EvaluationReport(results=results, test=test)


def _metrics(predictions: Predictions, threshold, label_names) -> dict[str, float]:
    metrics = multilabel_metrics_from_scores(
        predictions.scores, predictions.labels, threshold, label_names
    )
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float, np.floating))
    }


def _chance(train_labels, test_labels, label_names) -> dict:
    """The best, by test micro-F1, of the input-blind predictors fitted on the training labels."""
    chance = chance_level_metrics(train_labels, test_labels, label_names)
    best = max(chance, key=lambda name: chance[name]["f1_micro"])
    summary = {
        key: float(value) for key, value in chance[best].items() if isinstance(value, (int, float))
    }
    summary["predictor"] = best
    return summary


def _uncertainty(test: Predictions, threshold) -> dict:
    uncertainty = {
        name: _finite(uncertainty_error_auroc(values, test.scores, test.labels, threshold))
        for name, values in test.uncertainties().items()
    }
    uncertainty["expected_calibration_error"] = float(
        expected_calibration_error(test.scores, test.labels)
    )
    return uncertainty


def _combination_row(trainer, test_dataset, combination: str, threshold) -> dict[str, float]:
    keep = [_MODALITY_BY_INITIAL[initial] for initial in combination]
    predictions = predict(trainer, ModalitySubsetDataset(test_dataset, keep))
    metrics = _metrics(predictions, threshold, label_names=None)
    return {key: metrics[key] for key in ("f1_micro", "f1_macro", "accuracy_jaccard")}


def _floats(values) -> list[float]:
    return [float(value) for value in np.asarray(values)]


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None
