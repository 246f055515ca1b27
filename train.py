#!/usr/bin/env python
"""Train a model family with `transformers.Trainer` (one CPU, one GPU or many processes through
Accelerate).

    python train.py                                   # built-in synthetic data, then test evaluation
    python train.py --model_type lddu ...             # the family (default: lddu)
    python train.py --dataset mosei --data_dir prepared/mosei-aligned --output_dir outputs/mosei
    accelerate launch train.py ...                    # or: torchrun --nproc_per_node 2 train.py ...
    python train.py args.yaml                         # every argument from one JSON or YAML file

What the run does, in order:
1. builds the datasets (synthetic, or a folder prepared with `dataset_scripts`);
2. trains (defaults: LDDU's paper optimisation with AdamW; see `docs/training.md` for the
   deviations from the authors' BertAdam), evaluating on the VALIDATION split every epoch; the best
   epoch by validation micro-F1 (multi-label data) or weighted F1 (single-label data) is kept,
   with early stopping;
3. multi-label data: tunes the decision threshold(s) on the validation split and stores them in the
   model's config; single-label data: the top-scoring class is the decision, nothing is tuned;
4. evaluates the TEST split once: metrics, the chance level, uncertainty quality, one row per
   modality combination and their mean;
5. writes the model folder (weights, remote code, feature extractor, pipeline, Inference Endpoints
   handler, model card, figures, `all_results.json`) and optionally publishes it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import transformers
import yaml
from transformers import (
    EarlyStoppingCallback,
    HfArgumentParser,
    TrainingArguments,
    set_seed,
)

import modeling_lddu  # noqa: F401  (importing a family registers it with the Auto classes)
import modeling_lsgmer  # noqa: F401
import modeling_mcur  # noqa: F401
from dataset_scripts.modalities import MODALITIES
from mmer.evaluation import (
    DEFAULT_SELECTION_METRIC,
    MODALITY_COMBINATIONS,
    check_selection_metric,
    final_evaluation,
    make_compute_metrics,
)
from mmer.family import (
    MULTI_LABEL,
    PROBLEM_TYPES,
    SINGLE_LABEL,
    ModelFamily,
    describe_text_backbone,
)
from mmer.trainer import EmotionTrainer

logger = logging.getLogger("train")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: The default of --metric_for_best_model: chosen by the data's problem type once it is loaded.
AUTO_METRIC = "auto"

#: Defaults applied when --dataset is synthetic; explicit arguments override them.
SYNTHETIC_PRESET = Path(__file__).resolve().parent / "presets" / "synthetic.yaml"


@dataclass
class ModelArguments:
    model_type: str = field(
        default="lddu",
        metadata={"help": "The model family of a new model (a registered config model_type)."},
    )
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "A trained model folder or Hub repo to start from (default: a new model); "
            "its config names the family."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "Config fields of the family as a JSON object, e.g. '{\"queue_size\": 4096}'. Feature "
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
    text_backbone: bool = field(
        default=False,
        metadata={
            "help": "Put the data's text encoder (its processor_settings.json) inside the model: "
            "it reads the raw_text column as tokens and computes the text frames itself, frozen "
            "unless --train_text_backbone; its weights are saved with the model's."
        },
    )
    train_text_backbone: bool = field(
        default=False,
        metadata={"help": "With --text_backbone: fine-tune it (see --text_backbone_layers)."},
    )
    text_backbone_layers: int | None = field(
        default=None,
        metadata={
            "help": "With --train_text_backbone: train only its top N transformer layers "
            "(default: all of it, embeddings included)."
        },
    )
    text_backbone_learning_rate: float | None = field(
        default=None,
        metadata={
            "help": "Learning rate of the text backbone's parameters (its LoRA adapters under "
            "--use_lora); default --learning_rate. The rest of the model keeps --learning_rate."
        },
    )
    use_lora: bool = field(
        default=False,
        metadata={
            "help": "Adapt --model_name_or_path with LoRA (peft) on the attention and feed-forward "
            "linears; label embeddings and classifiers are trained in full. With --text_backbone "
            "(a new model): LoRA on the text backbone instead, the rest trained in full, and the "
            "adapters merged into the exported model."
        },
    )
    lora_r: int = field(default=8, metadata={"help": "LoRA rank."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA alpha."})
    lora_dropout: float = field(default=0.0, metadata={"help": "LoRA dropout."})
    merge_lora: bool = field(
        default=False,
        metadata={"help": "With --use_lora: also write a merged plain model folder."},
    )
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "The Hub id of the starting model when --model_name_or_path is a local copy "
            "of it: recorded as the base in a LoRA adapter and in the card's base_model."
        },
    )


@dataclass
class DataArguments:
    dataset: str = field(
        default="synthetic",
        metadata={
            "help": "synthetic (built-in, generated), or a prepared dataset: mosei, m3ed, "
            "goemotions, iemocap4, iemocap6, meld7 (with --data_dir)."
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
    synthetic_num_labels: int | None = field(
        default=None,
        metadata={
            "help": "Synthetic emotions (default 6 multi-label, with CMU-MOSEI's names, and 4 "
            "single-label, with IEMOCAP-4's; 7: M3ED's names)."
        },
    )
    synthetic_problem_type: str = field(
        default=MULTI_LABEL,
        metadata={
            "help": "multi_label_classification (CMU-MOSEI-like label sets) or "
            "single_label_classification (one emotion per sample, drawn from IEMOCAP-4-like "
            "class shares)."
        },
    )
    synthetic_dims: str = field(
        default="768,74,35",
        metadata={"help": "Synthetic text,audio,visual feature dims (CMU-MOSEI's by default)."},
    )
    synthetic_modalities: str = field(
        default="text,audio,visual",
        metadata={
            "help": "Comma-separated modalities the synthetic data keeps, e.g. 'text,audio' "
            "(all three are generated, so the kept ones are the same values either way)."
        },
    )
    synthetic_missing_rate: float = field(
        default=0.0,
        metadata={
            "help": "Probability that a synthetic (sample, modality) pair is missing (zero frames; "
            "a sample keeps at least one modality), in the splits of --synthetic_missing_splits."
        },
    )
    synthetic_missing_splits: str = field(
        default="train,validation,test",
        metadata={"help": "Comma-separated splits in which synthetic modalities go missing."},
    )
    synthetic_signal_split: bool = field(
        default=False,
        metadata={
            "help": "Split each synthetic label's signal unevenly across the modalities (70% in "
            "one, 15% in each other), so that losing a modality costs accuracy."
        },
    )
    threshold_tuning: str | None = field(
        default=None,
        metadata={
            "help": "Multi-label data only: how the decision threshold is tuned on the validation "
            "split: 'global' (one threshold; the default), 'per_label' (one per emotion) or 'none' "
            "(keep the config's). Single-label data is decided by the top score, never a threshold."
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
    publish_raw_examples: bool = field(
        default=False,
        metadata={
            "help": "Data built from raw inputs: make the model folder's widget examples of the "
            "first test samples' own sentences and audio clips (your data: they are copied into "
            "the folder and its card, and published with it). Default: a model that takes raw "
            "text shows example sentences written by this package, and none of your recordings."
        },
    )


@dataclass
class EmotionTrainingArguments(TrainingArguments):
    """`TrainingArguments` with the paper's optimisation as defaults (see docs/training.md)."""

    output_dir: str = field(
        default="outputs/model", metadata={"help": "Where the model folder goes."}
    )
    overwrite_output_dir: bool = field(
        default=False,
        metadata={
            "help": "Write into a non-empty output folder: the export replaces the files it "
            "writes and the previous run's checkpoints; other files stay."
        },
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
    metric_for_best_model: str = field(
        default=AUTO_METRIC,
        metadata={
            "help": "Validation metric that selects the best epoch; 'auto': f1_micro for "
            "multi-label data, f1_weighted for single-label data."
        },
    )
    greater_is_better: bool | None = field(
        default=None,
        metadata={
            "help": "For metric_for_best_model (default: smaller is better for a loss, "
            "greater for the others)."
        },
    )
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
    """The three argument dataclasses from the command line or from one JSON/YAML file. With the
    synthetic data, the preset file's values are the defaults that explicit arguments override."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = HfArgumentParser((ModelArguments, DataArguments, EmotionTrainingArguments))
    from_file = len(argv) == 1 and argv[0].endswith((".json", ".yaml", ".yml"))
    if from_file:
        text = Path(argv[0]).read_text()
        given = (json.loads(text) if argv[0].endswith(".json") else yaml.safe_load(text)) or {}
        if not isinstance(given, dict):
            raise ValueError(f"{argv[0]} must hold a mapping of argument names to values.")
    else:
        given = vars(parser.parse_known_args(argv)[0])
    preset = _synthetic_defaults(given, parser)
    # Decided before TrainingArguments exists: building it sets up the device and process group.
    defaults = {**preset, **_device_defaults()}
    if from_file:
        model_args, data_args, training_args = parser.parse_dict({**defaults, **given})
    else:
        parser.set_defaults(**defaults)
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(argv)
    if preset:
        logger.info("Synthetic-data preset (explicit arguments override it): %s", preset)
    _check_processes(training_args)
    _check_precision(training_args)
    _check_hyperparameters(training_args)
    _check_text_backbone_arguments(model_args)
    if data_args.dataset == "synthetic" and data_args.data_dir is not None:
        raise ValueError(
            f"--data_dir {data_args.data_dir} is given but --dataset is 'synthetic' (the default), "
            "which generates its data and would ignore it; name the prepared dataset, e.g. "
            "--dataset goemotions (any name: the card takes the one the data was built with)."
        )
    if data_args.threshold_tuning not in (None, "global", "per_label", "none"):
        raise ValueError(
            f"--threshold_tuning must be global, per_label or none; got {data_args.threshold_tuning!r}."
        )
    if data_args.synthetic_problem_type not in PROBLEM_TYPES:
        raise ValueError(
            f"--synthetic_problem_type must be one of {PROBLEM_TYPES}; got "
            f"{data_args.synthetic_problem_type!r}."
        )
    return model_args, data_args, training_args


#: (flag, lowest allowed value, whether the lowest value itself is allowed)
_HYPERPARAMETER_BOUNDS = (
    ("learning_rate", 0.0, False),
    ("weight_decay", 0.0, True),
    ("max_grad_norm", 0.0, True),
    ("warmup_steps", 0.0, True),
    ("adam_epsilon", 0.0, False),
    ("per_device_train_batch_size", 1, True),
    ("per_device_eval_batch_size", 1, True),
    ("gradient_accumulation_steps", 1, True),
    ("early_stopping_patience", 0, True),
    ("logging_steps", 0, False),
)


def _check_hyperparameters(training_args) -> None:
    """Refuses values no training can use, naming the flag, before anything is loaded."""
    problems = []
    for name, lowest, inclusive in _HYPERPARAMETER_BOUNDS:
        value = getattr(training_args, name)
        if value is None:
            continue
        if not math.isfinite(value) or value < lowest or (value == lowest and not inclusive):
            bound = f">= {lowest}" if inclusive else f"> {lowest}"
            problems.append(f"--{name} must be finite and {bound}; got {value}")
    for name in ("adam_beta1", "adam_beta2"):
        value = getattr(training_args, name)
        if not 0.0 <= value < 1.0:
            problems.append(f"--{name} must be in [0, 1); got {value}")
    if training_args.max_steps <= 0 and not (
        math.isfinite(training_args.num_train_epochs) and training_args.num_train_epochs > 0
    ):
        problems.append(
            f"--num_train_epochs must be > 0 (or --max_steps > 0); got "
            f"{training_args.num_train_epochs}"
        )
    if problems:
        raise ValueError("Impossible hyperparameters: " + "; ".join(problems) + ".")


def _check_text_backbone_arguments(model_args) -> None:
    """The text-backbone flags need --text_backbone, which needs a new model; LoRA needs a
    starting model or a text backbone to adapt."""
    dependent = [
        flag
        for flag, given in (
            ("--train_text_backbone", model_args.train_text_backbone),
            ("--text_backbone_layers", model_args.text_backbone_layers is not None),
            ("--text_backbone_learning_rate", model_args.text_backbone_learning_rate is not None),
        )
        if given
    ]
    if dependent and not model_args.text_backbone:
        raise ValueError(f"{', '.join(dependent)} need --text_backbone.")
    if model_args.text_backbone and model_args.model_name_or_path:
        raise ValueError(
            "--text_backbone builds a new model around the data's text encoder; it cannot start "
            "from --model_name_or_path."
        )
    if model_args.text_backbone_layers is not None and model_args.text_backbone_layers < 1:
        raise ValueError(
            f"--text_backbone_layers must be >= 1; got {model_args.text_backbone_layers}"
        )
    rate = model_args.text_backbone_learning_rate
    if rate is not None and not (math.isfinite(rate) and rate > 0):
        raise ValueError(f"--text_backbone_learning_rate must be finite and > 0; got {rate}")
    if model_args.use_lora and model_args.train_text_backbone:
        raise ValueError(
            "--use_lora with --text_backbone trains LoRA adapters on the frozen backbone; drop "
            "--train_text_backbone (full fine-tuning) or --use_lora."
        )
    if model_args.text_backbone_layers is not None and not model_args.train_text_backbone:
        raise ValueError(
            "--text_backbone_layers chooses what --train_text_backbone trains; give both."
        )
    if rate is not None and not (model_args.train_text_backbone or model_args.use_lora):
        raise ValueError(
            "--text_backbone_learning_rate: the backbone is frozen; add --train_text_backbone or "
            "--use_lora."
        )
    if model_args.use_lora and not (model_args.model_name_or_path or model_args.text_backbone):
        raise ValueError("--use_lora adapts --model_name_or_path or a --text_backbone; give one.")


def _exports_adapter(model_args) -> bool:
    """Whether the run's result is a LoRA adapter of a starting model (not a backbone's LoRA,
    which is merged into the exported model)."""
    return model_args.use_lora and not model_args.text_backbone


def _launched_processes() -> int:
    """The number of processes a launcher (accelerate launch, torchrun) started, 1 without one."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _device_defaults() -> dict:
    """Without an accelerator, train on the CPU: one process, or several as one run (gloo).

    `accelerate launch --multi_gpu` starts the processes even where there is no GPU; without
    ``use_cpu`` each would find no device for a process group and train alone, all in one folder.
    (``use_cpu`` is also what lets ``--bf16`` autocast on the CPU.)
    """
    if torch.accelerator.is_available():
        return {}
    if _launched_processes() > 1:
        logger.info(
            "%d processes, no accelerator: one run on the CPU (gloo).", _launched_processes()
        )
    return {"use_cpu": True}


