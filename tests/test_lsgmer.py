"""LSGMER (modeling_lsgmer/): the specification's property tests (docs/families.md), both problem
types, missing modalities, initialisation, saving and remote-code loading, parity of the blocks
copied from LDDU, and a tiny training run through train.py."""

from __future__ import annotations

import json
import math
import shutil
import sys

import pytest
import torch
import torch.nn.functional as F
from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, pipeline

from mmer.family import ModelFamily
from modeling_lddu import modeling_lddu as lddu
from modeling_lsgmer import (
    LsgmerConfig,
    LsgmerFeatureExtractor,
    LsgmerForEmotionRecognition,
    LsgmerModel,
)
from modeling_lsgmer import modeling_lsgmer as lsgmer
from modeling_lsgmer.modeling_lsgmer import distribution_log_probs, jensen_shannon

from .conftest import REPO_ROOT, disable_dropout, run_without_the_package, tiny_config

SINGLE, MULTI = "single_label_classification", "multi_label_classification"


def lsgmer_config(**overrides) -> LsgmerConfig:
    values = dict(
        text_dim=6,
        audio_dim=5,
        visual_dim=3,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        lse_heads=4,
        max_position_embeddings=20,
        id2label={0: "a", 1: "b", 2: "c", 3: "d", 4: "e"},
    )
    values.update(overrides)
    return LsgmerConfig(**values)


def make_model(seed: int = 0, **overrides) -> LsgmerForEmotionRecognition:
    torch.manual_seed(seed)
    return LsgmerForEmotionRecognition(lsgmer_config(**overrides))


def make_inputs(config, batch_size=4, lengths=(7, 5), seed=0, labels=True):
    generator = torch.Generator().manual_seed(seed)
    text_length, audio_length = lengths
    inputs = {
        "text_features": torch.randn(batch_size, text_length, config.text_dim, generator=generator),
        "text_mask": torch.ones(batch_size, text_length, dtype=torch.long),
        "audio_features": torch.randn(
            batch_size, audio_length, config.audio_dim, generator=generator
        ),
        "audio_mask": torch.ones(batch_size, audio_length, dtype=torch.long),
        "visual_features": torch.randn(batch_size, 3, config.visual_dim, generator=generator),
        "visual_mask": torch.ones(batch_size, 3, dtype=torch.long),
    }
    inputs["text_mask"][0, 4:] = 0
    inputs["audio_mask"][1, 2:] = 0
    if labels:
        if config.is_multi_label:
            targets = (torch.rand(batch_size, config.num_labels, generator=generator) < 0.4).float()
        else:
            classes = torch.randint(config.num_labels, (batch_size,), generator=generator)
            targets = F.one_hot(classes, config.num_labels).float()
        inputs["labels"] = targets
    return inputs


OUTPUT_FIELDS = ("scores", "logits", "attribution_probs", "consistency_uncertainty")


# 1. APC
@pytest.mark.parametrize("multi_label", [False, True])
def test_apc_is_zero_for_equal_distributions_symmetric_and_bounded(multi_label):
    generator = torch.Generator().manual_seed(0)
    first = torch.randn(6, 5, generator=generator) * 3
    second = torch.randn(6, 5, generator=generator) * 3
    log_p = distribution_log_probs(first, multi_label)
    log_q = distribution_log_probs(second, multi_label)
    assert torch.allclose(jensen_shannon(log_p, log_p), torch.zeros(()), atol=1e-7)
    forward, backward = jensen_shannon(log_p, log_q), jensen_shannon(log_q, log_p)
    assert torch.allclose(forward, backward, atol=1e-7)
    assert (forward > 1e-4).all() and (forward <= math.log(2.0) + 1e-6).all()
    # Saturated distributions (exact 0 / 1 in fp32) keep finite values and gradients.
    extreme = (torch.tensor([[200.0, -200.0, 0.0]]) * torch.ones(2, 1)).requires_grad_()
    divergence = jensen_shannon(
        distribution_log_probs(extreme, multi_label),
        distribution_log_probs(-extreme, multi_label),
    )
    divergence.sum().backward()
    assert torch.isfinite(divergence).all() and torch.isfinite(extreme.grad).all()


