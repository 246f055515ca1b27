"""The standard Hugging Face loading paths a user takes without reading our docs: half precision,
a new label set through `ignore_mismatched_sizes`, the attention implementation."""

from __future__ import annotations

from unittest import mock

import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from modeling_lddu import LDDUFeatureExtractor, LDDUForEmotionRecognition

from .conftest import run_without_the_package, tiny_config, tiny_inputs

#: bf16 keeps 8 bits of mantissa: scores in [0, 1] agree with fp32 to about 1e-2.
BF16_SCORE_ATOL = 2e-2


@pytest.fixture
def saved_folder(tmp_path):
    """A tiny trained-shape model folder with its feature extractor and pipeline, as exported."""
    torch.manual_seed(0)
    model = LDDUForEmotionRecognition(tiny_config()).eval()
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": 12, "audio": 5, "visual": 7},
        max_lengths={"text": 10, "audio": 6, "visual": 4},
    )
    folder = tmp_path / "model"
    pipeline(
        "multimodal-emotion-recognition", model=model, feature_extractor=extractor
    ).save_pretrained(folder)
    return folder, model


def test_bf16_and_fp16_forward_match_fp32_within_tolerance():
    torch.manual_seed(0)
    model = LDDUForEmotionRecognition(tiny_config()).eval()
    inputs = tiny_inputs(model.config, labels=True)
    with torch.no_grad():
        reference = model(**inputs)
        for dtype in (torch.bfloat16, torch.float16):
            half = LDDUForEmotionRecognition(model.config).eval()
            half.load_state_dict(model.state_dict())
            output = half.to(dtype)(**inputs)  # float32 inputs, as the feature extractor gives
            assert output.scores.dtype == dtype
            assert (output.scores.float() - reference.scores).abs().max() < BF16_SCORE_ATOL
            assert output.loss.dtype == torch.float32 and torch.isfinite(output.loss)


def test_bf16_loading_forward_and_pipeline_in_a_fresh_process(saved_folder, tmp_path):
    folder, model = saved_folder
    inputs = tiny_inputs(model.config, batch_size=2)
    with torch.no_grad():
        reference = model(**inputs).scores
    torch.save({"inputs": inputs, "scores": reference}, tmp_path / "case.pt")
    script = f"""
        import numpy as np, torch
        from transformers import AutoModelForSequenceClassification, pipeline
        case = torch.load({str(tmp_path / "case.pt")!r}, weights_only=True)
        model = AutoModelForSequenceClassification.from_pretrained(
            {str(folder)!r}, trust_remote_code=True, dtype=torch.bfloat16
        ).eval()
        with torch.no_grad():
            scores = model(**case["inputs"]).scores
        print("DTYPE", scores.dtype)
        print("DIFF", (scores.float() - case["scores"]).abs().max().item())
        recognizer = pipeline(
            "multimodal-emotion-recognition", model={str(folder)!r}, trust_remote_code=True,
            dtype=torch.bfloat16,
        )
        frames = case["inputs"]["text_features"][0].numpy()
        answer = recognizer({{"text": frames}})
        print("PIPELINE", len(answer), all(np.isfinite(entry["score"]) for entry in answer))
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["DTYPE"] == "torch.bfloat16"
    assert float(lines["DIFF"]) < BF16_SCORE_ATOL
    assert lines["PIPELINE"] == f"{model.config.num_labels} True"


def test_a_new_label_set_through_ignore_mismatched_sizes_is_initialised_and_trains(tmp_path):
    torch.manual_seed(0)
    model = LDDUForEmotionRecognition(tiny_config(label_thresholds=[0.3] * 6))
    model.contrastive_memory.queue_ptr.fill_(7)
    model.save_pretrained(tmp_path)
    adapted = AutoModelForSequenceClassification.from_pretrained(
        tmp_path, num_labels=3, ignore_mismatched_sizes=True
    )
    assert adapted.config.num_labels == 3 and adapted.config.label_thresholds is None
    for name, parameter in adapted.named_parameters():
        assert torch.isfinite(parameter).all() and parameter.abs().max() < 10, name
    # The queue's class ids indexed the old labels: it starts again.
    assert int(adapted.contrastive_memory.queue_ptr) == 0
    assert not torch.equal(adapted.contrastive_memory.queue, model.contrastive_memory.queue)
    # The unchanged weights were loaded, not re-initialised.
    assert torch.equal(
        adapted.lddu.encoders["text"].embeddings.feature_projection.weight,
        model.lddu.encoders["text"].embeddings.feature_projection.weight,
    )
    adapted.train()
    optimizer = torch.optim.AdamW(adapted.parameters(), lr=1e-3)
    inputs = tiny_inputs(adapted.config, labels=True)
    fit = []  # the classification term; the contrastive one grows as the empty queue fills
    for _ in range(5):
        output = adapted(**inputs)
        fit.append(output.fused_loss.item())
        output.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert all(torch.isfinite(torch.tensor(fit))) and fit[-1] < fit[0]


def test_a_reset_after_loading_takes_effect(tmp_path):
    """`reset_label_set` on a loaded model (LoRA's path) resets the loaded queue too."""
    model = LDDUForEmotionRecognition(tiny_config())
    model.contrastive_memory.queue_ptr.fill_(7)
    model.save_pretrained(tmp_path)
    loaded = LDDUForEmotionRecognition.from_pretrained(tmp_path)
    loaded.reset_label_set({0: "calm", 1: "tense"})
    assert int(loaded.contrastive_memory.queue_ptr) == 0
    assert not torch.equal(loaded.contrastive_memory.queue, model.contrastive_memory.queue)


@pytest.mark.parametrize("implementation", ["sdpa", "eager"])
def test_attention_implementations_are_accepted_and_agree(tmp_path, implementation):
    torch.manual_seed(0)
    LDDUForEmotionRecognition(tiny_config()).save_pretrained(tmp_path)
    reference = LDDUForEmotionRecognition.from_pretrained(tmp_path).eval()
    model = LDDUForEmotionRecognition.from_pretrained(
        tmp_path, attn_implementation=implementation
    ).eval()
    assert model.config._attn_implementation == implementation
    inputs = tiny_inputs(model.config)
    inputs["audio_mask"][1, 3:] = 0  # padding exercises the attention mask
    with torch.no_grad():
        expected = reference(**inputs).scores
        if implementation == "eager":  # honoured: the fused kernel is never called
            with mock.patch.object(
                torch.nn.functional, "scaled_dot_product_attention", side_effect=AssertionError
            ):
                scores = model(**inputs).scores
        else:
            scores = model(**inputs).scores
    assert (scores - expected).abs().max() < 1e-5


def test_a_new_model_gets_the_authors_initialisation():
    """Every block is initialised as documented in `_init_weights`, also blocks without parameters
    of their own (transformers skips such remote-code modules unless told otherwise)."""
    torch.manual_seed(0)
    config = tiny_config(hidden_size=64, intermediate_size=64, label_attention_dim=64)
    model = LDDUForEmotionRecognition(config)
    query = model.lddu.encoders["text"].layers[0].attention.query
    assert abs(query.weight.std().item() - config.initializer_range) < 0.005  # BERT: N(0, 0.02)
    assert torch.equal(query.bias, torch.zeros_like(query.bias))
    labels = model.lddu.label_embeddings.weight  # Xavier-uniform
    bound = (6.0 / (labels.shape[0] + labels.shape[1])) ** 0.5
    assert labels.abs().max() <= bound and labels.std() > bound / 4
