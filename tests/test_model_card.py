"""Tests of mmer.model_card (and of the figures it links, mmer.plots)."""

import dataclasses
import math
import re
from importlib import resources

import numpy as np
import pytest
from huggingface_hub import ModelCard

from mmer.model_card import (
    DEFAULT_TAGS,
    ModelCardInputs,
    UncertaintyResults,
    build_model_card,
    save_model_card,
    template_resource,
)
from mmer.plots import plot_per_label_f1, plot_reliability_diagram, plot_training_curves
from model_cards import load_family_card_text

LABELS = ["happy", "sad", "anger", "surprise", "disgust", "fear"]

# Values with many digits, far from any number the authors published, so that a number in the card
# can only match if it was formatted from these inputs.
METRICS = {
    "f1_micro": 0.5123456,
    "f1_macro": 0.4011111,
    "accuracy_jaccard": 0.4718281,
    "accuracy_jaccard_reference": 0.3914159,
    "hamming_loss": 0.1732050,
    "precision_micro": 0.5577215,
    "recall_micro": 0.4733333,
    "global_average_precision": 0.6180339,
}
PER_LABEL_F1 = {label: 0.30 + 0.0123 * index for index, label in enumerate(LABELS)}
HYPERPARAMETERS = {"learning_rate": 0.00025, "batch_size": 48, "num_train_epochs": 7, "seed": 11}
WIDGET = [
    {
        "example_title": "Test clip",
        "text": "Pre-extracted features of one test clip: examples/clip.npz",
        "output": [{"label": "happy", "score": 0.8125}, {"label": "sad", "score": 0.0625}],
    }
]
UNCERTAINTY = UncertaintyResults(
    error_auroc=0.6931471, expected_calibration_error=0.0457721, n_bins=15
)
LDDU_TEXT = load_family_card_text("lddu")
PER_COMBINATION = {
    "text": {"f1_micro": 0.4441441},
    "text + audio + visual": {"f1_micro": 0.5123456},
}
IMAGES = {
    "training_curves": "images/training_curves.png",
    "per_label_f1": "images/per_label_f1.png",
    "reliability_diagram": "images/reliability.png",
}
ALLOWED_CONSTANTS = {"2502.13954"}  # the arXiv id in the citation
LICENSE = "apache-2.0"  # its "2.0" is a name, not a number


FULL_INPUTS = {
    "model_type": "lddu",
    "model_name": "lddu-mosei-test",
    "metrics": METRICS,
    "per_label_f1": PER_LABEL_F1,
    "dataset_name": "CMU-MOSEI",
    "dataset_id": "someone/cmu-mosei-features",
    "hyperparameters": HYPERPARAMETERS,
    "thresholds": [0.235] * len(LABELS),
    "widget_examples": WIDGET,
    "uncertainty": UNCERTAINTY,
    "per_combination": PER_COMBINATION,
    "images": IMAGES,
    "synthetic_data": False,
    "repo_id": "someone/lddu-mosei",
    "extra_sections": {"Compute": "One CPU run."},
}


def full_card(family=None, **overrides):
    return build_model_card(ModelCardInputs(**{**FULL_INPUTS, **overrides}), family=family)


def without(**fields):
    """The LDDU card text with some optional fields removed (as a family without them would be)."""
    return dataclasses.replace(LDDU_TEXT, **dict.fromkeys(fields))


def input_numbers(*sources):
    """Every float contained (recursively) in the arguments."""
    numbers = []
    for source in sources:
        if isinstance(source, dict):
            numbers += input_numbers(*source.values())
        elif isinstance(source, (list, tuple)):
            numbers += input_numbers(*source)
        elif isinstance(source, float):
            numbers.append(source)
        elif dataclasses.is_dataclass(source):
            numbers += input_numbers(dataclasses.asdict(source))
    return numbers


def foreign_decimals(text, allowed_values):
    """Decimal numbers in `text` that are neither an allowed constant nor a formatted input value."""
    foreign = []
    for match in re.finditer(r"(?<![\w.])\d+\.\d+(?:e[-+]?\d+)?", text.replace(LICENSE, "")):
        token = match.group(0)
        if token in ALLOWED_CONSTANTS:
            continue
        value = float(token)
        decimals = len(token.split(".")[1].split("e")[0])
        tolerance = 0.5 * 10 ** (-decimals) + 1e-12
        if not any(math.isclose(value, allowed, abs_tol=tolerance) for allowed in allowed_values):
            foreign.append(token)
    return foreign


