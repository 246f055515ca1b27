"""Model cards for MMER models, built only from numbers measured by a run.

`build_model_card(ModelCardInputs(...))` renders the shared template `mmer/templates/model_card.md`
(package data) with `huggingface_hub.ModelCard.from_template`. The text that differs between model
families comes from `model_cards/<model_type>.yaml` (`model_cards.load_family_card_text`); this module
knows no family. What the card holds (model-index, the single-label sections, static widget
examples, tags) and why: docs/training.md, "Output folder".
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from dataset_scripts.building import MULTI_LABEL, PROBLEM_TYPES, SINGLE_LABEL
from dataset_scripts.io import write_bytes_atomic
from model_cards import FamilyCardText, load_family_card_text

from .templates.handler import DEFAULT_MAX_FRAMES, DEFAULT_MAX_SAMPLES

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TAGS",
    "IMAGE_KEYS",
    "ModelCardInputs",
    "UncertaintyResults",
    "build_model_card",
    "save_model_card",
    "template_resource",
]

#: The shared template, package data of `mmer`.
TEMPLATE_NAME = "templates/model_card.md"

#: Tags of every card; each family adds its own (`tags` in its YAML file).
DEFAULT_TAGS: tuple[str, ...] = ("custom_code", "multimodal", "emotion-recognition", "multi-label")

TASK_TYPE = "multi-label-classification"
TASK_NAME = "Multimodal multi-label emotion recognition"
#: model-index task (type, name) and the tag replacing "multi-label", per problem type.
_TASKS: dict[str, tuple[str, str, str]] = {
    MULTI_LABEL: (TASK_TYPE, TASK_NAME, "multi-label"),
    SINGLE_LABEL: (
        "multi-class-classification",
        "Multimodal emotion recognition (one emotion per sample)",
        "single-label",
    ),
}

#: Keys accepted in `ModelCardInputs.images` (repository-relative paths to PNGs).
IMAGE_KEYS: tuple[str, ...] = (
    "training_curves",
    "per_label_f1",
    "reliability_diagram",
    "confusion_matrix",
)

#: The chance-level rows of a single-label card.
_CHANCE_METRICS = ("accuracy", "unweighted_accuracy", "f1_weighted", "f1_macro")

# metric key -> (model-index metric type, human-readable name, metric config)
_KNOWN_METRICS: dict[str, tuple[str, str, str | None]] = {
    "accuracy": ("accuracy", "Accuracy (WA)", None),
    "unweighted_accuracy": ("recall", "Unweighted accuracy (UA, mean per-class recall)", "macro"),
    "f1_weighted": ("f1", "F1 (weighted)", "weighted"),
    "precision_weighted": ("precision", "Precision (weighted)", "weighted"),
    "accuracy_jaccard": ("accuracy", "Accuracy (sample-wise Jaccard)", "samples"),
    "accuracy_jaccard_reference": (
        "accuracy",
        "Accuracy (sample-wise Jaccard, reference convention)",
        "samples-empty-is-wrong",
    ),
    "hamming_loss": ("hamming_loss", "Hamming loss", None),
    "precision_micro": ("precision", "Precision (micro)", "micro"),
    "recall_micro": ("recall", "Recall (micro)", "micro"),
    "f1_micro": ("f1", "F1 (micro)", "micro"),
    "precision_macro": ("precision", "Precision (macro)", "macro"),
    "recall_macro": ("recall", "Recall (macro)", "macro"),
    "f1_macro": ("f1", "F1 (macro)", "macro"),
    "global_average_precision": ("global_average_precision", "Global average precision", None),
    "expected_calibration_error": (
        "expected_calibration_error",
        "Expected calibration error",
        None,
    ),
    "uncertainty_error_auroc": ("roc_auc", "Uncertainty-error AUROC", "uncertainty-vs-error"),
}

_PER_LABEL_PREFIXES = ("f1", "precision", "recall")


# ----------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------


@dataclass
class UncertaintyResults:
    """Measured quality of the model's uncertainty output; a value of None is left out.

    What the uncertainty *is* comes from the family's card text (`uncertainty_definition`).
    """

    error_auroc: float | None = None  # AUROC of the uncertainty for detecting wrong decisions
    expected_calibration_error: float | None = None  # of the probabilities
    n_bins: int | None = None  # bins of the calibration error
    per_sample: bool = False  # one uncertainty per sample (else one per sample and emotion)


@dataclass
class ModelCardInputs:
    """Everything a model card shows that a run measured or a caller chose."""

    model_type: str  # the model's `config.model_type`; selects `model_cards/<model_type>.yaml`
    model_name: str  # display name, also the `model-index` name
    dataset_name: str  # human-readable dataset name (e.g. "CMU-MOSEI")
    # Measured metrics on `dataset_split` (typically `mmer.metrics.multilabel_metrics_from_scores`).
    # Each aggregate entry becomes one `EvalResult` and one row of the results table; per-label keys
    # (`f1_<label>`, `precision_<label>`, `recall_<label>`) go to the per-emotion table. Non-finite
    # (or None) values are shown as "undefined" and left out of `model-index`.
    metrics: Mapping[str, float | None]
    per_label_f1: Mapping[str, float]  # measured `{label: f1}`; its keys define the label order
    # The decision threshold of each label, in label order (a global one repeated once per label);
    # None for a single-label model, which predicts its top-scoring emotion.
    thresholds: Sequence[float] | None
    synthetic_data: bool  # trained and evaluated on synthetic features (adds prominent warnings)
    dataset_id: str | None = None  # Hub id: added to `datasets`, the `model-index` dataset type
    dataset_config: str | None = None  # dataset configuration (e.g. "mosei"), for `model-index`
    dataset_split: str = "test"  # the split the metrics were measured on
    threshold_tuned_on: str | None = "validation"  # None if the thresholds were fixed in advance
    # `{modality: input dimension}` and `{modality: description of the features}`, for the
    # intended-use table.
    feature_dims: Mapping[str, int] = field(default_factory=dict)
    feature_extractors: Mapping[str, str] = field(default_factory=dict)
    hyperparameters: Mapping[str, Any] = field(default_factory=dict)  # table, omitted when empty
    uncertainty: UncertaintyResults | None = None  # the section is omitted when None
    # `{modality combination: {metric: value}}`, e.g. from masked modalities.
    per_combination: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    images: Mapping[str, str] = field(default_factory=dict)  # relative PNG paths by `IMAGE_KEYS`
    # Static widget examples: dicts with `example_title`, a `text` (description of the input) or
    # `src` (repository-relative file), and `output` = `[{"label": str, "score": float}, ...]`
    # recorded from the model.
    widget_examples: Sequence[Mapping[str, Any]] = ()
    # What the widget examples are, said on the card (`WIDGET_SOURCES`); None: not said.
    widget_source: str | None = None
    extra_sections: Mapping[str, str] = field(default_factory=dict)  # appended before the citation
    repo_id: str | None = None  # Hub repo id in the loading snippet (a placeholder otherwise)
    license: str = "apache-2.0"
    base_model: str | list[str] | None = None
    tags: Sequence[str] = ()  # added after the shared and the family's tags
    auto_model_class: str = "AutoModelForSequenceClassification"  # in the loading snippet
    endpoint_handler: bool = True  # the repository ships `handler.py` for Inference Endpoints
    # The folder has a processor: raw text (and 16 kHz speech) in, besides pre-extracted features.
    raw_input: bool = False
    problem_type: str = MULTI_LABEL  # or SINGLE_LABEL: one emotion per sample, arg-max decisions
    # Single-label only: the chance level (`{metric: value, "predictor": name}`) and the test
    # confusion matrix (`{"labels": [...], "counts": [[gold x predicted]]}`).
    chance: Mapping[str, Any] | None = None
    confusion_matrix: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in ("model_type", "model_name", "dataset_name"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise ValueError(f"`{name}` must be a non-empty string.")
        if not self.metrics:
            raise ValueError("`metrics` is empty: a model card needs at least one measured metric.")
        if not self.per_label_f1:
            raise ValueError("`per_label_f1` is empty.")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"`problem_type` must be one of {PROBLEM_TYPES}, got {self.problem_type!r}."
            )
        if self.problem_type == SINGLE_LABEL:
            self._check_single_label()
        else:
            self._check_thresholds()
        if self.uncertainty is not None and not isinstance(self.uncertainty, UncertaintyResults):
            raise TypeError("`uncertainty` must be an UncertaintyResults or None.")
        if self.widget_source is not None and self.widget_source not in WIDGET_SOURCES:
            raise ValueError(
                f"`widget_source` must be one of {sorted(WIDGET_SOURCES)} or None, got "
                f"{self.widget_source!r}."
            )
        if self.widget_source == WITHHELD_EXAMPLES and self.widget_examples:
            raise ValueError("`widget_source` says the examples were withheld, but there are some.")
        for key in self.images:
            if key not in IMAGE_KEYS:
                raise ValueError(f"Unknown image key {key!r}; allowed: {list(IMAGE_KEYS)}.")
        self.images = {
            key: _validate_relative_path(path, f"images[{key!r}]")
            for key, path in self.images.items()
        }

    def _check_thresholds(self) -> None:
        """Multi-label: one threshold per label; no single-label sections."""
        if self.chance is not None or self.confusion_matrix is not None:
            raise ValueError(
                "`chance` and `confusion_matrix` are shown for single-label models only."
            )
        if not isinstance(self.thresholds, (list, tuple)):
            raise TypeError(
                "`thresholds` must be a list of per-label floats in label order, got "
                f"{type(self.thresholds).__name__}."
            )
        if len(self.thresholds) != len(self.per_label_f1):
            raise ValueError(
                f"`thresholds` has {len(self.thresholds)} values but there are "
                f"{len(self.per_label_f1)} labels."
            )
        self.thresholds = [_require_number(value, "threshold") for value in self.thresholds]

    def _check_single_label(self) -> None:
        """Single-label: no thresholds; a confusion matrix, if given, over the labels in order."""
        if self.thresholds is not None:
            raise ValueError(
                "A single-label model predicts its top-scoring emotion: `thresholds` must be None."
            )
        if self.confusion_matrix is None:
            return
        labels = [str(label) for label in self.confusion_matrix.get("labels", [])]
        counts = self.confusion_matrix.get("counts", [])
        square = [len(row) for row in counts] == [len(labels)] * len(labels)
        if labels != self.label_names or not square:
            raise ValueError(
                "`confusion_matrix` must hold 'labels' (those of `per_label_f1`, in order) and "
                "'counts', a square list of lists, one row per gold label."
            )

    @property
    def label_names(self) -> list[str]:
        return [str(label) for label in self.per_label_f1]


# ----------------------------------------------------------------------------------------------------
# Formatting and validation helpers
# ----------------------------------------------------------------------------------------------------


def _require_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not hasattr(value, "__float__"):
        raise TypeError(f"{what} must be a number, got {value!r} ({type(value).__name__}).")
    return float(value)


def _format_value(value: float) -> str:
    """Metric values in tables: 4 decimals; a non-finite value is written out as undefined."""
    return f"{value:.4f}" if math.isfinite(value) else "undefined"


def _format_parameter(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_parameter(item) for item in value)
    return str(value)


def _cell(text: Any) -> str:
    """Make a value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _metric_name(key: str) -> str:
    if key not in _KNOWN_METRICS and key.endswith("error_auroc"):  # one per uncertainty field
        return f"Error AUROC of `{key.removesuffix('error_auroc')}uncertainty`"
    return _KNOWN_METRICS.get(key, (key, key, None))[1]


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "dataset"


