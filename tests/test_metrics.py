"""Tests of mmer.metrics against hand-computed examples, scikit-learn and brute force."""

import itertools
import json
import os
import random
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, jaccard_score

from mmer import metrics
from mmer.metrics import (
    DEFAULT_THRESHOLD_GRID,
    REFERENCE_THRESHOLD_GRID,
    TUNABLE_METRICS,
    chance_level_metrics,
    expected_calibration_error,
    global_average_precision,
    multilabel_metrics,
    multilabel_metrics_from_scores,
    reliability_curve,
    scores_to_predictions,
    tune_threshold,
    uncertainty_error_auroc,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

# Four samples, three labels. Row by row:
#   0: gold {0, 2}, pred {0, 1}  -> partial overlap, Jaccard 1/3
#   1: gold {},     pred {}      -> empty/empty: 1 (standard) or 0 (authors' convention)
#   2: gold {},     pred {1}     -> gold empty but prediction not: 0
#   3: gold {0, 1}, pred {}      -> nothing predicted: 0
GOLD = np.array([[1, 0, 1], [0, 0, 0], [0, 0, 0], [1, 1, 0]])
PRED = np.array([[1, 1, 0], [0, 0, 0], [0, 1, 0], [0, 0, 0]])
NAMES = ["happy", "sad", "anger"]


def random_problem(seed, num_samples=200, num_labels=6):
    generator = np.random.default_rng(seed)
    gold = (generator.random((num_samples, num_labels)) < 0.3).astype(np.int64)
    scores = np.clip(0.35 * gold + 0.65 * generator.random((num_samples, num_labels)), 0.0, 1.0)
    return scores, gold


# ---------------------------------------------------------------------------------------------------
# multilabel_metrics
# ---------------------------------------------------------------------------------------------------


def test_multilabel_metrics_hand_computed():
    result = multilabel_metrics(GOLD, PRED, NAMES)
    expected = {
        "accuracy_jaccard": (1 / 3 + 1 + 0 + 0) / 4,
        "accuracy_jaccard_reference": (1 / 3 + 0 + 0 + 0) / 4,
        "hamming_loss": 5 / 12,
        # TP = 1, FP = 2, FN = 3 over all labels.
        "precision_micro": 1 / 3,
        "recall_micro": 1 / 4,
        "f1_micro": 2 / 7,
        # label 0: P 1, R 1/2, F1 2/3; label 1: TP 0 FP 2 FN 1; label 2: TP 0 FP 0 FN 1.
        "precision_macro": 1 / 3,
        "recall_macro": 1 / 6,
        "f1_macro": 2 / 9,
        "f1_happy": 2 / 3,
        "f1_sad": 0.0,
        "f1_anger": 0.0,
        "precision_happy": 1.0,
        "precision_sad": 0.0,
        "precision_anger": 0.0,  # no predicted positive: zero_division = 0
        "recall_happy": 0.5,
        "recall_sad": 0.0,
        "recall_anger": 0.0,
    }
    assert list(result) == list(expected)
    for key, value in expected.items():
        assert result[key] == pytest.approx(value, abs=1e-12), key
    assert all(type(value) is float for value in result.values())


def test_precision_and_recall_are_not_swapped():
    # Three predicted positives, four gold positives, one hit: precision 1/3, recall 1/4. The authors'
    # get_metrics(pred, gold) would log "precision" = 1/4 and "recall" = 1/3.
    result = multilabel_metrics(GOLD, PRED)
    assert result["precision_micro"] == pytest.approx(1 / 3)
    assert result["recall_micro"] == pytest.approx(1 / 4)


def test_empty_rows_conventions():
    all_empty = np.zeros((3, 2), dtype=int)
    result = multilabel_metrics(all_empty, all_empty)
    assert result["accuracy_jaccard"] == 1.0
    assert result["accuracy_jaccard_reference"] == 0.0
    assert result["hamming_loss"] == 0.0
    assert result["f1_micro"] == 0.0  # zero division -> 0
    gold_empty_prediction_not = multilabel_metrics(np.zeros((1, 2), int), np.array([[1, 0]]))
    assert gold_empty_prediction_not["accuracy_jaccard"] == 0.0
    assert gold_empty_prediction_not["accuracy_jaccard_reference"] == 0.0
    assert gold_empty_prediction_not["precision_micro"] == 0.0


def test_accuracy_matches_sklearn_jaccard_samples():
    scores, gold = random_problem(0)
    gold[:5] = 0  # make sure empty gold rows exist
    prediction = scores > 0.5
    prediction[:3] = False
    result = multilabel_metrics(gold, prediction)
    expected = jaccard_score(gold, prediction.astype(int), average="samples", zero_division=1.0)
    assert result["accuracy_jaccard"] == pytest.approx(expected, abs=1e-12)


def test_accepts_torch_tensors_bool_and_lists():
    reference = multilabel_metrics(GOLD, PRED, NAMES)
    assert multilabel_metrics(torch.tensor(GOLD), torch.tensor(PRED), NAMES) == reference
    assert multilabel_metrics(GOLD.astype(bool), PRED.astype(float), NAMES) == reference
    assert multilabel_metrics(GOLD.tolist(), PRED.tolist(), tuple(NAMES)) == reference


def test_default_label_names():
    result = multilabel_metrics(GOLD, PRED)
    assert {"f1_label_0", "f1_label_1", "f1_label_2"} <= set(result)


@pytest.mark.parametrize(
    ("gold", "pred", "message"),
    [
        (
            GOLD,
            PRED[:, :2],
            r"`y_true` and `y_pred_binary` must have the same shape.*\(4, 3\).*\(4, 2\)",
        ),
        (GOLD[0], PRED, r"`y_true` must have shape \(n_samples, n_labels\).*\(3,\)"),
        (GOLD, PRED * 2, r"`y_pred_binary` must contain only 0 and 1"),
        (GOLD[:0], PRED[:0], r"at least one sample"),
    ],
)
def test_validation_errors_name_argument_and_shapes(gold, pred, message):
    with pytest.raises(ValueError, match=message):
        multilabel_metrics(gold, pred)


@pytest.mark.parametrize(
    ("names", "message"),
    [
        (["a", "b"], "has 2 names but the arrays have 3 labels"),
        (["a", "a", "b"], "must be unique"),
        (["a", "micro", "b"], "reserved"),
        (["a", "", "b"], "non-empty string"),
    ],
)
def test_label_name_validation(names, message):
    with pytest.raises(ValueError, match=message):
        multilabel_metrics(GOLD, PRED, names)


# ---------------------------------------------------------------------------------------------------
# scores_to_predictions
# ---------------------------------------------------------------------------------------------------


def test_scores_to_predictions_is_strict_and_per_label():
    scores = np.array([[0.21, 0.5], [0.2100001, 0.49]])
    assert scores_to_predictions(scores, 0.21).tolist() == [[0, 1], [1, 1]]
    assert scores_to_predictions(scores, [0.3, 0.49]).tolist() == [[0, 1], [0, 0]]
    assert scores_to_predictions(torch.tensor(scores), np.float32(0.3)).tolist() == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match=r"threshold.*shape \(2,\).*got shape \(3,\)"):
        scores_to_predictions(scores, [0.1, 0.2, 0.3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        scores_to_predictions(np.array([[np.nan, 0.1]]), 0.5)


# ---------------------------------------------------------------------------------------------------
# Global average precision
# ---------------------------------------------------------------------------------------------------


def test_gap_hand_computed():
    # Ranked pairs: 0.9 (pos), 0.8 (neg), 0.7 (pos), 0.1 (neg) -> (1/1 + 2/3) / 2.
    scores = np.array([[0.9, 0.1], [0.8, 0.7]])
    gold = np.array([[1, 0], [0, 1]])
    assert global_average_precision(scores, gold) == pytest.approx(5 / 6)
    assert global_average_precision(scores, np.zeros_like(gold)) == 0.0


def test_gap_ties_follow_row_major_order():
    # Equal scores keep the order sample by sample, label by label: negative first, then positive.
    assert global_average_precision([[0.5, 0.5]], [[0, 1]]) == pytest.approx(0.5)
    assert global_average_precision([[0.5, 0.5]], [[1, 0]]) == pytest.approx(1.0)


def test_gap_equals_sklearn_average_precision_without_ties_and_touches_no_global_rng():
    scores, gold = random_problem(1)
    python_state, numpy_state = random.getstate(), np.random.get_state()
    result = global_average_precision(scores, gold)
    assert random.getstate() == python_state
    assert all(
        np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b
        for a, b in zip(np.random.get_state(), numpy_state, strict=True)
    )
    assert result == pytest.approx(average_precision_score(gold.ravel(), scores.ravel()), abs=1e-12)


# ---------------------------------------------------------------------------------------------------
# Threshold tuning
# ---------------------------------------------------------------------------------------------------

TUNE_SCORES = np.array([[0.1, 0.6], [0.4, 0.3]])
TUNE_GOLD = np.array([[0, 1], [1, 0]])


def test_grids():
    assert DEFAULT_THRESHOLD_GRID.size == 181
    assert DEFAULT_THRESHOLD_GRID[0] == 0.05 and DEFAULT_THRESHOLD_GRID[-1] == 0.95
    assert REFERENCE_THRESHOLD_GRID.size == 30
    assert REFERENCE_THRESHOLD_GRID[0] == 0.15 and REFERENCE_THRESHOLD_GRID[-1] == 0.295
    assert np.allclose(np.diff(REFERENCE_THRESHOLD_GRID), 0.005)
    assert 0.21 in REFERENCE_THRESHOLD_GRID and 0.24 in REFERENCE_THRESHOLD_GRID
    with pytest.raises(ValueError):
        DEFAULT_THRESHOLD_GRID[0] = 0.5  # read-only


def test_tune_threshold_global_hand_computed():
    # 0.2 -> F1 4/5, 0.35 -> 1, 0.5 -> 2/3.
    result = tune_threshold(TUNE_SCORES, TUNE_GOLD, grid=[0.2, 0.35, 0.5])
    assert result.threshold == 0.35
    assert result.metric_value == 1.0
    assert result.curve.tolist() == pytest.approx([0.8, 1.0, 2 / 3])
    hamming = tune_threshold(TUNE_SCORES, TUNE_GOLD, grid=[0.2, 0.35, 0.5], metric="hamming_loss")
    assert hamming.threshold == 0.35 and hamming.metric_value == 0.0  # minimised


def test_tune_threshold_ties_go_to_the_first_grid_value():
    assert tune_threshold(TUNE_SCORES, TUNE_GOLD, grid=[0.35, 0.36, 0.37]).threshold == 0.35
    assert tune_threshold(TUNE_SCORES, TUNE_GOLD, grid=[0.37, 0.36, 0.35]).threshold == 0.37


@pytest.mark.parametrize("metric", sorted(TUNABLE_METRICS))
def test_tune_threshold_curve_matches_multilabel_metrics(metric):
    scores, gold = random_problem(2, num_samples=120, num_labels=5)
    gold[:4] = 0
    grid = [0.1, 0.3, 0.45, 0.6, 0.9]
    result = tune_threshold(scores, gold, grid=grid, metric=metric)
    for value, achieved in zip(grid, result.curve, strict=True):
        expected = multilabel_metrics(gold, scores > value)[metric]
        assert achieved == pytest.approx(expected, abs=1e-12)
    best = max(result.curve) if TUNABLE_METRICS[metric] else min(result.curve)
    assert result.metric_value == best


def test_tune_threshold_per_label_hand_computed():
    # label 0: 0.05 -> 2/3, 0.2 -> 1, 0.5 -> 0; label 1: 0.05 -> 2/3, 0.2 -> 2/3, 0.5 -> 1.
    result = tune_threshold(TUNE_SCORES, TUNE_GOLD, grid=[0.05, 0.2, 0.5], per_label=True)
    assert result.threshold.tolist() == [0.2, 0.5]
    assert result.metric_value == 1.0
    assert result.curve.shape == (3, 2)


def test_tune_threshold_per_label_without_positives_falls_back_to_global():
    scores = np.array([[0.1, 0.6, 0.7], [0.4, 0.3, 0.2]])
    gold = np.array([[0, 1, 0], [1, 0, 0]])
    with pytest.warns(RuntimeWarning, match=r"Labels \[2\] have no positive"):
        result = tune_threshold(scores, gold, grid=[0.05, 0.2, 0.5], per_label=True)
    global_best = tune_threshold(scores, gold, grid=[0.05, 0.2, 0.5]).threshold
    assert result.threshold[2] == global_best


def test_tune_threshold_rejects_unknown_metric():
    with pytest.raises(ValueError, match="`metric` must be one of"):
        tune_threshold(TUNE_SCORES, TUNE_GOLD, metric="precision_micro")


# ---------------------------------------------------------------------------------------------------
# Uncertainty and calibration
# ---------------------------------------------------------------------------------------------------


def test_uncertainty_error_auroc_hand_computed():
    scores = np.array([[0.9, 0.2], [0.6, 0.1]])
    gold = np.array([[1, 1], [0, 0]])
    # Decisions at 0.5: [[1, 0], [1, 0]] -> wrong at (0, 1) and (1, 0).
    perfect = np.array([[0.1, 0.8], [0.3, 0.2]])
    assert uncertainty_error_auroc(perfect, scores, gold, 0.5) == 1.0
    # Wrong pairs 0.8, 0.15 against right pairs 0.1, 0.2: 3 of 4 comparisons ordered -> 0.75.
    partial = np.array([[0.1, 0.8], [0.15, 0.2]])
    assert uncertainty_error_auroc(partial, scores, gold, 0.5) == pytest.approx(0.75)
    assert uncertainty_error_auroc(-partial, scores, gold, 0.5) == pytest.approx(0.25)


def test_uncertainty_error_auroc_single_class_warns_and_returns_nan():
    with pytest.warns(RuntimeWarning, match="no decision is wrong"):
        value = uncertainty_error_auroc([[0.1, 0.2]], [[0.9, 0.1]], [[1, 0]], 0.5)
    assert np.isnan(value)
    with pytest.raises(ValueError, match="`uncertainty` and `scores` must have the same shape"):
        uncertainty_error_auroc([[0.1]], [[0.9, 0.1]], [[1, 0]], 0.5)


def test_reliability_curve_and_ece_hand_computed():
    scores = np.array([[0.1, 0.2], [0.8, 0.9]])
    gold = np.array([[0, 1], [1, 1]])
    curve = reliability_curve(scores, gold, n_bins=2)
    assert curve.count.tolist() == [2, 2]
    assert curve.confidence.tolist() == pytest.approx([0.15, 0.85])
    assert curve.accuracy.tolist() == pytest.approx([0.5, 1.0])
    # 0.5 * |0.5 - 0.15| + 0.5 * |1.0 - 0.85|
    assert expected_calibration_error(scores, gold, n_bins=2) == pytest.approx(0.25)


def test_reliability_curve_edges_and_empty_bins():
    curve = reliability_curve([[0.0, 1.0, 0.5]], [[0, 1, 1]], n_bins=4)
    assert curve.count.tolist() == [1, 0, 1, 1]  # 0.0 -> first bin, 0.5 -> third, 1.0 -> last
    assert np.isnan(curve.confidence[1]) and np.isnan(curve.accuracy[1])
    assert curve.bin_edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    # Perfectly calibrated: probability 0.5, half of the pairs positive.
    assert expected_calibration_error([[0.5, 0.5], [0.5, 0.5]], [[1, 0], [0, 1]]) == 0.0
    with pytest.raises(ValueError, match=r"probabilities in \[0, 1\]"):
        reliability_curve([[1.5]], [[1]])
    with pytest.raises(ValueError, match="`n_bins` must be a positive integer"):
        reliability_curve([[0.5]], [[1]], n_bins=0)


# ---------------------------------------------------------------------------------------------------
# Scores -> all metrics
# ---------------------------------------------------------------------------------------------------


def test_multilabel_metrics_from_scores():
    scores, gold = random_problem(3)
    result = multilabel_metrics_from_scores(torch.tensor(scores), gold, 0.4, n_bins=10)
    assert result["f1_micro"] == multilabel_metrics(gold, scores > 0.4)["f1_micro"]
    assert result["global_average_precision"] == global_average_precision(scores, gold)
    assert result["expected_calibration_error"] == expected_calibration_error(scores, gold, 10)
    logits = multilabel_metrics_from_scores(scores * 10 - 5, gold, 0.0)
    assert "expected_calibration_error" not in logits  # not probabilities


def test_bfloat16_tensors_are_accepted():
    scores = torch.tensor([[0.9, 0.1]], dtype=torch.bfloat16)
    assert scores_to_predictions(scores, 0.5).tolist() == [[1, 0]]


# ---------------------------------------------------------------------------------------------------
# Chance level
# ---------------------------------------------------------------------------------------------------


def test_chance_level_hand_computed():
    train = np.array([[1, 0, 0], [1, 1, 0], [1, 0, 0], [0, 0, 0]])  # prevalence 3/4, 1/4, 0
    test = np.array([[1, 0, 0], [0, 1, 0]])
    result = chance_level_metrics(train, test, ["a", "b", "c"], seed=0)
    assert set(result) == {"prior_sampling", "all_positive", "most_frequent", "best_constant"}
    # most frequent: predict {a} for everybody -> Jaccard 1 and 0, micro TP 1 FP 1 FN 1.
    assert result["most_frequent"]["accuracy_jaccard"] == 0.5
    assert result["most_frequent"]["f1_micro"] == 0.5
    # all positive: Jaccard 1/3 each; micro TP 2, FP 4, FN 0.
    assert result["all_positive"]["accuracy_jaccard"] == pytest.approx(1 / 3)
    assert result["all_positive"]["f1_micro"] == pytest.approx(0.5)
    # best constant on train: {a} (micro-F1 6/11 beats {a, b} 1/2 and {a, b, c} 2/5).
    assert result["best_constant"] == result["most_frequent"]


def test_chance_level_prior_sampling_is_seeded_and_local():
    train = (np.random.default_rng(5).random((50, 4)) < 0.4).astype(int)
    test = (np.random.default_rng(6).random((40, 4)) < 0.4).astype(int)
    numpy_state = np.random.get_state()[1].copy()
    first = chance_level_metrics(train, test, seed=3)
    assert np.array_equal(np.random.get_state()[1], numpy_state)
    assert chance_level_metrics(train, test, seed=3) == first
    assert chance_level_metrics(train, test, seed=4)["prior_sampling"] != first["prior_sampling"]


def test_best_constant_matches_brute_force():
    train = (np.random.default_rng(7).random((60, 5)) < [0.6, 0.1, 0.35, 0.2, 0.05]).astype(int)
    best = max(
        multilabel_metrics(train, np.broadcast_to(np.array(row), train.shape))["f1_micro"]
        for row in itertools.product([0, 1], repeat=5)
    )
    result = chance_level_metrics(train, train, seed=0)
    assert result["best_constant"]["f1_micro"] == pytest.approx(best, abs=1e-12)


def test_chance_level_label_mismatch():
    with pytest.raises(ValueError, match="same number of labels"):
        chance_level_metrics(np.zeros((2, 3)), np.zeros((2, 4)))


# ---------------------------------------------------------------------------------------------------
# The local `evaluate` module
# ---------------------------------------------------------------------------------------------------

EVALUATE_SCRIPT = textwrap.dedent(
    """
    import json, sys
    import evaluate

    path, predictions, scores, references = sys.argv[1], *map(json.loads, sys.argv[2:5])
    # Without the mmer package the module must fail with our message, not "pip install mmer".
    sys.modules["mmer"] = None
    try:
        evaluate.load(path)
        missing_message = None
    except ImportError as error:
        missing_message = str(error)
    del sys.modules["mmer"]
    binary = evaluate.load(path).compute(
        predictions=predictions, references=references, label_names=["happy", "sad", "anger"]
    )
    with_scores = evaluate.load(path, "scores").compute(
        predictions=scores, references=references, threshold=0.5
    )
    print(json.dumps({"missing": missing_message, "binary": binary, "scores": with_scores}))
    """
)


def test_evaluate_module_loads_offline_and_matches(tmp_path):
    scores, gold = random_problem(4, num_samples=30, num_labels=3)
    prediction = (scores > 0.5).astype(int)
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            EVALUATE_SCRIPT,
            str(REPO_ROOT / "metrics" / "mmer_multilabel"),
            json.dumps(prediction.tolist()),
            json.dumps(scores.tolist()),
            json.dumps(gold.tolist()),
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    output = json.loads(completed.stdout.strip().splitlines()[-1])
    assert "pip install -e ." in output["missing"]
    assert output["binary"] == pytest.approx(
        multilabel_metrics(gold, prediction, ["happy", "sad", "anger"]), abs=1e-12
    )
    assert output["scores"] == pytest.approx(
        metrics.multilabel_metrics_from_scores(scores, gold, 0.5), abs=1e-12
    )


def test_evaluate_module_refuses_non_binary_predictions(tmp_path):
    """Probabilities given to a 0/1 configuration are refused, not cast to 0 (issue 11, item 9)."""
    script = textwrap.dedent(
        """
        import sys
        import evaluate

        path = sys.argv[1]
        for config_name in ("default", "binary"):
            try:
                evaluate.load(path, config_name).compute(
                    predictions=[[0.9, 0.6]], references=[[1, 1]]
                )
            except ValueError as error:
                print("REFUSED", config_name, str(error).replace("\\n", " "))
            else:
                print("ACCEPTED", config_name)
        result = evaluate.load(path).compute(predictions=[[1.0, 0]], references=[[1, 1]])
        print("BINARY_FLOATS", result["f1_micro"])
        """
    )
    environment = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(tmp_path / "hf_home"),
        "HF_MODULES_CACHE": str(tmp_path / "modules"),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    completed = subprocess.run(
        [sys.executable, "-c", script, str(REPO_ROOT / "metrics" / "mmer_multilabel")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=environment,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = completed.stdout.splitlines()
    refused = [line for line in lines if line.startswith("REFUSED")]
    assert len(refused) == 2, lines
    assert all("0/1 predictions" in line and "0.9" in line for line in refused)
    assert all("config_name='scores'" in line for line in refused)
    assert "BINARY_FLOATS 0.6666666666666666" in lines