def test_number_check_can_fail():
    assert foreign_decimals("F1 0.5123 and arXiv 2502.13954", [0.5123456]) == []
    assert foreign_decimals("the paper reports 0.5867", [0.5123456]) == ["0.5867"]
    assert foreign_decimals("threshold 0.24", [0.235]) == []  # 0.235 rounded to 2 decimals
    assert foreign_decimals("threshold 0.25", [0.235]) == ["0.25"]


def test_full_card_contains_only_numbers_that_were_passed(tmp_path):
    card = full_card()
    path = save_model_card(card, tmp_path)
    text = path.read_text()
    allowed = input_numbers(
        METRICS, PER_LABEL_F1, HYPERPARAMETERS, WIDGET, UNCERTAINTY, PER_COMBINATION, [0.235]
    )
    assert foreign_decimals(text, allowed) == []
    # and the integers of the hyperparameter table come from the input too
    assert "| batch_size | 48 |" in text and "| learning_rate | 0.00025 |" in text


def test_round_trip_and_model_index_holds_exactly_the_passed_metrics(tmp_path):
    path = save_model_card(full_card(), tmp_path)
    loaded = ModelCard.load(path)
    data = loaded.data
    assert data.model_name == "lddu-mosei-test"
    results = data.eval_results
    assert len(results) == len(METRICS)
    by_name = {result.metric_name: result for result in results}
    assert by_name["F1 (micro)"].metric_value == METRICS["f1_micro"]
    assert (
        by_name["F1 (micro)"].metric_type == "f1" and by_name["F1 (micro)"].metric_config == "micro"
    )
    assert sorted(result.metric_value for result in results) == sorted(METRICS.values())
    for result in results:
        assert result.task_type == "multi-label-classification"
        assert result.dataset_name == "CMU-MOSEI"
        assert result.dataset_type == "someone/cmu-mosei-features"
        assert result.dataset_split == "test"
    assert data.library_name == "transformers"
    assert data.pipeline_tag == "other"
    assert data.license == "apache-2.0"
    assert set(DEFAULT_TAGS) <= set(data.tags)
    assert data.datasets == ["someone/cmu-mosei-features"]
    assert data.widget == WIDGET
    assert str(loaded) == str(ModelCard(path.read_text()))


def test_sections_present_when_data_is_given():
    text = str(full_card())
    for heading in (
        "## Model description",
        "## Intended use and limitations",
        "## How to use",
        "## Training data and procedure",
        "## Evaluation",
        "### Per emotion",
        "### Per modality combination",
        "### Uncertainty",
        "## Differences from the authors' code",
        "## Compute",
        "## Citation",
    ):
        assert heading in text, heading
    assert LDDU_TEXT.uncertainty_definition in text
    assert LDDU_TEXT.differences_from_reference in text
    assert "| disgust | 0.3492 |" in text
    assert "| text + audio + visual | 0.5123 |" in text
    assert "0.6931" in text and "0.0458" in text and "(15 equal-width bins)" in text
    assert "**0.235**" in text and "tuned on the `validation` split, not on `test`" in text
    for image in IMAGES.values():
        assert f"]({image})" in text
    assert 'from_pretrained("someone/lddu-mosei", trust_remote_code=True)' in text
    assert 'pipeline("multimodal-emotion-recognition"' in text
    assert "handler.py" in text
    assert "author={Huang, Jingwang and others}" in text and "2502.13954" in text
    assert "synthetic" not in text.lower()
    assert "{{" not in text and "{%" not in text


@pytest.mark.parametrize(
    ("source", "phrase"),
    [
        ("package_sentences", "sentences written by the package that trained this model"),
        ("test_samples", "published at the trainer's request"),
        ("test_features", "pre-extracted features of the first samples of the test split"),
        ("withheld", "No examples are shown beside this card"),
        (None, None),
    ],
)
def test_the_card_says_what_its_widget_examples_are(source, phrase):
    from mmer.model_card import WIDGET_SOURCES

    widget = [] if source == "withheld" else WIDGET
    text = str(full_card(widget_source=source, widget_examples=widget))
    if phrase is None:  # not said when the caller does not say
        assert "**Widget examples.**" not in text
        return
    assert f"**Widget examples.** {WIDGET_SOURCES[source]}" in text and phrase in text


