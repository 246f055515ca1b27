"""Write a trained model's folder: everything the Hub page and remote-code users need.

Contents: ``model.safetensors`` + ``config.json`` (with ``auto_map`` and ``custom_pipelines``), the
remote-code files, ``preprocessor_config.json``, ``handler.py`` + ``requirements.txt`` (Inference
Endpoints), ``examples/*.npz`` (the widget examples' inputs), ``README.md`` (model card),
``all_results.json``, and the figures. Files are written into a staging folder first and then moved
into place one by one with ``os.replace`` (atomic per file), so a crash never leaves a half-written
file in the output folder.
"""

from __future__ import annotations

import logging
import os
import shutil
from importlib import resources
from pathlib import Path

import numpy as np
import torch
from transformers import pipeline

from dataset_scripts.io import write_json_atomic

from .evaluation import EvaluationReport
from .family import EMOTION_TASK, MODALITIES, MULTI_LABEL, SINGLE_LABEL, ModelFamily

logger = logging.getLogger(__name__)

#: Files of the shared layer copied into every model folder (package data, see pyproject.toml).
ENDPOINT_FILES = ("handler.py", "requirements.txt")
NUM_WIDGET_EXAMPLES = 3


def write_model_folder(
    *,
    output_dir: Path,
    trainer,
    feature_extractor,
    report: EvaluationReport,
    label_names: list[str],
    dataset_name: str,
    synthetic: bool,
    hyperparameters: dict,
    test_dataset,
    license: str = "apache-2.0",
    hub_model_id: str | None = None,
    model=None,
    base_model: str | None = None,
) -> Path:
    """Write the folder; returns ``output_dir``. ``model`` defaults to ``trainer.model``."""
    from model_cards import load_family_card_text

    from .model_card import ModelCardInputs, build_model_card, save_model_card

    output_dir = Path(output_dir)
    staging = output_dir / ".staging"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    model = (model if model is not None else trainer.model).eval()

    # The task's pipeline, as the family registered it: saving it writes the weights, the config
    # (with auto_map and custom_pipelines), the feature extractor and the remote-code files.
    recognizer = pipeline(
        EMOTION_TASK,
        model=model,
        feature_extractor=feature_extractor,
        pipeline_class=ModelFamily.of(model).pipeline_class,
    )
    recognizer.save_pretrained(staging)
    templates = resources.files(__package__) / "templates"
    for name in ENDPOINT_FILES:
        (staging / name).write_bytes((templates / name).read_bytes())

    results = report.results  # the widget examples join the results written and returned
    images = _write_figures(staging / "images", trainer, report, label_names)
    widget_examples = _write_widget_examples(staging, recognizer, test_dataset, label_names)
    results["widget_examples"] = widget_examples
    write_json_atomic(staging / "all_results.json", results)

    card = build_model_card(
        ModelCardInputs(
            model_type=model.config.model_type,
            model_name=f"{load_family_card_text(model.config.model_type).display_name} "
            f"({dataset_name})",
            dataset_name=_dataset_display_name(dataset_name),
            metrics=dict(results["test"]),
            per_label_f1={label: results["test"][f"f1_{label}"] for label in label_names},
            synthetic_data=synthetic,
            hyperparameters=hyperparameters,
            widget_examples=widget_examples,
            uncertainty=_uncertainty_results(report),
            per_combination=_per_combination(results),
            images=images,
            repo_id=hub_model_id,
            license=license,
            base_model=base_model,
            feature_dims=dict(feature_extractor.feature_dims),  # the modalities the data has
            feature_extractors=FEATURE_EXTRACTORS.get(dataset_name) or {},
            **_decision_inputs(results),
        )
    )
    save_model_card(card, staging)

    _move_into_place(staging, output_dir)
    logger.info("Model folder written to %s", output_dir)
    return output_dir


def _decision_inputs(results: dict) -> dict:
    """The card inputs that depend on the problem type: thresholds (multi-label), or the chance
    level and the confusion matrix (single-label, decided by the top score)."""
    if results.get("problem_type", MULTI_LABEL) == SINGLE_LABEL:
        return {
            "problem_type": SINGLE_LABEL,
            "thresholds": None,
            "threshold_tuned_on": None,
            "chance": results["chance"],
            "confusion_matrix": results["confusion_matrix"],
        }
    thresholds = results["thresholds"]
    return {
        "thresholds": thresholds["per_label"],
        "threshold_tuned_on": thresholds["tuned_on"] if thresholds["mode"] != "none" else None,
    }


