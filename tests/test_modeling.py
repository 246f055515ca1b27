"""Model behaviour on tiny configs: shapes, losses, save/load, remote code, invariances, the queue."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from modeling_lddu import LDDUConfig, LDDUForEmotionRecognition, LDDUModel
from modeling_lddu.convert_original_checkpoint import convert_original_checkpoint

from .conftest import disable_dropout, run_without_the_package, tiny_config, tiny_inputs


def _eval_model(config, seed=0):
    torch.manual_seed(seed)
    return LDDUForEmotionRecognition(config).eval()


def test_output_shapes_and_no_loss_without_labels():
    config = tiny_config()
    model = _eval_model(config)
    with torch.no_grad():
        output = model(**tiny_inputs(config, batch_size=3))
    assert output.loss is None and output.contrastive_loss is None
    assert output.scores.shape == (3, 6)
    assert output.semantic_scores.shape == (3, 6)
    assert output.means.shape == output.spreads.shape == (3, 3, 6, config.latent_size)
    assert output.label_features.shape == (3, 3, 6, config.label_attention_dim)
    assert ((output.scores > 0) & (output.scores < 1)).all()
    assert (output.spreads > 0).all()


def test_loss_is_the_weighted_sum_of_its_terms():
    config = tiny_config(
        semantic_loss_weight=0.5,
        fused_loss_weight=2.0,
        contrastive_loss_weight=0.25,
        calibration_loss_weight=3.0,
    )
    model = LDDUForEmotionRecognition(config).train()
    output = model(**tiny_inputs(config, labels=True))
    expected = (
        0.5 * output.semantic_loss
        + 2.0 * output.fused_loss
        + 0.25 * output.contrastive_loss
        + 3.0 * output.calibration_loss
    )
    assert torch.allclose(output.loss, expected)
    # In eval mode the loss is still computed when labels are given, but the queue is left alone.
    model.eval()
    queue_before = model.contrastive_memory.queue.clone()
    pointer_before = model.contrastive_memory.queue_ptr.clone()
    with torch.no_grad():
        output = model(**tiny_inputs(config, labels=True))
    assert output.loss is not None
    assert torch.equal(model.contrastive_memory.queue, queue_before)
    assert torch.equal(model.contrastive_memory.queue_ptr, pointer_before)


@pytest.mark.parametrize("num_labels", [4, 7])
def test_label_counts_other_than_six(num_labels):
    labels = [f"emotion_{index}" for index in range(num_labels)]
    config = tiny_config(id2label=dict(enumerate(labels)))
    assert config.num_labels == num_labels
    model = LDDUForEmotionRecognition(config).train()
    inputs = tiny_inputs(config, batch_size=4, labels=True)
    output = model(**inputs)
    assert output.scores.shape == (4, num_labels)
    output.loss.backward()
    rows = 4 * 3 * num_labels
    assert int(model.contrastive_memory.queue_ptr) == rows % config.queue_size
    assert model.contrastive_memory.queue_classes.max() < 3 * 2 * num_labels


def test_every_parameter_receives_a_gradient():
    config = tiny_config()
    model = LDDUForEmotionRecognition(config).train()
    # Two steps, so that the contrastive loss also sees real queue rows.
    for _ in range(2):
        model.zero_grad()
        output = model(**tiny_inputs(config, batch_size=4, labels=True))
        output.loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, f"{name} got no gradient"
        assert parameter.grad.abs().sum() > 0, f"{name} got an all-zero gradient"


def test_save_and_load_round_trip(tmp_path):
    config = tiny_config()
    model = LDDUForEmotionRecognition(config).train()
    model(**tiny_inputs(config, labels=True))  # moves the queue pointer
    model.eval()
    model.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "config.json").read_text())
    assert saved["auto_map"] == {
        "AutoConfig": "configuration_lddu.LDDUConfig",
        "AutoModel": "modeling_lddu.LDDUModel",
        "AutoModelForSequenceClassification": "modeling_lddu.LDDUForEmotionRecognition",
    }
    for code_file in (
        "configuration_lddu.py",
        "modeling_lddu.py",
        "contrastive_lddu.py",
        "contrastive_cache_lddu.py",
    ):
        assert (tmp_path / code_file).is_file()
    loaded = LDDUForEmotionRecognition.from_pretrained(tmp_path).eval()
    inputs = tiny_inputs(config, seed=3)
    with torch.no_grad():
        assert torch.equal(model(**inputs).scores, loaded(**inputs).scores)
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, dict(loaded.named_buffers())[name]), name
    base = LDDUModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        assert torch.equal(base(**inputs).means, model.lddu(**inputs).means)


def test_fresh_process_remote_code_loading_of_the_paper_model(reference_fixtures, tmp_path):
    """A paper-configuration model loads with trust_remote_code where this package is NOT importable."""
    folder = tmp_path / "lddu-paper"
    model = convert_original_checkpoint(
        reference_fixtures / "paper" / "reference_state.safetensors", folder
    )
    inputs = tiny_inputs(model.config, batch_size=2, lengths=(50, 50, 50), seed=1)
    model.eval()
    with torch.no_grad():
        output = model(**inputs)
    torch.save(
        {"inputs": inputs, "scores": output.scores, "means": output.means}, tmp_path / "case.pt"
    )
    script = f"""
        import torch
        from transformers import AutoModel, AutoModelForSequenceClassification
        case = torch.load({str(tmp_path / "case.pt")!r}, weights_only=True)
        try:
            AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=False)
            raise SystemExit("loading without trust_remote_code must fail")
        except ValueError:
            pass
        model = AutoModelForSequenceClassification.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        base = AutoModel.from_pretrained({str(folder)!r}, trust_remote_code=True).eval()
        with torch.no_grad():
            scores = model(**case["inputs"]).scores
            means = base(**case["inputs"]).means
        print("MODULE", type(model).__module__)
        print("SCORES_DIFF", (scores - case["scores"]).abs().max().item())
        print("MEANS_DIFF", (means - case["means"]).abs().max().item())
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["MODULE"].startswith("transformers_modules."), lines["MODULE"]
    assert float(lines["SCORES_DIFF"]) <= 1e-6  # another process may pick other kernels
    assert float(lines["MEANS_DIFF"]) <= 1e-6


