"""MCUR (modeling_mcur/): the specification's property tests, the training views, the inputs it
refuses, parity of the blocks copied from LDDU and of the contrastive core, saving and loading, the
missing-modality synthetic data and a tiny run of train.py."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import pipeline

from modeling_lddu import LDDUConfig
from modeling_lddu.contrastive_lddu import supervised_contrastive_loss_reference
from modeling_lddu.modeling_lddu import LDDUEncoderLayer, LDDUModalityEncoder
from modeling_mcur import McurConfig, McurFeatureExtractor, McurForEmotionRecognition, McurModel
from modeling_mcur.contrastive_mcur import (
    combination_ids,
    jaccard_weights,
    mcb_contrastive_loss,
    weighted_supervised_contrastive_loss,
)
from modeling_mcur.modeling_mcur import McurEncoderLayer, McurModalityEncoder

from .conftest import REPO_ROOT, disable_dropout, run_without_the_package

sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402

MODALITIES = ("text", "audio", "visual")
DIMS = {"text": 6, "audio": 4, "visual": 3}
LENGTHS = {"text": 7, "audio": 5, "visual": 3}
#: Every non-empty (text, audio, visual) availability, as in the seven-condition evaluation.
COMBINATIONS = [(t, a, v) for t in (0, 1) for a in (0, 1) for v in (0, 1) if t or a or v]


def mcur_config(**overrides) -> McurConfig:
    values = dict(
        text_dim=DIMS["text"],
        audio_dim=DIMS["audio"],
        visual_dim=DIMS["visual"],
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=16,
        encoder_layers=1,
        proj_dim=8,
        max_position_embeddings=10,
        id2label={index: f"emotion_{index}" for index in range(4)},
    )
    values.update(overrides)
    return McurConfig(**values)


def mcur_model(seed: int = 0, **overrides) -> McurForEmotionRecognition:
    torch.manual_seed(seed)
    model = McurForEmotionRecognition(mcur_config(**overrides))
    disable_dropout(model)
    return model


def mcur_inputs(batch_size: int = 5, seed: int = 0, labels: bool = True, num_labels: int = 4):
    generator = torch.Generator().manual_seed(seed)
    inputs = {}
    for modality in MODALITIES:
        length = LENGTHS[modality]
        inputs[f"{modality}_features"] = torch.randn(
            batch_size, length, DIMS[modality], generator=generator
        )
        mask = torch.ones(batch_size, length, dtype=torch.long)
        mask[0, length // 2 :] = 0  # some padding
        inputs[f"{modality}_mask"] = mask
    if labels:
        inputs["labels"] = (torch.rand(batch_size, num_labels, generator=generator) < 0.5).float()
        inputs["labels"][0] = torch.tensor([1.0, 0.0, 0.0, 1.0])[:num_labels]
    return inputs


# ------------------------------------------------------------------------------------------------
# The specification's five property tests
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "problem_type", ["multi_label_classification", "single_label_classification"]
)
@pytest.mark.parametrize("training", [False, True])
def test_1_with_every_modality_no_contrast_and_no_sugr_it_is_a_plain_classifier(
    problem_type, training
):
    model = mcur_model(con_weight=0.0, sugr_mode="none", problem_type=problem_type)
    model.train(training)
    inputs = mcur_inputs()
    if problem_type == "single_label_classification":
        inputs["labels"] = F.one_hot(torch.tensor([0, 2, 1, 3, 2]), 4).float()
    output = model(**inputs)
    if problem_type == "single_label_classification":
        plain = F.cross_entropy(output.logits, inputs["labels"].argmax(dim=1))
        torch.testing.assert_close(output.scores, output.logits.softmax(dim=-1))
    else:
        plain = F.binary_cross_entropy_with_logits(output.logits, inputs["labels"])
        torch.testing.assert_close(output.scores, torch.sigmoid(output.logits))
    torch.testing.assert_close(output.loss, plain)
    assert output.modality_mask.all()
    assert model.uncertainty_head is None


@pytest.mark.parametrize("training", [False, True])
def test_2_outputs_do_not_depend_on_the_padded_content_of_a_missing_modality(training):
    model = mcur_model().train(training)
    inputs = mcur_inputs()
    inputs["audio_mask"][1] = 0  # sample 1 lacks audio (all-zero mask row)
    explicit = torch.ones(5, 3, dtype=torch.bool)
    explicit[1, 1] = False
    explicit[3, 2] = False  # sample 3 has visual frames, but the caller marks visual unavailable
    changed = {key: value.clone() for key, value in inputs.items()}
    changed["audio_features"][1] = torch.randn_like(changed["audio_features"][1]) * 1e3
    changed["audio_features"][1, 0, 0] = float("nan")
    changed["visual_features"][3] = 7.0
    outputs = []
    for case in (inputs, changed):
        torch.manual_seed(1)  # the same training views for both
        outputs.append(model(**case, modality_mask=explicit))
    first, second = outputs
    assert torch.equal(first.modality_mask, explicit)
    for name in ("loss", "scores", "logits", "embeddings", "sample_uncertainty"):
        assert torch.isfinite(second[name]).all(), name
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)


def test_3_combination_loss_is_non_negative_and_equals_the_category_loss_for_one_combination():
    generator = torch.Generator().manual_seed(0)
    embeddings = F.normalize(torch.randn(24, 8, generator=generator), dim=-1)
    labels = (torch.rand(24, 4, generator=generator) < 0.4).float()
    labels[0] = 0  # an anchor without any label: skipped
    mixed = torch.rand(24, 3, generator=generator) < 0.6
    mixed[:, 0] |= ~mixed.any(dim=1)
    _, category, combination = mcb_contrastive_loss(embeddings, labels, mixed, 0.07, 0.5)
    assert combination >= 0 and category >= 0
    same = torch.tensor([True, False, True]).expand(24, 3)
    total, category, combination = mcb_contrastive_loss(embeddings, labels, same, 0.07, 0.3)
    torch.testing.assert_close(combination, category)
    torch.testing.assert_close(total, category)

    # In the model: one view per sample and every modality present, one combination for all.
    model = mcur_model(num_views=1).train()
    output = model(**mcur_inputs())
    assert output.combination_loss >= 0
    torch.testing.assert_close(output.combination_loss, output.category_loss)


def test_4_sugr_learned_with_zero_log_variance_is_the_plain_task_loss():
    model = mcur_model(sugr_mode="learned", con_weight=0.0).eval()
    with torch.no_grad():
        model.uncertainty_head.weight.zero_()
        model.uncertainty_head.bias.zero_()
    inputs = mcur_inputs()
    output = model(**inputs)
    plain = F.binary_cross_entropy_with_logits(output.logits, inputs["labels"])
    torch.testing.assert_close(output.task_loss, plain)
    torch.testing.assert_close(output.loss, plain)
    torch.testing.assert_close(output.sample_uncertainty, torch.ones(5))

    # A log-variance s weights the loss by exp(-s) and adds s / 2, clamped to +-sugr_clamp.
    with torch.no_grad():
        model.uncertainty_head.bias.fill_(100.0)
    output = model(**inputs)
    losses = F.binary_cross_entropy_with_logits(
        output.logits, inputs["labels"], reduction="none"
    ).mean(dim=1)
    clamp = model.config.sugr_clamp
    torch.testing.assert_close(output.task_loss, (np.exp(-clamp) * losses + clamp / 2).mean())


@pytest.mark.parametrize(
    "combination", COMBINATIONS, ids=lambda c: "".join("tav"[i] for i in range(3) if c[i])
)
def test_5_every_combination_runs(combination):
    model = mcur_model().train()
    inputs = mcur_inputs()
    # As masks (the evaluation's way): all-zero rows for the absent modalities.
    masked = dict(inputs)
    for present, modality in zip(combination, MODALITIES, strict=True):
        if not present:
            masked[f"{modality}_mask"] = torch.zeros_like(inputs[f"{modality}_mask"])
    # As left-out features (the pipeline's and a user's way).
    left_out = {
        key: value
        for key, value in inputs.items()
        if key == "labels" or combination[MODALITIES.index(key.split("_")[0])]
    }
    for case in (masked, left_out):
        output = model(**case)
        expected = torch.tensor(combination, dtype=torch.bool).expand(5, 3)
        assert torch.equal(output.modality_mask, expected)
        assert torch.isfinite(output.loss) and torch.isfinite(output.scores).all()
        output.loss.backward()
    model.eval()
    with torch.no_grad():
        scores = [model(**case).scores for case in (masked, left_out)]
    torch.testing.assert_close(scores[0], scores[1])


def test_a_sample_without_any_modality_answers_from_the_missing_tokens():
    model = mcur_model().eval()
    inputs = mcur_inputs(labels=False)
    for modality in MODALITIES:
        inputs[f"{modality}_mask"][2] = 0
    output = model(**inputs)
    assert not output.modality_mask[2].any() and torch.isfinite(output.scores).all()
    other = mcur_inputs(labels=False, seed=3)
    for modality in MODALITIES:
        other[f"{modality}_mask"][2] = 0
    torch.testing.assert_close(model(**other).scores[2], output.scores[2])


# ------------------------------------------------------------------------------------------------
# Training views
# ------------------------------------------------------------------------------------------------
def test_views_are_non_empty_subsets_of_the_available_modalities_and_follow_the_seed():
    generator = torch.Generator().manual_seed(0)
    available = torch.rand(400, 3, generator=generator) < 0.6
    available[:3] = False  # samples without any modality keep their empty set
    torch.manual_seed(5)
    views = McurForEmotionRecognition._draw_views(available, 3)
    assert views.shape == (3, 400, 3)
    assert not (views & ~available[None]).any()  # never un-drops a missing modality
    has_any = available.any(dim=1)
    assert views[:, has_any].any(dim=-1).all()  # non-empty where something is available
    assert not views[:, ~has_any].any()
    # Uniform over the subsets: every subset of a full sample shows up.
    full = available.all(dim=1)
    seen = set(combination_ids(views[:, full].reshape(-1, 3)).tolist())
    assert seen == set(range(1, 8))
    torch.manual_seed(5)
    assert torch.equal(views, McurForEmotionRecognition._draw_views(available, 3))


def test_training_views_only_in_training_mode_and_task_loss_on_view_zero():
    model = mcur_model(num_views=3, sugr_mode="none", con_weight=0.0)
    inputs = mcur_inputs()
    model.eval()
    evaluation = model(**inputs)
    model.train()
    torch.manual_seed(0)
    training = model(**inputs)
    # Without dropout, view 0 in training is the evaluation's forward pass.
    torch.testing.assert_close(training.logits, evaluation.logits)
    torch.testing.assert_close(training.loss, evaluation.loss)
    # With the task loss on every view it differs (the other views use fewer modalities).
    model.config.task_loss_views = "all"
    torch.manual_seed(0)
    assert not torch.allclose(model(**inputs).loss, evaluation.loss)


def test_every_parameter_gets_a_non_zero_gradient_in_training():
    """One training step on data with a missing modality (each modality missing for one sample):
    every parameter's gradient is non-zero, the learned missing tokens' rows included (with the
    default fusion the available tokens attend to them; kept out of the keys they never learn)."""
    model = mcur_model(num_views=2).train()
    inputs = mcur_inputs()
    inputs["text_mask"][3] = 0
    inputs["audio_mask"][4] = 0
    inputs["visual_mask"][2] = 0
    torch.manual_seed(0)
    model(**inputs).loss.backward()
    zero = [
        name
        for name, parameter in model.named_parameters()
        if parameter.grad is None or parameter.grad.abs().sum() == 0
    ]
    assert not zero, zero
    token_gradients = model.mcur.missing_tokens.grad.abs().sum(dim=1)
    assert (token_gradients > 0).all(), token_gradients
    # The specification's literal key padding (the option): the tokens get no gradient at all.
    literal = mcur_model(num_views=2, fusion_attends_missing_tokens=False).train()
    torch.manual_seed(0)
    literal(**inputs).loss.backward()
    assert literal.mcur.missing_tokens.grad.abs().sum() == 0


# ------------------------------------------------------------------------------------------------
# Inputs it refuses, and the config
# ------------------------------------------------------------------------------------------------
def test_explicit_modality_mask_errors_name_the_problem():
    model = mcur_model().eval()
    inputs = mcur_inputs(labels=False)
    with pytest.raises(
        ValueError, match=r"modality_mask must be a bool tensor of shape \(batch, 3\)"
    ):
        model(**inputs, modality_mask=torch.ones(5, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="modality_mask must be bool"):
        model(**inputs, modality_mask=torch.ones(5, 3))
    with pytest.raises(ValueError, match="only 0 / 1"):
        model(**inputs, modality_mask=torch.full((5, 3), 2))
    inputs["audio_mask"][2] = 0
    with pytest.raises(ValueError, match="marks audio available for sample 2"):
        model(**inputs, modality_mask=torch.ones(5, 3, dtype=torch.bool))
    without_visual = {k: v for k, v in inputs.items() if not k.startswith("visual")}
    with pytest.raises(ValueError, match="marks visual available for sample 0"):
        model(**without_visual, modality_mask=torch.ones(5, 3, dtype=torch.bool))
    # 0/1 integers are accepted as bool.
    mask = torch.ones(5, 3, dtype=torch.long)
    mask[2, 1] = 0
    assert model(**inputs, modality_mask=mask).modality_mask.dtype == torch.bool


def test_bad_inputs_and_labels_are_refused_by_name():
    model = mcur_model().eval()
    inputs = mcur_inputs()
    with pytest.raises(ValueError, match=r"audio_features must have shape \(batch, length, 4\)"):
        model(**{**inputs, "audio_features": torch.zeros(5, 5, 9)})
    with pytest.raises(ValueError, match="text_mask must hold only 0"):
        model(**{**inputs, "text_mask": torch.full((5, 7), 2)})
    with pytest.raises(ValueError, match="more than max_position_embeddings"):
        model(**{**inputs, "text_features": torch.zeros(5, 11, 6), "text_mask": None})
    with pytest.raises(ValueError, match="at least one modality"):
        model(labels=inputs["labels"])
    with pytest.raises(ValueError, match=r"labels must have shape \(batch, num_labels\)"):
        model(**{**inputs, "labels": torch.zeros(5)})
    with pytest.raises(ValueError, match="only 0 and 1"):
        model(**{**inputs, "labels": torch.full((5, 4), 0.5)})
    single = mcur_model(problem_type="single_label_classification").eval()
    with pytest.raises(ValueError, match="one-hot rows"):
        single(**inputs)
    with pytest.raises(ValueError, match=r"lie in \[0, 4\)"):
        single(**{**inputs, "labels": torch.tensor([0, 1, 2, 3, 4])})
    indices = torch.tensor([0, 1, 2, 3, 1])
    torch.testing.assert_close(
        single(**{**inputs, "labels": indices}).loss,
        single(**{**inputs, "labels": F.one_hot(indices, 4).float()}).loss,
    )


def test_config_defaults_validation_and_unknown_keys():
    config = McurConfig()
    assert (config.hidden_size, config.encoder_layers, config.proj_dim) == (256, 2, 128)
    assert (config.con_temperature, config.con_weight, config.comb_weight) == (0.07, 0.3, 0.5)
    assert (config.num_views, config.train_missing, config.sugr_mode) == (
        2,
        "uniform_subsets",
        "learned",
    )
    assert config.sugr_clamp == 5.0 and config.problem_type == "multi_label_classification"
    assert config.fusion_attends_missing_tokens is True
    assert config.thresholds == [0.5] * config.num_labels
    with pytest.raises(
        ValueError, match=r"unknown key\(s\) 'hiden_size' \(did you mean 'hidden_size'\?\)"
    ):
        McurConfig(hiden_size=8)
    for bad, message in [
        ({"sugr_mode": "bayes"}, "sugr_mode must be one of"),
        ({"comb_weight": 1.5}, r"comb_weight must be in \[0.0, 1.0\]"),
        ({"con_temperature": 0}, "con_temperature must be in"),
        ({"num_views": 0}, "num_views must be a positive integer"),
        ({"problem_type": "regression"}, "problem_type must be one of"),
        ({"hidden_size": 10, "num_attention_heads": 4}, "divisible"),
        ({"label_thresholds": [0.5]}, "label_thresholds has 1 values"),
        ({"task_loss_views": "some"}, "task_loss_views must be one of"),
    ]:
        with pytest.raises(ValueError, match=message):
            mcur_config(**bad)


def test_entropy_sugr_and_the_uncertainty_outputs():
    model = mcur_model(sugr_mode="entropy").eval()
    output = model(**mcur_inputs())
    assert output.sample_uncertainty.shape == (5,)
    assert ((output.sample_uncertainty >= 0) & (output.sample_uncertainty <= 1)).all()
    assert torch.isfinite(output.loss)
    with torch.no_grad():
        model.classifier.weight.zero_()
        model.classifier.bias.zero_()
    flat = model(**mcur_inputs())  # every prediction at maximum entropy: plain mean, weight 1
    torch.testing.assert_close(flat.sample_uncertainty, torch.ones(5))
    torch.testing.assert_close(flat.task_loss, torch.tensor(np.log(2.0), dtype=torch.float32))


# ------------------------------------------------------------------------------------------------
# Parity with LDDU: the copied blocks and the contrastive core
# ------------------------------------------------------------------------------------------------
def _lddu_twin(config: McurConfig) -> LDDUConfig:
    return LDDUConfig(
        text_dim=config.text_dim,
        audio_dim=config.audio_dim,
        visual_dim=config.visual_dim,
        hidden_size=config.hidden_size,
        num_attention_heads=config.num_attention_heads,
        intermediate_size=config.intermediate_size,
        text_num_layers=config.encoder_layers,
        audio_num_layers=config.encoder_layers,
        visual_num_layers=config.encoder_layers,
        max_position_embeddings=config.max_position_embeddings,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )


@pytest.mark.parametrize("modality", MODALITIES)
def test_copied_encoder_blocks_match_lddu_with_the_same_weights(modality):
    config = mcur_config(
        encoder_layers=2, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0
    )
    torch.manual_seed(0)
    ours = McurModalityEncoder(config, modality).eval()
    theirs = LDDUModalityEncoder(_lddu_twin(config), modality).eval()
    theirs.load_state_dict(ours.state_dict())
    features = torch.randn(3, LENGTHS[modality], DIMS[modality])
    mask = torch.ones(3, LENGTHS[modality], dtype=torch.bool)
    mask[1, 2:] = False
    attention = mask[:, None, None, :]
    torch.testing.assert_close(ours(features, attention), theirs(features, attention))
    layer, lddu_layer = McurEncoderLayer(config).eval(), LDDUEncoderLayer(_lddu_twin(config)).eval()
    lddu_layer.load_state_dict(layer.state_dict())
    hidden = torch.randn(3, 4, config.hidden_size)
    torch.testing.assert_close(layer(hidden, None), lddu_layer(hidden, None))


def test_weighted_supcon_with_class_weights_equals_lddus_supcon():
    """W = 1[class_i == class_k] and no queue: LDDU's loss, once its three conventions are set as
    parameters (sim / 2 for its norm-sqrt(2) features; anchors without positives counted as 0 in
    the mean; 1e-12 in its denominators)."""
    generator = torch.Generator().manual_seed(0)
    features = torch.cat(
        [F.normalize(torch.randn(20, 4, generator=generator), dim=-1) for _ in range(2)], dim=-1
    )  # norm sqrt(2), as LDDU's (mean, spread) features
    classes = torch.randint(0, 6, (20,), generator=generator)
    classes[-1] = 99  # an anchor without positives
    empty_queue, empty_classes = torch.zeros(0, 8), torch.zeros(0)
    theirs = supervised_contrastive_loss_reference(
        features, classes, empty_queue, empty_classes, 0.07
    )
    weights = (classes[:, None] == classes[None, :]).float()
    ours = weighted_supervised_contrastive_loss(
        features,
        weights,
        0.07,
        similarity_scale=0.5,
        skip_anchors_without_positives=False,
        eps=1e-12,
    )
    torch.testing.assert_close(ours, theirs)
    # MCUR's own convention skips that anchor: the mean over 19 anchors instead of 20.
    skipped = weighted_supervised_contrastive_loss(features, weights, 0.07, similarity_scale=0.5)
    torch.testing.assert_close(skipped, theirs * 20 / 19)


@pytest.mark.parametrize("con_weight", [0.0, 0.3])
@pytest.mark.parametrize("num_views", [1, 2])
def test_a_batch_of_one_sample_gives_finite_gradients(num_views, con_weight):
    """A last batch of one sample: with one view the contrastive loss has a single row (no
    contrast, no positive); its zero must not put 0 * inf = NaN into any gradient, also with
    con_weight = 0 (0 * NaN is NaN)."""
    model = mcur_model(num_views=num_views, con_weight=con_weight).train()
    output = model(**mcur_inputs(batch_size=1))
    output.loss.backward()
    assert torch.isfinite(output.loss)
    if num_views == 1:
        assert output.mcb_loss.item() == 0.0
    bad = [
        name
        for name, parameter in model.named_parameters()
        if parameter.grad is not None and not torch.isfinite(parameter.grad).all()
    ]
    assert not bad, bad


def test_weighted_supcon_is_finite_without_positives_and_with_underflowing_contrasts():
    def loss_and_gradient(embeddings, weights, temperature):
        embeddings = embeddings.clone().requires_grad_()
        loss = weighted_supervised_contrastive_loss(
            F.normalize(embeddings, dim=-1), weights, temperature
        )
        loss.backward()
        return loss, embeddings.grad

    generator = torch.Generator().manual_seed(0)
    # One row: no contrast at all.
    loss, gradient = loss_and_gradient(
        torch.randn(1, 4, generator=generator), torch.ones(1, 1), 0.07
    )
    assert loss.item() == 0.0 and loss.requires_grad and torch.equal(gradient, torch.zeros(1, 4))
    # Several rows, but no anchor has a positive (every view its own class).
    loss, gradient = loss_and_gradient(torch.randn(4, 4, generator=generator), torch.eye(4), 0.07)
    assert loss.item() == 0.0 and torch.isfinite(gradient).all()
    # A tiny temperature: exp of the contrasts underflows to 0 and exp of the diagonal overflows,
    # relative to a shift by the diagonal. The value is still the exact SupCon loss.
    embeddings = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0]])
    loss, gradient = loss_and_gradient(embeddings, torch.ones(3, 3), 0.005)
    # Rows 0 and 1: contrasts at -200 (the opposite row) and 0 (the orthogonal one) -> -log p =
    # 200 and ~0, mean 100; row 2: two contrasts at 0 -> log 2.
    expected = (100.0 + 100.0 + math.log(2.0)) / 3.0
    torch.testing.assert_close(loss, torch.tensor(expected))
    assert torch.isfinite(gradient).all()


def test_jaccard_weights_and_combination_ids():
    labels = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 0, 0], [1, 1, 0]]).float()
    weights = jaccard_weights(labels)
    torch.testing.assert_close(weights[0, 1], torch.tensor(0.5))
    torch.testing.assert_close(weights[0, 3], torch.tensor(1.0))
    assert (weights[2] == 0).all() and (weights[:, 2] == 0).all()
    one_hot = F.one_hot(torch.tensor([0, 2, 0, 1]), 3).float()
    expected = (one_hot.argmax(1)[:, None] == one_hot.argmax(1)[None, :]).float()
    torch.testing.assert_close(jaccard_weights(one_hot), expected)
    masks = torch.tensor(COMBINATIONS, dtype=torch.bool)
    assert sorted(combination_ids(masks).tolist()) == list(range(1, 8))
    assert combination_ids(torch.tensor([[True, False, False], [False, True, False]])).tolist() == [
        1,
        2,
    ]


# ------------------------------------------------------------------------------------------------
# Initialisation, saving and loading
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("sugr_mode", ["learned", "none"])
def test_init_weights_covers_every_parameter(sugr_mode):
    model = McurForEmotionRecognition(mcur_config(sugr_mode=sugr_mode))
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.fill_(float("nan"))
    for module in model.modules():
        model._init_weights(module)
    left = [
        name for name, parameter in model.named_parameters() if not torch.isfinite(parameter).all()
    ]
    assert not left, left
    assert torch.equal(
        model.mcur.encoders["text"].layers[0].output_layer_norm.weight, torch.ones(16)
    )


def test_reset_label_set_replaces_the_classifier():
    model = mcur_model(label_thresholds=[0.3, 0.4, 0.5, 0.6])
    model.reset_label_set({0: "calm", 1: "tense"})
    assert model.classifier.out_features == 2 and model.config.label_thresholds is None
    output = model(**mcur_inputs(num_labels=2))
    assert output.scores.shape == (5, 2) and torch.isfinite(output.loss)


def test_save_and_load_round_trip(tmp_path):
    model = mcur_model().eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["model_type"] == "mcur"
    assert saved["auto_map"]["AutoModel"] == "modeling_mcur.McurModel"
    assert (tmp_path / "pipeline_mcur.py").is_file() and (
        tmp_path / "contrastive_mcur.py"
    ).is_file()
    loaded = McurForEmotionRecognition.from_pretrained(tmp_path).eval()
    inputs = mcur_inputs()
    with torch.no_grad():
        expected, actual = model(**inputs), loaded(**inputs)
    for name in ("loss", "scores", "embeddings", "sample_uncertainty"):
        torch.testing.assert_close(actual[name], expected[name])
    base = McurModel.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(
        base(**{k: v for k, v in inputs.items() if k != "labels"}).pooled_output,
        loaded.mcur(**{k: v for k, v in inputs.items() if k != "labels"}).pooled_output,
    )


def test_fresh_process_remote_code_answers_with_one_modality(tmp_path):
    model = mcur_model().eval()
    extractor = McurFeatureExtractor(feature_dims=DIMS, max_lengths=LENGTHS)
    folder = tmp_path / "model"
    pipeline(
        "multimodal-emotion-recognition", model=model, feature_extractor=extractor
    ).save_pretrained(folder)
    audio = torch.randn(1, 4, DIMS["audio"])
    with torch.no_grad():
        expected = model(audio_features=audio).scores
    torch.save({"audio": audio, "scores": expected}, tmp_path / "case.pt")
    script = f"""
        import importlib, numpy as np, torch
        from transformers import AutoModelForSequenceClassification, pipeline
        assert importlib.util.find_spec("modeling_mcur") is None
        case = torch.load({str(tmp_path / "case.pt")!r}, weights_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            {str(folder)!r}, trust_remote_code=True
        ).eval()
        with torch.no_grad():
            output = model(audio_features=case["audio"])
        print("CLASS", type(model).__name__)
        print("MASK", output.modality_mask.int().tolist())
        print("DIFF", (output.scores - case["scores"]).abs().max().item())
        recognizer = pipeline(
            "multimodal-emotion-recognition", model={str(folder)!r}, trust_remote_code=True
        )
        answer = recognizer({{"audio": case["audio"][0].numpy()}})
        print("PIPELINE", len(answer), all(np.isfinite(entry["score"]) for entry in answer))
        print("TOP", abs(answer[0]["score"] - float(case["scores"].max())) < 1e-5)
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["CLASS"] == "McurForEmotionRecognition"
    assert lines["MASK"] == "[[0, 1, 0]]"
    assert float(lines["DIFF"]) < 1e-6
    assert lines["PIPELINE"] == "4 True" and lines["TOP"] == "True"


