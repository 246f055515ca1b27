"""The exact fast contrastive loss against the direct N x N computation (the authors' mathematics).

Each test drives two memories with identical buffers, one computing the loss directly
(``implementation="direct"``) and one with the fast path (``"cached"``), through the
same steps, and compares values and gradients of the batch features after every step.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from modeling_lddu import LDDUForEmotionRecognition
from modeling_lddu.contrastive_lddu import (
    LDDUContrastiveMemory,
    supervised_contrastive_loss_reference,
)

from .conftest import tiny_config

VALUE_ATOL = 1e-5
GRAD_ATOL = 1e-5
GRAD_RTOL = 1e-5
TEMPERATURE = 0.07


def _features(rows: int, dim: int, generator: torch.Generator, scale: float = 1.0):
    """Rows as the model makes them: two L2-normalised halves (norm sqrt(2)), times ``scale``."""
    half = dim // 2
    features = torch.cat(
        [
            F.normalize(torch.randn(rows, half, generator=generator), dim=1),
            F.normalize(torch.randn(rows, dim - half, generator=generator), dim=1),
        ],
        dim=1,
    )
    return features * scale


def _classes(rows: int, generator: torch.Generator, num_classes: int = 12) -> torch.Tensor:
    return torch.randint(0, num_classes, (rows,), generator=generator)


def _pair(queue_size: int, dim: int, seed: int = 0, chunk_size: int | None = None):
    """A fast memory and a reference memory with the authors' initial queue (identical)."""
    torch.manual_seed(seed)
    fast = LDDUContrastiveMemory(queue_size, dim, TEMPERATURE)
    fast.reset_queue()
    if chunk_size is not None:
        fast.cache.chunk_size = chunk_size
    reference = LDDUContrastiveMemory(queue_size, dim, TEMPERATURE, implementation="direct")
    reference.load_state_dict(fast.state_dict())
    return fast, reference


def _step_and_compare(fast, reference, features, classes, keep=None, update_queue=True):
    """One forward (and enqueue) of both memories; asserts equal loss and gradients."""
    features_fast = features.clone().requires_grad_(True)
    features_reference = features.clone().requires_grad_(True)
    loss_fast = fast(features_fast, classes, keep=keep, update_queue=update_queue)
    loss_reference = reference(features_reference, classes, keep=keep, update_queue=update_queue)
    assert loss_fast.dtype == loss_reference.dtype == torch.float32
    difference = (loss_fast - loss_reference).abs().item()
    assert difference <= VALUE_ATOL, f"loss {loss_fast.item()} vs {loss_reference.item()}"
    (gradient_fast,) = torch.autograd.grad(loss_fast, features_fast)
    (gradient_reference,) = torch.autograd.grad(loss_reference, features_reference)
    torch.testing.assert_close(
        gradient_fast, gradient_reference, atol=GRAD_ATOL, rtol=GRAD_RTOL, msg="gradients"
    )
    # The queue is written identically by both paths.
    assert torch.equal(fast.queue, reference.queue)
    assert torch.equal(fast.queue_classes, reference.queue_classes)
    assert torch.equal(fast.queue_ptr, reference.queue_ptr)
    return loss_fast


def _assert_cache_matches_a_rebuild(memory: LDDUContrastiveMemory) -> None:
    """The incrementally updated statistics equal freshly rebuilt ones (to float rounding)."""
    assert memory.cache.is_current(memory)
    incremental = memory.cache.statistics
    rebuilt = memory.cache.build(memory)
    torch.testing.assert_close(incremental.row_norms, rebuilt.row_norms, rtol=1e-6, atol=1e-7)
    # The norm bound only grows within a cache generation: compare at the same shifts.
    rescale = torch.exp(rebuilt.shifts - incremental.shifts)[:, None]
    torch.testing.assert_close(
        incremental.exp_sums, rebuilt.exp_sums * rescale, rtol=1e-5, atol=1e-9
    )
    assert incremental.pointer == rebuilt.pointer == int(memory.queue_ptr)


