#!/usr/bin/env python
"""Train LDDU with `transformers.Trainer` (one CPU, one GPU or many processes through Accelerate).

    python train.py                                   # built-in synthetic data, then test evaluation
    python train.py --dataset mosei --data_dir prepared/mosei-aligned --output_dir outputs/mosei
    accelerate launch train.py ...                    # or: torchrun --nproc_per_node 2 train.py ...
    python train.py args.yaml                         # every argument from one JSON or YAML file

What the run does, in order:
1. builds the datasets (synthetic, or a folder prepared with `dataset_scripts`);
2. trains with the paper's optimisation (AdamW: see `docs/training.md` for the deviations from the
   authors' BertAdam), evaluating on the VALIDATION split every epoch; the best epoch by validation
   micro-F1 is kept, with early stopping;
3. tunes the decision threshold(s) on the validation split and stores them in the model's config;
4. evaluates the TEST split once, with those thresholds: metrics, the chance level, uncertainty
   quality, one row per modality combination;
5. writes the model folder (weights, remote code, feature extractor, pipeline, Inference Endpoints
   handler, model card, figures, `all_results.json`) and optionally publishes it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import (
    EarlyStoppingCallback,
    HfArgumentParser,
    TrainingArguments,
    set_seed,
)

from mmer.trainer import InferenceModeTrainer
from modeling_lddu import LDDUConfig, LDDUForEmotionRecognition

logger = logging.getLogger("train")

MODALITY_COMBINATIONS = ("t", "a", "v", "ta", "tv", "av", "tav")
_LETTER_TO_MODALITY = {"t": "text", "a": "audio", "v": "visual"}

#: Applied when --dataset synthetic (the default) to every argument not given explicitly, so that
#: the default run finishes in about three minutes on a 2-core CPU. Printed at start-up.
SYNTHETIC_PRESET = {
    "num_train_epochs": 10,
    "learning_rate": 5e-4,
    "normalize_features": True,
    "synthetic_signal_strength": 3.0,
    "per_device_train_batch_size": 32,
    "early_stopping_patience": 3,
    "config_overrides": json.dumps(
        {
            "text_num_layers": 1,
            "audio_num_layers": 1,
            "visual_num_layers": 1,
            "hidden_size": 128,
            "intermediate_size": 128,
            "label_attention_dim": 128,
            "latent_hidden_sizes": [128, 64],
            "latent_size": 64,
            "classifier_hidden_size": 64,
            "queue_size": 2048,
            "hidden_dropout_prob": 0.1,
            "attention_probs_dropout_prob": 0.1,
        }
    ),
}


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A trained LDDU folder or Hub repo to start from (default: a new model)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "LDDUConfig fields as a JSON object, e.g. '{\"queue_size\": 4096}'. Feature "
            "dims, labels and max positions are always taken from the data."
        },
    )
    modality_dropout: str | None = field(
        default=None,
        metadata={
            "help": "Training-time probability of dropping each modality of a sample, e.g. "
            "'text=0.1,audio=0.2,visual=0.2' (missing-modality robustness)."
        },
    )
    use_lora: bool = field(
        default=False,
        metadata={
            "help": "Adapt --model_name_or_path with LoRA (peft) on the attention and feed-forward "
            "linears; label embeddings and classifiers are trained in full."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    merge_lora: bool = field(
        default=False,
        metadata={"help": "With --use_lora: also write a merged plain model folder."},
    )


@dataclass
class DataArguments:
    dataset: str = field(
        default="synthetic",
        metadata={
            "help": "synthetic (built-in, generated), or a prepared dataset: mosei, m3ed, "
            "goemotions (with --data_dir)."
        },
    )
    data_dir: str | None = field(
        default=None, metadata={"help": "Folder written by `python -m dataset_scripts.<name>`."}
    )
    synthetic_train_size: int = field(default=1600, metadata={"help": "Synthetic train samples."})
    synthetic_validation_size: int = field(default=400, metadata={"help": "Synthetic val samples."})
    synthetic_test_size: int = field(default=400, metadata={"help": "Synthetic test samples."})
    synthetic_length: int = field(default=20, metadata={"help": "Frames per synthetic sequence."})
    synthetic_seed: int = field(default=0, metadata={"help": "Seed of the synthetic generator."})
    synthetic_signal_strength: float = field(
        default=1.0,
        metadata={
            "help": "Scale of the label signal planted in the synthetic features (0: noise)."
        },
    )
    synthetic_num_labels: int = field(
        default=6, metadata={"help": "Synthetic emotions (6: CMU-MOSEI's, 7: M3ED's names)."}
    )
    synthetic_dims: str = field(
        default="768,74,35",
        metadata={"help": "Synthetic text,audio,visual feature dims (CMU-MOSEI's by default)."},
    )
    threshold_tuning: str = field(
        default="global",
        metadata={
            "help": "How the decision threshold is tuned on the validation split: 'global' (one "
            "threshold), 'per_label' (one per emotion) or 'none' (keep the config's)."
        },
    )
    normalize_features: bool = field(
        default=False,
        metadata={
            "help": "Fit per-dimension normalisation statistics on the training split and store "
            "them in the feature extractor."
        },
    )
    evaluate_modality_combinations: bool = field(
        default=True,
        metadata={"help": "Also report test metrics with only some modalities given."},
    )


@dataclass
class LDDUTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's optimisation as defaults (see docs/training.md)."""

    output_dir: str = field(
        default="outputs/lddu", metadata={"help": "Where the model folder goes."}
    )
    overwrite_output_dir: bool = field(
        default=False, metadata={"help": "Replace the contents of an existing output folder."}
    )
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate."})
    per_device_train_batch_size: int = field(default=64, metadata={"help": "Batch per device."})
    per_device_eval_batch_size: int = field(
        default=128, metadata={"help": "Eval batch per device."}
    )
    num_train_epochs: float = field(default=30.0, metadata={"help": "Maximum epochs."})
    warmup_steps: float = field(default=0.1, metadata={"help": "Warm-up (< 1: a fraction)."})
    lr_scheduler_type: str = field(default="cosine", metadata={"help": "Schedule after warm-up."})
    weight_decay: float = field(default=0.01, metadata={"help": "Not on biases and LayerNorms."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Global gradient clipping."})
    seed: int = field(default=42, metadata={"help": "Seed of everything."})
    eval_strategy: str = field(default="epoch", metadata={"help": "Validate every epoch."})
    save_strategy: str = field(default="epoch", metadata={"help": "Checkpoint every epoch."})
    logging_strategy: str = field(default="steps", metadata={"help": "Log every logging_steps."})
    logging_steps: float = field(default=10, metadata={"help": "Log interval in steps."})
    load_best_model_at_end: bool = field(default=True, metadata={"help": "Keep the best epoch."})
    metric_for_best_model: str = field(default="f1_micro", metadata={"help": "Validation metric."})
    greater_is_better: bool = field(default=True, metadata={"help": "For metric_for_best_model."})
    save_total_limit: int = field(default=2, metadata={"help": "Checkpoints kept."})
    early_stopping_patience: int = field(
        default=5,
        metadata={"help": "Epochs without validation improvement before stopping (0: off)."},
    )
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep every input."})
    dataloader_pin_memory: bool = field(
        default=torch.accelerator.is_available(),
        metadata={
            "help": "Pin batches in host memory (default: only when an accelerator is present)."
        },
    )
    ddp_find_unused_parameters: bool = field(default=False, metadata={"help": "All are used."})
    ddp_broadcast_buffers: bool = field(
        default=False,
        metadata={
            "help": "The contrastive queue is all-gathered before every enqueue, so all processes "
            "already hold the same queue; broadcasting it again would only cost time."
        },
    )
    license: str = field(default="apache-2.0", metadata={"help": "License in the model card."})


# ------------------------------------------------------------------------------------------------
# Arguments
# ------------------------------------------------------------------------------------------------
def parse_arguments(argv: list[str] | None = None):
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, LDDUTrainingArguments))
    if len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml")):
        path = Path(argv[0])
        if path.suffix == ".json":
            model_args, data_args, training_args = parser.parse_json_file(path)
        else:
            model_args, data_args, training_args = parser.parse_yaml_file(path)
        given = set(_read_config_keys(path))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(argv)
        given = {arg.lstrip("-").split("=", 1)[0] for arg in argv if arg.startswith("--")}
    if data_args.dataset == "synthetic":
        applied = {}
        for name, value in SYNTHETIC_PRESET.items():
            if name in given or (name == "config_overrides" and model_args.model_name_or_path):
                continue  # a trained model brings its own architecture
            for arguments in (model_args, data_args, training_args):
                if hasattr(arguments, name):
                    setattr(arguments, name, value)
                    applied[name] = value
        if applied:
            logger.info("Synthetic-data preset applied (give an argument to override): %s", applied)
            if "per_device_train_batch_size" in applied:
                # TrainingArguments derives cached values in __post_init__; rebuild to keep them true.
                training_args = dataclasses.replace(training_args)
    if data_args.threshold_tuning not in ("global", "per_label", "none"):
        raise ValueError(
            f"--threshold_tuning must be global, per_label or none; got {data_args.threshold_tuning!r}."
        )
    return model_args, data_args, training_args


