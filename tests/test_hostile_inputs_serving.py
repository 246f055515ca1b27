"""Hostile and careless inputs at load time and at serving time (issue 12): every missing weight
initialised, every file a folder carries validated, every request answered with JSON and no NaN.

The new-label-set case of "every missing weight initialised" is
`tests/test_hf_paths.py::test_a_new_label_set_through_ignore_mismatched_sizes_is_initialised_and_trains`.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModelForSequenceClassification, pipeline

from mmer.templates import handler as handler_module
from modeling_lddu import LDDUConfig, LDDUFeatureExtractor, LDDUForEmotionRecognition, LDDUModel
from modeling_lddu.pipeline_lddu import TASK

from .conftest import tiny_config, tiny_inputs

DIMS = {"text": 12, "audio": 5, "visual": 7}
MAX_LENGTHS = {"text": 8, "audio": 6, "visual": 5}


def _extractor(**overrides):
    return LDDUFeatureExtractor(
        **{"feature_dims": DIMS, "max_lengths": MAX_LENGTHS, **overrides},
    )


def _sample(seed=0, lengths=(5, 4, 3)):
    rng = np.random.default_rng(seed)
    return {
        modality: rng.standard_normal((length, DIMS[modality])).tolist()
        for modality, length in zip(("text", "audio", "visual"), lengths)
    }


def _edit_json(path, edit):
    values = json.loads(path.read_text())
    edit(values)
    path.write_text(json.dumps(values))


@pytest.fixture(scope="module")
def served_folder(tmp_path_factory):
    """A folder as train.py publishes it: model, feature extractor, code."""
    folder = tmp_path_factory.mktemp("served")
    torch.manual_seed(0)
    LDDUForEmotionRecognition(tiny_config()).eval().save_pretrained(folder)
    _extractor().save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def recognizer(served_folder):
    model = LDDUForEmotionRecognition.from_pretrained(served_folder).eval()
    return pipeline(TASK, model=model, feature_extractor=_extractor())


# Every weight a checkpoint lacks is initialised


def test_a_base_model_folder_loads_as_the_full_model_with_initialised_heads(tmp_path):
    torch.manual_seed(0)
    LDDUModel(tiny_config()).save_pretrained(tmp_path)
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path).eval()
    fusion = dict(model.fusion.named_parameters())
    assert fusion
    for name, parameter in fusion.items():
        assert torch.isfinite(parameter).all() and parameter.abs().max() < 10, name
        if parameter.numel() > 1:
            assert parameter.std() > 0, name  # drawn, not left at a constant
    with torch.no_grad():
        scores = model(**tiny_inputs(model.config)).scores
    assert torch.isfinite(scores).all()


def test_a_layer_added_in_the_config_is_initialised(tmp_path):
    torch.manual_seed(0)
    config = tiny_config()
    LDDUForEmotionRecognition(config).save_pretrained(tmp_path)
    _edit_json(tmp_path / "config.json", lambda values: values.update(text_num_layers=3))
    model = LDDUForEmotionRecognition.from_pretrained(tmp_path).eval()
    new_layer = model.lddu.encoders["text"].layers[2]
    for name, module in new_layer.named_modules():
        if isinstance(module, torch.nn.LayerNorm):
            assert torch.equal(module.weight, torch.ones_like(module.weight)), name
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
        elif isinstance(module, torch.nn.Linear):  # BERT's normal(0, initializer_range)
            assert torch.equal(module.bias, torch.zeros_like(module.bias)), name
            std = module.weight.std().item()
            assert std == pytest.approx(config.initializer_range, rel=0.5), name
    with torch.no_grad():
        scores = model(**tiny_inputs(model.config)).scores
    assert torch.isfinite(scores).all()


# What a folder carries is validated at load time


def test_an_unknown_config_key_names_the_nearest_valid_one(tmp_path):
    with pytest.raises(ValueError, match="'hiden_size'.*did you mean 'hidden_size'"):
        LDDUConfig(hiden_size=64)
    tiny_config().save_pretrained(tmp_path)
    _edit_json(tmp_path / "config.json", lambda values: values.update(hiden_size=64))
    with pytest.raises(ValueError, match="hidden_size"):
        AutoConfig.from_pretrained(tmp_path)


def test_id2label_keys_with_a_gap_are_refused(tmp_path):
    with pytest.raises(ValueError, match="id2label keys must be exactly 0..1"):
        tiny_config(id2label={0: "calm", 2: "tense"})
    tiny_config().save_pretrained(tmp_path)

    def gap(values):
        values["id2label"] = {"0": "happy", "1": "sad", "7": "anger"}
        values["label2id"] = {"happy": 0, "sad": 1, "anger": 7}

    _edit_json(tmp_path / "config.json", gap)
    with pytest.raises(ValueError, match="id2label"):
        AutoConfig.from_pretrained(tmp_path)


@pytest.mark.parametrize("bad", [math.nan, math.inf, 0.0, 1e-50, 1e300])
def test_normalisation_statistics_must_be_finite_with_positive_std(tmp_path, bad):
    stats = {"audio": {"mean": [0.0] * 5, "std": [1.0] * 5}}
    _extractor(do_normalize=True, normalization_stats=stats).save_pretrained(tmp_path)
    _edit_json(
        tmp_path / "preprocessor_config.json",
        lambda values: values["normalization_stats"]["audio"]["std"].__setitem__(2, bad),
    )
    with pytest.raises(ValueError, match=r"normalization_stats\['audio'\]\['std'\]"):
        LDDUFeatureExtractor.from_pretrained(tmp_path)
    if abs(bad) < 1:  # a valid mean
        return
    with pytest.raises(ValueError, match=r"normalization_stats\['audio'\]\['mean'\]"):
        _extractor(normalization_stats={"audio": {"mean": [bad] * 5, "std": [1.0] * 5}})


def test_non_finite_weights_are_refused_at_load_naming_the_tensor(tmp_path):
    LDDUForEmotionRecognition(tiny_config()).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    name = "fusion.semantic_classifier.hidden.weight"
    name = name if name in weights else next(key for key in weights if key.startswith("fusion."))
    weights[name][0, 0] = math.nan
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=name.replace(".", r"\.") + ".*non-finite"):
        AutoModelForSequenceClassification.from_pretrained(tmp_path)


def test_the_converter_refuses_non_finite_weights(reference_fixtures):
    from modeling_lddu.convert_original_checkpoint import (
        CheckpointConversionError,
        config_from_original_state_dict,
        convert_original_state_dict,
        load_original_state_dict,
    )

    state_dict = load_original_state_dict(
        reference_fixtures / "small" / "reference_state.safetensors"
    )
    config = config_from_original_state_dict(state_dict)
    state_dict["encoder.1.fc_mu.weight"] = state_dict["encoder.1.fc_mu.weight"].clone()
    state_dict["encoder.1.fc_mu.weight"][0, 0] = math.inf
    with pytest.raises(CheckpointConversionError, match="non-finite"):
        convert_original_state_dict(state_dict, config)


def test_an_out_of_range_queue_pointer_is_refused_at_load(tmp_path):
    model = LDDUForEmotionRecognition(tiny_config())
    model.contrastive_memory.queue_ptr.fill_(10**6)
    model.save_pretrained(tmp_path)
    with pytest.raises(ValueError, match=r"queue_ptr is 1000000, outside the queue \[0, 64\)"):
        LDDUForEmotionRecognition.from_pretrained(tmp_path)


def test_max_lengths_beyond_the_position_table_are_refused_by_the_pipeline():
    model = LDDUForEmotionRecognition(tiny_config()).eval()  # max_position_embeddings=20
    extractor = _extractor(max_lengths={**MAX_LENGTHS, "audio": 50})
    with pytest.raises(
        ValueError, match=r"max_lengths\['audio'\] is 50.*max_position_embeddings=20"
    ):
        pipeline(TASK, model=model, feature_extractor=extractor)


# The direct model call


@pytest.mark.parametrize("bad", [math.nan, 0.5, -1.0])
def test_masks_must_be_binary(bad):
    model = LDDUForEmotionRecognition(tiny_config()).eval()
    inputs = tiny_inputs(model.config)
    inputs["audio_mask"] = inputs["audio_mask"].float()
    inputs["audio_mask"][0, 1] = bad
    with pytest.raises(ValueError, match="audio_mask"):
        model(**inputs)


def test_nan_in_masked_out_padding_does_not_reach_the_scores():
    torch.manual_seed(0)
    model = LDDUForEmotionRecognition(tiny_config()).eval()
    inputs = tiny_inputs(model.config)
    inputs["audio_mask"][:, -2:] = 0
    inputs["audio_features"][:, -2:] = 0.0
    with torch.no_grad():
        clean = model(**inputs).scores
        inputs["audio_features"][:, -2:] = math.nan
        dirty = model(**inputs).scores
    assert torch.isfinite(dirty).all()
    torch.testing.assert_close(dirty, clean)


# The pipeline


@pytest.mark.parametrize(
    "value, message",
    [
        (10**400, "float32|numbers"),
        (math.nan, "NaN"),
        (math.inf, "NaN or infinite"),
        (1e39, "float32"),
        ("1.0", "numbers"),
    ],
    ids=["int-beyond-float64", "nan", "inf", "beyond-float32", "string"],
)
def test_the_pipeline_refuses_values_that_are_not_finite_float32_numbers(
    recognizer, value, message
):
    with pytest.raises(ValueError, match=message):
        recognizer({"audio": [[value] * DIMS["audio"]]})


def test_an_all_nan_modality_gets_no_confident_answer(recognizer):
    sample = _sample()
    sample["visual"] = [[math.nan] * DIMS["visual"]] * 3
    with pytest.raises(ValueError, match="visual"):
        recognizer(sample)


def test_huge_finite_values_never_give_nan_scores(recognizer):
    sample = {"audio": [[3e38] * DIMS["audio"]] * 4}
    try:
        result = recognizer(sample)
    except ValueError as error:
        assert "non-finite" in str(error)
    else:
        json.dumps(result, allow_nan=False)


@pytest.mark.parametrize("top_k", [1.5, math.inf, "2", True, 0, -1])
def test_top_k_must_be_a_positive_integer(recognizer, top_k):
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        recognizer(_sample(), top_k=top_k)


@pytest.mark.parametrize("threshold", [math.nan, math.inf, "0.3", 1.0])
def test_threshold_must_be_a_number_in_the_open_unit_interval(recognizer, threshold):
    with pytest.raises(ValueError, match="threshold"):
        recognizer(_sample(), threshold=threshold)


# The endpoint handler


@pytest.fixture(scope="module")
def handler(served_folder):
    return handler_module.EndpointHandler(str(served_folder), max_samples=5, max_frames=10)


def _answer(handler, payload):
    # The body as the endpoint would parse it (Infinity and NaN are accepted by Python's json).
    response = handler(json.loads(json.dumps(payload)))
    json.dumps(response, allow_nan=False)  # always valid JSON
    return response


@pytest.mark.parametrize(
    "payload, status, message",
    [
        ({"inputs": {"audio": [[10**400] * 5]}}, 400, "audio"),
        ({"inputs": {"audio": [[math.nan] * 5] * 2}}, 400, "NaN"),
        ({"inputs": {"audio": [[1e39] * 5]}}, 400, "float32"),
        ({"inputs": {"audio": [["a"] * 5]}}, 400, "numbers"),
        ({"inputs": _sample(), "parameters": {"top_k": math.inf}}, 400, "top_k"),
        ({"inputs": _sample(), "parameters": {"top_k": 1.5}}, 400, "top_k"),
        ({"inputs": _sample(), "parameters": {"threshold": math.nan}}, 400, "threshold"),
        ({"inputs": [_sample()] * 6}, 413, "limit is 5"),
        ({"inputs": {"audio": [[0.0] * 5] * 11}}, 413, "limit is 10"),
        ({"data": 1}, 400, "'inputs' field"),
    ],
)
def test_the_handler_answers_every_bad_request_with_an_error_and_a_status(
    handler, payload, status, message
):
    response = _answer(handler, payload)
    assert isinstance(response, dict) and response["status"] == status, response
    assert message in response["error"], response["error"]


def test_the_handler_never_answers_nan(handler):
    response = _answer(handler, {"inputs": {"audio": [[3e38] * 5] * 4}})
    if isinstance(response, dict):
        assert response["status"] == 400 and "non-finite" in response["error"]


def test_an_internal_error_is_a_500_answer(handler, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("out of memory")

    monkeypatch.setattr(handler, "pipeline", broken)
    response = _answer(handler, {"inputs": _sample()})
    assert response["status"] == 500 and "out of memory" in response["error"]


def test_the_handler_runs_batched_forwards(served_folder):
    handler = handler_module.EndpointHandler(str(served_folder), batch_size=2)
    calls = []
    hook = handler.pipeline.model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        batch = [_sample(seed) for seed in range(5)]
        response = _answer(handler, {"inputs": batch})
    finally:
        hook.remove()
    assert len(response) == 5 and all(len(entries) == 6 for entries in response)
    assert len(calls) == 3  # 5 samples in forwards of 2
    single = _answer(handler, {"inputs": batch[3]})
    assert [entry["label"] for entry in single] == [entry["label"] for entry in response[3]]
    assert single[0]["score"] == pytest.approx(response[3][0]["score"], abs=1e-5)


def test_the_limits_default_as_documented_and_read_the_environment(served_folder, monkeypatch):
    default = handler_module.EndpointHandler(str(served_folder))
    assert (default.max_samples, default.max_frames, default.batch_size) == (64, 4096, 16)
    monkeypatch.setenv("MMER_MAX_SAMPLES", "2")
    monkeypatch.setenv("MMER_MAX_FRAMES", "3")
    limited = handler_module.EndpointHandler(str(served_folder))
    assert (limited.max_samples, limited.max_frames) == (2, 3)
    assert _answer(limited, {"inputs": [_sample()] * 3})["status"] == 413