def test_batch_permutation_equivariance_and_loss_invariance():
    config = tiny_config()
    model = _eval_model(config)
    inputs = tiny_inputs(config, batch_size=5, labels=True, seed=4)
    permutation = torch.tensor([3, 0, 4, 1, 2])
    permuted = {key: value[permutation] for key, value in inputs.items()}
    with torch.no_grad():
        output = model(**inputs)
        output_permuted = model(**permuted)
    torch.testing.assert_close(
        output.scores[permutation], output_permuted.scores, rtol=0, atol=1e-6
    )
    torch.testing.assert_close(output.means[permutation], output_permuted.means, rtol=0, atol=1e-6)
    # Every loss term is a mean or a sum over the batch: permuting the batch leaves it unchanged.
    torch.testing.assert_close(output.loss, output_permuted.loss, rtol=1e-5, atol=1e-6)


def test_padding_does_not_change_outputs():
    config = tiny_config()
    model = _eval_model(config)
    inputs = tiny_inputs(config, batch_size=2, lengths=(6, 5, 4), seed=5)
    padded = dict(inputs)
    for modality, extra in (("text", 4), ("audio", 3), ("visual", 7)):
        features = inputs[f"{modality}_features"]
        garbage = torch.randn(features.shape[0], extra, features.shape[2]) * 50
        padded[f"{modality}_features"] = torch.cat([features, garbage], dim=1)
        mask = inputs[f"{modality}_mask"]
        padded[f"{modality}_mask"] = torch.cat(
            [mask, torch.zeros(mask.shape[0], extra, dtype=mask.dtype)], 1
        )
    with torch.no_grad():
        reference = model(**inputs)
        output = model(**padded)
    torch.testing.assert_close(output.scores, reference.scores, rtol=0, atol=1e-6)
    torch.testing.assert_close(output.spreads, reference.spreads, rtol=0, atol=1e-5)


def test_all_ones_masks_equal_no_masks():
    config = tiny_config()
    model = _eval_model(config)
    inputs = tiny_inputs(config, seed=6)
    unmasked = {key: value for key, value in inputs.items() if not key.endswith("_mask")}
    with torch.no_grad():
        torch.testing.assert_close(
            model(**inputs).scores, model(**unmasked).scores, rtol=0, atol=1e-6
        )


