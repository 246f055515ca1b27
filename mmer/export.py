"""Write a trained model's folder: everything the Hub page and remote-code users need.

Contents: ``model.safetensors`` + ``config.json`` (with ``auto_map`` and ``custom_pipelines``), the
remote-code files, ``preprocessor_config.json``, ``processor_config.json`` + the processing file
(when the data was built from raw inputs: then the folder takes raw text and audio), ``handler.py``
+ ``requirements.txt`` (Inference Endpoints), ``examples/`` (the widget examples' inputs: ``.npz``
feature files, or short audio clips beside sentences for a folder with a processor),
``text_encoder/`` (a copy of the processor's text encoder when that is a local folder), ``README.md``
(model card),
``all_results.json``, and the figures. Files are written into a staging folder first and then moved
into place one by one with ``os.replace`` (atomic per file), so a crash never leaves a half-written
file in the output folder.
"""

from __future__ import annotations

import json
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
from .family import (
    EMOTION_TASK,
    MODALITIES,
    MULTI_LABEL,
    SINGLE_LABEL,
    ModelFamily,
    describe_text_backbone,
)

logger = logging.getLogger(__name__)

#: Files of the shared layer copied into every model folder (package data, see pyproject.toml).
ENDPOINT_FILES = ("handler.py", "requirements.txt")
NUM_WIDGET_EXAMPLES = 3
#: The widget examples of a model that takes raw text, unless the trainer publishes the test
#: samples' own (`train.py --publish_raw_examples`): sentences of no one's data, the same for every
#: model. They also check a processor's copied text encoder against the original.
EXAMPLE_SENTENCES = (
    "I can't believe you did that!",
    "Thank you so much, this really made my day.",
    "I'm not sure what to think about the news.",
)
#: Largest audio file copied into `examples/` as a widget example (a short clip).
MAX_EXAMPLE_AUDIO_BYTES = 2 * 2**20


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
    processor_settings=None,
    raw_examples: list[dict] | None = None,
) -> Path:
    """Write the folder; returns ``output_dir``. ``model`` defaults to ``trainer.model``.
    ``processor_settings`` (``RawFeatureSettings``) add the family's processor (raw input);
    ``raw_examples`` (``{"text", "audio"}`` per test sample, given only when the trainer chose to
    publish them) then make the widget examples. Without them, a folder with a processor shows
    `EXAMPLE_SENTENCES` when the model takes raw text, and no examples otherwise: the raw-input
    data is the trainer's own, and none of it (not even its features) is published unasked."""
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
    family = ModelFamily.of(model)
    processor = _build_processor(family, feature_extractor, processor_settings)
    recognizer = pipeline(EMOTION_TASK, model=model, feature_extractor=feature_extractor,
                          processor=processor, pipeline_class=family.pipeline_class)  # fmt: skip
    _save_code_and_weights(staging, recognizer, processor)
    shipped_encoder = _check_shipped_text_encoder(staging, family, processor)
    # The modalities the model takes: the feature extractor's, and text a text backbone reads.
    feature_dims = dict(feature_extractor.feature_dims)
    if getattr(model.config, "text_backbone_config", None):
        feature_dims["text"] = model.config.text_dim

    results = report.results  # the widget examples join the results written and returned
    images = _write_figures(staging / "images", trainer, report, label_names)
    widget_examples, widget_source = _widget_examples(
        staging, recognizer, test_dataset, label_names, raw_examples
    )
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
            widget_source=widget_source,
            uncertainty=_uncertainty_results(report),
            per_combination=_per_combination(results),
            images=images,
            repo_id=hub_model_id,
            license=license,
            base_model=base_model,
            feature_dims=feature_dims,
            feature_extractors=_feature_descriptions(
                dataset_name, processor_settings, feature_dims, shipped_encoder, model.config
            ),
            raw_input=processor is not None,
            **_decision_inputs(results),
        )
    )
    save_model_card(card, staging)

    _move_into_place(staging, output_dir)
    logger.info("Model folder written to %s", output_dir)
    return output_dir