# ------------------------------------------------------------------------------------------------
# Missing-modality synthetic data, and train.py
# ------------------------------------------------------------------------------------------------
def _synthetic(**options):
    from dataset_scripts.synthetic import generate_synthetic_splits

    return generate_synthetic_splits(
        200, 20, 20, seed=3, text_dim=6, audio_dim=4, visual_dim=3, text_length=5,
        audio_length=5, visual_length=5, **options,
    )  # fmt: skip


def test_synthetic_missing_modalities_have_zero_frames_and_keep_the_other_frames():
    complete = _synthetic()
    missing = _synthetic(missing_rate=0.4, missing_splits=("train",))
    lengths = np.stack(
        [[sample.shape[0] for sample in missing["train"].features[m]] for m in MODALITIES], 1
    )
    assert set(np.unique(lengths)) == {0, 5}
    assert 0.25 < (lengths == 0).mean() < 0.55  # about the rate (a sample keeps one modality)
    assert (lengths > 0).any(axis=1).all()
    for index, modality in enumerate(MODALITIES):
        for sample, full, length in zip(
            missing["train"].features[modality], complete["train"].features[modality],
            lengths[:, index], strict=True,
        ):  # fmt: skip
            if length:
                np.testing.assert_array_equal(sample, full)
    np.testing.assert_array_equal(missing["train"].labels, complete["train"].labels)
    assert isinstance(missing["test"].features["text"], np.ndarray)  # only train was chosen
    np.testing.assert_array_equal(
        missing["test"].features["text"], complete["test"].features["text"]
    )
    with pytest.raises(ValueError, match="missing_rate"):
        _synthetic(missing_rate={"speech": 0.1})


