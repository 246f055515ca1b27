"""Single-label data (one emotion per sample) through the shared layer: the metrics against
scikit-learn on hand-made cases, the synthetic single-label mode, and LDDU trained end to end by
train.py on it (results, card, pipeline on the exported folder)."""

from __future__ import annotations

import json
import sys
import warnings

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    precision_score,
    recall_score,
)

from dataset_scripts.synthetic import IEMOCAP4_CLASS_SHARES, generate_synthetic_splits
from mmer.metrics import (
    confusion_matrix_counts,
    error_detection_auroc,
    single_label_chance_metrics,
    single_label_errors,
    single_label_metrics,
    top_label_calibration_error,
)

from .conftest import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402

from .test_train import tiny_arguments  # noqa: E402

NAMES = ["neutral", "happy", "angry"]
# Seven samples, three classes; arg-max per row: 0, 1, 1, 2, 0, 1, 0 (row 6 is a tie 0/1 -> 0).
SCORES = np.array(
    [
        [0.7, 0.2, 0.1],
        [0.1, 0.8, 0.1],
        [0.3, 0.6, 0.1],
        [0.2, 0.2, 0.6],
        [0.5, 0.3, 0.2],
        [0.2, 0.5, 0.3],
        [0.4, 0.4, 0.2],
    ]
)
GOLD = np.array([0, 1, 0, 2, 2, 1, 1])
PREDICTED = np.array([0, 1, 1, 2, 0, 1, 0])


def one_hot(indices, num_classes=3):
    return np.eye(num_classes, dtype=np.float32)[indices]


# ---------------------------------------------------------------------------------------------------
# Metrics
# ---------------------------------------------------------------------------------------------------


def test_single_label_metrics_match_sklearn():
    result = single_label_metrics(SCORES, one_hot(GOLD), NAMES)
    labels = [0, 1, 2]
    assert result["accuracy"] == pytest.approx(accuracy_score(GOLD, PREDICTED))
    assert result["unweighted_accuracy"] == pytest.approx(balanced_accuracy_score(GOLD, PREDICTED))
    for average in ("weighted", "macro", "micro"):
        expected = f1_score(GOLD, PREDICTED, average=average, labels=labels, zero_division=0)
        assert result[f"f1_{average}"] == pytest.approx(expected), average
    per_class_f1 = f1_score(GOLD, PREDICTED, average=None, labels=labels, zero_division=0)
    per_class_recall = recall_score(GOLD, PREDICTED, average=None, labels=labels, zero_division=0)
    per_class_precision = precision_score(
        GOLD, PREDICTED, average=None, labels=labels, zero_division=0
    )
    for index, name in enumerate(NAMES):
        assert result[f"f1_{name}"] == pytest.approx(per_class_f1[index])
        assert result[f"recall_{name}"] == pytest.approx(per_class_recall[index])
        assert result[f"precision_{name}"] == pytest.approx(per_class_precision[index])
    assert np.array_equal(
        confusion_matrix_counts(SCORES, one_hot(GOLD)),
        confusion_matrix(GOLD, PREDICTED, labels=labels),
    )


def test_a_class_without_gold_samples_is_left_out_of_ua_but_not_of_macro_f1():
    gold = np.array([0, 0, 1, 1])
    scores = one_hot(np.array([0, 2, 1, 0])) * 0.8 + 0.05
    predicted = np.array([0, 2, 1, 0])
    result = single_label_metrics(scores, one_hot(gold), NAMES)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns about the class absent from y_true
        expected_ua = balanced_accuracy_score(gold, predicted)
    assert result["unweighted_accuracy"] == pytest.approx(expected_ua)
    assert result["f1_macro"] == pytest.approx(
        f1_score(gold, predicted, average="macro", labels=[0, 1, 2], zero_division=0)
    )
    assert result["recall_angry"] == 0.0


def test_class_indices_and_one_hot_rows_give_the_same_metrics():
    assert single_label_metrics(SCORES, GOLD, NAMES) == single_label_metrics(
        SCORES, one_hot(GOLD), NAMES
    )


def test_a_row_with_two_gold_classes_is_refused_naming_the_row():
    gold = one_hot(GOLD)
    gold[3, 0] = 1.0
    with pytest.raises(ValueError, match="row 3 has 2"):
        single_label_metrics(SCORES, gold, NAMES)


def test_top_label_calibration_error_by_hand():
    # Two samples: confidence 0.9 right, confidence 0.6 wrong (bins of width 0.5: two bins).
    scores = np.array([[0.9, 0.1], [0.6, 0.4]])
    gold = np.array([[1, 0], [0, 1]])
    # Bin [0.5, 1): confidence (0.9 + 0.6) / 2 = 0.75, accuracy 1/2 -> ECE 0.25.
    assert top_label_calibration_error(scores, gold, n_bins=2) == pytest.approx(0.25)
    assert top_label_calibration_error(scores, gold, n_bins=10) == pytest.approx(
        0.5 * 0.1 + 0.5 * 0.6
    )