def _save_code_and_weights(staging: Path, recognizer, processor) -> None:
    """The pipeline's files (weights, config, feature extractor, remote code), the processor's
    (`processor_config.json` and the processing file) and the endpoint handler."""
    recognizer.save_pretrained(staging)
    if processor is not None:
        processor.save_pretrained(staging)
    templates = resources.files(__package__) / "templates"
    for name in ENDPOINT_FILES:
        (staging / name).write_bytes((templates / name).read_bytes())


def _check_shipped_text_encoder(staging: Path, family: ModelFamily, processor) -> str | None:
    """The subfolder of the model folder that holds a copy of the processor's text encoder (its
    `save_pretrained` copies an encoder that is a local folder, whose path would mean nothing on
    another machine), after checking that the folder's processor computes the very frames of the
    original; None when the processor names a Hub encoder or none.

    Raises:
        RuntimeError: If the copy gives other frames.
    """
    if processor is None:
        return None
    saved = json.loads((staging / "processor_config.json").read_text(encoding="utf-8"))
    subfolder = saved.get("text_encoder_subfolder")
    if not subfolder:
        return None
    copied = family.processor_class.from_pretrained(staging)
    # The example sentences, and one longer than any token limit (the cut must agree too).
    texts = [*EXAMPLE_SENTENCES, " ".join(EXAMPLE_SENTENCES * 60)]
    processor_logger = logging.getLogger(type(processor).__module__)  # its "texts were cut"
    level = processor_logger.level
    processor_logger.setLevel(logging.ERROR)
    try:
        if processor.text_encoder_in_model:  # the model holds the weights: the tokens must agree
            tokens, original_counts = processor.tokenize_text(texts, return_token_counts=True)
            copied_tokens, counts = copied.tokenize_text(texts, return_token_counts=True)
            original = [tokens[name].numpy() for name in sorted(tokens)]
            frames = [copied_tokens[name].numpy() for name in sorted(copied_tokens)]
        else:
            original, original_counts = processor.encode_text(texts, return_token_counts=True)
            frames, counts = copied.encode_text(texts, return_token_counts=True)
    finally:
        processor_logger.setLevel(level)
    if counts != original_counts or not all(map(np.array_equal, original, frames)):
        raise RuntimeError(
            f"The copy of the text encoder {processor.text_encoder_name_or_path} in the model "
            f"folder's {subfolder}/ computes other frames than the original"
        )
    logger.info(
        "The text encoder %s is a local folder: the model folder ships a copy in %s/",
        processor.text_encoder_name_or_path,
        subfolder,
    )
    return subfolder


def _build_processor(family: ModelFamily, feature_extractor, settings):
    """The family's processor around the trained feature extractor, or None (no settings, or a
    family without a processor class: then the folder takes pre-extracted features only)."""
    if settings is None:
        return None
    if family.processor_class is None:
        logger.warning(
            "The data was built from raw inputs, but %s registers no processor: the model folder "
            "takes pre-extracted features only.",
            family.model_type,
        )
        return None
    name = settings.text_encoder_name_or_path
    if name and settings.text_encoder_revision is None and not os.path.isdir(name):
        logger.warning(
            "The processor settings name the Hub text encoder %s without a revision (a dataset "
            "built before the builders stored the commit): the model folder computes its text "
            "features with whatever the repository's main branch holds when it is used, which may "
            "not be what the model was trained on. Rebuild the dataset to pin the commit.",
            name,
        )
    return family.processor_class(feature_extractor, **settings.to_dict())