def _uncertainty_results(report: EvaluationReport):
    """The measured quality of the model's headline uncertainty output (the first uncertainty
    field of its ``prediction_fields``: ``uncertainty``, ``sample_uncertainty``, ... as the
    family names it); None when it has none."""
    from .model_card import UncertaintyResults

    uncertainty = report.results["uncertainty"]
    names = list(report.test.uncertainties())  # result names, in prediction_fields order
    if not names or names[0] not in uncertainty:
        return None
    field = next(
        name
        for name in report.test.fields
        if name == "uncertainty" or name.endswith("_uncertainty")
    )
    return UncertaintyResults(
        error_auroc=uncertainty[names[0]],
        expected_calibration_error=uncertainty["expected_calibration_error"],
        per_sample=report.test.fields[field].ndim == 1,
    )


def _per_combination(results: dict) -> dict:
    """The per-combination rows, then their mean when there is one."""
    rows = dict(results["modality_combinations"])
    mean = results.get("modality_combinations_mean")
    if rows and mean:
        rows["mean"] = mean
    return rows


#: What each modality's features are, per dataset, for the card's intended-use table.
FEATURE_EXTRACTORS = {
    "synthetic": {m: "synthetic (generated by dataset_scripts.synthetic)" for m in MODALITIES},
    "mosei": {"text": "BERT (MMSA)", "audio": "COVAREP (MMSA)", "visual": "FACET (MMSA)"},
    "m3ed": {"text": "BERT (CARAT)", "audio": "wav2vec (CARAT)", "visual": "DenseFace (CARAT)"},
    "goemotions": {"text": "GloVe 6B 50-d word vectors"},
}


def _dataset_display_name(dataset: str) -> str:
    return {
        "synthetic": "Synthetic multimodal emotions (generated)",
        "mosei": "CMU-MOSEI",
        "m3ed": "M3ED",
        "goemotions": "GoEmotions (Ekman)",
    }.get(dataset, dataset)


def _write_figures(folder: Path, trainer, report: EvaluationReport, label_names) -> dict:
    """The card's figures, as ``{image key: path relative to the model folder}``."""
    from .plots import (
        plot_confusion_matrix,
        plot_per_label_f1,
        plot_reliability_diagram,
        plot_training_curves,
    )

    folder.mkdir()
    images = {}
    if trainer is not None and trainer.state.log_history:
        plot_training_curves(trainer.state.log_history, folder / "training_curves.png")
        images["training_curves"] = "images/training_curves.png"
    plot_per_label_f1(report.results["test"], label_names, folder / "per_emotion_f1.png")
    images["per_label_f1"] = "images/per_emotion_f1.png"
    single_label = report.results.get("problem_type") == SINGLE_LABEL
    plot_reliability_diagram(
        report.test.scores,
        report.test.labels,
        folder / "reliability_diagram.png",
        top_label=single_label,
    )
    images["reliability_diagram"] = "images/reliability_diagram.png"
    if single_label:
        plot_confusion_matrix(
            report.results["confusion_matrix"]["counts"],
            label_names,
            folder / "confusion_matrix.png",
        )
        images["confusion_matrix"] = "images/confusion_matrix.png"
    return images


def _write_widget_examples(staging: Path, recognizer, test_dataset, label_names) -> list[dict]:
    """Save a few test samples as .npz files and record the model's own outputs on them."""
    examples_dir = staging / "examples"
    examples_dir.mkdir()
    examples = []
    count = min(NUM_WIDGET_EXAMPLES, len(test_dataset))
    for index in range(count):
        sample = test_dataset[index]
        arrays = {}
        for modality in MODALITIES:
            features = sample.get(f"{modality}_features")
            if features is None:
                continue
            features = torch.as_tensor(features)
            mask = sample.get(f"{modality}_mask")
            if mask is not None:
                mask = torch.as_tensor(mask).bool()
                if not mask.any():
                    continue
                features = features[mask]
            arrays[modality] = features.float().numpy()
        path = examples_dir / f"test_sample_{index}.npz"
        np.savez(path, **arrays)
        with torch.inference_mode():
            output = recognizer(str(path))
        gold = [
            label_names[i]
            for i, value in enumerate(torch.as_tensor(sample["labels"]).tolist())
            if value > 0.5
        ]
        examples.append(
            {
                "example_title": f"Test sample {index} (gold: {', '.join(gold) or 'none'})",
                "src": f"examples/test_sample_{index}.npz",
                "output": [
                    {"label": entry["label"], "score": round(entry["score"], 4)} for entry in output
                ],
            }
        )
    return examples


def _move_into_place(staging: Path, output_dir: Path) -> None:
    for source in sorted(staging.rglob("*")):
        if source.is_dir():
            continue
        target = output_dir / source.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
    shutil.rmtree(staging)