def _check_processes(training_args) -> None:
    """Stop when a launcher started several processes that would not train as one run."""
    launched = _launched_processes()
    if launched > 1 and training_args.world_size != launched:
        raise RuntimeError(
            f"{launched} processes were launched but they do not form one run (this one sees "
            f"world_size {training_args.world_size} on {training_args.device}); each would train "
            "alone into the same folder. Without a GPU, drop --use_cpu false, or launch with "
            f"`accelerate launch --cpu --num_processes {launched} train.py ...`; on GPUs, "
            f"`accelerate launch --multi_gpu --num_processes {launched} train.py ...`."
        )


def _check_precision(training_args) -> None:
    """Refuse a mixed precision the device cannot do (Accelerate would train in fp32 silently)."""
    device = training_args.device.type
    if (training_args.fp16 or training_args.fp16_full_eval) and device == "cpu":
        raise ValueError(
            "--fp16 needs a GPU (or another accelerator); this run is on the CPU, where it would "
            "train in fp32. Use --bf16 true (autocast on the CPU) or leave --fp16 out."
        )


def _synthetic_defaults(given: dict, parser: HfArgumentParser) -> dict:
    """The preset's values for this run: none unless the dataset is synthetic."""
    if given.get("dataset", parser.get_default("dataset")) != "synthetic":
        return {}
    preset = yaml.safe_load(SYNTHETIC_PRESET.read_text())
    defaults = dict(preset["arguments"])
    model_type = given.get("model_type") or parser.get_default("model_type")
    overrides = preset["config_overrides"].get(model_type)
    if overrides and not given.get("model_name_or_path"):  # a trained model brings its own
        defaults["config_overrides"] = json.dumps(overrides)
    return defaults


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
        single_label = data_args.synthetic_problem_type == SINGLE_LABEL
        # Passed only when asked for: the multi-label data (and the report in its metadata) stay
        # exactly those of the days before single-label data.
        problem = {"single_label": True} if single_label else {}
        dataset = make_synthetic_dataset(
            num_train=data_args.synthetic_train_size,
            num_validation=data_args.synthetic_validation_size,
            num_test=data_args.synthetic_test_size,
            seed=data_args.synthetic_seed,
            text_length=length,
            audio_length=length,
            visual_length=length,
            num_labels=data_args.synthetic_num_labels or (4 if single_label else 6),
            signal_strength=data_args.synthetic_signal_strength,
            **_synthetic_dims(data_args.synthetic_dims),
            **_synthetic_missing_modalities(data_args),
            **_synthetic_modalities(data_args.synthetic_modalities),
            **problem,
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


def _synthetic_missing_modalities(data_args: DataArguments) -> dict:
    """The generator's missing-modality options, only those that differ from its defaults (the
    generator's arguments are recorded in the data's metadata)."""
    options = {}
    if data_args.synthetic_missing_rate:
        splits = [split.strip() for split in data_args.synthetic_missing_splits.split(",")]
        options.update(missing_rate=data_args.synthetic_missing_rate, missing_splits=splits)
    if data_args.synthetic_signal_split:
        options["signal_split"] = True
    return options


def _combinations_of(feature_dims: dict, config) -> tuple[str, ...]:
    """The modality combinations made only of modalities the data has and the model reads (its
    config's ``modalities``, if it names them): all seven for LDDU on text, audio and visual data;
    t, a, ta for audio + text data or for LSGMER, which reads audio and text only."""
    read = getattr(config, "modalities", None) or MODALITIES
    initials = {modality[0] for modality in feature_dims if modality in read}
    return tuple(c for c in MODALITY_COMBINATIONS if set(c) <= initials)


def _synthetic_modalities(text: str) -> dict:
    """``modalities=`` for the generator, only when not all three (the default data stays as it
    was, metadata included)."""
    modalities = [name.strip() for name in text.split(",") if name.strip()]
    unknown = sorted(set(modalities) - set(MODALITIES))
    if unknown or not modalities:
        raise ValueError(
            f"--synthetic_modalities must name some of {', '.join(MODALITIES)}; got {text!r}."
        )
    ordered = tuple(m for m in MODALITIES if m in modalities)
    return {} if ordered == MODALITIES else {"modalities": ordered}


def _synthetic_dims(text: str) -> dict[str, int]:
    values = [int(value) for value in text.split(",")]
    if len(values) != 3 or min(values) < 1:
        raise ValueError(
            f"--synthetic_dims takes three positive integers text,audio,visual; got {text!r}."
        )
    return dict(zip(("text_dim", "audio_dim", "visual_dim"), values))


# ------------------------------------------------------------------------------------------------
# Main
# ------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> dict:
    """Command-line entry point: parse, run, tear the process group down."""
    logging.basicConfig(format=LOG_FORMAT, level=logging.INFO)  # the preset is logged while parsing
    trainer, results = run(*parse_arguments(argv))
    trainer.accelerator.wait_for_everyone()
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()
    return results


def run(model_args, data_args, training_args, extra_callbacks=()):
    """Train, evaluate and export; returns ``(trainer, results)``.

    Nothing is written into ``--output_dir`` while the run goes: checkpoints and the export go to
    a staging folder beside it, which replaces a previous output of this script only at the very
    end (`dataset_scripts.outputs`). The main process holds a lock on the output for the whole run.
    """
    from dataset_scripts.outputs import output_lock

    _set_up_logging(training_args)
    if training_args.push_to_hub:  # the token and the repo, before anything is trained
        from mmer.hub import check_publish_target

        training_args.hub_model_id = check_publish_target(
            training_args.hub_model_id, token=training_args.hub_token
        )
        _check_adapter_publishable(model_args)
    output_dir = Path(training_args.output_dir).resolve()
    main_process = training_args.process_index == 0
    if main_process:
        _check_output_dir(output_dir, model_args, data_args, training_args)
    with output_lock(output_dir) if main_process else contextlib.nullcontext():
        with training_args.main_process_first(desc="staging folder"):
            staging = _staging_dir(output_dir, main_process, training_args.resume_from_checkpoint)
        try:
            return _train_and_export(
                output_dir, staging, model_args, data_args, training_args, extra_callbacks
            )
        except BaseException:
            if main_process:
                _settle_failed_run(staging, output_dir)
            raise


def _settle_failed_run(staging: Path, output_dir: Path) -> None:
    """A failed run leaves no temporary folder behind, but its checkpoints are kept for a resume."""
    from dataset_scripts.outputs import keep_interrupted_run

    if not staging.is_dir():
        return
    if any(staging.glob("checkpoints/checkpoint-*/trainer_state.json")):
        kept = keep_interrupted_run(staging, output_dir)
        logger.warning(
            "The run stopped; its checkpoints are kept in %s. Resume with "
            "--resume_from_checkpoint %s/checkpoints/checkpoint-N --output_dir %s",
            kept,
            kept,
            output_dir,
        )
    else:
        shutil.rmtree(staging, ignore_errors=True)


def _train_and_export(output_dir, staging, model_args, data_args, training_args, extra_callbacks):
    publish = training_args.push_to_hub
    training_args.output_dir = str(staging / "checkpoints")
    training_args.push_to_hub = False  # we publish the whole folder ourselves, at the end

    set_seed(training_args.seed)
    family = _family(model_args)
    data = prepare_data(data_args, family, text_backbone=model_args.text_backbone)
    threshold_tuning = _resolve_problem_type_arguments(data.problem_type, data_args, training_args)
    model = _build_model(model_args, family, data)
    n_parameters = sum(parameter.numel() for parameter in model.parameters())
    logger.info(
        "%s with %s parameters; labels %s", family.model_type, f"{n_parameters:,}", data.labels
    )

    callbacks = list(extra_callbacks)
    if training_args.early_stopping_patience > 0 and training_args.load_best_model_at_end:
        callbacks.append(EarlyStoppingCallback(training_args.early_stopping_patience))
    trainer = EmotionTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=data.collator,
        compute_metrics=make_compute_metrics(
            data.labels, model.prediction_fields, data.problem_type
        ),
        callbacks=callbacks,
        text_backbone_learning_rate=model_args.text_backbone_learning_rate,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)

    report = final_evaluation(
        trainer=trainer,
        validation_dataset=data.validation,
        test_dataset=data.test,
        train_labels=data.train.tensors["labels"].numpy(),
        label_names=data.labels,
        threshold_tuning=threshold_tuning,
        modality_combinations=_combinations_of(data.feature_dims, trainer.model.config)
        if data_args.evaluate_modality_combinations
        else (),
        problem_type=data.problem_type,
        selection_metric=training_args.metric_for_best_model,
    )
    report.results["train"] = {key: float(value) for key, value in train_result.metrics.items()}
    if trainer.is_world_process_zero():
        arguments = (model_args, data_args, training_args)
        _export(output_dir, staging, trainer, arguments, data, report, publish)
    return trainer, report.results