def test_minimal_card_omits_sections_without_data(tmp_path):
    metrics = {"f1_micro": 0.5123456}
    card = build_model_card(
        ModelCardInputs(
            model_type="lddu",
            model_name="lddu-minimal",
            metrics=metrics,
            per_label_f1={"a": 0.25, "b": 0.75},
            dataset_name="M3ED",
            thresholds=[0.5, 0.5],
            threshold_tuned_on=None,
            synthetic_data=False,
            endpoint_handler=False,
        ),
        family=without(differences_from_reference=True),
    )
    text = str(card)
    for absent in (
        "### Per modality combination",
        "### Uncertainty",
        "![",
        "| hyperparameter |",
        "## Differences",
        "handler.py",
        "widget:",
        "datasets:",
    ):
        assert absent not in text, absent
    assert "fixed in advance" in text
    assert foreign_decimals(text, [0.5123456, 0.25, 0.75, 0.5]) == []
    loaded = ModelCard.load(save_model_card(card, tmp_path))
    assert [(r.metric_type, r.metric_value) for r in loaded.data.eval_results] == [
        ("f1", 0.5123456)
    ]
    assert loaded.data.eval_results[0].dataset_type == "m3ed"


def test_synthetic_data_warnings():
    text = str(full_card(synthetic_data=True))
    assert "trained and evaluated on synthetic features" in text
    assert "The training data was synthetic" in text
    assert "(synthetic features)" in text


def test_per_label_thresholds_and_full_metric_dict():
    metrics = dict(METRICS, f1_happy=PER_LABEL_F1["happy"], precision_happy=0.9)
    thresholds = [0.2, 0.25, 0.3, 0.35, 0.4, 0.45]
    card = full_card(metrics=metrics, thresholds=thresholds)
    text = str(card)
    assert "| fear | 0.45 |" in text
    assert "own decision threshold (table below)" in text
    assert "| happy | 0.3000 | 0.9000 |" in text  # per-label keys go to the per-emotion table
    assert len(card.data.eval_results) == len(METRICS)  # ... and not to model-index


@pytest.mark.parametrize("undefined", [float("nan"), None])
def test_undefined_metric_is_reported_but_not_indexed(undefined):
    card = full_card(metrics=dict(METRICS, uncertainty_error_auroc=undefined))
    assert "| Uncertainty-error AUROC | undefined |" in str(card)
    assert all(result.metric_type != "roc_auc" for result in card.data.eval_results)


def test_uncertainty_values_given_as_none_are_left_out():
    uncertainty = UncertaintyResults(error_auroc=None, expected_calibration_error=0.0457721)
    text = str(full_card(uncertainty=uncertainty))
    assert LDDU_TEXT.uncertainty_definition in text and "| Expected calibration error" in text
    assert "AUROC of the uncertainty" not in text


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        ({"metrics": {}}, ValueError, "at least one measured metric"),
        ({"widget_examples": [{"example_title": "x", "text": "y"}]}, ValueError, "'output'"),
        (
            {
                "widget_examples": [
                    {
                        "example_title": "x",
                        "text": "y",
                        "output": [{"label": "happy", "score": 1.5}],
                    }
                ]
            },
            ValueError,
            r"\[0, 1\]",
        ),
        (
            {"widget_examples": [{"example_title": "x", "output": [{"label": "a", "score": 0.5}]}]},
            ValueError,
            "input description",
        ),
        ({"thresholds": {"happy": 0.2}}, TypeError, "list of per-label floats"),
        ({"thresholds": 0.5}, TypeError, "list of per-label floats"),
        ({"thresholds": np.full(6, 0.5)}, TypeError, "list of per-label floats"),
        ({"thresholds": [0.1, 0.2]}, ValueError, "2 values but there are 6 labels"),
        ({"thresholds": [0.5] * 5 + ["high"]}, TypeError, "must be a number"),
        ({"images": {"training_curves": "/abs/plot.png"}}, ValueError, "relative"),
        ({"images": {"confusion": "images/c.png"}}, ValueError, "Unknown image key"),
        (
            {"family": without(uncertainty_definition=True)},
            ValueError,
            "lddu.yaml has no 'uncertainty_definition'",
        ),
        ({"uncertainty": {"error_auroc": 0.7}}, TypeError, "UncertaintyResults"),
        ({"metrics": dict(METRICS, f1_happy=0.99)}, ValueError, "disagrees with per_label_f1"),
        ({"metrics": {"f1_micro": "high"}}, TypeError, "must be a number"),
        ({"widget_source": "my_data"}, ValueError, "`widget_source` must be one of"),
        ({"widget_source": "withheld"}, ValueError, "withheld, but there are some"),
    ],
)
def test_invalid_arguments(overrides, error, message):
    with pytest.raises(error, match=message):
        full_card(**overrides)


