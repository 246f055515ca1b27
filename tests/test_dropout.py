"""The CPU dropout of the model (``lddu_dropout``) and the explicit training-mode attention path."""

from __future__ import annotations

import pytest
import torch

from modeling_lddu import LDDUForEmotionRecognition
from modeling_lddu import modeling_lddu as modeling
from modeling_lddu.modeling_lddu import LDDUDropout, LDDUEncoderLayer, lddu_dropout

from .conftest import tiny_config, tiny_inputs


@pytest.mark.parametrize("probability", [0.1, 0.3, 0.5])
def test_dropout_has_the_distribution_of_torch_dropout(probability):
    torch.manual_seed(0)
    hidden = torch.rand(200_000) + 0.5  # no zeros of its own
    dropped = lddu_dropout(hidden, probability, training=True)
    kept = dropped != 0
    # Kept with probability 1 - p (binomial, 6 standard deviations), scaled by 1 / (1 - p).
    expected, deviation = (
        (1 - probability) * hidden.numel(),
        (probability * (1 - probability) * hidden.numel()) ** 0.5,
    )
    assert abs(kept.sum().item() - expected) < 6 * deviation
    torch.testing.assert_close(dropped[kept], hidden[kept] / (1 - probability))
    # Independent draws per element: neighbours are uncorrelated.
    pairs = (kept[:-1] & kept[1:]).float().mean().item()
    assert abs(pairs - (1 - probability) ** 2) < 0.01


def test_dropout_gradient_and_identities():
    torch.manual_seed(1)
    hidden = torch.randn(64, 50, 16, requires_grad=True)
    dropped = lddu_dropout(hidden, 0.3, training=True)
    dropped.sum().backward()
    kept = (dropped != 0).float()
    torch.testing.assert_close(hidden.grad, kept / 0.7)
    assert lddu_dropout(hidden, 0.3, training=False) is hidden
    assert lddu_dropout(hidden, 0.0, training=True) is hidden
    assert torch.equal(lddu_dropout(hidden, 1.0, training=True), torch.zeros_like(hidden))
    module = LDDUDropout(0.3)
    assert isinstance(module, torch.nn.Dropout)
    assert module.eval()(hidden) is hidden


def test_every_dropout_of_the_model_is_the_cpu_dropout():
    model = LDDUForEmotionRecognition(tiny_config())
    dropouts = [module for module in model.modules() if isinstance(module, torch.nn.Dropout)]
    assert dropouts and all(type(module) is LDDUDropout for module in dropouts)


def test_training_attention_path_equals_sdpa(monkeypatch):
    """In training with attention dropout the attention is computed explicitly (to use
    ``lddu_dropout``); with the dropout draw replaced by the identity it must equal SDPA."""
    torch.manual_seed(2)
    config = tiny_config(hidden_dropout_prob=0.0)
    layer = LDDUEncoderLayer(config)
    for parameter in layer.parameters():
        torch.nn.init.normal_(parameter, std=0.3)
    hidden = torch.randn(3, 7, config.hidden_size)
    mask = torch.ones(3, 7, dtype=torch.bool)
    mask[1, 4:] = False  # padding
    attention_mask = mask[:, None, None, :]
    expected = layer.eval()(hidden, attention_mask)
    monkeypatch.setattr(modeling, "lddu_dropout", lambda hidden, probability, training: hidden)
    assert layer.attention.attention_dropout > 0
    explicit = layer.train()(hidden, attention_mask)
    torch.testing.assert_close(explicit, expected, atol=1e-6, rtol=1e-5)


def test_training_steps_use_dropout_and_stay_finite():
    torch.manual_seed(3)
    config = tiny_config()
    model = LDDUForEmotionRecognition(config).train()
    inputs = tiny_inputs(config, batch_size=4, labels=True)
    first = model(**inputs)
    second = model(**inputs)
    assert not torch.equal(first.scores, second.scores)  # dropout is active in training
    second.loss.backward()
    for name, parameter in model.named_parameters():
        assert torch.isfinite(parameter.grad).all(), name