def _validate_relative_path(path: Any, what: str) -> str:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"{what} must be a path string, got {type(path).__name__}.")
    posix = Path(path).as_posix()
    if Path(path).is_absolute() or ".." in Path(path).parts or "://" in posix:
        raise ValueError(
            f"{what} must be a path relative to the model repository (e.g. 'images/plot.png'), "
            f"got {posix!r}."
        )
    return posix


#: What a card's widget examples are (`ModelCardInputs.widget_source`), as the card says it.
PACKAGE_SENTENCES = "package_sentences"
WITHHELD_EXAMPLES = "withheld"
WIDGET_SOURCES = {
    PACKAGE_SENTENCES: (
        "The examples beside this card are sentences written by the package that trained this "
        "model (the same for every model it trains), not samples of its training or test data."
    ),
    "test_samples": (
        "The examples beside this card are the first samples of the test split as they were "
        "recorded (their sentences, and their audio clips in `examples/`), published at the "
        "trainer's request; a sample without a short clip shows its pre-extracted features."
    ),
    "test_features": (
        "The examples beside this card are the pre-extracted features of the first samples of "
        "the test split (`examples/*.npz`)."
    ),
    WITHHELD_EXAMPLES: (
        "No examples are shown beside this card: the test samples are the trainer's own "
        "recordings, which are not published unless the trainer asks for it."
    ),
}