def _resolve_problem_type_arguments(problem_type: str, data_args, training_args) -> str | None:
    """The arguments whose meaning depends on the data's problem type: the selection metric
    ('auto' becomes the type's default; a named one must be computed) and the threshold tuning
    (the one to use; refused for single-label data, which is decided by the top score)."""
    if training_args.metric_for_best_model == AUTO_METRIC:
        training_args.metric_for_best_model = DEFAULT_SELECTION_METRIC[problem_type]
    check_selection_metric(training_args.metric_for_best_model, problem_type)
    logger.info(
        "%s data; the best epoch is selected by validation %s",
        problem_type,
        training_args.metric_for_best_model,
    )
    if problem_type == SINGLE_LABEL:
        if data_args.threshold_tuning is not None:
            raise ValueError(
                f"--threshold_tuning {data_args.threshold_tuning} is for multi-label data; this "
                "data is single-label, where each sample gets its top-scoring class and no "
                "threshold is tuned. Leave --threshold_tuning out."
            )
        return None
    return data_args.threshold_tuning or "global"


def _check_adapter_publishable(model_args: ModelArguments) -> None:
    """An unmerged adapter is published with its base named by Hub id; without one it is refused."""
    from mmer.lora import base_hub_id

    if not _exports_adapter(model_args) or model_args.merge_lora:
        return
    if base_hub_id(model_args.model_name_or_path, model_args.base_model_id) is None:
        raise ValueError(
            f"--push_to_hub with --use_lora publishes the adapter, whose base must be on the Hub; "
            f"--model_name_or_path {model_args.model_name_or_path} is a local folder. Pass its Hub "
            "id with --base_model_id USER/BASE, or --merge_lora true to publish a merged model."
        )