def _read_config_keys(path: Path) -> list[str]:
    text = path.read_text()
    if path.suffix == ".json":
        return list(json.loads(text))
    import yaml

    return list(yaml.safe_load(text) or {})


def parse_modality_dropout(text: str | None) -> dict[str, float] | None:
    if not text:
        return None
    probabilities = {}
    for item in text.split(","):
        if "=" not in item:
            raise ValueError(f"--modality_dropout items look like 'text=0.1'; got {item!r}.")
        modality, value = item.split("=", 1)
        probabilities[modality.strip()] = float(value)
    return probabilities


# ------------------------------------------------------------------------------------------------
# Data
# ------------------------------------------------------------------------------------------------
def build_datasets(data_args: DataArguments):
    """Return a DatasetDict with train/validation/test splits (synthetic, or a prepared folder)."""
    from dataset_scripts.loading import load_prepared
    from dataset_scripts.synthetic import make_synthetic_dataset

    if data_args.dataset == "synthetic":
        length = data_args.synthetic_length
        dataset = make_synthetic_dataset(
            num_train=data_args.synthetic_train_size,
            num_validation=data_args.synthetic_validation_size,
            num_test=data_args.synthetic_test_size,
            seed=data_args.synthetic_seed,
            text_length=length,
            audio_length=length,
            visual_length=length,
            num_labels=data_args.synthetic_num_labels,
            signal_strength=data_args.synthetic_signal_strength,
            **_synthetic_dims(data_args.synthetic_dims),
        )
    else:
        if data_args.data_dir is None:
            raise ValueError(f"--dataset {data_args.dataset} needs --data_dir (a prepared folder).")
        dataset = load_prepared(data_args.data_dir)
    missing = {"train", "validation", "test"} - set(dataset)
    if missing:
        raise ValueError(
            f"The dataset lacks the split(s) {sorted(missing)}; it has {sorted(dataset)}."
        )
    return dataset