def test_the_apc_loss_is_computed_in_fp32_under_autocast():
    model = make_model()
    inputs = make_inputs(model.config)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(**inputs)
    assert output.apc_loss.dtype == torch.float32 and output.task_loss.dtype == torch.float32
    assert torch.isfinite(output.loss)


# 2. Label permutation
def _permuted_model(model, permutation):
    config = lsgmer_config(
        **{
            key: getattr(model.config, key) for key in ("problem_type", "lse_query", "label_update")
        },
        id2label={new: model.config.id2label[int(old)] for new, old in enumerate(permutation)},
    )
    permuted = LsgmerForEmotionRecognition(config).eval()
    state = model.state_dict()
    for key in state:
        if key.startswith(("lsgmer.label_embeddings.", "classifier.")):
            state[key] = state[key][permutation]
    permuted.load_state_dict(state)
    return permuted


@pytest.mark.parametrize(
    "problem_type, lse_query, label_update",
    [
        (SINGLE, "label", "ema_prototype"),
        (MULTI, "label", "ema_param"),
        (SINGLE, "sequence", "ema_param"),
    ],
)
def test_permuting_the_labels_permutes_the_outputs(problem_type, lse_query, label_update):
    model = make_model(problem_type=problem_type, lse_query=lse_query, label_update=label_update)
    model.eval()
    permutation = torch.tensor([3, 0, 4, 2, 1])
    permuted = _permuted_model(model, permutation)
    inputs = make_inputs(model.config)
    with torch.no_grad():
        reference, output = (
            model(**inputs),
            permuted(**{**inputs, "labels": inputs["labels"][:, permutation]}),
        )
    for name in OUTPUT_FIELDS:
        torch.testing.assert_close(
            output[name], reference[name][:, permutation], atol=1e-5, rtol=1e-5
        )
    torch.testing.assert_close(
        output.fused_embedding, reference.fused_embedding, atol=1e-5, rtol=1e-5
    )
    label_axis = 2 if lse_query == "label" else 3
    for modality, attention in reference.label_attentions.items():
        torch.testing.assert_close(
            output.label_attentions[modality], attention.index_select(label_axis, permutation)
        )
    torch.testing.assert_close(output.loss, reference.loss, atol=1e-6, rtol=1e-6)


# 3. Padding
@pytest.mark.parametrize("lse_query", ["label", "sequence"])
def test_padding_frames_do_not_change_the_outputs(lse_query):
    model = make_model(lse_query=lse_query).eval()
    inputs = make_inputs(model.config)
    padded = dict(inputs)
    for modality, extra in (("text", 4), ("audio", 3)):
        features, mask = inputs[f"{modality}_features"], inputs[f"{modality}_mask"]
        garbage = torch.randn(features.shape[0], extra, features.shape[2]) * 100
        padded[f"{modality}_features"] = torch.cat([features, garbage], dim=1)
        padded[f"{modality}_mask"] = torch.cat(
            [mask, torch.zeros(mask.shape[0], extra, dtype=mask.dtype)], 1
        )
    # The already padded frames change too: only the masks say what is real.
    padded["text_features"][0, 4:7] = 1e4
    with torch.no_grad():
        reference, output = model(**inputs), model(**padded)
    for name in (*OUTPUT_FIELDS, "fused_embedding", "loss"):
        torch.testing.assert_close(output[name], reference[name], atol=1e-5, rtol=1e-5)


# 4. Label EMA
def test_the_prototype_update_follows_e3_and_leaves_absent_labels_alone():
    model = make_model(problem_type=MULTI, label_ema=0.75)
    disable_dropout(model)
    model.train()
    inputs = make_inputs(model.config)
    inputs["labels"][:, 3] = 0.0  # label 3 absent from the batch
    inputs["labels"][0, 0] = 1.0
    before = model.lsgmer.label_embeddings.weight.clone()
    output = model(**inputs)
    after = model.lsgmer.label_embeddings.weight
    labels, fused = inputs["labels"], output.fused_embedding.detach()
    for label in range(model.config.num_labels):
        if labels[:, label].sum() == 0:
            assert torch.equal(after[label], before[label])
        else:
            mean = (labels[:, label, None] * fused).sum(0) / labels[:, label].sum()
            torch.testing.assert_close(after[label], 0.75 * before[label] + 0.25 * mean)
    assert torch.equal(after[3], before[3])
    output.loss.backward()  # the in-place update did not touch a tensor autograd needs