@pytest.mark.parametrize(
    ("queue_size", "dim", "rows_per_step", "chunk_size", "steps"),
    [
        (8, 16, 18, None, 3),  # more rows than the queue: every step replaces it all
        (8, 256, 6, None, 4),  # initial rows of norm sqrt(256 / 8): rows of very different norms
        (64, 16, 18, 16, 8),  # aligned with the chunks
        (64, 16, 18, None, 8),  # one chunk
        (300, 16, 36, 16, 12),  # short last chunk, wrap-around, partly overwritten chunks
        (300, 32, 54, 64, 10),
    ],
)
def test_fast_loss_matches_the_direct_loss_over_many_steps(
    queue_size, dim, rows_per_step, chunk_size, steps
):
    """Starts from the authors' initial queue (column-normalised, random float classes), goes
    through a partly filled queue and several wrap-arounds, comparing after every enqueue."""
    fast, reference = _pair(queue_size, dim, chunk_size=chunk_size)
    generator = torch.Generator().manual_seed(1)
    for _ in range(steps):
        features = _features(rows_per_step, dim, generator)
        _step_and_compare(fast, reference, features, _classes(rows_per_step, generator))
    if rows_per_step < queue_size:
        _assert_cache_matches_a_rebuild(fast)


def test_initial_queue_gives_the_diluted_first_step_loss():
    """The initial queue rows have no positives and contribute 0, but count in the mean."""
    fast, reference = _pair(64, 16)
    generator = torch.Generator().manual_seed(2)
    features, classes = _features(18, 16, generator), _classes(18, generator)
    loss = _step_and_compare(fast, reference, features, classes)
    batch_only = supervised_contrastive_loss_reference(
        features, classes, torch.zeros(0, 16), torch.zeros(0), TEMPERATURE
    )
    # Batch anchors also see the 64 queue rows in their denominators, so not exactly equal;
    # but the 64 queue anchors add nothing to the sum.
    assert 0 < loss.item() < batch_only.item()


def test_rows_without_positives_and_a_zero_queue():
    """Classes that occur once (no positive anywhere) contribute exactly 0; a zero queue (the
    buffers before ``reset_queue``) has rows of norm 0."""
    torch.manual_seed(0)
    fast = LDDUContrastiveMemory(32, 16, TEMPERATURE)
    reference = LDDUContrastiveMemory(32, 16, TEMPERATURE, implementation="direct")
    generator = torch.Generator().manual_seed(3)
    features = _features(10, 16, generator)
    unique_classes = torch.arange(100, 110)
    _step_and_compare(fast, reference, features, unique_classes)  # every row without positives
    mixed = torch.tensor([0, 0, 1, 200, 201, 202, 2, 2, 2, 203])
    _step_and_compare(fast, reference, _features(10, 16, generator), mixed)
    _step_and_compare(fast, reference, _features(10, 16, generator), mixed)


def test_keep_masks_drop_rows():
    fast, reference = _pair(128, 16, chunk_size=16)
    generator = torch.Generator().manual_seed(4)
    for step in range(6):
        features, classes = _features(36, 16, generator), _classes(36, generator)
        keep = torch.rand(36, generator=generator) < 0.6
        if step == 3:
            keep[:] = False  # nothing kept: only queue anchors
        _step_and_compare(fast, reference, features, classes, keep=keep)
    _assert_cache_matches_a_rebuild(fast)


def test_longer_rows_raise_the_norm_bound():
    """Rows longer than sqrt(2) (not the model's, but allowed) rescale the cached sums."""
    fast, reference = _pair(96, 16, chunk_size=16)
    generator = torch.Generator().manual_seed(5)
    for scale in (1.0, 1.3, 1.0, 1.6, 0.5):
        features = _features(20, 16, generator, scale=scale)
        _step_and_compare(fast, reference, features, _classes(20, generator))
    assert fast.cache.statistics.norm_bound.item() == pytest.approx(1.6 * 2**0.5, rel=1e-5)
    _assert_cache_matches_a_rebuild(fast)


