"""Figures for training reports and model cards (PNG, written atomically).

matplotlib is imported only when a function is called, and only its object-oriented API with the Agg
canvas is used: nothing here touches `pyplot` or switches the process-wide backend, so the functions
are safe in headless jobs and do not disturb a notebook's own backend.
"""

from __future__ import annotations

import io
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dataset_scripts.io import write_bytes_atomic

from .metrics import reliability_curve, top_label_reliability_curve

logger = logging.getLogger(__name__)

__all__ = [
    "plot_confusion_matrix",
    "plot_per_label_f1",
    "plot_reliability_diagram",
    "plot_training_curves",
]

#: Evaluation metrics drawn by `plot_training_curves` when present in the log (as `eval_<name>`).
DEFAULT_EVAL_METRICS: tuple[str, ...] = (
    "f1_micro",
    "f1_macro",
    "accuracy_jaccard",
    "precision_micro",
    "recall_micro",
    "global_average_precision",
    "accuracy",
    "unweighted_accuracy",
    "f1_weighted",
)

# Keys Trainer logs that are bookkeeping, not curves.
_NON_CURVE_SUFFIXES = ("runtime", "samples_per_second", "steps_per_second", "flos")


def _new_figure(width: float, height: float, *rows_columns: int, **subplot_options):
    """A Figure on its own Agg canvas (no pyplot) and its axes from `Figure.subplots`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.subplots(*rows_columns, **subplot_options)


def _save_png(figure, path: str | os.PathLike[str], dpi: int) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi)
    target = write_bytes_atomic(path, buffer.getvalue())
    logger.info("Wrote %s", target)
    return target


def _is_curve_value(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def has_training_curves(log_history: Sequence[dict], x_axis: str = "step") -> bool:
    """Whether ``log_history`` holds anything :func:`plot_training_curves` can draw (a short run
    without evaluation may have logged no loss at all)."""
    return any(panel[2] for panel in _curve_panels(log_history, x_axis, DEFAULT_EVAL_METRICS))


def plot_training_curves(
    log_history: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    x_axis: str = "step",
    eval_metrics: Sequence[str] | None = None,
    dpi: int = 120,
) -> Path:
    """Plot a Trainer `state.log_history` to a PNG.

    Panels (each drawn only when the log has data for it):

    1. training losses: `loss` and every other logged key containing `loss` in the training entries
       (e.g. per-term losses logged by a callback);
    2. evaluation losses: `eval_*loss*` keys;
    3. evaluation metrics: `eval_<name>` for each name in `eval_metrics` (default
       `DEFAULT_EVAL_METRICS`).

    The end-of-training summary entry (`train_runtime`, `train_loss`, ...) is skipped.

    Args:
        log_history: `trainer.state.log_history` (a list of dicts).
        path: Output PNG path (its folder must exist).
        x_axis: `"step"` or `"epoch"`.
        eval_metrics: Metric names (without the `eval_` prefix) to draw.
        dpi: Resolution.

    Returns:
        The written path.
    """
    if x_axis not in ("step", "epoch"):
        raise ValueError(f"`x_axis` must be 'step' or 'epoch', got {x_axis!r}.")
    if isinstance(log_history, (str, bytes)) or not isinstance(log_history, Sequence):
        raise TypeError(f"`log_history` must be a list of dicts, got {type(log_history).__name__}.")
    metric_names = DEFAULT_EVAL_METRICS if eval_metrics is None else tuple(eval_metrics)
    panels = [panel for panel in _curve_panels(log_history, x_axis, metric_names) if panel[2]]
    if not panels:
        raise ValueError(
            f"`log_history` has no training loss, evaluation loss or evaluation metric keyed by "
            f"{x_axis!r}; nothing to plot."
        )

    figure, axes = _new_figure(5.0 * len(panels), 4.0, 1, len(panels), squeeze=False)
    for axis, (title, y_label, series) in zip(axes[0], panels, strict=True):
        for name in sorted(series):
            points = sorted(series[name])
            axis.plot(
                *zip(*points),
                marker="o" if len(points) < 30 else None,
                markersize=3,
                label=name,
            )
        axis.set_title(title)
        axis.set_xlabel(x_axis)
        axis.set_ylabel(y_label)
        axis.grid(alpha=0.3)
        axis.legend(fontsize="small")
    return _save_png(figure, path, dpi)


def _curve_panels(log_history, x_axis: str, metric_names) -> list[tuple[str, str, dict]]:
    """``(title, y label, {series name: [(x, y), ...]})`` for the three panels."""
    train_series: dict[str, list[tuple[float, float]]] = {}
    eval_loss_series: dict[str, list[tuple[float, float]]] = {}
    eval_metric_series: dict[str, list[tuple[float, float]]] = {}
    for entry in log_history:
        if not isinstance(entry, Mapping):
            raise TypeError(f"Every log entry must be a dict, got {type(entry).__name__}.")
        if "train_runtime" in entry or x_axis not in entry:
            continue
        position = float(entry[x_axis])
        is_eval_entry = any(key.startswith("eval_") for key in entry)
        for key, value in entry.items():
            if not _is_curve_value(value) or key.endswith(_NON_CURVE_SUFFIXES):
                continue
            if is_eval_entry and key.startswith("eval_"):
                name = key[len("eval_") :]
                if "loss" in name:
                    eval_loss_series.setdefault(key, []).append((position, float(value)))
                elif name in metric_names:
                    eval_metric_series.setdefault(name, []).append((position, float(value)))
            elif not is_eval_entry and "loss" in key:
                train_series.setdefault(key, []).append((position, float(value)))

    return [
        ("training losses", "loss", train_series),
        ("evaluation losses", "loss", eval_loss_series),
        ("evaluation metrics", "value", eval_metric_series),
    ]


def plot_per_label_f1(
    metrics_dict: Mapping[str, float],
    label_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Bar chart of the F1 of each label, with `f1_micro` / `f1_macro` as lines when present.

    Args:
        metrics_dict: Output of `mmer.metrics.multilabel_metrics` (keys `f1_<label>`), or a
            `{label: f1}` dict such as the `per_label_f1` of `mmer.model_card.ModelCardInputs`.
        label_names: Labels to draw, in order.
        path: Output PNG path.
        title: Figure title.
        dpi: Resolution.
    """
    if not label_names:
        raise ValueError("`label_names` is empty.")
    missing = [name for name in label_names if not {f"f1_{name}", name} & set(metrics_dict)]
    if missing:
        raise ValueError(
            f"`metrics_dict` has no F1 for labels {missing} (expected keys f1_<label> or <label>)."
        )
    scores = [float(metrics_dict.get(f"f1_{name}", metrics_dict.get(name))) for name in label_names]

    figure, axis = _new_figure(max(4.0, 0.9 * len(label_names) + 2.0), 3.8)
    bars = axis.bar(range(len(label_names)), scores, color="tab:blue")
    axis.bar_label(bars, fmt="%.3f", fontsize="small")
    for key, style in (("f1_micro", "--"), ("f1_macro", ":")):
        if key in metrics_dict and math.isfinite(float(metrics_dict[key])):
            axis.axhline(float(metrics_dict[key]), color="black", linestyle=style, label=key)
    axis.set_xticks(range(len(label_names)), list(label_names), rotation=30, ha="right")
    axis.set_ylim(0.0, 1.05)
    axis.set_ylabel("F1")
    axis.set_title(title or "F1 per label")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize="small")
    return _save_png(figure, path, dpi)