def _e3_embeddings(model):
    """The moving-averaged label embeddings: the prototype buffer, or the teacher of ema_param."""
    embeddings = model.lsgmer.label_embeddings
    return embeddings.ema_weight if embeddings.label_update == "ema_param" else embeddings.weight


def test_alpha_one_freezes_the_labels_and_evaluation_never_updates():
    for label_update in ("ema_prototype", "ema_param"):
        model = make_model(label_ema=1.0, label_update=label_update).train()
        frozen = _e3_embeddings(model).detach().clone()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
        for _ in range(2):
            optimizer.zero_grad()
            model(**make_inputs(model.config)).loss.backward()
            optimizer.step()
        model(**make_inputs(model.config))
        assert torch.equal(_e3_embeddings(model).detach(), frozen), label_update
        model.eval()
        before = _e3_embeddings(model).clone()
        model(**make_inputs(model.config))
        assert torch.equal(_e3_embeddings(model), before), label_update


def test_ema_param_is_a_mean_teacher_of_the_trained_embeddings():
    """The student (E1) is the parameter and takes the gradient; the teacher (E4) follows it as
    a moving average; the attribution reads the teacher."""
    model = make_model(label_update="ema_param", label_ema=0.9).train()
    embeddings = model.lsgmer.label_embeddings
    assert isinstance(embeddings.weight, torch.nn.Parameter)
    assert "ema_weight" in dict(embeddings.named_buffers())
    model(**make_inputs(model.config)).loss.backward()
    assert embeddings.weight.grad.abs().sum() > 0
    with torch.no_grad():
        embeddings.weight -= 0.5 * embeddings.weight.grad
    student = embeddings.weight.detach().clone()
    teacher = embeddings.ema_weight.clone()
    model(**make_inputs(model.config))
    torch.testing.assert_close(embeddings.ema_weight, 0.9 * teacher + 0.1 * student)
    assert torch.equal(embeddings.weight.detach(), student)  # the optimiser's, untouched
    # The attribution follows the teacher: moving it changes the attribution, not the logits.
    model.eval()
    inputs = make_inputs(model.config, labels=False)
    with torch.no_grad():
        reference = model(**inputs)
        embeddings.ema_weight.add_(torch.randn_like(embeddings.ema_weight))
        moved = model(**inputs)
    assert torch.equal(moved.logits, reference.logits)
    assert not torch.allclose(moved.attribution_probs, reference.attribution_probs)


# 5. apc_weight = 0
@pytest.mark.parametrize("problem_type", [SINGLE, MULTI])
def test_apc_weight_zero_is_the_plain_task_loss(problem_type):
    model = make_model(problem_type=problem_type, apc_weight=0.0).eval()
    inputs = make_inputs(model.config)
    output = model(**inputs)
    if problem_type == SINGLE:
        expected = F.cross_entropy(output.logits, inputs["labels"].argmax(-1))
    else:
        expected = F.binary_cross_entropy_with_logits(output.logits, inputs["labels"])
    assert torch.equal(output.loss, output.task_loss)
    torch.testing.assert_close(output.loss, expected, atol=0, rtol=1e-6)
    assert output.apc_loss > 0  # still reported
    weighted = make_model(problem_type=problem_type, apc_weight=0.5).eval()(**inputs)
    torch.testing.assert_close(weighted.loss, weighted.task_loss + 0.5 * weighted.apc_loss)


# Problem types
def test_single_label_scores_are_a_softmax_and_take_indices_or_one_hot_rows():
    model = make_model().eval()
    assert model.config.problem_type == SINGLE
    inputs = make_inputs(model.config)
    one_hot = model(**inputs)
    indices = model(**{**inputs, "labels": inputs["labels"].argmax(-1)})
    torch.testing.assert_close(one_hot.scores.sum(-1), torch.ones(4))
    torch.testing.assert_close(one_hot.attribution_probs.sum(-1), torch.ones(4))
    assert torch.equal(one_hot.loss, indices.loss)
    # One value per sample, repeated over the labels, in bits.
    uncertainty = one_hot.consistency_uncertainty
    assert torch.equal(uncertainty, one_hot.sample_uncertainty[:, None].expand_as(uncertainty))
    assert ((uncertainty >= 0) & (uncertainty <= 1)).all()
    multi_hot = inputs["labels"].clone()
    multi_hot[0] = 1.0
    with pytest.raises(ValueError, match="multi_label_classification"):
        model(**{**inputs, "labels": multi_hot})
    with pytest.raises(ValueError, match="shape"):
        model(**{**inputs, "labels": inputs["labels"][:, :3]})