def test_save_is_atomic_and_verbatim(tmp_path):
    card = full_card()
    path = save_model_card(card, tmp_path)
    assert path == tmp_path / "README.md"
    assert path.read_bytes() == str(card).encode("utf-8")
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"]
    with pytest.raises(FileNotFoundError):
        save_model_card(card, tmp_path / "missing")


# ---------------------------------------------------------------------------------------------------
# Where the card's text comes from
# ---------------------------------------------------------------------------------------------------


def test_template_is_package_data_and_names_no_family():
    template = template_resource()
    assert template == resources.files("mmer") / "templates" / "model_card.md"
    assert template.is_file()
    text = template.read_text(encoding="utf-8")
    assert "{{ card_data }}" in text
    assert "lddu" not in text.lower()


@pytest.mark.parametrize("family", [None, without(uncertainty_definition=True)])
def test_template_uses_only_variables_the_builder_passes(family):
    # ModelCard.from_template renders with a lenient jinja2.Template, where a misspelt variable
    # silently renders as nothing. Rendered strictly, the same context must give the same card.
    import jinja2

    from mmer.model_card import _template_context

    overrides = {"uncertainty": None, "per_combination": {}} if family else {}
    inputs = ModelCardInputs(**{**FULL_INPUTS, **overrides})
    context = _template_context(inputs, family or LDDU_TEXT)
    card_data = context.pop("card_data")
    strict = jinja2.Environment(undefined=jinja2.StrictUndefined).from_string(
        template_resource().read_text(encoding="utf-8")
    )
    text = strict.render(card_data=card_data.to_yaml(), **card_data.to_dict(), **context)
    assert text == str(build_model_card(inputs, family=family))


def test_family_text_is_package_data():
    assert (resources.files("model_cards") / "lddu.yaml").is_file()
    assert (
        LDDU_TEXT.display_name == "LDDU" and LDDU_TEXT.paper.arxiv_id in LDDU_TEXT.citation_bibtex
    )
    assert LDDU_TEXT.paper.url in str(full_card())


def test_unknown_model_type_names_the_missing_file():
    with pytest.raises(FileNotFoundError, match=r"model_cards/nonexistent\.yaml does not exist"):
        load_family_card_text("nonexistent")
    with pytest.raises(FileNotFoundError, match=r"nonexistent\.yaml.*available: \['lddu'"):
        full_card(model_type="nonexistent")


# ---------------------------------------------------------------------------------------------------
# Figures linked from the card
# ---------------------------------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def test_plots_write_png_files(tmp_path):
    log_history = [
        {
            "loss": 1.0 - 0.1 * step,
            "contrastive_loss": 0.5,
            "learning_rate": 1e-4,
            "epoch": step / 4,
            "step": step,
        }
        for step in range(1, 5)
    ]
    log_history += [
        {
            "eval_loss": 0.9,
            "eval_f1_micro": 0.31,
            "eval_f1_happy": 0.2,
            "eval_runtime": 1.0,
            "epoch": 1.0,
            "step": 4,
        },
        {"train_runtime": 3.0, "train_loss": 0.8, "epoch": 1.0, "step": 4},
    ]
    paths = [
        plot_training_curves(log_history, tmp_path / "curves.png"),
        plot_training_curves(log_history, tmp_path / "curves_epoch.png", x_axis="epoch"),
        plot_per_label_f1(dict(PER_LABEL_F1, f1_micro=0.5), LABELS, tmp_path / "f1.png"),
        plot_reliability_diagram(
            np.random.default_rng(0).random((50, 6)),
            (np.random.default_rng(1).random((50, 6)) < 0.3).astype(int),
            tmp_path / "reliability.png",
            n_bins=10,
        ),
    ]
    for path in paths:
        assert path.read_bytes()[:8] == PNG_SIGNATURE
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in paths)


def test_plot_errors(tmp_path):
    with pytest.raises(ValueError, match="nothing to plot"):
        plot_training_curves([{"train_runtime": 1.0, "step": 1}], tmp_path / "x.png")
    with pytest.raises(ValueError, match=r"no F1 for labels \['fear'\]"):
        plot_per_label_f1({"f1_happy": 0.5}, ["happy", "fear"], tmp_path / "x.png")
    assert list(tmp_path.iterdir()) == []


def test_a_run_that_logged_nothing_gets_no_training_curve_figure():
    """A short run without evaluation may log no loss (fewer steps than --logging_steps); the
    export then leaves the figure out instead of failing after training."""
    from mmer.plots import has_training_curves

    assert not has_training_curves([])
    assert not has_training_curves([{"train_runtime": 1.0, "step": 4, "epoch": 1.0}])
    assert has_training_curves([{"loss": 0.7, "step": 2, "epoch": 0.5}])