def _synthetic_dims(text: str) -> dict[str, int]:
    values = [int(value) for value in text.split(",")]
    if len(values) != 3 or min(values) < 1:
        raise ValueError(
            f"--synthetic_dims takes three positive integers text,audio,visual; got {text!r}."
        )
    return dict(zip(("text_dim", "audio_dim", "visual_dim"), values))


def dataset_label_names(split) -> list[str]:
    from dataset_scripts.building import metadata_from_dataset

    metadata = metadata_from_dataset(split)
    if metadata and metadata.get("label_names"):
        return list(metadata["label_names"])
    count = len(split[0]["labels"])
    logger.warning("The dataset carries no label names; using label_0..label_%d.", count - 1)
    return [f"label_{index}" for index in range(count)]


def dataset_shapes(split) -> tuple[dict[str, int], dict[str, int]]:
    """Feature dims and the longest sequence per modality present in ``split``."""
    import numpy as np

    dims, lengths = {}, {}
    for modality in ("text", "audio", "visual"):
        if modality not in split.column_names:
            continue
        feature = split.features[modality]
        dims[modality] = int(feature.shape[1])
        if feature.shape[0] is not None:
            lengths[modality] = int(feature.shape[0])
        else:
            column = split.with_format("numpy", columns=[modality])[modality]
            lengths[modality] = int(max(np.asarray(sample).shape[0] for sample in column))
    return dims, lengths