def _set_up_logging(training_args) -> None:
    level = logging.INFO if training_args.should_log else logging.WARNING
    logging.basicConfig(format=LOG_FORMAT, level=level)
    logging.getLogger().setLevel(level)
    transformers.utils.logging.set_verbosity(level)


def _family(model_args: ModelArguments) -> ModelFamily:
    """The family named by the starting model's config, else by --model_type."""
    if model_args.model_name_or_path:
        config = transformers.AutoConfig.from_pretrained(model_args.model_name_or_path)
        if getattr(config, "text_backbone_config", None):
            raise ValueError(
                f"{model_args.model_name_or_path} holds a text backbone; continuing or adapting "
                "such a model is not supported yet (train a new one with --text_backbone)."
            )
        return ModelFamily.from_model_type(config.model_type)
    return ModelFamily.from_model_type(model_args.model_type)


@dataclass
class PreparedData:
    """The three splits as model inputs, with what the model and the card need to know of them."""

    dataset_name: str  # as the data's metadata names it (the card describes this)
    labels: list[str]
    problem_type: str  # multi_label_classification or single_label_classification
    feature_dims: dict[str, int]
    max_lengths: dict[str, int]
    feature_extractor: object
    train: object
    validation: object
    test: object
    collator: object
    # Data built from raw inputs: the `RawFeatureSettings` saved beside it (the model folder then
    # gets the family's processor) and, with --publish_raw_examples only, the raw inputs of the
    # first test samples (widget examples).
    processor_settings: object = None
    raw_test_inputs: list | None = None
    # --text_backbone: the data's pretrained text encoder, which the new model holds.
    text_encoder: object = None


