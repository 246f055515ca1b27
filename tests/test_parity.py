"""Parity with the authors' LDDU code on tensors their code produced (../shared/fixtures)."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from modeling_lddu.convert_original_checkpoint import (
    CheckpointConversionError,
    config_from_original_state_dict,
    convert_original_checkpoint,
    convert_original_state_dict,
    load_original_state_dict,
    main,
)
from modeling_lddu.modeling_lddu import LDDUForEmotionRecognition

from .conftest import disable_dropout

FORWARD_ATOL = 1e-5
LOSS_ATOL = 1e-5


def _model_and_inputs(folder):
    state_dict = load_original_state_dict(folder / "reference_state.safetensors")
    model = convert_original_checkpoint(folder / "reference_state.safetensors")
    inputs = load_file(str(folder / "inputs.safetensors"))
    model_inputs = {
        "text_features": inputs["text"],
        "text_mask": inputs["text_mask"],
        "audio_features": inputs["audio"],
        "audio_mask": inputs["audio_mask"],
        "visual_features": inputs["visual"],
        "visual_mask": inputs["visual_mask"],
    }
    return state_dict, model, model_inputs, inputs["labels"]


@pytest.mark.parametrize("name", ["small", "paper"])
def test_config_is_read_from_the_state_dict(reference_fixtures, name):
    folder = reference_fixtures / name
    reference = json.loads((folder / "fixture.json").read_text())["reference_config"]
    config = config_from_original_state_dict(
        load_original_state_dict(folder / "reference_state.safetensors")
    )
    assert config.text_dim == reference["text_dim"]
    assert config.visual_dim == reference["video_dim"]
    assert config.audio_dim == reference["audio_dim"]
    assert config.latent_size == reference["latent_size"]
    assert config.queue_size == reference["moco_queue"]
    assert config.num_labels == reference["num_classes"]
    assert config.text_num_layers == reference["bert_num_hidden_layers"]
    assert config.visual_num_layers == reference["visual_num_hidden_layers"]
    assert config.audio_num_layers == reference["audio_num_hidden_layers"]


@pytest.mark.parametrize("name", ["small", "paper"])
def test_eval_forward_matches_reference(reference_fixtures, name):
    folder = reference_fixtures / name
    _, model, inputs, _ = _model_and_inputs(folder)
    expected = load_file(str(folder / "forward_outputs.safetensors"))
    model.eval()
    with torch.no_grad():
        output = model(**inputs)
    pairs = {
        "final_scores": output.scores,
        "common_result": output.semantic_scores,
        "mus_result": output.mean_scores,
        "stds_result": output.spread_scores,
    }
    for index, modality in enumerate(("visual", "audio", "text")):
        pairs[f"mu_{modality}"] = output.means[:, index]
        pairs[f"std_{modality}"] = output.spreads[:, index]
        pairs[f"label_wise_{modality}"] = output.label_features[:, index]
    for key, ours in pairs.items():
        difference = (ours - expected[key]).abs().max().item()
        assert difference <= FORWARD_ATOL, f"{name}/{key}: max |diff| {difference:.3e}"
    predictions = model.predict(output.scores)
    assert torch.equal(predictions.float(), expected["pred_labels"])


def test_training_losses_queue_and_gradients_match_reference(reference_fixtures):
    folder = reference_fixtures / "small"
    state_dict, model, inputs, labels = _model_and_inputs(folder)
    expected = load_file(str(folder / "loss_outputs.safetensors"))
    expected_grads = load_file(str(folder / "loss_grads.safetensors"))
    model.train()
    disable_dropout(model)
    assert torch.equal(model.contrastive_memory.queue, expected["queue_before"])

    output = model(**inputs, labels=labels)
    terms = {
        "total_loss": output.loss,
        "common_bce": output.semantic_loss,
        "final_bce": output.fused_loss,
        "cdl_loss": output.contrastive_loss,
        "crl_loss": output.calibration_loss,
    }
    for key, ours in terms.items():
        difference = (ours - expected[key]).abs().item()
        assert difference <= LOSS_ATOL, f"{key}: |diff| {difference:.3e}"

    memory = model.contrastive_memory
    assert (memory.queue - expected["queue_after"]).abs().max().item() <= 1e-6
    assert torch.equal(memory.queue_classes, expected["queue_label_after"].reshape(-1))
    assert (
        int(memory.queue_ptr)
        == json.loads((folder / "fixture.json").read_text())["loss_outputs_scalars"][
            "queue_ptr_after"
        ]
    )
    assert not memory.queue.requires_grad  # quirk 6: enqueued rows are detached

    output.loss.backward()
    # Map the reference gradients to our names with the converter (buffers ride along unchanged).
    buffers = {key: state_dict[key] for key in ("queue", "queue_label", "queue_ptr")}
    converted_grads, _ = convert_original_state_dict(
        {**expected_grads, **buffers, **_zero_dead(state_dict)}, model.config
    )
    checked = 0
    for name, parameter in model.named_parameters():
        reference = converted_grads[name]
        assert parameter.grad is not None, f"{name} received no gradient"
        tolerance = torch.maximum(torch.full_like(reference, 1e-6), 1e-4 * reference.abs())
        excess = ((parameter.grad - reference).abs() - tolerance).max().item()
        assert excess <= 0, f"{name}: gradient off by {excess:.3e} beyond tolerance"
        checked += 1
    assert checked == len(dict(model.named_parameters()))


def _zero_dead(state_dict):
    return {
        key: value
        for key, value in state_dict.items()
        if key.startswith(
            (
                "bert.pooler.",
                "audio.pooler.",
                "visual.pooler.",
                "final_classifer2.",
                "var_classifier2.",
            )
        )
    }


def test_paper_model_has_no_dead_parameters(reference_fixtures):
    summary = json.loads((reference_fixtures / "paper" / "fixture.json").read_text())["summary"]
    model = convert_original_checkpoint(
        reference_fixtures / "paper" / "reference_state.safetensors"
    )
    ours = sum(parameter.numel() for parameter in model.parameters())
    assert (
        ours
        == summary["params_receiving_grad"]
        == summary["total_params"] - summary["params_never_used"]
    )


def test_converter_cli_and_errors(reference_fixtures, tmp_path, caplog):
    source = reference_fixtures / "small" / "reference_state.safetensors"
    destination = tmp_path / "converted"
    assert main([str(source), str(destination)]) == 0
    assert (destination / "model.safetensors").is_file()
    assert (destination / "config.json").is_file()
    # Refuses to overwrite.
    assert main([str(source), str(destination)]) == 2

    state_dict = load_original_state_dict(source)
    config = config_from_original_state_dict(state_dict)
    with pytest.raises(CheckpointConversionError, match="not part of LDDU.*mystery.weight"):
        convert_original_state_dict({**state_dict, "mystery.weight": torch.zeros(1)}, config)
    incomplete = dict(state_dict)
    del incomplete["encoder.1.fc_mu.weight"]
    with pytest.raises(CheckpointConversionError, match="encoder.1.fc_mu.weight"):
        convert_original_state_dict(incomplete, config)
    with pytest.raises(CheckpointConversionError, match="latent_size"):
        config_from_original_state_dict(state_dict, latent_size=3)

    pt_file = tmp_path / "reference.bin"
    torch.save(state_dict, pt_file)
    model = convert_original_checkpoint(pt_file)
    assert isinstance(model, LDDUForEmotionRecognition)