def test_direct_enqueue_and_evaluation_steps():
    """``enqueue`` called directly (the path of rows gathered from other processes) and loss-only
    steps (``update_queue=False``, as in evaluation) keep the cache exact."""
    fast, reference = _pair(200, 16, chunk_size=16)
    generator = torch.Generator().manual_seed(6)
    for step in range(8):
        features, classes = _features(30, 16, generator), _classes(30, generator)
        _step_and_compare(fast, reference, features, classes, update_queue=False)
        rows = 30 + 7 * step  # varying counts, so that chunks are filled partly and wholly
        extra, extra_classes = _features(rows, 16, generator), _classes(rows, generator)
        fast.enqueue(extra, extra_classes)
        reference.enqueue(extra, extra_classes)
    _assert_cache_matches_a_rebuild(fast)
    with torch.no_grad():
        features, classes = _features(30, 16, generator), _classes(30, generator)
        loss_fast = fast(features, classes, update_queue=False)
        loss_reference = reference(features, classes, update_queue=False)
    assert abs(loss_fast.item() - loss_reference.item()) <= VALUE_ATOL
    with torch.inference_mode():
        loss_inference = fast(features, classes, update_queue=False)
    assert abs(loss_inference.item() - loss_reference.item()) <= VALUE_ATOL
    # A training step after an inference-mode use still updates the cache in place.
    _step_and_compare(fast, reference, features, classes)


def test_first_use_under_inference_mode_then_training():
    """Cache and workspace created under ``torch.inference_mode`` (an evaluation loss before any
    training step) must not break the in-place updates of a later training step."""
    fast, reference = _pair(64, 16, chunk_size=16)
    generator = torch.Generator().manual_seed(12)
    features, classes = _features(18, 16, generator), _classes(18, generator)
    with torch.inference_mode():
        loss_inference = fast(features, classes, update_queue=False)
    loss_reference = reference(features, classes, update_queue=False)
    assert abs(loss_inference.item() - loss_reference.item()) <= VALUE_ATOL
    for _ in range(3):
        _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    _assert_cache_matches_a_rebuild(fast)


def test_cache_is_rebuilt_after_the_buffers_change_from_outside():
    fast, reference = _pair(64, 16, chunk_size=16)
    generator = torch.Generator().manual_seed(7)
    for _ in range(3):
        _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    assert fast.cache.statistics is not None

    # load_state_dict with another queue (same shapes), e.g. from_pretrained or a checkpoint.
    other, _ = _pair(64, 16, seed=11)
    for _ in range(5):
        other(_features(18, 16, generator), _classes(18, generator))
    fast.load_state_dict(other.state_dict())
    reference.load_state_dict(other.state_dict())
    assert not fast.cache.is_current(fast)
    _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))

    # An in-place write into the buffer; a moved pointer.
    with torch.no_grad():
        row = _features(1, 16, generator)[0]
        fast.queue[5] = row
        reference.queue[5] = row
    _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    with torch.no_grad():
        fast.queue_classes[7] = reference.queue_classes[7] = 1.0
    _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    with torch.no_grad():
        fast.queue_ptr.fill_(3)
        reference.queue_ptr.fill_(3)
    for _ in range(2):
        _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    _assert_cache_matches_a_rebuild(fast)

    # reset_queue, and a dtype round trip (new buffer tensors).
    torch.manual_seed(1)
    fast.reset_queue()
    reference.load_state_dict(fast.state_dict())
    fast.double().float()
    _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    _assert_cache_matches_a_rebuild(fast)


def test_cache_is_not_state_and_survives_deepcopy():
    fast, reference = _pair(64, 16)
    generator = torch.Generator().manual_seed(8)
    _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    assert set(fast.state_dict()) == {"queue", "queue_classes", "queue_ptr"}
    copied = copy.deepcopy(fast)
    features, classes = _features(18, 16, generator), _classes(18, generator)
    _step_and_compare(copied, copy.deepcopy(reference), features, classes)
    _step_and_compare(fast, reference, features, classes)