def _feature_descriptions(
    dataset_name: str, settings, feature_dims, shipped_encoder: str | None = None, config=None
) -> dict:
    """What each modality's features are, for the card: from the processor settings (for the
    modalities the model takes) when the data was built from raw inputs, else the dataset's known
    extractors. A text encoder the folder ships (`shipped_encoder`, its subfolder) is named by
    that subfolder, not by the local path it was copied from; one inside the model (a text
    backbone, `config.text_backbone_config`) is described as such."""
    if settings is None:
        return FEATURE_EXTRACTORS.get(dataset_name) or {}
    descriptions = {}
    backbone = describe_text_backbone(config)
    if backbone:
        source = (
            f"a local encoder folder, whose tokenizer is in `{shipped_encoder}/`"
            if shipped_encoder
            else f"`{settings.text_encoder_name_or_path}`"
        )
        descriptions["text"] = (
            f"token states (hidden state {config.text_backbone_layer}) of a text encoder inside "
            f"this model ({backbone}; started from {source}; its weights in "
            "`model.safetensors`); the processor gives its tokens"
        )
    elif shipped_encoder:
        descriptions["text"] = (
            f"token states of the text encoder in this repository's `{shipped_encoder}/` "
            f"(copied from a local folder), hidden state {settings.text_encoder_layer}, computed "
            "by the processor"
        )
    elif settings.text_encoder_name_or_path:
        revision = settings.text_encoder_revision
        descriptions["text"] = (
            f"token states of `{settings.text_encoder_name_or_path}`"
            + (f" (revision `{revision[:12]}`)" if revision else "")
            + f", hidden state {settings.text_encoder_layer}, computed by the processor"
        )
    descriptions["audio"] = (
        f"{settings.num_mel_bins} log-mel bands, 100 frames/s, from {settings.sampling_rate} Hz "
        "audio, computed by the processor"
    )
    descriptions["visual"] = "pre-extracted (no raw visual input)"
    return {modality: text for modality, text in descriptions.items() if modality in feature_dims}


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
    # The uncertainty fields keyed by their AUROC's result name, in prediction_fields order.
    headline = next(iter(report.test.uncertainties().items()), None)
    if headline is None or headline[0] not in uncertainty:
        return None
    name, values = headline
    return UncertaintyResults(
        error_auroc=uncertainty[name],
        expected_calibration_error=uncertainty["expected_calibration_error"],
        per_sample=values.ndim == 1,
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
        "iemocap4": "IEMOCAP (4 classes, excited merged into happy)",
        "iemocap6": "IEMOCAP (6 classes)",
        "meld7": "MELD (7 classes)",
    }.get(dataset, dataset)


def _write_figures(folder: Path, trainer, report: EvaluationReport, label_names) -> dict:
    """The card's figures, as ``{image key: path relative to the model folder}``."""
    from .plots import (
        has_training_curves,
        plot_confusion_matrix,
        plot_per_label_f1,
        plot_reliability_diagram,
        plot_training_curves,
    )

    folder.mkdir()
    images = {}
    history = trainer.state.log_history if trainer is not None else []
    if has_training_curves(history):
        plot_training_curves(history, folder / "training_curves.png")
        images["training_curves"] = "images/training_curves.png"
    else:  # e.g. fewer steps than --logging_steps and no evaluation: the card goes without it
        logger.info("The run logged no loss or validation metric: no training-curve figure.")
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


def _widget_examples(
    staging, recognizer, test_dataset, label_names, raw_examples
) -> tuple[list[dict], str]:
    """`(examples, what they are)` (a `WIDGET_SOURCES` key of the card). A folder with a
    processor: the test samples' raw inputs (sentences, clips) when the trainer published them
    (`raw_examples`), else `EXAMPLE_SENTENCES` for a model that takes raw text, else none (the
    test samples are the trainer's own recordings). Any other folder: `.npz` feature files of
    the first test samples (features of a prepared dataset)."""
    from .model_card import PACKAGE_SENTENCES, WITHHELD_EXAMPLES

    processor = recognizer.processor
    if processor is not None and raw_examples:
        examples = _write_raw_widget_examples(
            staging, recognizer, test_dataset, label_names, raw_examples
        )
        return examples, "test_samples"
    if processor is not None:
        takes_text = "text" in recognizer.feature_extractor.feature_dims or getattr(
            processor, "text_encoder_in_model", False
        )
        has_encoder = processor.text_encoder_name_or_path or processor.text_encoder_subfolder
        if takes_text and has_encoder:
            return _write_sentence_widget_examples(recognizer), PACKAGE_SENTENCES
        logger.info(
            "No widget examples: the model takes no raw text, and the test samples' recordings "
            "are published only with --publish_raw_examples."
        )
        return [], WITHHELD_EXAMPLES
    return _write_widget_examples(staging, recognizer, test_dataset, label_names), "test_features"