def test_multi_label_scores_are_sigmoids_with_a_per_label_uncertainty():
    model = make_model(problem_type=MULTI).eval()
    inputs = make_inputs(model.config)
    output = model(**inputs)
    torch.testing.assert_close(output.scores, torch.sigmoid(output.logits))
    torch.testing.assert_close(output.sample_uncertainty, output.consistency_uncertainty.mean(-1))
    torch.testing.assert_close(output.apc_loss, output.sample_uncertainty.mean() * math.log(2.0))
    with pytest.raises(ValueError, match="shape"):
        model(**{**inputs, "labels": inputs["labels"].argmax(-1)})


# Missing modalities
@pytest.mark.parametrize("lse_query", ["label", "sequence"])
def test_a_missing_modality_gives_finite_outputs_and_gradients(lse_query):
    model = make_model(lse_query=lse_query).train()
    inputs = make_inputs(model.config)
    inputs["audio_mask"][2] = 0  # sample 2 has no audio
    inputs["text_mask"][3] = 0
    inputs["audio_mask"][3] = 0  # sample 3 has nothing the model reads
    output = model(**inputs)
    output.loss.backward()
    for name in (*OUTPUT_FIELDS, "fused_embedding", "loss"):
        assert torch.isfinite(output[name]).all(), name
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.equal(
        output.label_attentions["audio"][2], torch.zeros_like(output.label_attentions["audio"][2])
    )
    # The absent audio of sample 2 cannot leak: its (masked) frames do not matter.
    model.eval()
    changed = dict(inputs, audio_features=inputs["audio_features"].clone())
    changed["audio_features"][2] = 1e3
    with torch.no_grad():
        torch.testing.assert_close(model(**changed).scores, model(**inputs).scores)
    # A modality left out entirely works; only visual given (which the model ignores) is refused
    # rather than answered with a prediction that cannot depend on the input.
    without_audio = {k: v for k, v in inputs.items() if not k.startswith("audio")}
    assert torch.isfinite(model(**without_audio).scores).all()
    visual_only = {k: v for k, v in inputs.items() if k.startswith("visual")}
    with pytest.raises(ValueError, match="text_features, audio_features .visual given"):
        model(**visual_only)


def test_bad_inputs_get_errors_that_name_them():
    model = make_model().eval()
    inputs = make_inputs(model.config, labels=False)
    with pytest.raises(ValueError, match="audio_features has feature size 4"):
        model(**{**inputs, "audio_features": inputs["audio_features"][..., :4]})
    with pytest.raises(ValueError, match="text_mask must hold only 0"):
        model(**{**inputs, "text_mask": inputs["text_mask"] * 2})
    with pytest.raises(ValueError, match="at least one of the modalities it reads"):
        model()
    with pytest.raises(TypeError):
        model(**inputs, text_featurs=inputs["text_features"])  # no **kwargs


# Config
def test_config_defaults_are_the_design_choices_and_bad_values_are_named():
    config = LsgmerConfig()
    assert config.problem_type == SINGLE and config.modalities == ["text", "audio"]
    assert (config.lse_query, config.label_update, config.label_ema) == (
        "label",
        "ema_prototype",
        0.9,
    )
    assert (config.apc_temperature, config.apc_weight, config.lse_heads) == (0.1, 0.5, 4)
    assert list(config.id2label.values()) == ["neutral", "happy", "sad", "angry"]
    assert config.thresholds == [0.5] * 4
    assert LsgmerConfig(modalities=["audio", "text"]).modalities == ["text", "audio"]
    for bad, match in (
        ({"lse_qeury": "label"}, "did you mean 'lse_query'"),
        ({"lse_query": "frames"}, "lse_query"),
        ({"label_update": "sgd"}, "label_update"),
        ({"label_ema": 1.5}, "label_ema"),
        ({"apc_temperature": 0.0}, "apc_temperature"),
        ({"apc_weight": -1.0}, "apc_weight"),
        ({"modalities": ["text", "smell"]}, "modalities"),
        ({"modalities": []}, "modalities"),
        ({"hidden_size": 18, "lse_heads": 4, "num_attention_heads": 2}, "lse_heads"),
        ({"problem_type": "regression"}, "problem_type"),
        ({"label_thresholds": [0.5]}, "label_thresholds"),
    ):
        with pytest.raises(ValueError, match=match):
            lsgmer_config(**bad)