def _validate_widget_example(example: Any, index: int) -> dict[str, Any]:
    where = f"widget_examples[{index}]"
    if not isinstance(example, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(example).__name__}.")
    title = example.get("example_title")
    if not title or not isinstance(title, str):
        raise ValueError(f"{where} needs a non-empty 'example_title' string.")
    if "text" not in example and "src" not in example:
        raise ValueError(
            f"{where} needs an input description: a 'text' (e.g. which clip and which example "
            "file) or a 'src' (a file in the repository)."
        )
    output = example.get("output")
    if output is not None and (not isinstance(output, Sequence) or isinstance(output, str)):
        raise TypeError(f"{where}['output'] must be a list of dicts.")
    if not output:
        raise ValueError(f"{where} needs a non-empty 'output' list of {{label, score}}.")
    cleaned = {**example, "output": []}
    for entry in output:
        if not isinstance(entry, Mapping) or set(entry) != {"label", "score"}:
            raise ValueError(
                f"Each output of {where} must be {{'label': str, 'score': float}}, got {entry!r}."
            )
        score = _require_number(entry["score"], f"{where} score")
        if not 0.0 <= score <= 1.0:
            raise ValueError(f"Widget scores must lie in [0, 1], got {score}.")
        cleaned["output"].append({"label": str(entry["label"]), "score": score})
    if "src" in cleaned:
        cleaned["src"] = _validate_relative_path(cleaned["src"], f"{where} src")
    return cleaned