def plot_reliability_diagram(
    scores: Any,
    y_true: Any,
    path: str | os.PathLike[str],
    n_bins: int = 15,
    *,
    title: str | None = None,
    dpi: int = 120,
    top_label: bool = False,
) -> Path:
    """Reliability diagram of all (sample, label) probabilities, with the ECE in the title.

    Top: observed positive rate per bin against the mean predicted probability (the diagonal is
    perfect calibration). Bottom: number of pairs per bin (log scale). Bins and definitions are
    those of `mmer.metrics.reliability_curve`. With ``top_label`` (single-label data): one point
    per sample, the score of its top class against whether that class is right
    (`mmer.metrics.top_label_reliability_curve`).
    """
    curve = (top_label_reliability_curve if top_label else reliability_curve)(
        scores, y_true, n_bins=n_bins
    )
    centers = (curve.bin_edges[:-1] + curve.bin_edges[1:]) / 2
    width = 1.0 / n_bins
    filled = curve.count > 0
    figure, (top, bottom) = _new_figure(4.8, 5.6, 2, 1, sharex=True, height_ratios=[3, 1])
    top.bar(
        centers[filled],
        curve.accuracy[filled],
        width=width * 0.95,
        color="tab:blue",
        alpha=0.8,
        label="observed accuracy" if top_label else "observed positive rate",
    )
    top.plot(
        curve.confidence[filled], curve.accuracy[filled], "o", color="tab:red", label="bin mean"
    )
    top.plot([0, 1], [0, 1], "--", color="gray", label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.set_ylabel("fraction right" if top_label else "fraction positive")
    top.legend(fontsize="small", loc="upper left")
    top.set_title(f"{title or 'Reliability diagram'} (ECE = {curve.calibration_error():.4f})")
    bottom.bar(centers[filled], curve.count[filled], width=width * 0.95, color="tab:gray")
    bottom.set_yscale("log")
    bottom.set_xlabel("score of the top class" if top_label else "predicted probability")
    bottom.set_ylabel("count")
    return _save_png(figure, path, dpi)


def plot_confusion_matrix(
    counts: Any,
    label_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
    dpi: int = 120,
) -> Path:
    """Heat map of a confusion matrix (rows: gold class, columns: predicted class), each cell
    labelled with its count; colours are the share of the gold class (row-normalised)."""
    matrix = np.asarray(counts, dtype=np.float64)
    size = len(label_names)
    if matrix.shape != (size, size):
        raise ValueError(
            f"`counts` must be ({size}, {size}) for {size} labels, got shape {matrix.shape}."
        )
    row_sums = matrix.sum(axis=1, keepdims=True)
    shares = np.divide(matrix, row_sums, out=np.zeros_like(matrix), where=row_sums > 0)
    side = max(3.5, 0.8 * size + 2.0)
    figure, axis = _new_figure(side, side)
    axis.imshow(shares, cmap="Blues", vmin=0.0, vmax=1.0)
    for row in range(size):
        for column in range(size):
            color = "white" if shares[row, column] > 0.6 else "black"
            axis.text(column, row, f"{int(matrix[row, column])}", ha="center", va="center",
                      color=color, fontsize="small")  # fmt: skip
    axis.set_xticks(range(size), list(label_names), rotation=30, ha="right")
    axis.set_yticks(range(size), list(label_names))
    axis.set_xlabel("predicted")
    axis.set_ylabel("gold")
    axis.set_title(title or "Confusion matrix (counts)")
    return _save_png(figure, path, dpi)