def test_synthetic_signal_split_moves_each_labels_signal_to_its_primary_modality():
    """The same draws with and without the split: the planted signal (frames minus the frames of a
    signal-free run) is scaled by 3 * share, 2.1 in the label's primary modality (text for label
    0) and 0.45 in the others."""
    from dataset_scripts import synthetic

    def frames(**options):
        splits = synthetic.generate_synthetic_splits(
            50, 0, 0, seed=1, text_dim=8, audio_dim=8, visual_dim=8, text_length=4,
            audio_length=4, visual_length=4, num_labels=3, label_prevalence=[1.0, 0.0, 0.0],
            **options,
        )  # fmt: skip
        return splits["train"].features

    noise, plain, split = frames(signal_strength=0.0), frames(), frames(signal_split=True)
    for modality, factor in (("text", 2.1), ("audio", 0.45), ("visual", 0.45)):
        planted = plain[modality] - noise[modality]
        moved = split[modality] - noise[modality]
        ratio = float((moved * planted).sum() / (planted * planted).sum())
        np.testing.assert_allclose(ratio, factor, rtol=1e-3, err_msg=modality)
    shares = synthetic._signal_shares(4)
    np.testing.assert_allclose(sum(shares.values()), 3.0)
    assert shares["text"][0] == shares["text"][3] > shares["audio"][0]