def test_queue_wraps_around_at_its_end():
    config = tiny_config(queue_size=64)
    model = LDDUForEmotionRecognition(config).train()
    disable_dropout(model)
    memory = model.contrastive_memory
    rows = 3 * 3 * config.num_labels  # batch 3 -> 54 rows per step
    written = []
    for step in range(3):
        inputs = tiny_inputs(config, batch_size=3, labels=True, seed=10 + step)
        output = model(**inputs)
        from modeling_lddu.modeling_lddu import contrastive_features_and_classes

        features, classes = contrastive_features_and_classes(
            output.means, output.spreads, inputs["labels"]
        )
        written.append((features.detach(), classes))
    assert int(memory.queue_ptr) == (3 * rows) % 64  # 162 % 64 = 34
    # Slot s holds the newest row written to it: replay the FIFO by hand.
    expected = torch.full((64,), -1, dtype=torch.long)
    expected_rows = torch.zeros(64, memory.feature_dim)
    pointer = 0
    for features, classes in written:
        for row in range(features.shape[0]):
            expected[(pointer + row) % 64] = classes[row]
            expected_rows[(pointer + row) % 64] = features[row]
        pointer = (pointer + features.shape[0]) % 64
    assert torch.equal(memory.queue_classes.long(), expected)
    torch.testing.assert_close(memory.queue, expected_rows)


def test_more_rows_than_the_queue_keeps_the_newest():
    """Quirk 7: the authors' wrap-around breaks when one step has more rows than the queue."""
    config = tiny_config(queue_size=16)
    model = LDDUForEmotionRecognition(config).train()
    memory = model.contrastive_memory
    features = torch.randn(40, memory.feature_dim)
    classes = torch.arange(40)
    memory.enqueue(features, classes)
    assert int(memory.queue_ptr) == 40 % 16
    # Rows 24..39 survive; row r sits in slot r % 16.
    for row in range(24, 40):
        assert int(memory.queue_classes[row % 16]) == row
        assert torch.equal(memory.queue[row % 16], features[row])


def test_model_deepcopies_after_a_training_step_and_queue_is_detached():
    """Quirk 6: the authors enqueue non-detached features, after which deepcopy raises."""
    config = tiny_config()
    model = LDDUForEmotionRecognition(config).train()
    model(**tiny_inputs(config, labels=True)).loss.backward()
    assert model.contrastive_memory.queue.grad_fn is None
    assert not model.contrastive_memory.queue.requires_grad
    copy.deepcopy(model)


def test_eval_forward_leaves_the_global_rng_alone():
    """Quirk 2: the authors' dead F.dropout consumed RNG even in eval mode."""
    config = tiny_config()
    model = _eval_model(config)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    with torch.no_grad():
        model(**tiny_inputs(config))
    assert torch.equal(state, torch.get_rng_state())


def test_sequences_longer_than_the_position_table_are_refused():
    config = tiny_config(max_position_embeddings=8)
    model = _eval_model(config)
    with pytest.raises(ValueError, match="text_features has 10 frames.*max_position_embeddings=8"):
        model(**tiny_inputs(config, lengths=(10, 6, 4)))


def test_wrong_feature_dim_and_mask_shape_are_refused():
    config = tiny_config()
    model = _eval_model(config)
    inputs = tiny_inputs(config)
    bad = dict(inputs, audio_features=torch.randn(3, 6, config.audio_dim + 1))
    with pytest.raises(
        ValueError, match="audio_features has feature size 6 but the config says audio_dim=5"
    ):
        model(**bad)
    bad = dict(inputs, visual_mask=torch.ones(3, 5))
    with pytest.raises(ValueError, match=r"visual_mask must have shape \(3, 4\)"):
        model(**bad)
    with pytest.raises(ValueError, match="labels must have shape"):
        model(**inputs, labels=torch.ones(3, 5))
    with pytest.raises(ValueError, match="at least one modality"):
        model()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("hidden_size", 31, "hidden_size .* divisible by num_attention_heads"),
        ("classifier_dropout", 1.5, "classifier_dropout must be in"),
        ("contrastive_temperature", 0.0, "contrastive_temperature must be > 0"),
        (
            "contrastive_implementation",
            "fast",
            "contrastive_implementation must be one of .*'fast'",
        ),
        ("decision_threshold", 1.0, "decision_threshold must be in"),
        ("queue_size", 0, "queue_size must be a positive integer"),
        ("latent_hidden_sizes", [], "latent_hidden_sizes must be a non-empty list"),
        ("calibration_loss_weight", -1.0, "calibration_loss_weight must be a finite number >= 0"),
        (
            "label_thresholds",
            [0.3, 0.4],
            "label_thresholds has 2 values but the model has 6 labels",
        ),
        ("modality_dropout", {"smell": 0.1}, "unknown modality 'smell'"),
    ],
)
def test_invalid_config_values_name_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        tiny_config(**{field: value})