def test_errors_and_their_auroc():
    wrong = single_label_errors(SCORES, one_hot(GOLD))
    assert wrong.tolist() == (GOLD != PREDICTED).tolist()
    assert error_detection_auroc(wrong.astype(float), wrong) == 1.0
    assert error_detection_auroc(-wrong.astype(float), wrong) == 0.0
    with pytest.warns(RuntimeWarning, match="no decision is wrong"):
        assert np.isnan(error_detection_auroc([0.1, 0.2], [False, False]))


def test_chance_level_predictors_by_hand():
    train_gold = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 2])  # shares 0.3, 0.2, 0.5
    test_gold = np.array([0, 1, 2, 2])
    chance = single_label_chance_metrics(one_hot(train_gold), one_hot(test_gold), NAMES)
    majority = chance["majority_class"]  # always "angry" (class 2)
    assert majority["accuracy"] == pytest.approx(0.5)
    assert majority["unweighted_accuracy"] == pytest.approx(1 / 3)
    assert majority["f1_weighted"] == pytest.approx(
        f1_score(test_gold, [2, 2, 2, 2], average="weighted", labels=[0, 1, 2], zero_division=0)
    )
    prior = chance["prior_stratified"]
    # Expected accuracy: sum over test samples of the share of their gold class, / n.
    assert prior["accuracy"] == pytest.approx((0.3 + 0.2 + 0.5 + 0.5) / 4)
    assert prior["unweighted_accuracy"] == pytest.approx((0.3 + 0.2 + 0.5) / 3)


# ---------------------------------------------------------------------------------------------------
# Synthetic single-label data
# ---------------------------------------------------------------------------------------------------


def test_synthetic_single_label_rows_hold_one_class_with_iemocap_like_shares():
    splits = generate_synthetic_splits(
        num_train=4000, num_validation=4, num_test=4, single_label=True,
        text_dim=3, audio_dim=2, visual_dim=2, text_length=2, audio_length=2, visual_length=2,
    )  # fmt: skip
    labels = splits["train"].labels
    assert labels.shape == (4000, 4)
    assert (labels.sum(axis=1) == 1).all()
    assert labels.mean(axis=0) == pytest.approx(IEMOCAP4_CLASS_SHARES, abs=0.03)


def test_synthetic_multi_label_data_is_unchanged_by_the_new_option():
    kwargs = dict(num_train=32, num_validation=4, num_test=4, text_dim=3, audio_dim=2,
                  visual_dim=2, text_length=2, audio_length=2, visual_length=2)  # fmt: skip
    default = generate_synthetic_splits(**kwargs)
    explicit = generate_synthetic_splits(**kwargs, num_labels=6, single_label=False)
    assert np.array_equal(default["train"].labels, explicit["train"].labels)
    assert np.array_equal(default["train"].features["text"], explicit["train"].features["text"])
    assert (default["train"].labels.sum(axis=1) != 1).any()  # still multi-label


# ---------------------------------------------------------------------------------------------------
# LDDU end to end on single-label data
# ---------------------------------------------------------------------------------------------------

SINGLE = ("--synthetic_problem_type", "single_label_classification")