def prepare_data(
    data_args: DataArguments, family: ModelFamily, text_backbone: bool = False
) -> PreparedData:
    from dataset_scripts.loading import (
        InMemoryMultimodalDataset,
        MultimodalDataCollator,
        split_label_names,
        split_problem_type,
        split_shapes,
    )

    dataset = build_datasets(data_args)
    processor_settings, raw_test_inputs = _raw_input_data(data_args, dataset["test"])
    feature_dims, max_lengths = split_shapes(dataset["train"])
    tokens = text_encoder = None
    if text_backbone:
        processor_settings, tokens, text_encoder = _text_backbone_tokens(
            data_args, dataset, processor_settings
        )
        feature_dims["text"] = int(text_encoder.config.hidden_size)
        # The model's position table covers every text the processor accepts (its token limit),
        # not only the longest training text: the processor cuts at that limit, nothing later.
        max_lengths["text"] = max(
            processor_settings.text_max_tokens or 0,
            *(split["text_input_ids"].shape[1] for split in tokens.values()),
        )
    # Frames the feature extractor handles: not the text of a model that computes it itself.
    framed = {m for m in feature_dims if not (text_backbone and m == "text")}
    feature_extractor = family.feature_extractor_class(
        feature_dims={m: feature_dims[m] for m in framed},
        max_lengths={m: max_lengths[m] for m in framed},
    )
    if data_args.normalize_features:
        feature_extractor.fit_normalization(dataset["train"])
        feature_extractor.do_normalize = True
    train, validation, test = (
        InMemoryMultimodalDataset(
            dataset[split],
            feature_extractor,
            modalities=sorted(framed, key=MODALITIES.index) if text_backbone else None,
            text_tokens=None if tokens is None else tokens[split],
        )
        for split in ("train", "validation", "test")
    )
    return PreparedData(
        dataset_name=_dataset_name(dataset["train"], data_args.dataset),
        labels=split_label_names(dataset["train"]),
        problem_type=split_problem_type(dataset["train"]),
        feature_dims=feature_dims,
        max_lengths=max_lengths,
        feature_extractor=feature_extractor,
        train=train,
        validation=validation,
        test=test,
        collator=MultimodalDataCollator(padding_side=feature_extractor.padding_side),
        processor_settings=processor_settings,
        raw_test_inputs=raw_test_inputs,
        text_encoder=text_encoder,
    )