def test_the_family_is_registered_and_meets_the_contract():
    family = ModelFamily.from_model_type("lsgmer")
    assert family.model_class is LsgmerForEmotionRecognition
    assert family.feature_extractor_class is LsgmerFeatureExtractor
    assert LsgmerForEmotionRecognition.prediction_fields[0] == "scores"


def test_reset_label_set_gives_a_working_model_with_the_new_labels():
    model = make_model()
    model.reset_label_set({0: "x", 1: "y", 2: "z"})
    assert model.classifier.out_features == 3
    assert model.lsgmer.label_embeddings.weight.shape == (3, 16)
    assert torch.isfinite(model.lsgmer.label_embeddings.weight).all()
    output = model(**make_inputs(model.config))
    assert output.scores.shape == (4, 3) and torch.isfinite(output.loss)


# Initialisation
@pytest.mark.parametrize("label_update", ["ema_prototype", "ema_param"])
def test_init_weights_covers_every_parameter_and_buffer(label_update):
    model = make_model(label_update=label_update)
    with torch.no_grad():
        for tensor in (*model.parameters(), *model.buffers()):
            tensor.fill_(float("nan"))
    model.apply(model._init_weights)
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        assert torch.isfinite(tensor).all(), name
    labels = model.lsgmer.label_embeddings.weight  # Xavier-normal: std sqrt(2 / (C + d))
    assert abs(labels.std().item() - (2.0 / (5 + 16)) ** 0.5) < 0.12
    if label_update == "ema_param":
        assert torch.equal(model.lsgmer.label_embeddings.ema_weight, labels)
    assert torch.equal(
        make_model(seed=3).lsgmer.label_embeddings.weight,
        make_model(seed=3).lsgmer.label_embeddings.weight,
    )


# Saving and loading
@pytest.fixture
def saved_folder(tmp_path):
    model = make_model(problem_type=MULTI, label_update="ema_param").eval()
    model.train()
    model(**make_inputs(model.config))  # move the label embeddings away from their init
    model.lsgmer.label_embeddings.weight.data.add_(0.1)
    model.eval()
    extractor = LsgmerFeatureExtractor(
        feature_dims={"text": 6, "audio": 5, "visual": 3},
        max_lengths={"text": 10, "audio": 8, "visual": 4},
    )
    folder = tmp_path / "model"
    pipeline(
        "multimodal-emotion-recognition", model=model, feature_extractor=extractor
    ).save_pretrained(folder)
    return folder, model


def test_save_and_load_round_trip(saved_folder):
    folder, model = saved_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "lsgmer" and config["problem_type"] == MULTI
    assert config["auto_map"]["AutoModel"] == "modeling_lsgmer.LsgmerModel"
    assert config["auto_map"]["AutoModelForSequenceClassification"] == (
        "modeling_lsgmer.LsgmerForEmotionRecognition"
    )
    assert config["custom_pipelines"]["multimodal-emotion-recognition"]["impl"] == (
        "pipeline_lsgmer.LsgmerEmotionPipeline"
    )
    assert (folder / "pipeline_lsgmer.py").is_file()
    loaded = LsgmerForEmotionRecognition.from_pretrained(folder).eval()
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value), key
    inputs = make_inputs(model.config)
    with torch.no_grad():
        torch.testing.assert_close(loaded(**inputs).scores, model(**inputs).scores)
    base = LsgmerModel.from_pretrained(folder)
    assert torch.equal(base.label_embeddings.weight, model.lsgmer.label_embeddings.weight)


