"""LDDU's supervised contrastive loss over a memory queue (the paper's contrastive decoupling term).

Semantics, exactly as in the authors' code (reference §2.1):

* The contrast set is the batch rows followed by every queue row: ``N = n_batch + queue_size``.
* Similarity ``s_ik = <f_i, f_k> / 2`` (features have norm sqrt(2), so this is a cosine), logits
  ``s / temperature`` shifted by their row maximum (diagonal included).
* EVERY one of the N rows is an anchor, queue rows included. Positives of anchor ``i`` are the other
  rows with the same class id; an anchor without positives contributes 0 but still counts in the
  mean over N.
* ``loss = -mean_i [ sum_k P_ik (l_ik - log(sum_{k != i} exp(l_ik) + 1e-12)) / (sum_k P_ik + 1e-12) ]``.
* Gradients reach only the batch rows (as anchors and as contrast columns); the queue is a buffer.
* After the loss, the batch rows are written into the queue at its pointer (FIFO, wrapping around),
  gathered from every process first under ``torch.distributed`` so that all processes keep the
  same queue.

``LDDUConfig.contrastive_implementation`` picks ``"direct"``,
:func:`supervised_contrastive_loss_reference` below (the authors' ``N x N`` computation), or
``"cached"`` (the default), the exact fast path of ``contrastive_cache_lddu.py`` (derived, with
its costs, in ``docs/performance.md``); both give the same value and gradients
(``tests/test_contrastive.py``).

This file is remote code: it imports only ``torch``, ``transformers`` and this folder's
``configuration_lddu`` and ``contrastive_cache_lddu``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .configuration_lddu import CONTRASTIVE_IMPLEMENTATIONS
from .contrastive_cache_lddu import LDDUContrastiveCache


def supervised_contrastive_loss_reference(
    features: torch.Tensor,
    classes: torch.Tensor,
    queue: torch.Tensor,
    queue_classes: torch.Tensor,
    temperature: float,
) -> torch.Tensor:
    """
    The direct computation over the full ``N x N`` similarity matrix, as the authors write it.

    Args:
        features: `(n, d)` batch features (with gradient).
        classes: `(n,)` class ids of the batch rows.
        queue: `(q, d)` queue features (no gradient).
        queue_classes: `(q,)` class ids of the queue rows (float: the initial ones are random).
    """
    contrast = torch.cat([features.float(), queue.detach().float()], dim=0)  # [N, d]
    contrast_classes = torch.cat([classes.float(), queue_classes.float()], dim=0)  # [N]
    similarity = contrast @ contrast.T / 2.0  # [N, N]
    logits = similarity / temperature
    logits = logits - logits.max(dim=1, keepdim=True).values.detach()
    size = contrast.shape[0]
    not_self = ~torch.eye(size, dtype=torch.bool, device=contrast.device)  # [N, N]
    positives = (contrast_classes[:, None] == contrast_classes[None, :]) & not_self  # [N, N]
    denominator = (torch.exp(logits) * not_self).sum(dim=1, keepdim=True)  # [N, 1]
    log_prob = logits - torch.log(denominator + 1e-12)  # [N, N]
    positive_count = positives.sum(dim=1)  # [N]
    mean_log_prob_positive = (positives * log_prob).sum(dim=1) / (positive_count + 1e-12)  # [N]
    return -mean_log_prob_positive.mean()


class LDDUContrastiveMemory(nn.Module):
    """
    The queue and the loss of a batch against it. The queue is persistent buffers, saved with the
    model: queue `(queue_size, feature_dim)`, queue_classes `(queue_size,)` float, queue_ptr `(1,)`.
    ``temperature`` and ``implementation`` are ``LDDUConfig.contrastive_temperature`` and
    ``LDDUConfig.contrastive_implementation`` (see the module docstring).
    """

    def __init__(
        self,
        queue_size: int,
        feature_dim: int,
        temperature: float,
        implementation: str = "cached",
    ):
        super().__init__()
        if implementation not in CONTRASTIVE_IMPLEMENTATIONS:
            raise ValueError(
                f"Unknown contrastive implementation {implementation!r}; expected one of "
                f"{CONTRASTIVE_IMPLEMENTATIONS}."
            )
        self.queue_size = queue_size
        self.feature_dim = feature_dim
        self.temperature = temperature
        self.implementation = implementation
        self.register_buffer("queue", torch.zeros(queue_size, feature_dim))
        self.register_buffer("queue_classes", torch.zeros(queue_size))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        # The fast path's statistics of the queue: not state (a plain attribute, never saved).
        self.cache = LDDUContrastiveCache() if implementation == "cached" else None

    @torch.no_grad()
    def reset_queue(self) -> None:
        """The authors' initial queue: Gaussian rows normalised along dim 0 (so each COLUMN has unit
        norm), and random non-integer class ids that match no real class."""
        # Plain in-place writes (not transformers' `init` functions, which skip loaded tensors): a
        # reset after loading, for a new label set, must take effect.
        self.queue.copy_(F.normalize(torch.randn(self.queue_size, self.feature_dim), dim=0))
        self.queue_classes.copy_(torch.randn(self.queue_size))
        self.queue_ptr.zero_()
        if self.cache is not None:
            self.cache.clear()

    # Host-side bookkeeping (queue pointer, cache validity, variable row counts) would make
    # torch.compile recompile at every step: the memory always runs eagerly, the model around it
    # may be compiled.
    @torch.compiler.disable
    def forward(
        self,
        features: torch.Tensor,
        classes: torch.Tensor,
        keep: torch.Tensor | None = None,
        update_queue: bool = True,
    ) -> torch.Tensor:
        """
        Loss of ``features`` (batch rows) against the current queue; then, if ``update_queue``,
        enqueue them.

        Args:
            features: `(n, feature_dim)`.
            classes: `(n,)` integer class ids.
            keep: `(n,)` bool, rows to use (absent modalities are left out); default all. Selecting
                rows reads ``keep`` on the host (a device sync on accelerators); pass ``None`` when
                every row is kept.
        """
        if keep is not None and not bool(keep.all()):
            features, classes = features[keep], classes[keep]
        if self.cache is None:
            loss = supervised_contrastive_loss_reference(
                features, classes, self.queue, self.queue_classes, self.temperature
            )
            batch_sums = None
        else:
            # With one process the rows enqueued are these very rows: the cache keeps the sums
            # the loss computed about them and updates itself from those.
            loss, batch_sums = self.cache.loss(
                self, features, classes, keep_sums_for_enqueue=update_queue and _world_size() == 1
            )
        if update_queue:
            if batch_sums is None:
                self.enqueue(features, classes)
            else:
                slots = self._write_rows(features.detach(), classes.detach())
                self.cache.update_after_batch_write(self, slots, batch_sums)
        return loss

    @torch.no_grad()
    def enqueue(self, features: torch.Tensor, classes: torch.Tensor) -> None:
        """Write rows at the pointer (wrapping around), after gathering them from every process."""
        features, classes = _gather_across_processes(features.detach(), classes.detach())
        if features.shape[0] == 0:
            return
        cache_was_current = self.cache is not None and self.cache.is_current(self)
        slots = self._write_rows(features, classes)
        if self.cache is not None:
            self.cache.update_after_write(self, slots, cache_was_current)

    def _write_rows(self, features: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
        """Write rows at the pointer (FIFO, wrapping around) and return the slots written."""
        count = features.shape[0]
        first = max(0, count - self.queue_size)  # only the newest queue_size rows survive a wrap
        features, classes = features[first:], classes[first:]
        pointer = self.queue_ptr[0]
        offsets = torch.arange(first, count, device=pointer.device)
        slots = (pointer + offsets) % self.queue_size  # [min(count, queue_size)]
        self.queue.index_copy_(0, slots, features.to(self.queue.dtype))
        self.queue_classes.index_copy_(0, slots, classes.to(self.queue_classes.dtype))
        self.queue_ptr.copy_((pointer + count) % self.queue_size)
        return slots


def _world_size() -> int:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_world_size()
    return 1


def _gather_across_processes(
    features: torch.Tensor, classes: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """All-gather rows from every process (in rank order); row counts may differ per process."""
    world_size = _world_size()
    if world_size == 1:
        return features, classes
    count = torch.tensor([features.shape[0]], device=features.device)
    counts = [torch.zeros_like(count) for _ in range(world_size)]
    torch.distributed.all_gather(counts, count)
    counts = [int(c.item()) for c in counts]
    longest = max(counts)
    padded_features = F.pad(features, (0, 0, 0, longest - features.shape[0]))
    padded_classes = F.pad(classes, (0, longest - classes.shape[0]))
    gathered_features = [torch.zeros_like(padded_features) for _ in range(world_size)]
    gathered_classes = [torch.zeros_like(padded_classes) for _ in range(world_size)]
    torch.distributed.all_gather(gathered_features, padded_features)
    torch.distributed.all_gather(gathered_classes, padded_classes)
    features = torch.cat([f[:c] for f, c in zip(gathered_features, counts)], dim=0)
    classes = torch.cat([k[:c] for k, c in zip(gathered_classes, counts)], dim=0)
    return features, classes


__all__ = ["LDDUContrastiveMemory", "supervised_contrastive_loss_reference"]