def _text_backbone_tokens(data_args: DataArguments, dataset, settings):
    """For --text_backbone: each split's `raw_text` as the tokens of the data's text encoder
    (the processor's tokenisation), the processor settings saying the model holds the encoder,
    and the loaded encoder."""
    import dataclasses

    from dataset_scripts.raw_features import RawFeatureComputer

    if settings is None or settings.text_encoder_name_or_path is None:
        raise ValueError(
            f"--text_backbone needs data built with a text encoder: {data_args.data_dir} has no "
            "processor_settings.json naming one (build it with `python -m "
            "dataset_scripts.goemotions --text_encoder ...` or `python -m dataset_scripts.raw_media`)."
        )
    lacking = [name for name, split in dataset.items() if "raw_text" not in split.column_names]
    if lacking:
        raise ValueError(
            f"--text_backbone reads the raw_text column, which the split(s) {lacking} of "
            f"{data_args.data_dir} lack."
        )
    computer = RawFeatureComputer(settings)
    tokens = {name: computer.text_tokens(split["raw_text"]) for name, split in dataset.items()}
    limit = computer.max_tokens
    logger.info(
        "Text backbone %s: the text is its tokenizer's tokens (at most %d), its frames computed "
        "in the model.",
        settings.text_encoder_name_or_path,
        limit,
    )
    # The limit becomes explicit in the saved settings: the model's position table is sized by it.
    settings = dataclasses.replace(settings, text_encoder_in_model=True, text_max_tokens=limit)
    return settings, tokens, computer.text_encoder


def _raw_input_data(data_args: DataArguments, test_split) -> tuple[object, list | None]:
    """The processor settings saved beside a prepared dataset built from raw inputs, and, when
    the trainer chose to publish them (`--publish_raw_examples`), the raw inputs of its first test
    samples (`{"text": sentence, "audio": absolute path}`); `(None, None)` for any other data."""
    from dataset_scripts.building import metadata_from_dataset
    from dataset_scripts.raw_features import read_processor_settings
    from mmer.export import NUM_WIDGET_EXAMPLES

    if data_args.dataset == "synthetic":
        _no_raw_examples(data_args)
        return None, None
    settings = read_processor_settings(data_args.data_dir)
    if settings is None:
        _no_raw_examples(data_args)
        return None, None
    logger.info("The data has processor settings: the model folder will take raw input.")
    if not data_args.publish_raw_examples:
        logger.info(
            "The widget examples will not show the test samples' raw inputs (your data); "
            "--publish_raw_examples publishes them."
        )
        return settings, None
    count = min(NUM_WIDGET_EXAMPLES, test_split.num_rows)
    rows = test_split.select(range(count))
    report = (metadata_from_dataset(test_split) or {}).get("report", {})
    root = report.get("audio_root")
    raw = []
    for row in range(count):
        sample = {}
        if "raw_text" in rows.column_names:
            sample["text"] = rows[row]["raw_text"]
        if "raw_audio" in rows.column_names and root:
            sample["audio"] = str(Path(root) / rows[row]["raw_audio"])
        raw.append(sample)
    if not any(raw):
        _no_raw_examples(data_args)
        return settings, None
    return settings, raw


def _no_raw_examples(data_args: DataArguments) -> None:
    """Warns that --publish_raw_examples has nothing to publish (data without raw inputs)."""
    if data_args.publish_raw_examples:
        logger.warning(
            "--publish_raw_examples: the data keeps no raw inputs (it was not built from raw "
            "text or audio), so the widget examples are made as without it."
        )


def _dataset_name(split, flag: str) -> str:
    """The dataset's own name from its metadata; the --dataset flag only when it carries none."""
    from dataset_scripts.building import metadata_from_dataset

    name = (metadata_from_dataset(split) or {}).get("dataset_name") or flag
    if name != flag:
        logger.warning(
            "--dataset %s, but the data in --data_dir was built as %r: the model card describes %r.",
            flag,
            name,
            name,
        )
    return name


def _export(output_dir, staging, trainer, arguments, data: PreparedData, report, publish) -> None:
    """Main process only: write the model folder (or the LoRA adapter) into `staging`, move it to
    `output_dir` in one step (`replace_output`), then publish it."""
    from dataset_scripts.outputs import replace_output

    model_args, _, training_args = arguments
    model_type = _write_export(staging, trainer, arguments, data, report)
    _relocate_checkpoint_states(staging, output_dir)
    replace_output(staging, output_dir, OUTPUT_TOOL)
    logger.info("Model folder written to %s", output_dir)
    _print_summary(report.results, model_type)
    if not publish:
        return
    if _exports_adapter(model_args) and not model_args.merge_lora:
        from mmer.hub import publish_adapter_folder

        publish_adapter_folder(
            output_dir / "adapter",
            training_args.hub_model_id,
            token=training_args.hub_token,
            private=bool(training_args.hub_private_repo),
        )
        logger.info("Published the adapter to %s", training_args.hub_model_id)
        return
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