# ------------------------------------------------------------------------------------------------
# Metrics
# ------------------------------------------------------------------------------------------------
def split_predictions(predictions) -> dict[str, np.ndarray]:
    """Name the arrays Trainer collected (the model's output fields, in order, minus the ignored)."""
    names = ("scores", "semantic_scores", "mean_scores", "spread_scores", "uncertainty")
    if not isinstance(predictions, (tuple, list)):
        predictions = (predictions,)
    return {name: np.asarray(value) for name, value in zip(names, predictions)}


def make_compute_metrics(label_names: list[str]):
    """Validation metrics for model selection: micro-F1 etc. at the best global threshold of that
    same validation pass (the threshold is re-tuned on validation at the end, never on test)."""
    from mmer.metrics import multilabel_metrics, scores_to_predictions, tune_threshold

    def compute_metrics(eval_prediction) -> dict[str, float]:
        scores = split_predictions(eval_prediction.predictions)["scores"]
        labels = np.asarray(eval_prediction.label_ids)
        search = tune_threshold(scores, labels)
        predictions = scores_to_predictions(scores, search.threshold)
        metrics = multilabel_metrics(labels, predictions, label_names)
        keep = (
            "f1_micro",
            "f1_macro",
            "accuracy_jaccard",
            "hamming_loss",
            "precision_micro",
            "recall_micro",
        )
        result = {key: float(metrics[key]) for key in keep}
        result["threshold"] = float(search.threshold)
        return result

    return compute_metrics


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point: parse, run, tear the process group down."""
    trainer, results = run(*parse_arguments(argv))
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return results


def run(model_args, data_args, training_args, extra_callbacks=()):
    """Train, evaluate and export; returns ``(trainer, results)``."""
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        level=logging.INFO if training_args.should_log else logging.WARNING,
    )
    transformers.utils.logging.set_verbosity(
        logging.INFO if training_args.should_log else logging.WARNING
    )
    output_dir = Path(training_args.output_dir)
    if training_args.process_index == 0:
        _prepare_output_dir(output_dir, training_args)
    checkpoint_dir = output_dir / "checkpoints"
    publish = training_args.push_to_hub
    training_args.output_dir = str(checkpoint_dir)
    training_args.push_to_hub = False  # we publish the whole folder ourselves, at the end

    set_seed(training_args.seed)
    dataset = build_datasets(data_args)
    from dataset_scripts.loading import InMemoryMultimodalDataset, MultimodalDataCollator

    label_names = dataset_label_names(dataset["train"])
    feature_dims, max_lengths = dataset_shapes(dataset["train"])
    feature_extractor = _build_feature_extractor(
        dataset["train"], feature_dims, max_lengths, data_args
    )
    train_dataset, validation_dataset, test_dataset = (
        InMemoryMultimodalDataset(dataset[split], feature_extractor)
        for split in ("train", "validation", "test")
    )
    collator = MultimodalDataCollator(padding_side=feature_extractor.padding_side)

    model = _build_model(model_args, feature_dims, max_lengths, label_names)
    n_parameters = sum(parameter.numel() for parameter in model.parameters())
    logger.info("LDDU with %s parameters; labels %s", f"{n_parameters:,}", label_names)

    callbacks = list(extra_callbacks)
    if training_args.early_stopping_patience > 0 and training_args.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience))
    trainer = InferenceModeTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        eval_dataset=validation_dataset,
        data_collator=collator,
        compute_metrics=make_compute_metrics(label_names),
        callbacks=callbacks,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    from mmer.evaluation import final_evaluation

    results = final_evaluation(
        trainer=trainer,
        validation_dataset=validation_dataset,
        test_dataset=test_dataset,
        train_labels=train_dataset.tensors["labels"].numpy(),
        label_names=label_names,
        threshold_tuning=data_args.threshold_tuning,
        modality_combinations=MODALITY_COMBINATIONS
        if data_args.evaluate_modality_combinations
        else (),
    )
    results["train"] = {key: float(value) for key, value in train_result.metrics.items()}

    if trainer.is_world_process_zero():
        _export(
            output_dir,
            trainer,
            model_args,
            data_args,
            training_args,
            feature_extractor,
            results,
            label_names,
            test_dataset,
            publish,
        )
    return trainer, results


def _export(
    output_dir,
    trainer,
    model_args,
    data_args,
    training_args,
    feature_extractor,
    results,
    label_names,
    test_dataset,
    publish,
) -> None:
    """Main process only: write the model folder (or the LoRA adapter) and publish it."""
    from dataset_scripts.io import write_json_atomic
    from mmer.export import write_model_folder

    export_model = trainer.model
    if model_args.use_lora:
        adapter_dir = output_dir / "adapter"
        trainer.model.save_pretrained(adapter_dir)
        # The adapted label set and thresholds, which `mmer.lora.load_adapted` needs.
        trainer.model.base_model.model.config.to_json_file(adapter_dir / "lddu_config.json")
        logger.info("LoRA adapter saved to %s", adapter_dir)
        if not model_args.merge_lora:
            results.pop("_arrays", None)
            write_json_atomic(output_dir / "all_results.json", results)
            _print_summary(results, label_names)
            return results
        export_model = trainer.model.merge_and_unload()
    write_model_folder(
        model=export_model,
        output_dir=output_dir,
        trainer=trainer,
        feature_extractor=feature_extractor,
        results=results,
        label_names=label_names,
        dataset_name=data_args.dataset,
        synthetic=data_args.dataset == "synthetic",
        hyperparameters=_hyperparameters(model_args, data_args, training_args, trainer),
        test_dataset=test_dataset,
        license=training_args.license,
        hub_model_id=training_args.hub_model_id,
    )
    _print_summary(results, label_names)
    if publish:
        from mmer.hub import publish_folder

        if not training_args.hub_model_id:
            raise ValueError("--push_to_hub needs --hub_model_id.")
        publish_folder(
            output_dir,
            training_args.hub_model_id,
            token=training_args.hub_token,
            private=bool(training_args.hub_private_repo),
        )
        logger.info("Published %s to %s", output_dir, training_args.hub_model_id)


def _prepare_output_dir(output_dir: Path, training_args: LDDUTrainingArguments) -> None:
    if training_args.resume_from_checkpoint:
        return
    if output_dir.exists() and any(output_dir.iterdir()):
        if not training_args.overwrite_output_dir:
            raise FileExistsError(
                f"Output folder {output_dir} exists and is not empty; pass --overwrite_output_dir "
                "to replace it, or --resume_from_checkpoint to continue a run."
            )
        logger.warning("Replacing the contents of %s (--overwrite_output_dir).", output_dir)
        shutil.rmtree(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)


def _build_feature_extractor(train_split, feature_dims, max_lengths, data_args: DataArguments):
    from modeling_lddu.feature_extraction_lddu import LDDUFeatureExtractor

    feature_extractor = LDDUFeatureExtractor(feature_dims=feature_dims, max_lengths=max_lengths)
    if data_args.normalize_features:
        feature_extractor.fit_normalization(train_split)
        feature_extractor.do_normalize = True
    return feature_extractor


def _build_model(model_args: ModelArguments, feature_dims, max_lengths, label_names: list[str]):
    missing = sorted({"text", "audio", "visual"} - set(feature_dims))
    if missing:
        logger.info("The data has no %s features: the model treats them as absent.", missing)
    data_fields = dict(
        text_dim=feature_dims.get("text", 1),
        audio_dim=feature_dims.get("audio", 1),
        visual_dim=feature_dims.get("visual", 1),
        max_position_embeddings=max(60, *max_lengths.values()),
        id2label=dict(enumerate(label_names)),
    )
    overrides = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
    if not isinstance(overrides, dict):
        raise ValueError(
            f"--config_overrides must be a JSON object; got {model_args.config_overrides!r}."
        )
    clash = sorted(set(overrides) & set(data_fields))
    if clash:
        raise ValueError(f"--config_overrides may not set {clash}: they are read from the data.")
    dropout = parse_modality_dropout(model_args.modality_dropout)
    if dropout:
        overrides["modality_dropout"] = dropout
    if model_args.model_name_or_path:
        from mmer.lora import load_for_adaptation

        return load_for_adaptation(model_args, data_fields, overrides)
    config = LDDUConfig(**data_fields, **overrides)
    return LDDUForEmotionRecognition(config)


def _hyperparameters(model_args, data_args, training_args, trainer) -> dict:
    config = trainer.model.config
    values = {
        "learning_rate": training_args.learning_rate,
        "optimizer": "AdamW (torch), betas (0.9, 0.999), eps 1e-8",
        "weight_decay": f"{training_args.weight_decay} (not on biases and LayerNorms)",
        "train_batch_size": training_args.per_device_train_batch_size
        * max(1, training_args.world_size),
        "num_epochs_max": training_args.num_train_epochs,
        "epochs_trained": round(float(trainer.state.epoch or 0), 2),
        "lr_schedule": f"{training_args.lr_scheduler_type}, warm-up {training_args.warmup_steps}",
        "max_grad_norm": training_args.max_grad_norm,
        "early_stopping_patience": training_args.early_stopping_patience,
        "seed": training_args.seed,
        "mixed_precision": "bf16"
        if training_args.bf16
        else ("fp16" if training_args.fp16 else "no"),
        "processes": training_args.world_size,
    }
    for name in (
        "hidden_size",
        "latent_size",
        "queue_size",
        "contrastive_temperature",
        "text_num_layers",
        "audio_num_layers",
        "visual_num_layers",
        "semantic_loss_weight",
        "fused_loss_weight",
        "contrastive_loss_weight",
        "calibration_loss_weight",
    ):
        values[name] = getattr(config, name)
    if config.modality_dropout:
        values["modality_dropout"] = json.dumps(config.modality_dropout)
    return values


def _print_summary(results: dict, label_names: list[str]) -> None:
    test = results["test"]
    chance = results.get("chance", {})
    lines = [
        "",
        "Test split (thresholds tuned on validation):",
        f"  {'metric':<28}{'LDDU':>10}{'chance':>10}",
    ]
    for key in (
        "f1_micro",
        "f1_macro",
        "accuracy_jaccard",
        "accuracy_jaccard_reference",
        "hamming_loss",
    ):
        if key in test:
            chance_value = chance.get(key)
            chance_text = (
                f"{chance_value:>10.4f}" if isinstance(chance_value, float) else f"{'':>10}"
            )
            lines.append(f"  {key:<28}{test[key]:>10.4f}{chance_text}")
    uncertainty = results.get("uncertainty", {})
    for key, value in uncertainty.items():
        if isinstance(value, float) and math.isfinite(value):
            lines.append(f"  {key:<28}{value:>10.4f}")
    combinations = results.get("modality_combinations", {})
    if combinations:
        lines.append(
            "  micro-F1 by modalities given: "
            + ", ".join(f"{name} {values['f1_micro']:.3f}" for name, values in combinations.items())
        )
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