def _value_rows(table: Mapping[str, Mapping[str, Any]], columns: Sequence[str], what: str):
    """Table rows `[name, value per column]`: values to 4 decimals, "" where a value is missing,
    "n/a" where it was not defined (None, e.g. an AUROC on a split without a wrong decision)."""
    return [
        [
            _cell(name),
            *(
                ""
                if column not in values
                else "n/a"
                if values[column] is None
                else _format_value(_require_number(values[column], f"{what}[{name!r}]"))
                for column in columns
            ),
        ]
        for name, values in table.items()
    ]


# ----------------------------------------------------------------------------------------------------
# Sections: each returns what the template needs for one part of the card (tables as lists of rows)
# ----------------------------------------------------------------------------------------------------


def _split_metrics(
    inputs: ModelCardInputs,
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Aggregate metrics, and per-label ones as `{label: {prefix: value}}` with F1 always there."""
    per_label: dict[str, dict[str, float]] = {
        str(label): {"f1": _require_number(value, f"per_label_f1[{label!r}]")}
        for label, value in inputs.per_label_f1.items()
    }
    per_label_keys = {
        f"{prefix}_{label}": (prefix, label)
        for prefix in _PER_LABEL_PREFIXES
        for label in per_label
    }
    aggregate: dict[str, float] = {}
    for key, value in inputs.metrics.items():
        # None stands for "measured but undefined" (e.g. an AUROC with one class), like NaN.
        number = math.nan if value is None else _require_number(value, f"metrics[{key!r}]")
        if key not in per_label_keys:
            aggregate[key] = number
            continue
        prefix, label = per_label_keys[key]
        measured_f1 = per_label[label]["f1"]
        if prefix == "f1" and not math.isclose(number, measured_f1, rel_tol=0.0, abs_tol=1e-12):
            raise ValueError(
                f"metrics['f1_{label}'] = {number} disagrees with per_label_f1[{label!r}] = "
                f"{measured_f1}."
            )
        per_label[label].setdefault(prefix, number)
    return aggregate, per_label


def _eval_results(inputs: ModelCardInputs, aggregate: Mapping[str, float]) -> list[EvalResult]:
    """One `EvalResult` per finite aggregate metric."""
    task_type, task_name, _ = _TASKS[inputs.problem_type]
    results = []
    for key, value in aggregate.items():
        if not math.isfinite(value):
            logger.warning("Metric %r is %s; it is left out of model-index.", key, value)
            continue
        metric_type, metric_name, metric_config = _KNOWN_METRICS.get(key, (key, key, None))
        results.append(
            EvalResult(
                task_type=task_type,
                task_name=task_name,
                dataset_type=inputs.dataset_id or _slug(inputs.dataset_name),
                dataset_name=inputs.dataset_name,
                dataset_config=inputs.dataset_config,
                dataset_split=inputs.dataset_split,
                metric_type=metric_type,
                metric_name=metric_name,
                metric_config=metric_config,
                metric_value=value,
            )
        )
    return results


def _card_data(
    inputs: ModelCardInputs, family: FamilyCardText, aggregate: Mapping[str, float]
) -> ModelCardData:
    """The YAML header: license, tags, datasets, base model, model-index and widget."""
    eval_results = _eval_results(inputs, aggregate)
    widget = [
        _validate_widget_example(example, index)
        for index, example in enumerate(inputs.widget_examples)
    ]
    return ModelCardData(
        model_name=inputs.model_name,
        license=inputs.license,
        library_name="transformers",
        pipeline_tag="other",
        tags=list(dict.fromkeys([*_default_tags(inputs.problem_type), *family.tags, *inputs.tags])),
        datasets=[inputs.dataset_id] if inputs.dataset_id else None,
        metrics=list(dict.fromkeys(result.metric_type for result in eval_results)) or None,
        base_model=inputs.base_model,
        eval_results=eval_results or None,
        widget=widget or None,
    )


def _default_tags(problem_type: str) -> tuple[str, ...]:
    """`DEFAULT_TAGS`, with "single-label" instead of "multi-label" for a single-label model."""
    tag = _TASKS[problem_type][2]
    return tuple(tag if name == "multi-label" else name for name in DEFAULT_TAGS)


def _usage_section(inputs: ModelCardInputs) -> dict[str, Any]:
    """Intended use (the input features table) and how to load the model."""
    modalities = dict.fromkeys([*inputs.feature_dims, *inputs.feature_extractors])
    feature_rows = [
        [
            _cell(modality),
            _cell(inputs.feature_extractors.get(modality, "")),
            str(int(inputs.feature_dims[modality])) if modality in inputs.feature_dims else "",
        ]
        for modality in modalities
    ]
    return {
        "feature_rows": feature_rows,
        "auto_model_class": inputs.auto_model_class,
        "load_path": inputs.repo_id or "path/to/exported/model",
        "endpoint_handler": inputs.endpoint_handler,
        "raw_input": inputs.raw_input,
        "widget_note": WIDGET_SOURCES.get(inputs.widget_source),
        "raw_modalities": [m for m in ("text", "audio") if m in inputs.feature_dims],
        "max_samples": DEFAULT_MAX_SAMPLES,
        "max_frames": DEFAULT_MAX_FRAMES,
    }


def _threshold_text(inputs: ModelCardInputs) -> tuple[str, list[list[str]]]:
    """The decision rule: one sentence for a shared threshold, a table for per-label ones (none
    for a single-label model, which predicts its top-scoring emotion)."""
    if inputs.problem_type == SINGLE_LABEL:
        text = (
            "Each sample is given the one emotion with the highest score (arg-max); no decision "
            "threshold is tuned or used."
        )
        return text, []
    tuned_on, split = inputs.threshold_tuned_on, inputs.dataset_split
    if tuned_on is None:
        provenance = " It was fixed in advance, not tuned."
    elif tuned_on == split:
        provenance = (
            f" It was tuned on the `{tuned_on}` split itself, so these results are optimistic."
        )
    else:
        provenance = f" It was tuned on the `{tuned_on}` split, not on `{split}`."
    if len(set(inputs.thresholds)) == 1:
        text = (
            "An emotion is predicted when its probability is greater than the decision threshold "
            f"**{inputs.thresholds[0]:g}**.{provenance}"
        )
        return text, []
    text = (
        "An emotion is predicted when its probability is greater than its own decision "
        f"threshold (table below).{provenance}"
    )
    rows = [
        [_cell(label), f"{value:g}"]
        for label, value in zip(inputs.label_names, inputs.thresholds, strict=True)
    ]
    return text, rows


def _uncertainty_section(inputs: ModelCardInputs, family: FamilyCardText) -> dict[str, Any] | None:
    """The family's definition of its uncertainty output and how well it was measured to work."""
    results = inputs.uncertainty
    if results is None:
        return None
    if not family.uncertainty_definition:
        raise ValueError(
            f"Uncertainty results were given but model_cards/{family.model_type}.yaml has no "
            "'uncertainty_definition' to say what the uncertainty is."
        )
    single_label = inputs.problem_type == SINGLE_LABEL
    calibration_name = "Expected calibration error of the " + (
        "top-emotion score" if single_label else "probabilities"
    )
    if results.n_bins is not None:
        calibration_name += f" ({int(results.n_bins)} equal-width bins)"
    measures = [
        (
            "AUROC of the uncertainty for detecting wrong emotion decisions",
            "AUROC",
            results.error_auroc,
        ),
        (calibration_name, "ECE", results.expected_calibration_error),
    ]
    return {
        "definition": family.uncertainty_definition,
        "auroc_text": _auroc_text(single_label, results.per_sample, inputs.dataset_split),
        "rows": [
            [name, _format_value(_require_number(value, what))]
            for name, what, value in measures
            if value is not None
        ],
        "reliability_image": inputs.images.get("reliability_diagram"),
    }


def _auroc_text(single_label: bool, per_sample: bool, split: str) -> str:
    """What the error AUROC tells apart, for this problem type and uncertainty shape."""
    if single_label:
        decisions = (
            "samples whose top-scoring emotion is wrong from those whose top emotion is right"
            + ("" if per_sample else " (a per-emotion uncertainty is read at the top emotion)")
        )
    elif per_sample:
        decisions = "samples with at least one wrong emotion decision from fully right ones"
    else:
        decisions = "wrong (sample, emotion) decisions from right ones"
    return (
        f"The AUROC measures how well the uncertainty tells {decisions} on the `{split}` split "
        "(0.5 = uninformative)."
    )


#: Metric conventions of a single-label card (after the results table).
SINGLE_LABEL_CONVENTIONS = (
    "Metric conventions: accuracy (WA) is the share of samples whose top-scoring emotion is the "
    "gold one; unweighted accuracy (UA) is the mean recall over the emotions that have samples in "
    "the split; weighted F1 weights each emotion's F1 by its number of samples; micro-F1 equals "
    "the accuracy. Divisions by zero count as zero."
)


def _single_label_section(inputs: ModelCardInputs) -> dict[str, Any] | None:
    """The chance level and the confusion matrix of a single-label card."""
    if inputs.problem_type != SINGLE_LABEL:
        return None
    chance = dict(inputs.chance or {})
    chance_rows = [
        [_cell(_metric_name(key)), _format_value(_require_number(chance[key], f"chance[{key!r}]"))]
        for key in _CHANCE_METRICS
        if key in chance
    ]
    matrix = inputs.confusion_matrix
    return {
        "conventions": SINGLE_LABEL_CONVENTIONS,
        "chance_predictor": _cell(chance.get("predictor", "")),
        "chance_rows": chance_rows,
        "confusion_columns": ["gold / predicted", *(_cell(label) for label in inputs.label_names)]
        if matrix
        else [],
        "confusion_rows": [
            [_cell(label), *(str(int(count)) for count in row)]
            for label, row in zip(inputs.label_names, matrix["counts"], strict=True)
        ]
        if matrix
        else [],
        "confusion_image": inputs.images.get("confusion_matrix"),
    }


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def template_resource():
    """The shared card template, as an `importlib.resources` Traversable."""
    return resources.files(__package__).joinpath(TEMPLATE_NAME)


def _template_context(inputs: ModelCardInputs, family: FamilyCardText) -> dict[str, Any]:
    """The card's metadata (`card_data`) and the template variables of every section."""
    aggregate, per_label = _split_metrics(inputs)
    threshold_text, threshold_rows = _threshold_text(inputs)
    per_label_columns = [
        prefix
        for prefix in _PER_LABEL_PREFIXES
        if any(prefix in values for values in per_label.values())
    ]
    combination_columns = list(
        dict.fromkeys(key for values in inputs.per_combination.values() for key in values)
    )
    return {
        "card_data": _card_data(inputs, family, aggregate),
        "family": family,
        "model_name": inputs.model_name,
        "synthetic_data": bool(inputs.synthetic_data),
        "dataset": {
            "name": inputs.dataset_name,
            "id": inputs.dataset_id,
            "split": inputs.dataset_split,
        },
        "usage": _usage_section(inputs),
        "training": {
            "hyperparameter_rows": [
                [_cell(name), _cell(_format_parameter(value))]
                for name, value in inputs.hyperparameters.items()
            ],
            "curves_image": inputs.images.get("training_curves"),
        },
        "evaluation": {
            "metric_rows": [
                [_cell(_metric_name(key)), _format_value(value)] for key, value in aggregate.items()
            ],
            "threshold_text": threshold_text,
            "threshold_rows": threshold_rows,
        },
        "per_label": {
            "columns": [{"f1": "F1"}.get(column, column) for column in per_label_columns],
            "rows": _value_rows(per_label, per_label_columns, "per_label_f1"),
            "f1_image": inputs.images.get("per_label_f1"),
        },
        "combinations": {  # results with only some modalities given
            "columns": [_cell(_metric_name(key)) for key in combination_columns],
            "rows": _value_rows(inputs.per_combination, combination_columns, "per_combination"),
        },
        "uncertainty": _uncertainty_section(inputs, family),
        "single_label": _single_label_section(inputs),
        "extra_sections": [
            {"title": _cell(title), "body": body.strip()}
            for title, body in inputs.extra_sections.items()
        ],
    }


def build_model_card(inputs: ModelCardInputs, *, family: FamilyCardText | None = None) -> ModelCard:
    """Build the model card of a trained model from measured results.

    Args:
        inputs: What the run measured and the caller chose.
        family: The family's card text; defaults to `load_family_card_text(inputs.model_type)`
            (raises `FileNotFoundError` naming the missing `model_cards/<model_type>.yaml`).

    Returns:
        A `huggingface_hub.ModelCard`.
    """
    family = family if family is not None else load_family_card_text(inputs.model_type)
    context = _template_context(inputs, family)
    card_data = context.pop("card_data")
    with resources.as_file(template_resource()) as template_path:
        return ModelCard.from_template(card_data, template_path=str(template_path), **context)


def save_model_card(card: ModelCard, folder: str | os.PathLike[str]) -> Path:
    """Write `card` to `<folder>/README.md` atomically (line endings kept as they are)."""
    directory = Path(folder)
    if not directory.is_dir():
        raise FileNotFoundError(f"Cannot save the model card: {directory} is not a folder.")
    path = write_bytes_atomic(directory / "README.md", str(card).encode("utf-8"))
    logger.info("Wrote model card %s", path)
    return path