def _write_export(folder: Path, trainer, arguments, data: PreparedData, report) -> str:
    """The adapter and/or the model folder, written into `folder`; returns the model type."""
    from dataset_scripts.io import write_json_atomic
    from mmer.export import write_model_folder
    from mmer.lora import base_hub_id, base_reference, save_adapter

    model_args, data_args, training_args = arguments
    export_model = trainer.model
    if model_args.text_backbone and model_args.use_lora:
        from mmer.lora import merge_text_backbone_lora

        merge_text_backbone_lora(export_model)
    if _exports_adapter(model_args):
        base = base_reference(model_args.model_name_or_path, model_args.base_model_id)
        save_adapter(trainer.model, folder / "adapter", base=base)
        logger.info("LoRA adapter of %s saved", base)
        if not model_args.merge_lora:
            write_json_atomic(folder / "all_results.json", report.results)
            return export_model.config.model_type
        export_model = trainer.model.merge_and_unload()
    write_model_folder(
        model=export_model,
        output_dir=folder,
        trainer=trainer,
        feature_extractor=data.feature_extractor,
        report=report,
        label_names=data.labels,
        dataset_name=data.dataset_name,
        synthetic=data.dataset_name == "synthetic",
        hyperparameters=_hyperparameters(training_args, trainer, export_model.config),
        test_dataset=data.test,
        license=training_args.license,
        hub_model_id=training_args.hub_model_id,
        base_model=base_hub_id(model_args.model_name_or_path, model_args.base_model_id),
        processor_settings=data.processor_settings,
        raw_examples=data.raw_test_inputs,
    )
    return export_model.config.model_type


#: The name train.py's outputs carry in their manifest (`dataset_scripts.outputs`).
OUTPUT_TOOL = "train.py"


def _check_output_dir(output_dir: Path, model_args, data_args, training_args) -> None:
    """Before anything is loaded: the output is not one of the run's inputs and does not contain
    one, is writable, and, when not empty, is a previous output of this script that the user asked
    to replace (--overwrite_output_dir, or --resume_from_checkpoint)."""
    from dataset_scripts.outputs import check_output_target

    sources = [data_args.data_dir]
    if model_args.model_name_or_path and Path(model_args.model_name_or_path).exists():
        sources.append(model_args.model_name_or_path)
    replace = training_args.overwrite_output_dir or bool(training_args.resume_from_checkpoint)
    check_output_target(
        output_dir,
        tool=OUTPUT_TOOL,
        overwrite=replace,
        sources=sources,
        flag="--overwrite_output_dir (or --resume_from_checkpoint to continue a run)",
    )
    if replace and output_dir.is_dir() and any(output_dir.iterdir()):
        logger.warning(
            "The model in %s will be replaced at the end of the run (files this script did not "
            "write are kept).",
            output_dir,
        )


def _staging_dir(output_dir: Path, main_process: bool, resume_from_checkpoint=None) -> Path:
    """The folder the run writes into (the same path in every process). The main process settles
    what an interrupted run left beside the output first."""
    from dataset_scripts.outputs import recover_leftovers, temporary_output_dir

    if not main_process:
        return output_dir.parent / f".{output_dir.name}.tmp-train"
    recover_leftovers(output_dir)
    staging = temporary_output_dir(output_dir, tag="train")
    resume = resume_from_checkpoint and Path(resume_from_checkpoint).resolve()
    if resume and resume.parent.name == "checkpoints" and resume.parent.is_dir():
        # Resuming (from the output, or from an interrupted run kept beside it): the new output
        # keeps the checkpoints it continues from, as it would in one folder. Hard links: the
        # Trainer writes new files and never changes saved ones. Checkpoints of later steps are
        # left out: the resumed run writes its own under those names.
        step = _checkpoint_step(resume.name)

        def later_checkpoints(folder: str, names: list[str]) -> list[str]:
            if Path(folder) != resume.parent or step is None:
                return []
            return [n for n in names if (_checkpoint_step(n) or 0) > step]

        shutil.copytree(
            resume.parent,
            staging / "checkpoints",
            copy_function=_link_or_copy,
            ignore=later_checkpoints,
        )
    return staging


def _checkpoint_step(name: str) -> int | None:
    number = name.removeprefix("checkpoint-")
    return int(number) if name.startswith("checkpoint-") and number.isdigit() else None


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def _relocate_checkpoint_states(staging: Path, output_dir: Path) -> None:
    """The Trainer records the best checkpoint by absolute path: point it at where the
    checkpoints will be once the staging folder is the output, so that a resume finds it."""
    from dataset_scripts.io import write_json_atomic

    for state_file in sorted(staging.glob("checkpoints/checkpoint-*/trainer_state.json")):
        state = json.loads(state_file.read_text())
        best = state.get("best_model_checkpoint")
        if best and Path(best).is_relative_to(staging):
            state["best_model_checkpoint"] = str(output_dir / Path(best).relative_to(staging))
            state_file.unlink()  # a hard link may share its bytes with the previous output
            write_json_atomic(state_file, state)


