"""Model cards for MMER models, built only from numbers measured by a run.

`build_model_card` renders `model_cards/lddu_model_card_template.md` (a Jinja template) with
`huggingface_hub.ModelCardData` metadata:

* `model-index` holds one `EvalResult` per entry of `metrics` (task type `multi-label-classification`,
  the evaluated dataset and split) and nothing else;
* every number in the card text comes from an argument; sections whose data was not given are left
  out rather than filled with placeholders;
* `widget` holds static examples with recorded outputs, because the Hub cannot run custom-code models
  in its widget (see `docs/hf-stack-notes.md` Q3 in the project);
* `pipeline_tag: other` (there is no multimodal classification task on the Hub) with tags that make
  the model findable.

`card.validate()` needs the Hub (it posts the YAML to `/api/validate-yaml`), so it is not called here;
`ModelCard.load` on the saved file checks that the metadata parses.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from dataset_scripts.io import write_bytes_atomic

logger = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_TAGS",
    "DEFAULT_TEMPLATE_PATH",
    "IMAGE_KEYS",
    "build_model_card",
    "save_model_card",
]

#: The template shipped with the project (`model_cards/` next to the `mmer` package).
DEFAULT_TEMPLATE_PATH = (
    Path(__file__).resolve().parent.parent / "model_cards" / ("lddu_model_card_template.md")
)

DEFAULT_TAGS: tuple[str, ...] = (
    "custom_code",
    "multimodal",
    "emotion-recognition",
    "multi-label",
    "lddu",
    "uncertainty",
)

TASK_TYPE = "multi-label-classification"
TASK_NAME = "Multimodal multi-label emotion recognition"

#: Keys accepted in `images` (repository-relative paths to PNGs).
IMAGE_KEYS: tuple[str, ...] = ("training_curves", "per_label_f1", "reliability_diagram")

_UNCERTAINTY_KEYS = ("definition", "error_auroc", "expected_calibration_error", "n_bins")

# metric key -> (model-index metric type, human-readable name, metric config)
_KNOWN_METRICS: dict[str, tuple[str, str, str | None]] = {
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
# Formatting and validation helpers
# ----------------------------------------------------------------------------------------------------


def _require_number(value: Any, what: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        and not hasattr(value, "__float__")
    ):
        raise TypeError(f"{what} must be a number, got {value!r} ({type(value).__name__}).")
    return float(value)


def _format_value(value: float) -> str:
    """Metric values in tables: 4 decimals; a non-finite value is written out as undefined."""
    return f"{value:.4f}" if math.isfinite(value) else "undefined"


def _format_parameter(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return ", ".join(_format_parameter(item) for item in value)
    return str(value)


def _cell(text: Any) -> str:
    """Make a value safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


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


