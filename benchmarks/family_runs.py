"""Pieces the family benchmarks share: one `train.py` run, the mean-pooled logistic-regression
baseline on the same inputs, and mean / spread over seeds.

The baseline is the strongest simple model on the same features: each modality's frames
mean-pooled over its real frames (zeros, plus an "absent" flag, where a sample has none of that
modality), standardised on the training split, then logistic regression (scikit-learn, lbfgs,
C = 1): multinomial for single-label data (decided by the top class, as the models), one-vs-rest
for multi-label data with one global threshold tuned on validation (the search `train.py` uses).
"""

from __future__ import annotations

import importlib.util
import os
import platform
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402

from dataset_scripts.building import SINGLE_LABEL  # noqa: E402
from dataset_scripts.loading import split_problem_type  # noqa: E402
from dataset_scripts.modalities import MODALITIES  # noqa: E402

__all__ = [
    "load_bench_goemotions",
    "logistic_baseline",
    "machine_info",
    "mean_and_spread",
    "pooled_features",
    "train_run",
]


def load_bench_goemotions():
    """``benchmarks/bench_goemotions.py`` as a module (benchmarks are scripts, not a package):
    its GoEmotions data preparation, LDDU settings and baseline."""
    path = Path(__file__).resolve().parent / "bench_goemotions.py"
    spec = importlib.util.spec_from_file_location("bench_goemotions", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def machine_info(threads: int) -> dict:
    """What a report records of the machine it ran on (the load at the end says how busy)."""
    return {
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": threads,
        "load_average_end": list(os.getloadavg()),
    }


def train_run(argv: Sequence[str]) -> dict:
    """One `train.run` with these command-line arguments: its results, wall time and size."""
    import train

    started = time.perf_counter()
    trainer, results = train.run(*train.parse_arguments(list(argv)))
    return {
        "results": results,
        "seconds": time.perf_counter() - started,
        "epochs_trained": float(trainer.state.epoch or 0),
        "parameters": int(sum(p.numel() for p in trainer.model.parameters())),
    }


def pooled_features(split, modalities: Sequence[str], keep: Sequence[str] | None = None):
    """``[N, sum(D_m) + M]``: per modality the mean of the sample's frames (zeros when it has none,
    or when the modality is not in ``keep``), then one 0/1 "absent" flag per modality."""
    columns, absent = [], []
    for modality in modalities:
        values = split.with_format("numpy", columns=[modality])[modality]
        if isinstance(values, np.ndarray) and values.ndim == 3:  # fixed length: every frame real
            pooled = values.mean(axis=1)
            missing = np.zeros(len(values), dtype=bool)
        else:
            samples = [np.asarray(sample, dtype=np.float32) for sample in values]
            dim = split.features[modality].shape[1]
            pooled = np.stack(
                [s.reshape(-1, dim).mean(0) if len(s) else np.zeros(dim) for s in samples]
            )
            missing = np.array([len(s) == 0 for s in samples])
        if keep is not None and modality not in keep:
            pooled, missing = np.zeros_like(pooled), np.ones(len(pooled), dtype=bool)
        columns.append(np.where(missing[:, None], 0.0, pooled))
        absent.append(missing[:, None].astype(np.float64))
    return np.concatenate(columns + absent, axis=1)


def _labels(split) -> np.ndarray:
    return np.asarray(split.with_format("numpy", columns=["labels"])["labels"], dtype=np.float32)


def logistic_baseline(
    dataset, conditions: Sequence[str] = (), seed: int = 0, label_names: Sequence[str] | None = None
) -> dict:
    """The baseline above, fitted on ``train``: its test metrics (and, per condition such as
    ``"ta"``, the test metrics with only those modalities given)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.preprocessing import StandardScaler

    from mmer.metrics import multilabel_metrics_from_scores, single_label_metrics, tune_threshold

    modalities = [m for m in MODALITIES if m in dataset["train"].column_names]
    single = split_problem_type(dataset["train"]) == SINGLE_LABEL
    scaler = StandardScaler().fit(pooled_features(dataset["train"], modalities))

    def features(split, keep=None):
        return scaler.transform(pooled_features(dataset[split], modalities, keep))

    train_labels = _labels(dataset["train"])
    started = time.perf_counter()
    if single:
        model = LogisticRegression(C=1.0, max_iter=2000, random_state=seed)
        model.fit(features("train"), train_labels.argmax(1))
    else:
        model = OneVsRestClassifier(LogisticRegression(C=1.0, max_iter=2000, random_state=seed))
        model.fit(features("train"), train_labels)
    threshold = None
    if not single:
        validation_scores = model.predict_proba(features("validation"))
        threshold = tune_threshold(validation_scores, _labels(dataset["validation"])).threshold

    def metrics(keep=None) -> dict:
        scores = model.predict_proba(features("test", keep))
        test_labels = _labels(dataset["test"])
        if single:
            values = single_label_metrics(scores, test_labels, label_names)
        else:
            values = multilabel_metrics_from_scores(scores, test_labels, threshold, label_names)
        return {k: float(v) for k, v in values.items() if isinstance(v, (int, float, np.floating))}

    combination_rows = {}
    for condition in conditions:
        keep = [m for m in modalities if m[0] in condition]
        combination_rows[condition] = metrics(keep)
    return {
        "test": metrics(),
        "modality_combinations": combination_rows,
        "threshold": None if threshold is None else float(threshold),
        "seconds": time.perf_counter() - started,
    }


def mean_and_spread(values: Sequence[float | None]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for fewer than two values) of the non-None."""
    numbers = [float(v) for v in values if v is not None]
    if not numbers:
        return None, None
    spread = statistics.stdev(numbers) if len(numbers) > 1 else None
    return statistics.fmean(numbers), spread


def format_cell(values: Sequence[float | None]) -> str:
    """``0.712 ± 0.013`` (mean ± sample std over seeds), or the single value."""
    mean, spread = mean_and_spread(values)
    if mean is None:
        return "n/a"
    return f"{mean:.3f}" if spread is None else f"{mean:.3f} ± {spread:.3f}"