def test_paper_defaults():
    config = LDDUConfig()
    assert (config.text_dim, config.audio_dim, config.visual_dim) == (768, 74, 35)
    assert config.queue_size == 8192 and config.latent_size == 128
    assert config.contrastive_temperature == 0.07 and config.decision_threshold == 0.21
    assert [config.id2label[index] for index in range(6)] == [
        "happy",
        "sad",
        "anger",
        "surprise",
        "disgust",
        "fear",
    ]
    assert not hasattr(config, "temperature")


@pytest.mark.parametrize("absent", ["text", "audio", "visual", "text+audio"])
def test_absent_modalities_have_no_influence(absent):
    config = tiny_config()
    model = _eval_model(config)
    inputs = tiny_inputs(config, batch_size=3, seed=8, labels=True)
    absent_modalities = absent.split("+")
    # Sample 1 lacks the modality (all-zero mask); the others have it.
    for modality in absent_modalities:
        inputs[f"{modality}_mask"][1] = 0
    changed = {key: value.clone() for key, value in inputs.items()}
    for modality in absent_modalities:
        changed[f"{modality}_features"][1] = (
            torch.randn_like(changed[f"{modality}_features"][1]) * 1e6
        )
    with torch.no_grad():
        output = model(**inputs)
        output_changed = model(**changed)
    for field in ("scores", "semantic_scores", "means", "spreads", "loss"):
        value = getattr(output, field)
        assert torch.isfinite(value).all(), field
        assert torch.equal(value, getattr(output_changed, field)), field
    # Leaving the key out entirely is the same as masking it for every sample.
    for modality in absent_modalities:
        inputs[f"{modality}_mask"][:] = 0
    left_out = {
        key: value
        for key, value in inputs.items()
        if not any(key.startswith(m) for m in absent_modalities)
    }
    with torch.no_grad():
        torch.testing.assert_close(
            model(**inputs).scores, model(**left_out).scores, rtol=0, atol=1e-6
        )


def test_modality_dropout_drops_pairs_but_never_a_whole_sample():
    config = tiny_config(
        modality_dropout={"text": 0.9, "audio": 0.9, "visual": 0.9}, queue_size=4096
    )
    model = LDDUForEmotionRecognition(config).train()
    batch_size, num_labels = 32, config.num_labels
    torch.manual_seed(0)
    output = model(**tiny_inputs(config, batch_size=batch_size, labels=True))
    assert torch.isfinite(output.loss)
    # One contrastive row per (present sample-modality pair, label): between "one modality per
    # sample" and "all three", and far below all three at p = 0.9.
    enqueued_pairs = int(model.contrastive_memory.queue_ptr) // num_labels
    assert batch_size <= enqueued_pairs < 2 * batch_size
    # Evaluation never drops anything.
    model.eval()
    pointer = int(model.contrastive_memory.queue_ptr)
    model.train(False)
    with torch.no_grad():
        first = model(**tiny_inputs(config, batch_size=4, seed=2)).scores
        second = model(**tiny_inputs(config, batch_size=4, seed=2)).scores
    assert torch.equal(first, second)
    assert int(model.contrastive_memory.queue_ptr) == pointer


def test_misspelled_arguments_are_refused():
    config = tiny_config()
    inputs = tiny_inputs(config)
    inputs["text_masks"] = inputs.pop("text_mask")
    for model in (LDDUModel(config), LDDUForEmotionRecognition(config)):
        with pytest.raises(TypeError, match="text_masks"):
            model(**inputs)


def test_reset_label_set_initialises_every_label_indexed_part():
    torch.manual_seed(0)
    model = LDDUForEmotionRecognition(tiny_config())
    model.contrastive_memory.queue_ptr.fill_(5)
    model.reset_label_set({0: "calm", 1: "tense", 2: "bored", 3: "glad"})
    assert model.config.num_labels == 4 and model.config.label2id["bored"] == 2
    assert model.lddu.label_embeddings.weight.shape[0] == 4
    assert model.fusion.mean_classifier.hidden_weight.shape[0] == 4
    assert int(model.contrastive_memory.queue_ptr) == 0
    for parameter in model.parameters():
        assert torch.isfinite(parameter).all() and parameter.abs().max() < 10
    output = model(**tiny_inputs(model.config, labels=True))
    assert output.scores.shape == (3, 4) and torch.isfinite(output.loss)