def _validate_widget_examples(examples: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    validated = []
    for index, example in enumerate(examples):
        if not isinstance(example, Mapping):
            raise TypeError(
                f"widget_examples[{index}] must be a dict, got {type(example).__name__}."
            )
        title = example.get("example_title")
        if not title or not isinstance(title, str):
            raise ValueError(f"widget_examples[{index}] needs a non-empty 'example_title' string.")
        if "text" not in example and "src" not in example:
            raise ValueError(
                f"widget_examples[{index}] needs an input description: a 'text' (e.g. which clip and "
                "which example file) or a 'src' (a file in the repository)."
            )
        output = example.get("output")
        if output is not None and (not isinstance(output, Sequence) or isinstance(output, str)):
            raise TypeError(f"widget_examples[{index}]['output'] must be a list of dicts.")
        if not output:
            raise ValueError(
                f"widget_examples[{index}] needs a non-empty 'output' list of {{label, score}}."
            )
        cleaned_output = []
        for entry in output:
            if not isinstance(entry, Mapping) or set(entry) != {"label", "score"}:
                raise ValueError(
                    f"Each output of widget_examples[{index}] must be {{'label': str, 'score': "
                    f"float}}, got {entry!r}."
                )
            score = _require_number(entry["score"], f"widget_examples[{index}] score")
            if not 0.0 <= score <= 1.0:
                raise ValueError(f"Widget scores must lie in [0, 1], got {score}.")
            cleaned_output.append({"label": str(entry["label"]), "score": score})
        cleaned = dict(example)
        cleaned["output"] = cleaned_output
        if "src" in cleaned:
            cleaned["src"] = _validate_relative_path(
                cleaned["src"], f"widget_examples[{index}] src"
            )
        validated.append(cleaned)
    return validated


def _split_metrics(
    metrics: Mapping[str, Any], label_names: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Separate aggregate metrics from per-label ones (`f1_<label>`, `precision_<label>`, ...)."""
    aggregate: dict[str, float] = {}
    per_label: dict[str, dict[str, float]] = {}
    per_label_keys = {
        f"{prefix}_{label}": (prefix, label)
        for prefix in _PER_LABEL_PREFIXES
        for label in label_names
    }
    for key, value in metrics.items():
        # None stands for "measured but undefined" (e.g. an AUROC with one class), like NaN.
        number = math.nan if value is None else _require_number(value, f"metrics[{key!r}]")
        if key in per_label_keys:
            prefix, label = per_label_keys[key]
            per_label.setdefault(prefix, {})[label] = number
        else:
            aggregate[key] = number
    return aggregate, per_label


def _eval_result(
    key: str,
    value: float,
    *,
    dataset_name: str,
    dataset_type: str,
    dataset_config: str | None,
    dataset_split: str,
) -> EvalResult:
    metric_type, metric_name, metric_config = _KNOWN_METRICS.get(key, (key, key, None))
    return EvalResult(
        task_type=TASK_TYPE,
        task_name=TASK_NAME,
        dataset_type=dataset_type,
        dataset_name=dataset_name,
        dataset_config=dataset_config,
        dataset_split=dataset_split,
        metric_type=metric_type,
        metric_name=metric_name,
        metric_config=metric_config,
        metric_value=value,
    )


def _render_template(template_path: Path, context: Mapping[str, Any]) -> str:
    import jinja2

    environment = jinja2.Environment(
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
    )
    template = environment.from_string(template_path.read_text(encoding="utf-8"))
    text = template.render(**context)
    return re.sub(r"\n{3,}", "\n\n", text)


# ----------------------------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------------------------


def build_model_card(
    *,
    model_name: str,
    metrics: Mapping[str, float],
    per_label_f1: Mapping[str, float],
    dataset_name: str,
    dataset_id: str | None = None,
    hyperparameters: Mapping[str, Any] | None = None,
    threshold: float | Mapping[str, float] | Sequence[float],
    widget_examples: Sequence[Mapping[str, Any]] | None = None,
    uncertainty: Mapping[str, Any] | None = None,
    per_combination: Mapping[str, Mapping[str, float]] | None = None,
    images: Mapping[str, str] | None = None,
    synthetic_data: bool,
    repo_id: str | None = None,
    license: str = "apache-2.0",
    extra_sections: Mapping[str, str] | None = None,
    dataset_split: str = "test",
    dataset_config: str | None = None,
    threshold_tuned_on: str | None = "validation",
    differences_from_reference: str | None = None,
    feature_dims: Mapping[str, int] | None = None,
    feature_extractors: Mapping[str, str] | None = None,
    auto_model_class: str = "AutoModelForSequenceClassification",
    endpoint_handler: bool = True,
    base_model: str | list[str] | None = None,
    tags: Sequence[str] | None = None,
    template_path: str | os.PathLike[str] | None = None,
) -> ModelCard:
    """Build the model card of a trained LDDU model from measured results.

    Args:
        model_name: Display name, also the `model-index` name.
        metrics: Measured metrics on `dataset_split` (typically the output of
            `mmer.metrics.multilabel_metrics_from_scores`). Each entry becomes one `EvalResult` in
            `model-index` and one row of the results table, except per-label keys (`f1_<label>`,
            `precision_<label>`, `recall_<label>` for labels of `per_label_f1`), which go to the
            per-emotion table. Non-finite (or None) values are shown as "undefined" and left out of
            `model-index`.
        per_label_f1: Measured F1 per emotion, `{label: f1}`; its keys define the label order.
        dataset_name: Human-readable dataset name (e.g. "CMU-MOSEI").
        dataset_id: Hub dataset id, added to `datasets` and used as the `model-index` dataset type.
        hyperparameters: `{name: value}` shown as a table (omitted when empty).
        threshold: The decision threshold: one number, `{label: threshold}`, or one per label in the
            order of `per_label_f1`.
        widget_examples: Static widget examples: dicts with `example_title`, a `text` (description of
            the input, e.g. the clip and the `.npz` file holding its features) or `src`
            (repository-relative file), and `output` = `[{"label": str, "score": float}, ...]` recorded
            from the model.
        uncertainty: `{"definition": markdown text, "error_auroc": float, "expected_calibration_error":
            float, "n_bins": int}`; only `definition` is required, and a value of None counts as
            not given.
        per_combination: `{modality combination: {metric: value}}`, e.g. from evaluating with
            modalities masked.
        images: Repository-relative PNG paths under the keys of `IMAGE_KEYS`.
        synthetic_data: Whether the model was trained and evaluated on synthetic features (adds
            prominent warnings).
        repo_id: Hub repo id used in the loading snippet (a local folder path is shown otherwise).
        license: License id for the metadata.
        extra_sections: `{title: markdown}` appended before the citation.
        dataset_split: The split the metrics were measured on.
        dataset_config: Dataset configuration (e.g. "mosei"), for `model-index`.
        threshold_tuned_on: Split the threshold was tuned on, or None if it was fixed in advance.
        differences_from_reference: Markdown on how this implementation differs from the authors'
            code (or a link to the project's docs); the section is omitted when None.
        feature_dims: `{modality: input dimension}` for the intended-use section.
        feature_extractors: `{modality: description of the feature extractor}`.
        auto_model_class: Auto class shown in the loading snippet.
        endpoint_handler: Whether the repository ships `handler.py` for Inference Endpoints.
        base_model: Optional `base_model` metadata.
        tags: Extra tags added to `DEFAULT_TAGS`.
        template_path: Jinja template; defaults to `DEFAULT_TEMPLATE_PATH`.

    Returns:
        A `huggingface_hub.ModelCard`.
    """
    if not isinstance(model_name, str) or not model_name:
        raise ValueError("`model_name` must be a non-empty string.")
    if not isinstance(dataset_name, str) or not dataset_name:
        raise ValueError("`dataset_name` must be a non-empty string.")
    if not metrics:
        raise ValueError("`metrics` is empty: a model card needs at least one measured metric.")
    if not per_label_f1:
        raise ValueError("`per_label_f1` is empty.")
    label_names = [str(label) for label in per_label_f1]

    # --- metrics, model-index -----------------------------------------------------------------------
    aggregate_metrics, per_label_metrics = _split_metrics(metrics, label_names)
    measured_f1 = {
        str(label): _require_number(value, f"per_label_f1[{label!r}]")
        for label, value in per_label_f1.items()
    }
    for label, value in per_label_metrics.get("f1", {}).items():
        if not math.isclose(value, measured_f1[label], rel_tol=0.0, abs_tol=1e-12):
            raise ValueError(
                f"metrics['f1_{label}'] = {value} disagrees with per_label_f1[{label!r}] = "
                f"{measured_f1[label]}."
            )
    per_label_metrics["f1"] = measured_f1
    dataset_type = dataset_id or _slug(dataset_name)
    eval_results = []
    for key, value in aggregate_metrics.items():
        if not math.isfinite(value):
            logger.warning("Metric %r is %s; it is left out of model-index.", key, value)
            continue
        eval_results.append(
            _eval_result(
                key,
                value,
                dataset_name=dataset_name,
                dataset_type=dataset_type,
                dataset_config=dataset_config,
                dataset_split=dataset_split,
            )
        )
    metric_rows = [
        {"name": _cell(_KNOWN_METRICS.get(key, (key, key, None))[1]), "value": _format_value(value)}
        for key, value in aggregate_metrics.items()
    ]
    per_label_columns = [prefix for prefix in _PER_LABEL_PREFIXES if prefix in per_label_metrics]
    per_label_rows = [
        {
            "label": _cell(label),
            "values": [
                _format_value(per_label_metrics[column][label])
                if label in per_label_metrics[column]
                else ""
                for column in per_label_columns
            ],
        }
        for label in label_names
    ]
    per_label_columns = [{"f1": "F1"}.get(column, column) for column in per_label_columns]

    # --- threshold ----------------------------------------------------------------------------------
    threshold_rows: list[dict[str, str]] = []
    if isinstance(threshold, Mapping):
        if set(map(str, threshold)) != set(label_names):
            raise ValueError(
                f"`threshold` labels {sorted(map(str, threshold))} differ from the labels of "
                f"`per_label_f1` {sorted(label_names)}."
            )
        by_label = {str(label): value for label, value in threshold.items()}
        per_label_thresholds = {
            label: _require_number(by_label[label], "threshold") for label in label_names
        }
    elif isinstance(threshold, Sequence) or hasattr(threshold, "tolist"):
        values = threshold.tolist() if hasattr(threshold, "tolist") else list(threshold)
        if isinstance(values, list):
            if len(values) != len(label_names):
                raise ValueError(
                    f"`threshold` has {len(values)} values but there are {len(label_names)} labels."
                )
            per_label_thresholds = {
                label: _require_number(value, "threshold")
                for label, value in zip(label_names, values, strict=True)
            }
        else:  # a 0-d array
            per_label_thresholds = None
            threshold = values
    else:
        per_label_thresholds = None
    if threshold_tuned_on is None:
        provenance = " It was fixed in advance, not tuned."
    elif threshold_tuned_on == dataset_split:
        provenance = (
            f" It was tuned on the `{threshold_tuned_on}` split itself, so these results are "
            "optimistic."
        )
    else:
        provenance = f" It was tuned on the `{threshold_tuned_on}` split, not on `{dataset_split}`."
    if per_label_thresholds is None:
        threshold_value = _require_number(threshold, "threshold")
        threshold_text = (
            "An emotion is predicted when its probability is greater than the decision threshold "
            f"**{threshold_value:g}**.{provenance}"
        )
    else:
        threshold_text = (
            "An emotion is predicted when its probability is greater than its own decision "
            f"threshold (table below).{provenance}"
        )
        threshold_rows = [
            {"label": _cell(label), "value": f"{value:g}"}
            for label, value in per_label_thresholds.items()
        ]

    # --- uncertainty, combinations, images ------------------------------------------------------------
    uncertainty_context = None
    if uncertainty is not None:
        unknown = set(uncertainty) - set(_UNCERTAINTY_KEYS)
        if unknown:
            raise ValueError(
                f"Unknown `uncertainty` keys {sorted(unknown)}; allowed: {list(_UNCERTAINTY_KEYS)}."
            )
        definition = uncertainty.get("definition")
        if not isinstance(definition, str) or not definition.strip():
            raise ValueError("`uncertainty` needs a non-empty 'definition' text.")
        rows = []
        if uncertainty.get("error_auroc") is not None:
            rows.append(
                {
                    "name": "AUROC of the uncertainty for detecting wrong emotion decisions",
                    "value": _format_value(_require_number(uncertainty["error_auroc"], "AUROC")),
                }
            )
        if uncertainty.get("expected_calibration_error") is not None:
            bins = uncertainty.get("n_bins")
            name = "Expected calibration error of the probabilities"
            if bins is not None:
                name += f" ({int(bins)} equal-width bins)"
            rows.append(
                {
                    "name": name,
                    "value": _format_value(
                        _require_number(uncertainty["expected_calibration_error"], "ECE")
                    ),
                }
            )
        uncertainty_context = {"definition": definition.strip(), "rows": rows}

    combination_columns: list[str] = []
    combination_rows: list[dict[str, Any]] = []
    if per_combination:
        for values in per_combination.values():
            for key in values:
                if key not in combination_columns:
                    combination_columns.append(key)
        combination_rows = [
            {
                "name": _cell(name),
                "values": [
                    _format_value(_require_number(values[key], f"per_combination[{name!r}]"))
                    if key in values
                    else ""
                    for key in combination_columns
                ],
            }
            for name, values in per_combination.items()
        ]
        combination_columns = [
            _cell(_KNOWN_METRICS.get(key, (key, key, None))[1]) for key in combination_columns
        ]

    image_context: dict[str, str | None] = dict.fromkeys(IMAGE_KEYS)
    for key, path in (images or {}).items():
        if key not in IMAGE_KEYS:
            raise ValueError(f"Unknown image key {key!r}; allowed: {list(IMAGE_KEYS)}.")
        image_context[key] = _validate_relative_path(path, f"images[{key!r}]")

    # --- intended use: features --------------------------------------------------------------------
    feature_rows = []
    modalities = list(dict.fromkeys([*(feature_dims or {}), *(feature_extractors or {})]))
    for modality in modalities:
        feature_rows.append(
            {
                "modality": _cell(modality),
                "extractor": _cell((feature_extractors or {}).get(modality, "")),
                "dim": str(int(feature_dims[modality])) if modality in (feature_dims or {}) else "",
            }
        )

    # --- metadata -------------------------------------------------------------------------------------
    widget = _validate_widget_examples(widget_examples) if widget_examples else None
    card_data = ModelCardData(
        model_name=model_name,
        license=license,
        library_name="transformers",
        pipeline_tag="other",
        tags=[*DEFAULT_TAGS, *(tags or [])],
        datasets=[dataset_id] if dataset_id else None,
        metrics=list(dict.fromkeys(result.metric_type for result in eval_results)) or None,
        base_model=base_model,
        eval_results=eval_results or None,
        widget=widget,
    )

    context = {
        "card_data": card_data.to_yaml(),
        "model_name": model_name,
        "synthetic_data": bool(synthetic_data),
        "dataset_name": dataset_name,
        "dataset_id": dataset_id,
        "dataset_split": dataset_split,
        "feature_rows": feature_rows,
        "auto_model_class": auto_model_class,
        "load_path": repo_id or "path/to/exported/model",
        "endpoint_handler": endpoint_handler,
        "hyperparameter_rows": [
            {"name": _cell(name), "value": _cell(_format_parameter(value))}
            for name, value in (hyperparameters or {}).items()
        ],
        "metric_rows": metric_rows,
        "threshold_text": threshold_text,
        "threshold_rows": threshold_rows,
        "per_label_columns": per_label_columns,
        "per_label_rows": per_label_rows,
        "combination_columns": combination_columns,
        "combination_rows": combination_rows,
        "uncertainty": uncertainty_context,
        "images": image_context,
        "differences": differences_from_reference.strip() if differences_from_reference else None,
        "extra_sections": [
            {"title": _cell(title), "body": body.strip()}
            for title, body in (extra_sections or {}).items()
        ],
    }
    template = Path(template_path) if template_path is not None else DEFAULT_TEMPLATE_PATH
    if not template.is_file():
        raise FileNotFoundError(
            f"Model card template not found at {template}; pass `template_path` explicitly."
        )
    return ModelCard(_render_template(template, context))


def save_model_card(card: ModelCard, folder: str | os.PathLike[str]) -> Path:
    """Write `card` to `<folder>/README.md` atomically (line endings kept as they are)."""
    directory = Path(folder)
    if not directory.is_dir():
        raise FileNotFoundError(f"Cannot save the model card: {directory} is not a folder.")
    path = write_bytes_atomic(directory / "README.md", str(card).encode("utf-8"))
    logger.info("Wrote model card %s", path)
    return path