@pytest.fixture(scope="module")
def single_label_run(tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("single") / "lddu-single"
    trainer, results = train.run(*train.parse_arguments(tiny_arguments(output_dir, *SINGLE)))
    return output_dir, trainer, results


def test_results_hold_the_single_label_metrics_and_combination_rows(single_label_run):
    output_dir, trainer, results = single_label_run
    assert trainer.model.config.problem_type == "single_label_classification"
    assert trainer.args.metric_for_best_model == "f1_weighted"
    saved = json.loads((output_dir / "all_results.json").read_text())
    assert saved["problem_type"] == "single_label_classification"
    assert saved["decision"]["rule"] == "argmax" and "thresholds" not in saved
    for key in ("accuracy", "unweighted_accuracy", "f1_weighted", "f1_macro", "f1_micro"):
        assert 0.0 <= saved["test"][key] <= 1.0
    assert saved["test"]["f1_micro"] == pytest.approx(saved["test"]["accuracy"])
    counts = np.asarray(saved["confusion_matrix"]["counts"])
    assert counts.shape == (4, 4) and counts.sum() == saved["num_samples"]["test"]
    assert saved["confusion_matrix"]["labels"] == ["neutral", "happy", "angry", "sad"]
    assert np.trace(counts) / counts.sum() == pytest.approx(saved["test"]["accuracy"])
    assert saved["chance"]["predictor"] in ("majority_class", "prior_stratified")
    assert saved["chance"]["selected_by"] == "f1_weighted"
    rows = saved["modality_combinations"]
    assert set(rows) == {"t", "a", "v", "ta", "tv", "av", "tav"}
    headline = {"accuracy", "unweighted_accuracy", "f1_weighted", "f1_macro"}
    # Each row: the headline metrics, then the error AUROC of each of the model's uncertainties.
    aurocs = set(saved["uncertainty"]) - {"expected_calibration_error"}
    assert all(set(row) == headline | aurocs for row in rows.values())
    mean = saved["modality_combinations_mean"]
    assert mean["f1_weighted"] == pytest.approx(np.mean([r["f1_weighted"] for r in rows.values()]))
    # LDDU's per-emotion uncertainty, read at the top emotion, scored per sample.
    assert "uncertainty_error_auroc" in saved["uncertainty"]
    assert 0.0 <= saved["uncertainty"]["expected_calibration_error"] <= 1.0


def test_the_card_shows_the_single_label_sections(single_label_run):
    output_dir, _, results = single_label_run
    card = (output_dir / "README.md").read_text()
    assert "### Confusion matrix" in card
    assert "| gold / predicted | neutral | happy | angry | sad |" in card
    assert "Unweighted accuracy (UA" in card and "Accuracy (WA)" in card
    assert "Chance level" in card and "arg-max" in card
    assert "multi-class-classification" in card and "single-label" in card
    assert "On single-label data" in card  # LDDU's note from model_cards/lddu.yaml
    assert "decision threshold **" not in card
    assert "| mean |" in card
    assert (output_dir / "images" / "confusion_matrix.png").read_bytes()[:4] == b"\x89PNG"


def test_the_pipeline_marks_exactly_one_predicted_emotion(single_label_run):
    from transformers import pipeline

    output_dir, _, _ = single_label_run
    recognizer = pipeline(
        "multimodal-emotion-recognition", model=str(output_dir), trust_remote_code=True
    )
    for path in sorted((output_dir / "examples").glob("*.npz")):
        entries = recognizer(str(path))
        assert [entry["predicted"] for entry in entries] == [True] + [False] * 3
        assert entries[0]["score"] == max(entry["score"] for entry in entries)
        assert all("uncertainty" in entry for entry in entries)
    with pytest.raises(ValueError, match="single-label"):
        recognizer(str(path), threshold=0.3)


def test_threshold_tuning_is_refused_for_single_label_data(tmp_path):
    arguments = tiny_arguments(tmp_path / "out", *SINGLE, "--threshold_tuning", "per_label")
    with pytest.raises(ValueError, match="--threshold_tuning per_label is for multi-label"):
        train.run(*train.parse_arguments(arguments))


def test_a_selection_metric_the_data_does_not_compute_is_refused(tmp_path):
    arguments = tiny_arguments(tmp_path / "out", *SINGLE, "--metric_for_best_model", "f1_micro_x")
    with pytest.raises(ValueError, match="not computed on single_label_classification"):
        train.run(*train.parse_arguments(arguments))
    multi = tiny_arguments(tmp_path / "out2", "--metric_for_best_model", "f1_weighted")
    with pytest.raises(ValueError, match="not computed on multi_label_classification"):
        train.run(*train.parse_arguments(multi))
    # The tuned threshold is reported during validation but is no measure to select by.
    threshold = tiny_arguments(tmp_path / "out3", "--metric_for_best_model", "threshold")
    with pytest.raises(ValueError, match="not computed on multi_label_classification"):
        train.run(*train.parse_arguments(threshold))


@pytest.mark.parametrize(
    ("metric", "greater"),
    [(None, True), ("eval_loss", False), ("hamming_loss", False), ("f1_macro", True)],
)
def test_losses_are_minimised_and_the_other_selection_metrics_maximised(tmp_path, metric, greater):
    """Selecting by a loss keeps the epoch with the lowest one (a fixed greater_is_better=True
    kept the worst)."""
    extra = () if metric is None else ("--metric_for_best_model", metric)
    _, _, training_args = train.parse_arguments(tiny_arguments(tmp_path / "out", *extra))
    assert training_args.greater_is_better is greater
    explicit = ("--greater_is_better", "true", "--metric_for_best_model", "eval_loss")
    _, _, training_args = train.parse_arguments(tiny_arguments(tmp_path / "out", *explicit))
    assert training_args.greater_is_better is True  # an explicit choice is kept


def test_a_model_of_the_other_problem_type_is_refused(single_label_run, tmp_path):
    output_dir, _, _ = single_label_run
    arguments = tiny_arguments(
        tmp_path / "out", "--model_name_or_path", str(output_dir), "--synthetic_num_labels", "4",
        model=False,
    )  # fmt: skip
    with pytest.raises(ValueError, match="made for single_label_classification but the data"):
        train.run(*train.parse_arguments(arguments))


def test_the_endpoint_handler_answers_the_top_class_and_refuses_a_threshold(single_label_run):
    from mmer.templates.handler import EndpointHandler

    output_dir, _, _ = single_label_run
    handler = EndpointHandler(str(output_dir))
    with np.load(output_dir / "examples" / "test_sample_0.npz") as archive:
        sample = {key: archive[key].tolist() for key in archive.files}
    answer = handler({"inputs": [sample, sample]})
    assert len(answer) == 2
    assert all(sum(entry["predicted"] for entry in entries) == 1 for entries in answer)
    refused = handler({"inputs": sample, "parameters": {"threshold": 0.4}})
    assert refused["status"] == 400 and "single-label" in refused["error"]