def _build_model(model_args: ModelArguments, family: ModelFamily, data: PreparedData):
    missing = [m for m in MODALITIES if m not in data.feature_dims]
    if missing:
        logger.info("The data has no %s features: the model treats them as absent.", missing)
    data_fields = {f"{m}_dim": data.feature_dims.get(m, 1) for m in MODALITIES}
    data_fields["max_position_embeddings"] = max(60, *data.max_lengths.values())
    data_fields["id2label"] = dict(enumerate(data.labels))
    data_fields["problem_type"] = data.problem_type
    overrides = json.loads(model_args.config_overrides) if model_args.config_overrides else {}
    if not isinstance(overrides, dict):
        raise ValueError(
            f"--config_overrides must be a JSON object; got {model_args.config_overrides!r}."
        )
    _check_config_fields(overrides, family)
    clash = sorted(set(overrides) & set(data_fields))
    if clash:
        raise ValueError(f"--config_overrides may not set {clash}: they are read from the data.")
    dropout = parse_modality_dropout(model_args.modality_dropout)
    if dropout:
        overrides["modality_dropout"] = dropout
    if model_args.model_name_or_path:
        from mmer.lora import load_for_adaptation

        return load_for_adaptation(model_args, data_fields, overrides)
    if data.text_encoder is None:
        return family.model_class(family.config_class(**data_fields, **overrides))
    encoder_config = data.text_encoder.config.to_dict()
    encoder_config.pop("_name_or_path", None)  # a local path; the processor names the encoder
    backbone = {
        "text_backbone_config": encoder_config,
        "text_backbone_layer": data.processor_settings.text_encoder_layer,
        "freeze_text_backbone": not model_args.train_text_backbone,
        "text_backbone_trainable_layers": model_args.text_backbone_layers,
    }
    clash = sorted(set(overrides) & set(backbone))
    if clash:
        raise ValueError(f"--config_overrides may not set {clash} with --text_backbone.")
    model = family.model_class(family.config_class(**data_fields, **overrides, **backbone))
    if getattr(model.base_model, "text_backbone", None) is None:
        raise ValueError(
            f"--text_backbone: the {family.model_type} family builds no text backbone from "
            "text_backbone_config (the family contract's optional text backbone, mmer/family.py)."
        )
    model.base_model.text_backbone.load_pretrained(data.text_encoder)
    if model_args.use_lora:
        from mmer.lora import add_text_backbone_lora

        add_text_backbone_lora(
            model, r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout
        )
    return model


def _check_config_fields(overrides: dict, family: ModelFamily) -> None:
    """Refuses --config_overrides keys the family's config does not have (they would be stored
    and ignored), with the nearest valid name."""
    from dataset_scripts.outputs import nearest_name_hint

    valid = set(family.config_class().to_dict())
    for key in overrides:
        if key not in valid:
            raise ValueError(
                f"--config_overrides: {key!r} is not a field of {family.config_class.__name__}"
                f"{nearest_name_hint(key, valid)}"
            )


#: Config fields read from the data or tuned after training: not hyperparameters.
_DATA_FIELDS = {f"{m}_dim" for m in MODALITIES} | {
    "max_position_embeddings",
    "decision_threshold",
    "label_thresholds",
    "problem_type",
}


def _hyperparameters(training_args, trainer, config) -> dict:
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
        "mixed_precision": _precision_used(trainer.accelerator),
        "processes": training_args.world_size,
    }
    # The model's own hyperparameters: the fields its family's config classes declare.
    family_fields = [
        name
        for klass in reversed(type(config).__mro__)
        if issubclass(klass, transformers.PreTrainedConfig)
        and klass is not transformers.PreTrainedConfig
        for name in vars(klass).get("__annotations__", {})
    ]
    for name in dict.fromkeys(family_fields):
        value = getattr(config, name)
        if name == "text_backbone_config" and value is not None:  # its gist, not its whole config
            value = describe_text_backbone(config)
        if name not in _DATA_FIELDS and value is not None:
            values[name] = json.dumps(value) if isinstance(value, (dict, list)) else value
    if getattr(trainer.args, "activation_checkpointing", False):
        values["activation_checkpointing"] = True
    return values


def _precision_used(accelerator) -> str:
    """The precision the training steps ran in: Accelerate autocasts only when ``native_amp``."""
    return accelerator.mixed_precision if accelerator.native_amp else "no"


#: The metrics `_print_summary` lists, per problem type.
_SUMMARY_METRICS = {
    MULTI_LABEL: (
        "f1_micro",
        "f1_macro",
        "accuracy_jaccard",
        "accuracy_jaccard_reference",
        "hamming_loss",
    ),
    SINGLE_LABEL: ("accuracy", "unweighted_accuracy", "f1_weighted", "f1_macro"),
}


def _print_summary(results: dict, model_name: str) -> None:
    test = results["test"]
    chance = results.get("chance", {})
    problem_type = results.get("problem_type", MULTI_LABEL)
    decided = (
        "thresholds tuned on validation"
        if problem_type == MULTI_LABEL
        else "top-scoring class, no threshold"
    )
    lines = [
        "",
        f"Test split ({decided}):",
        f"  {'metric':<28}{model_name.upper():>10}{'chance':>10}",
    ]
    for key in _SUMMARY_METRICS[problem_type]:
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
        headline, name = (
            ("f1_micro", "micro-F1")
            if problem_type == MULTI_LABEL
            else ("f1_weighted", "weighted F1")
        )
        mean = results.get("modality_combinations_mean", {})
        lines.append(
            f"  {name} by modalities given: "
            + ", ".join(f"{name} {values[headline]:.3f}" for name, values in combinations.items())
            + (f", mean {mean[headline]:.3f}" if headline in mean else "")
        )
    print("\n".join(lines), flush=True)


if __name__ == "__main__":
    main()