def test_fast_loss_in_float64_model_and_config_switch():
    """Float64 features (the loss is float32, as the reference's); the config field chooses the
    implementation of the model's memory, and an unknown value is refused."""
    fast, reference = _pair(64, 16)
    generator = torch.Generator().manual_seed(9)
    features = _features(18, 16, generator).double()
    _step_and_compare(fast, reference, features, _classes(18, generator))
    switched = LDDUForEmotionRecognition(tiny_config(contrastive_implementation="direct"))
    assert switched.contrastive_memory.implementation == "direct"
    assert switched.contrastive_memory.cache is None
    default = LDDUForEmotionRecognition(tiny_config())
    assert default.config.contrastive_implementation == "cached"
    assert default.contrastive_memory.implementation == "cached"
    assert default.contrastive_memory.cache is not None
    with pytest.raises(ValueError, match="'fast'"):
        tiny_config(contrastive_implementation="fast")
    with pytest.raises(ValueError, match="'fast'"):
        LDDUContrastiveMemory(64, 16, TEMPERATURE, implementation="fast")


def test_paper_feature_size_with_a_full_queue():
    """The paper's feature size and chunking (64 slots), a full queue of model-like rows of the
    paper's 36 classes, batch-8-sized steps (144 rows)."""
    torch.manual_seed(0)
    fast = LDDUContrastiveMemory(2048, 256, TEMPERATURE)
    generator = torch.Generator().manual_seed(10)
    with torch.no_grad():
        fast.queue.copy_(_features(2048, 256, generator))
        fast.queue_classes.copy_(_classes(2048, generator, num_classes=36).float())
    reference = LDDUContrastiveMemory(2048, 256, TEMPERATURE, implementation="direct")
    reference.load_state_dict(fast.state_dict())
    for _ in range(3):
        features, classes = _features(144, 256, generator), _classes(144, generator, 36)
        _step_and_compare(fast, reference, features, classes)
    _assert_cache_matches_a_rebuild(fast)


def test_fast_loss_repeats_bit_for_bit():
    """Two runs of the same steps give identical losses, gradients and caches (no accumulation in
    an order that depends on thread scheduling)."""

    def run():
        torch.manual_seed(0)
        memory = LDDUContrastiveMemory(2048, 128, TEMPERATURE)
        memory.reset_queue()
        generator = torch.Generator().manual_seed(1)
        results = []
        for _ in range(6):
            features = _features(576, 128, generator).requires_grad_(True)
            loss = memory(features, _classes(576, generator))
            (gradient,) = torch.autograd.grad(loss, features)
            results += [loss.detach(), gradient]
        return results, memory.cache.statistics.exp_sums.clone()

    (first, first_cache), (second, second_cache) = run(), run()
    assert all(torch.equal(a, b) for a, b in zip(first, second))
    assert torch.equal(first_cache, second_cache)


def test_training_after_an_evaluation_that_raised_the_norm_bound():
    """An evaluation under inference_mode with rows longer than any seen replaces parts of the
    cache with inference tensors; the next training step must still update it (and be exact)."""
    fast, reference = _pair(64, 16, chunk_size=16)
    generator = torch.Generator().manual_seed(11)
    for _ in range(2):
        _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    longer, classes = _features(18, 16, generator, scale=1.5), _classes(18, generator)
    with torch.inference_mode():
        loss_inference = fast(longer, classes, update_queue=False)
    loss_reference = reference(longer, classes, update_queue=False)
    assert abs(loss_inference.item() - loss_reference.item()) <= VALUE_ATOL
    for _ in range(3):
        _step_and_compare(fast, reference, _features(18, 16, generator), _classes(18, generator))
    _assert_cache_matches_a_rebuild(fast)