def test_a_copied_folder_loads_as_remote_code_in_a_fresh_process(saved_folder, tmp_path):
    folder, model = saved_folder
    copied = tmp_path / "copied-lsgmer"
    shutil.copytree(folder, copied)
    inputs = make_inputs(model.config, batch_size=2, labels=False)
    with torch.no_grad():
        reference = model(**inputs).scores
    torch.save({"inputs": inputs, "scores": reference}, tmp_path / "case.pt")
    script = f"""
        import importlib.util
        import numpy as np, torch
        from transformers import AutoModelForSequenceClassification, pipeline
        assert importlib.util.find_spec("modeling_lsgmer") is None
        case = torch.load({str(tmp_path / "case.pt")!r}, weights_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            {str(copied)!r}, trust_remote_code=True
        ).eval()
        with torch.no_grad():
            scores = model(**case["inputs"]).scores
        print("CLASS", type(model).__name__)
        print("DIFF", (scores - case["scores"]).abs().max().item())
        recognizer = pipeline(
            "multimodal-emotion-recognition", model={str(copied)!r}, trust_remote_code=True
        )
        answer = recognizer({{"text": case["inputs"]["text_features"][0].numpy()}})
        print("PIPELINE", len(answer), all(np.isfinite(entry["score"]) for entry in answer))
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["CLASS"] == "LsgmerForEmotionRecognition"
    assert float(lines["DIFF"]) < 1e-6
    assert lines["PIPELINE"] == f"{model.config.num_labels} True"


# Parity of the blocks copied from LDDU
def _twin_configs():
    shared = dict(hidden_size=16, num_attention_heads=2, intermediate_size=24)
    return tiny_config(
        **shared, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2
    ), lsgmer_config(**shared, hidden_dropout_prob=0.2, attention_probs_dropout_prob=0.2)


@pytest.mark.parametrize("training", [False, True])
@pytest.mark.parametrize("block", ["SelfAttention", "EncoderLayer"])
def test_copied_blocks_compute_what_lddu_computes(block, training):
    lddu_config, lsgmer_config_ = _twin_configs()
    torch.manual_seed(0)
    reference = getattr(lddu, f"LDDU{block}")(lddu_config).train(training)
    copy = getattr(lsgmer, f"Lsgmer{block}")(lsgmer_config_).train(training)
    copy.load_state_dict(reference.state_dict())
    hidden = torch.randn(3, 6, 16)
    mask = torch.ones(3, 6, dtype=torch.bool)
    mask[0, 4:] = False
    outputs = []
    for module in (reference, copy):
        torch.manual_seed(1)  # the same dropout masks
        outputs.append(module(hidden, mask[:, None, None, :]))
    torch.testing.assert_close(outputs[1], outputs[0], atol=0, rtol=0)


def test_copied_dropout_and_input_checks_match_lddu():
    values = torch.randn(5, 7)
    torch.manual_seed(2)
    expected = lddu.lddu_dropout(values, 0.3, True)
    torch.manual_seed(2)
    assert torch.equal(lsgmer.lsgmer_dropout(values, 0.3, True), expected)
    lddu_config, lsgmer_config_ = _twin_configs()
    lddu_model = lddu.LDDUModel(tiny_config(text_dim=6))
    lsgmer_model = LsgmerModel(lsgmer_config_)
    features = torch.randn(3, 5, 6)
    mask = torch.tensor([[1, 1, 1, 0, 0], [0, 0, 0, 0, 0], [1, 1, 1, 1, 1]])
    expected = lddu_model._check_and_prepare("text", features, mask, 3)
    for got, want in zip(lsgmer_model._check_and_prepare("text", features, mask, 3), expected):
        assert torch.equal(got, want)


# Training through train.py
def test_a_tiny_training_run_through_train_py(tmp_path):
    sys.path.insert(0, str(REPO_ROOT))
    import train

    overrides = dict(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        lse_heads=2,
    )  # fmt: skip
    arguments = [
        "--model_type", "lsgmer",
        "--output_dir", str(tmp_path / "run"),
        "--synthetic_train_size", "48",
        "--synthetic_validation_size", "24",
        "--synthetic_test_size", "24",
        "--synthetic_length", "4",
        "--synthetic_dims", "6,4,3",
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16",
        "--config_overrides", json.dumps(overrides),
        "--disable_tqdm", "true",
        "--use_cpu", "true",
    ]  # fmt: skip
    trainer, results = train.run(*train.parse_arguments(arguments))
    assert isinstance(trainer.model, LsgmerForEmotionRecognition)
    assert trainer.model.config.problem_type == MULTI  # read from the (multi-label) data
    assert 0.0 <= results["test"]["f1_micro"] <= 1.0
    assert "consistency_error_auroc" in results["uncertainty"]
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["model_type"] == "lsgmer"
    card = (tmp_path / "run" / "README.md").read_text()
    assert "LSGMER" in card and "not been validated against the" in card
    loaded = AutoModelForSequenceClassification.from_pretrained(tmp_path / "run")
    assert torch.equal(
        loaded.lsgmer.label_embeddings.weight, trainer.model.lsgmer.label_embeddings.weight
    )


def test_a_single_label_folder_trained_by_train_py_serves_in_a_fresh_process(tmp_path):
    """Audio + text, single-label, as LSGMER's users train it; the folder then answers through
    the Auto class and the pipeline in a Python that cannot import this package."""
    sys.path.insert(0, str(REPO_ROOT))
    import train

    overrides = dict(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        lse_heads=2,
    )  # fmt: skip
    output = tmp_path / "run"
    arguments = [
        "--model_type", "lsgmer",
        "--synthetic_problem_type", "single_label_classification",
        "--synthetic_modalities", "text,audio",
        "--output_dir", str(output),
        "--synthetic_train_size", "48",
        "--synthetic_validation_size", "24",
        "--synthetic_test_size", "24",
        "--synthetic_length", "4",
        "--synthetic_dims", "6,4,3",
        "--num_train_epochs", "1",
        "--per_device_train_batch_size", "16",
        "--config_overrides", json.dumps(overrides),
        "--disable_tqdm", "true",
        "--use_cpu", "true",
    ]  # fmt: skip
    trainer, results = train.run(*train.parse_arguments(arguments))
    assert trainer.model.config.problem_type == "single_label_classification"
    assert set(results["modality_combinations"]) == {"t", "a", "ta"}  # the data's modalities
    card = (output / "README.md").read_text()
    for shown in (
        "Unweighted accuracy (UA",
        "F1 (weighted)",
        "### Confusion matrix",
        "Chance level",
    ):
        assert shown in card, shown
    assert not any(
        path.name.startswith(("pipeline_lddu", "pipeline_mcur")) for path in output.iterdir()
    )
    copied = tmp_path / "copied"
    shutil.copytree(output, copied)
    text = torch.randn(5, 6).numpy()
    audio = torch.randn(3, 4).numpy()
    # What the pipeline must answer: the saved feature extractor (its normalisation), then the model.
    extractor = AutoFeatureExtractor.from_pretrained(output)
    inputs = extractor(text=[text], audio=[audio], return_tensors="pt")
    with torch.no_grad():
        expected = trainer.model.eval()(**inputs).scores
    script = f"""
        import importlib.util
        import numpy as np
        from transformers import AutoModelForSequenceClassification, pipeline
        assert importlib.util.find_spec("modeling_lsgmer") is None
        model = AutoModelForSequenceClassification.from_pretrained(
            {str(copied)!r}, trust_remote_code=True
        )
        print("CLASS", type(model).__name__)
        recognizer = pipeline(
            "multimodal-emotion-recognition", model={str(copied)!r}, trust_remote_code=True
        )
        answer = recognizer({{"text": np.array({text.tolist()!r}, dtype=np.float32),
                              "audio": np.array({audio.tolist()!r}, dtype=np.float32)}})
        print("PREDICTED", sum(entry["predicted"] for entry in answer))
        print("TOP", answer[0]["label"], answer[0]["score"])
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["CLASS"] == "LsgmerForEmotionRecognition"
    assert lines["PREDICTED"] == "1"  # single-label: exactly the top class
    label, score = lines["TOP"].rsplit(" ", 1)
    top = int(expected.argmax())
    assert label == trainer.model.config.id2label[top]
    assert abs(float(score) - float(expected[0, top])) < 1e-4