def _write_sentence_widget_examples(recognizer) -> list[dict]:
    """`EXAMPLE_SENTENCES` with the model's outputs on them through the folder's processor."""
    examples = []
    for index, sentence in enumerate(EXAMPLE_SENTENCES):
        with torch.inference_mode():
            output = recognizer(sentence)
        examples.append(
            {
                "example_title": f"Example sentence {index + 1}",
                "text": sentence,
                "output": [
                    {"label": entry["label"], "score": round(entry["score"], 4)} for entry in output
                ],
            }
        )
    return examples


def _write_widget_examples(staging: Path, recognizer, test_dataset, label_names) -> list[dict]:
    """Save a few test samples as .npz files and record the model's own outputs on them."""
    (staging / "examples").mkdir()
    count = min(NUM_WIDGET_EXAMPLES, len(test_dataset))
    return [
        _npz_example(staging, index, test_dataset[index], recognizer, label_names)
        for index in range(count)
    ]


def _example_title(index: int, sample, label_names) -> str:
    gold = [
        label_names[i]
        for i, value in enumerate(torch.as_tensor(sample["labels"]).tolist())
        if value > 0.5
    ]
    return f"Test sample {index} (gold: {', '.join(gold) or 'none'})"


def _npz_example(staging: Path, index: int, sample, recognizer, label_names) -> dict:
    """One test sample's features saved as `examples/test_sample_<index>.npz`, with the model's
    outputs on them."""
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
    path = staging / "examples" / f"test_sample_{index}.npz"
    np.savez(path, **arrays)
    with torch.inference_mode():
        output = recognizer(str(path))
    return {
        "example_title": _example_title(index, sample, label_names),
        "src": f"examples/test_sample_{index}.npz",
        "output": [
            {"label": entry["label"], "score": round(entry["score"], 4)} for entry in output
        ],
    }


def _raw_example(staging: Path, index: int, raw: dict) -> tuple[dict, dict] | None:
    """`(pipeline input, widget fields)` of one sample's raw inputs, its audio clip copied into
    `examples/`; None when its audio file is gone or not short (then the `.npz` example stands)."""
    inputs, fields = {}, {}
    if raw.get("text"):
        inputs["text"] = fields["text"] = raw["text"]
    audio = raw.get("audio")
    if audio:
        source = Path(audio)
        if not source.is_file() or source.stat().st_size > MAX_EXAMPLE_AUDIO_BYTES:
            return None
        name = f"test_sample_{index}{source.suffix.lower()}"
        shutil.copyfile(source, staging / "examples" / name)
        inputs["audio"] = str(staging / "examples" / name)
        fields["src"] = f"examples/{name}"
    return (inputs, fields) if inputs else None


def _write_raw_widget_examples(staging, recognizer, test_dataset, label_names, raw_examples):
    """The test split's first samples as raw inputs (the sentence; the clip, copied), with the
    model's outputs on them through the folder's processor; a sample whose raw input cannot be
    shown falls back to its `.npz` features."""
    (staging / "examples").mkdir()
    examples = []
    for index in range(min(NUM_WIDGET_EXAMPLES, len(test_dataset), len(raw_examples))):
        found = _raw_example(staging, index, raw_examples[index])
        sample = test_dataset[index]
        if found is None:
            examples.append(_npz_example(staging, index, sample, recognizer, label_names))
            continue
        inputs, fields = found
        with torch.inference_mode():
            output = recognizer(inputs)
        examples.append(
            {
                "example_title": _example_title(index, sample, label_names),
                **fields,
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