def test_the_default_run_is_unchanged_by_the_new_data_arguments():
    _, data_args, _ = train.parse_arguments([])
    assert train._synthetic_missing_modalities(data_args) == {}
    _, data_args, _ = train.parse_arguments(
        ["--synthetic_missing_rate", "0.2", "--synthetic_missing_splits", "train,test",
         "--synthetic_signal_split", "true"]
    )  # fmt: skip
    assert train._synthetic_missing_modalities(data_args) == {
        "missing_rate": 0.2, "missing_splits": ["train", "test"], "signal_split": True,
    }  # fmt: skip
    model_args, _, _ = train.parse_arguments(["--model_type", "mcur"])
    assert json.loads(model_args.config_overrides)["encoder_layers"] == 1


def test_train_py_runs_mcur_end_to_end_on_missing_modality_data(tmp_path):
    output_dir = tmp_path / "run"
    arguments = [
        "--model_type", "mcur",
        "--output_dir", str(output_dir),
        "--synthetic_train_size", "48",
        "--synthetic_validation_size", "24",
        "--synthetic_test_size", "24",
        "--synthetic_length", "4",
        "--synthetic_dims", "6,4,3",
        "--synthetic_missing_rate", "0.3",
        "--synthetic_signal_split", "true",
        "--config_overrides", json.dumps(
            {"hidden_size": 16, "intermediate_size": 16, "num_attention_heads": 2,
             "encoder_layers": 1, "proj_dim": 8}
        ),
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16",
        "--disable_tqdm", "true",
        "--use_cpu", "true",
    ]  # fmt: skip
    trainer, results = train.run(*train.parse_arguments(arguments))
    assert isinstance(trainer.model, McurForEmotionRecognition)
    assert set(results["modality_combinations"]) == {"t", "a", "v", "ta", "tv", "av", "tav"}
    assert all(0.0 <= row["f1_micro"] <= 1.0 for row in results["modality_combinations"].values())
    saved = json.loads((output_dir / "config.json").read_text())
    assert saved["model_type"] == "mcur" and saved["encoder_layers"] == 1
    card = (output_dir / "README.md").read_text()
    assert "MCUR" in card and "not been validated against the" in card
    # The card's per-combination table: the seven conditions and their mean.
    assert all(
        f"| {condition} |" in card for condition in (*results["modality_combinations"], "mean")
    )
    assert (output_dir / "pipeline_mcur.py").is_file()
    assert not (output_dir / "pipeline_lddu.py").exists()

    # The trained folder answers in a Python without this package, from one modality.
    from transformers import AutoFeatureExtractor

    audio = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    inputs = AutoFeatureExtractor.from_pretrained(output_dir)(audio=[audio], return_tensors="pt")
    with torch.no_grad():
        expected = trainer.model.eval()(**inputs).scores[0]
    script = f"""
        import importlib.util
        import numpy as np
        from transformers import AutoModelForSequenceClassification, pipeline
        assert importlib.util.find_spec("modeling_mcur") is None
        model = AutoModelForSequenceClassification.from_pretrained(
            {str(output_dir)!r}, trust_remote_code=True
        )
        print("CLASS", type(model).__name__)
        recognizer = pipeline(
            "multimodal-emotion-recognition", model={str(output_dir)!r}, trust_remote_code=True
        )
        answer = recognizer({{"audio": np.array({audio.tolist()!r}, dtype=np.float32)}})
        print("SCORES", " ".join(f"{{e['label']}}={{e['score']:.6f}}" for e in answer))
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["CLASS"] == "McurForEmotionRecognition"
    served = dict(pair.split("=") for pair in lines["SCORES"].split())
    for index, label in trainer.model.config.id2label.items():
        assert abs(float(served[label]) - float(expected[index])) < 1e-4, label


def test_the_loader_turns_missing_samples_into_all_zero_mask_rows():
    from dataset_scripts.loading import InMemoryMultimodalDataset
    from dataset_scripts.synthetic import make_synthetic_dataset

    dataset = make_synthetic_dataset(
        40, 0, 0, seed=2, text_dim=6, audio_dim=4, visual_dim=3, text_length=5, audio_length=5,
        visual_length=5, missing_rate=0.5,
    )["train"]  # fmt: skip
    extractor = McurFeatureExtractor(feature_dims=DIMS, max_lengths=dict.fromkeys(MODALITIES))
    loaded = InMemoryMultimodalDataset(dataset, extractor)
    audio = dataset.with_format("numpy", columns=["audio"])[:]["audio"]
    lengths = np.array([np.asarray(sample).shape[0] for sample in audio])
    np.testing.assert_array_equal(loaded.tensors["audio_mask"].sum(1).numpy(), lengths)
    absent = [int(index) for index in np.flatnonzero(lengths == 0)[:2]]
    batch = loaded.__getitems__(absent)  # every sample of the batch lacks audio
    assert batch["audio_mask"].shape == (2, 1) and batch["audio_mask"].sum() == 0
    model = mcur_model().eval()
    output = model(**{key: value for key, value in batch.items() if key != "labels"})
    assert not output.modality_mask[:, 1].any() and torch.isfinite(output.scores).all()


def test_half_precision_weights_and_autocast_keep_the_losses_in_float32():
    model = mcur_model()
    inputs = mcur_inputs()
    with torch.no_grad():
        reference = model.eval()(**inputs)
    half = mcur_model().to(torch.bfloat16).train()
    output = half(**inputs)  # float32 inputs, as the feature extractor gives
    assert output.scores.dtype == torch.bfloat16 and output.loss.dtype == torch.float32
    assert torch.isfinite(output.loss)
    output.loss.backward()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = model.eval()(**inputs)
    assert autocast.loss.dtype == torch.float32
    assert (autocast.scores.float() - reference.scores).abs().max() < 2e-2
