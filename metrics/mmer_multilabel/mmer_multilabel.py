"""`evaluate` wrapper around `mmer.metrics` (multi-label emotion recognition metrics).

Load it from this folder; it works offline because nothing is fetched from the Hub:

```python
import evaluate

metric = evaluate.load("path/to/metrics/mmer_multilabel")                 # 0/1 predictions
metric.compute(predictions=[[1, 0, 1]], references=[[1, 0, 0]], label_names=["happy", "sad", "anger"])

metric = evaluate.load("path/to/metrics/mmer_multilabel", "scores")       # probabilities + threshold
metric.compute(predictions=[[0.9, 0.1, 0.3]], references=[[1, 0, 0]], threshold=0.5)
```

The numbers come from `mmer.metrics` (this file computes nothing itself), so the `mmer` package must be
importable: install the project (`pip install -e .`). The import sits inside a `try` block on purpose:
`evaluate.load` scans top-level `import` lines and, for a package it cannot import, tells the user to
`pip install <package name>`, which would point at an unrelated PyPI project here; an indented import
is not scanned, so a missing `mmer` is reported by the message below instead.
"""

import datasets
import evaluate

try:
    from mmer.metrics import multilabel_metrics, multilabel_metrics_from_scores
except (
    ImportError
) as import_error:  # pragma: no cover - exercised only without the project installed
    raise ImportError(
        "The mmer_multilabel metric needs the `mmer` package of this project; install the project "
        "with `pip install -e .` from its root folder."
    ) from import_error


_DESCRIPTION = """\
Multi-label classification metrics for multimodal emotion recognition (CMU-MOSEI, M3ED, ...):
sample-wise Jaccard accuracy (standard and the MMER reference convention), Hamming loss, micro and
macro precision / recall / F1 and per-label precision / recall / F1. With the `scores` configuration
the predictions are probabilities, binarised with `score > threshold`, and global average precision
(GAP) and expected calibration error (ECE) are added.

Precision and recall are the standard way round (the MMER reference code logs them swapped).
A sample whose gold and predicted label sets are both empty scores 1 in `accuracy_jaccard` and 0 in
`accuracy_jaccard_reference` (the reference code's convention). Divisions by zero count as 0.
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions: `[n_samples, n_labels]`; 0/1 labels (default configuration) or probabilities
        (`scores` configuration).
    references: `[n_samples, n_labels]` gold labels in {0, 1}.
    label_names: Optional list of label names used in the per-label keys (`f1_<name>`, ...);
        defaults to `label_0`, `label_1`, ...
    threshold: `scores` configuration only (required): one number, or one per label.
    n_bins: `scores` configuration only: number of bins of the calibration error (default 15).
Returns:
    A dict of floats: accuracy_jaccard, accuracy_jaccard_reference, hamming_loss, precision_micro,
    recall_micro, f1_micro, precision_macro, recall_macro, f1_macro, f1_<label>, precision_<label>,
    recall_<label>; plus global_average_precision and expected_calibration_error with `scores`.
Examples:
    >>> metric = evaluate.load("metrics/mmer_multilabel")
    >>> results = metric.compute(predictions=[[1, 0], [0, 0]], references=[[1, 1], [0, 0]])
    >>> results["accuracy_jaccard"], results["accuracy_jaccard_reference"]
    (0.75, 0.25)
"""

_CITATION = """\
@article{huang2025lddu,
  title={Latent Distribution Decoupling: A Probabilistic Framework for Uncertainty-Aware Multimodal
         Emotion Recognition},
  author={Huang, Jingwang and others},
  journal={arXiv preprint arXiv:2502.13954},
  year={2025}
}
"""

_CONFIGURATIONS = ("default", "binary", "scores")


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class MmerMultilabel(evaluate.Metric):
    """Multi-label emotion recognition metrics computed by `mmer.metrics`."""

    def _info(self) -> evaluate.MetricInfo:
        if self.config_name not in _CONFIGURATIONS:
            raise ValueError(
                f"Unknown configuration {self.config_name!r}; use one of {list(_CONFIGURATIONS)} "
                "('default' and 'binary' take 0/1 predictions, 'scores' takes probabilities)."
            )
        # Predictions are read as floats in every configuration: an int64 feature would cast
        # probabilities such as 0.9 to 0 before `_compute` could see them; 0/1 predictions are
        # checked there instead.
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float64")),
                    "references": datasets.Sequence(datasets.Value("int64")),
                }
            ),
        )

    def _compute(
        self,
        predictions,
        references,
        label_names=None,
        threshold=None,
        n_bins: int = 15,
    ) -> dict:
        if self.config_name == "scores":
            if threshold is None:
                raise ValueError("The 'scores' configuration needs a `threshold` argument.")
            return multilabel_metrics_from_scores(
                predictions, references, threshold, label_names, n_bins=n_bins
            )
        if threshold is not None:
            raise ValueError(
                "`threshold` is only used by the 'scores' configuration; this configuration takes "
                "0/1 predictions. Load the metric with config_name='scores' to pass probabilities."
            )
        _check_binary_predictions(predictions, self.config_name)
        return multilabel_metrics(references, predictions, label_names)


def _check_binary_predictions(predictions, config_name: str) -> None:
    """Refuse anything but 0/1 in the 0/1 configurations, naming the configuration that takes it."""
    values = {value for row in predictions for value in row}
    other = sorted(value for value in values if value not in (0, 1))
    if other:
        raise ValueError(
            f"The {config_name!r} configuration takes 0/1 predictions; found {other[:5]}. Threshold "
            "the scores first, or load the metric with config_name='scores' and pass probabilities "
            "with a `threshold`."
        )
