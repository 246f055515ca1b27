"""The end-of-training evaluation protocol, shared by every model family of this package.

1. Predict the VALIDATION split; tune the decision threshold(s) there; store them in the model's
   config (``decision_threshold`` / ``label_thresholds``).
2. Predict the TEST split once, with those thresholds: classification metrics, the chance level,
   uncertainty quality (AUROC of the uncertainty for predicting errors, ECE of the scores).
3. Optionally predict the test split again with only some modalities given (the others marked
   absent through all-zero masks): one metrics row per modality combination.

Models must return ``scores`` (probabilities) and may return ``uncertainty`` (both `[batch, labels]`)
as their first and fifth prediction arrays, as ``LDDUForEmotionRecognition`` does.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from .metrics import (
    chance_level_metrics,
    expected_calibration_error,
    multilabel_metrics_from_scores,
    scores_to_predictions,
    tune_threshold,
    uncertainty_error_auroc,
)

logger = logging.getLogger(__name__)

PREDICTION_NAMES = ("scores", "semantic_scores", "mean_scores", "spread_scores", "uncertainty")
_LETTER_TO_MODALITY = {"t": "text", "a": "audio", "v": "visual"}


class ModalitySubsetDataset(torch.utils.data.Dataset):
    """A view of a multimodal dataset in which the modalities not in ``keep`` are absent (their
    masks are all zero), for evaluating a model on fewer modalities than it was trained with."""

    def __init__(self, dataset, keep: Sequence[str]):
        unknown = set(keep) - set(_LETTER_TO_MODALITY.values())
        if unknown:
            raise ValueError(f"Unknown modalities {sorted(unknown)}; use text, audio, visual.")
        self.dataset = dataset
        self.absent = [m for m in ("text", "audio", "visual") if m not in keep]

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


def predict_arrays(trainer, dataset) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Run ``trainer.predict`` without ``compute_metrics`` (so that nothing is tuned on what is
    predicted) and name the returned arrays."""
    compute_metrics, trainer.compute_metrics = trainer.compute_metrics, None
    try:
        output = trainer.predict(dataset)
    finally:
        trainer.compute_metrics = compute_metrics
    predictions = output.predictions
    if not isinstance(predictions, (tuple, list)):
        predictions = (predictions,)
    arrays = {
        name: np.asarray(value, dtype=np.float64)
        for name, value in zip(PREDICTION_NAMES, predictions)
    }
    return arrays, np.asarray(output.label_ids)


def set_model_thresholds(model, threshold) -> None:
    """Store tuned thresholds in the config the saved model will carry."""
    config = model.config
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
) -> dict:
    """Run the protocol above; returns a JSON-ready dict plus test arrays under ``"_arrays"``."""
    model = trainer.model
    validation, validation_labels = predict_arrays(trainer, validation_dataset)
    if threshold_tuning == "none":
        threshold = (
            np.asarray(model.config.thresholds)
            if model.config.label_thresholds
            else (float(model.config.decision_threshold))
        )
        validation_search = None
    else:
        validation_search = tune_threshold(
            validation["scores"], validation_labels, per_label=threshold_tuning == "per_label"
        )
        threshold = validation_search.threshold
        set_model_thresholds(model, threshold)
    threshold_json = float(threshold) if np.ndim(threshold) == 0 else [float(t) for t in threshold]
    validation_metrics = multilabel_metrics_from_scores(
        validation["scores"], validation_labels, threshold, label_names
    )

    test, test_labels = predict_arrays(trainer, test_dataset)
    test_metrics = multilabel_metrics_from_scores(
        test["scores"], test_labels, threshold, label_names
    )
    chance = chance_level_metrics(train_labels, test_labels, label_names)
    best_chance = max(chance.values(), key=lambda metrics: metrics["f1_micro"])
    chance_summary = {
        key: float(value) for key, value in best_chance.items() if isinstance(value, (int, float))
    }
    chance_summary["predictor"] = max(chance, key=lambda name: chance[name]["f1_micro"])

    uncertainty = {}
    if "uncertainty" in test:
        uncertainty["uncertainty_error_auroc"] = _finite(
            uncertainty_error_auroc(test["uncertainty"], test["scores"], test_labels, threshold)
        )
    if "semantic_scores" in test:
        # Diagnostic: is the gate alone informative? (low gate = lean on the spread expert)
        gate_uncertainty = 1.0 - np.abs(2.0 * test["semantic_scores"] - 1.0)
        uncertainty["gate_error_auroc"] = _finite(
            uncertainty_error_auroc(gate_uncertainty, test["scores"], test_labels, threshold)
        )
    uncertainty["expected_calibration_error"] = float(
        expected_calibration_error(test["scores"], test_labels)
    )

    combinations = {}
    for combination in modality_combinations:
        keep = [_LETTER_TO_MODALITY[letter] for letter in combination]
        arrays, labels = predict_arrays(trainer, ModalitySubsetDataset(test_dataset, keep))
        metrics = multilabel_metrics_from_scores(arrays["scores"], labels, threshold, label_names)
        combinations[combination] = {
            key: float(metrics[key]) for key in ("f1_micro", "f1_macro", "accuracy_jaccard")
        }

    predictions = scores_to_predictions(test["scores"], threshold)
    return {
        "thresholds": {
            "mode": threshold_tuning,
            "value": threshold_json,
            "tuned_on": "validation" if validation_search is not None else "not tuned",
        },
        "validation": _json_metrics(validation_metrics),
        "test": _json_metrics(test_metrics),
        "chance": chance_summary,
        "uncertainty": uncertainty,
        "modality_combinations": combinations,
        "num_samples": {
            "validation": int(validation_labels.shape[0]),
            "test": int(test_labels.shape[0]),
        },
        "_arrays": {
            "test_scores": test["scores"],
            "test_uncertainty": test.get("uncertainty"),
            "test_labels": test_labels,
            "test_predictions": predictions,
        },
    }


def _finite(value: float) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _json_metrics(metrics: dict) -> dict:
    return {
        key: float(value)
        for key, value in metrics.items()
        if isinstance(value, (int, float, np.floating))
    }
