"""The exact fast path of LDDU's supervised contrastive loss (``"cached"``, the default).

``contrastive_lddu.py`` states the loss and computes it as the authors do, over the ``N x N``
matrix (``N = 9344`` in the paper configuration: several 350 MB matrices and ~90 GFLOP per step).
:class:`LDDUContrastiveCache` gives the same value and gradients without that matrix, from
statistics of the queue that it keeps from one step to the next.

Notation: ``T_ik = <f_i, f_k> / (2 temperature)``, ``P`` the positive mask, ``cnt_i = sum_k P_ik``,
``c_i = |f_i| R / (2 temperature)`` with ``R`` a bound on every row norm (so ``T_ik <= c_i``) and
``E_i = sum_{k != i} exp(T_ik - c_i)``. The derivation (positives as class sums, the fixed shift,
the per-chunk cache of the queue and its update at each enqueue, when it is rebuilt, the gradient,
and why the reference's row maximum and ``1e-12`` give the same value to float rounding) is in
``docs/performance.md``, "The cached contrastive loss, derived".

This file is remote code: it imports only ``torch``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch.autograd.function import once_differentiable

if TYPE_CHECKING:  # annotations only: contrastive_lddu imports this file
    from .contrastive_lddu import LDDUContrastiveMemory

#: The authors' 1e-12, added to denominators exactly where they add it (as the direct loss does).
_EPS = 1e-12


@dataclass
class _QueueStatistics:
    """
    The cache of the fast loss: for every queue row ``j`` (as an anchor) and every chunk ``c`` of
    queue slots, ``sum_{k in c, k != j} exp(T_jk - shifts[j])``.

    Attributes:
        exp_sums: `(Q, C)` float64.
        row_norms: `(Q,)` float64, ``|q_j|``.
        shifts: `(Q,)` float64 (values exactly representable in float32),
            ``|q_j| * norm_bound / (2 temperature)``.
        norm_bound: `()` float64, ``R``: at least sqrt(2) and every row norm seen since the rebuild.
        chunk_size: slots per chunk (the last chunk may be shorter).
        pointer: ``queue_ptr`` on the host (read once per rebuild, then advanced by our writes).
        key: ``(data_ptr, _version)`` of the buffers etc. when the cache was last brought up to date.
    """

    exp_sums: torch.Tensor
    row_norms: torch.Tensor
    shifts: torch.Tensor
    norm_bound: torch.Tensor
    chunk_size: int
    pointer: int
    key: tuple | None = None

    @property
    def num_chunks(self) -> int:
        return self.exp_sums.shape[1]


@dataclass
class _BatchSums:
    """
    What the fast loss computed about the batch rows and the enqueue reuses (the batch rows are the
    rows enqueued).

    Attributes:
        segments: runs of consecutive batch rows with the same destination chunk, as
            ``(first_row, end_row, chunk, fills_the_whole_chunk)``.
        column_sums: `(s, Q)`, per segment and queue anchor ``j``, ``sum exp(T_bj - c_j)`` over the
            segment's batch rows ``b``.
        row_queue_sums: `(n, C)` float64, per batch row ``b``, ``sum exp(T_bk - c_b)`` over each
            chunk of the current queue.
        row_batch_sums: `(n, s)`, the same over the other batch rows of each segment.
        norms, shifts: `(n,)` float64, ``|f_b|`` and ``c_b``.
    """

    segments: list[tuple[int, int, int, bool]]
    column_sums: torch.Tensor
    row_queue_sums: torch.Tensor
    row_batch_sums: torch.Tensor
    norms: torch.Tensor
    shifts: torch.Tensor


class _LossWithPrecomputedGradient(torch.autograd.Function):
    """Returns ``loss`` and back-propagates ``grad_loss * features_gradient`` into ``features``."""

    @staticmethod
    def forward(ctx, features, loss, features_gradient):
        ctx.save_for_backward(features_gradient)
        return loss.clone()

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_loss):
        (features_gradient,) = ctx.saved_tensors
        return features_gradient * grad_loss, None, None


class LDDUContrastiveCache:
    """
    Statistics of a :class:`~.contrastive_lddu.LDDUContrastiveMemory`'s queue, kept between steps,
    and the exact loss computed from them (derived in docs/performance.md).

    Not an ``nn.Module`` and not state: the memory holds it in a plain attribute, so it is never
    saved nor moved by ``.to()``; every method takes the memory whose buffers it describes, and the
    statistics are rebuilt whenever those buffers were changed from outside.
    """

    #: Queue slots per chunk of the cached statistics.
    chunk_size: int = 64
    #: Bound on the logits held at once when (re)computing cached statistics (float32 elements).
    block_elements: int = 1 << 22

    def __init__(self) -> None:
        self.statistics: _QueueStatistics | None = None
        # Reused memory for the two (n, N) matrices of the loss (not state either).
        self._workspace: torch.Tensor | None = None

    def clear(self) -> None:
        """Forget the statistics (they are rebuilt on next use)."""
        self.statistics = None

    def loss(
        self,
        memory: LDDUContrastiveMemory,
        features: torch.Tensor,
        classes: torch.Tensor,
        keep_sums_for_enqueue: bool,
    ) -> tuple[torch.Tensor, _BatchSums | None]:
        """
        The loss of ``features`` `(n, d)` (classes `(n,)`) against the memory's queue, with the
        gradient of ``features`` attached; and, if ``keep_sums_for_enqueue`` (these very rows are
        enqueued next) and the rows fit the queue, the sums that
        :meth:`update_after_batch_write` reuses.
        """
        keep_sums = keep_sums_for_enqueue and 0 < features.shape[0] < memory.queue.shape[0]
        needs_gradient = torch.is_grad_enabled() and features.requires_grad
        with torch.no_grad():
            loss, features_gradient, batch_sums = self._loss_and_gradient(
                memory, features.detach(), classes.detach(), needs_gradient, keep_sums
            )
        if needs_gradient:
            loss = _LossWithPrecomputedGradient.apply(
                features, loss, features_gradient.to(features.dtype)
            )
        return loss, batch_sums

    # The fast loss
    def _loss_and_gradient(
        self,
        memory: LDDUContrastiveMemory,
        features: torch.Tensor,
        classes: torch.Tensor,
        needs_gradient: bool,
        keep_sums: bool,
    ) -> tuple[torch.Tensor, torch.Tensor | None, _BatchSums | None]:
        """
        Loss value, gradient w.r.t. ``features`` (if asked) and the sums the enqueue reuses.

        Shapes: ``n`` batch rows, ``Q`` queue rows, ``N = n + Q``, ``d`` feature size, ``C`` chunks
        of the cache, ``s`` runs of consecutive batch rows with the same destination chunk.
        """
        statistics = self._current_statistics(memory)
        queue = memory.queue.float()  # [Q, d]
        size, rows = queue.shape[0], features.shape[0]
        total = rows + size
        scale = 0.5 / memory.temperature
        device = queue.device

        batch = features.float()  # [n, d]
        batch_squared_norms = (batch * batch).sum(dim=1).double()  # [n]
        batch_norms = batch_squared_norms.sqrt()
        if rows > 0:
            self._raise_norm_bound(memory, statistics, batch_norms.max())
        batch_shifts = _shifts(batch_norms, statistics.norm_bound, memory.temperature)  # [n]
        # Every contrast row, batch first: features, squared norms, shifts c, classes.
        contrast = torch.cat([batch, queue])  # [N, d]
        squared_norms = torch.cat([batch_squared_norms, statistics.row_norms.square()])  # [N]
        shifts = torch.cat([batch_shifts, statistics.shifts])  # [N] float64
        contrast_classes = torch.cat([classes.float(), memory.queue_classes.float()])  # [N]

        # 1. Positives, through class sums.
        positive_logits, count, batch_mates = _positive_terms(
            contrast, contrast_classes, squared_norms, rows, scale
        )

        # 2. Exponentials of the batch rows' logits against every contrast row, shifted by the
        #    column's c (the column's own anchor: queue anchors, and batch anchors transposed) and
        #    by the row's c (batch anchors).
        logits, column_exp = self._loss_workspace(rows, total, device)  # [n, N] each
        torch.mm(batch * scale, contrast.T, out=logits)
        torch.sub(logits, shifts.float()[None, :], out=column_exp).exp_()
        row_exp = logits.sub_(batch_shifts.float()[:, None]).exp_()  # [n, N], in place
        column_exp.diagonal().zero_()  # k != a
        row_exp.diagonal().zero_()

        # 3. Exponential sums E_a of every anchor (and, if kept, the sums the enqueue reuses).
        exp_sum, batch_sums = _exponential_sums(
            row_exp, column_exp, statistics, batch_norms, batch_shifts, keep_sums
        )

        # 4. The loss, every anchor alike (docs/performance.md).
        terms, exp_weight = _anchor_terms(
            exp_sum, positive_logits, count, shifts, squared_norms * scale
        )
        loss = (-terms.sum() / total).float()

        # 5. The gradient w.r.t. the batch rows.
        features_gradient = None
        if needs_gradient:
            features_gradient = _features_gradient(
                row_exp, column_exp, exp_weight, count, contrast, batch, batch_mates, scale
            )
        return loss, features_gradient, batch_sums

    def _loss_workspace(
        self, rows: int, columns: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Two float32 `(rows, columns)` matrices in memory kept from one step to the next. Above
        32 MB (the paper configuration's are 43 MB) glibc serves every allocation with a fresh
        mmap, whose page faults cost more than the exponentials written into it; reusing the
        memory avoids them. Grown on demand, never saved.
        """
        size = rows * columns
        workspace = self._workspace
        if (
            workspace is None
            or workspace.numel() < 2 * size
            or workspace.device != device
            or (workspace.is_inference() and not torch.is_inference_mode_enabled())
        ):
            workspace = self._workspace = torch.empty(2 * size, device=device)
        return workspace[:size].view(rows, columns), workspace[size : 2 * size].view(rows, columns)

    # Cache updates after queue writes
    def update_after_batch_write(
        self, memory: LDDUContrastiveMemory, slots: torch.Tensor, batch_sums: _BatchSums
    ) -> None:
        """The memory just wrote the rows of :meth:`loss` (fewer than the queue) at ``slots``:
        update the cache from the loss's own sums."""
        statistics = self.statistics
        exp_sums = statistics.exp_sums
        device = slots.device
        segments = batch_sums.segments
        whole = [index for index, segment in enumerate(segments) if segment[3]]
        partial_chunks = sorted({segment[2] for segment in segments if not segment[3]})

        if whole:
            whole_chunks = torch.tensor([segments[i][2] for i in whole], device=device)
            whole_index = torch.tensor(whole, device=device)
            # a) Every anchor: the chunks now filled with new rows get the new rows' contributions.
            new_columns = batch_sums.column_sums.index_select(0, whole_index).T.double()
            exp_sums.index_copy_(1, whole_chunks, new_columns)
            # b) The new rows as anchors, over those chunks: the other batch rows.
            new_row_parts = batch_sums.row_batch_sums.index_select(1, whole_index).double()
            batch_sums.row_queue_sums.index_copy_(1, whole_chunks, new_row_parts)
        # b) The new rows as anchors, over the chunks that keep their rows: their rows of the step.
        exp_sums.index_copy_(0, slots, batch_sums.row_queue_sums)
        statistics.row_norms.index_copy_(0, slots, batch_sums.norms)
        statistics.shifts.index_copy_(0, slots, batch_sums.shifts)
        statistics.pointer = (statistics.pointer + slots.shape[0]) % exp_sums.shape[0]
        # c) Chunks that received new rows but keep some old ones: recompute them for everyone.
        if partial_chunks:
            chunks = torch.tensor(partial_chunks, device=device)
            self._recompute_chunks_for_all_anchors(memory, statistics, chunks)
        statistics.key = self._statistics_key(memory)

    def update_after_write(
        self, memory: LDDUContrastiveMemory, slots: torch.Tensor, was_current: bool
    ) -> None:
        """
        The memory just wrote rows of any origin at ``slots``: bring the cache up to date if it was
        current before the write (``was_current``) and the queue was not replaced whole; otherwise
        drop it (rebuilt on next use).
        """
        size = memory.queue.shape[0]
        if not was_current or slots.shape[0] >= size:
            self.statistics = None
            return
        statistics = self.statistics
        statistics.pointer = (statistics.pointer + slots.shape[0]) % size
        queue = memory.queue.float()
        chunk, num_chunks = statistics.chunk_size, statistics.num_chunks
        norms = torch.linalg.vector_norm(queue.index_select(0, slots), dim=1).double()
        self._raise_norm_bound(memory, statistics, norms.max())
        statistics.row_norms.index_copy_(0, slots, norms)
        statistics.shifts.index_copy_(
            0, slots, _shifts(norms, statistics.norm_bound, memory.temperature)
        )
        # The new rows as anchors, over every chunk.
        all_chunks = torch.arange(num_chunks, device=queue.device)
        for block in self._anchor_blocks(slots.shape[0], all_chunks.shape[0]):
            block_slots = slots[block]
            sums = self._chunk_sums(memory, block_slots, statistics.shifts[block_slots], all_chunks)
            statistics.exp_sums.index_copy_(0, block_slots, sums)
        # Every anchor, over the chunks that received rows.
        destination_chunk = torch.div(slots, chunk, rounding_mode="floor")
        span = min(num_chunks, -(-slots.shape[0] // chunk) + 2)
        touched = (destination_chunk[:1] + torch.arange(span, device=queue.device)) % num_chunks
        receives_rows = torch.zeros(num_chunks, dtype=torch.bool, device=queue.device)
        receives_rows[destination_chunk] = True
        self._recompute_chunks_for_all_anchors(memory, statistics, touched, receives_rows[touched])
        statistics.key = self._statistics_key(memory)

    def _recompute_chunks_for_all_anchors(
        self,
        memory: LDDUContrastiveMemory,
        statistics: _QueueStatistics,
        chunks: torch.Tensor,
        selected: torch.Tensor | None = None,
    ) -> None:
        """Recompute the cached sums of every anchor over ``chunks`` (those with ``selected``)."""
        size = memory.queue.shape[0]
        for block in self._anchor_blocks(size, chunks.shape[0]):
            anchor_slots = torch.arange(block.start, block.stop, device=memory.queue.device)
            sums = self._chunk_sums(memory, anchor_slots, statistics.shifts[block], chunks)
            cached = statistics.exp_sums[block]
            if selected is not None:
                sums = torch.where(selected[None, :], sums, cached.index_select(1, chunks))
            cached.index_copy_(1, chunks, sums)

    def _anchor_blocks(self, anchors: int, chunks: int) -> list[slice]:
        """Slices of anchors such that a block's logits hold at most ``block_elements`` elements."""
        columns = chunks * self.chunk_size
        step = max(1, self.block_elements // max(1, columns))
        return [slice(start, min(anchors, start + step)) for start in range(0, anchors, step)]

    def _chunk_sums(
        self,
        memory: LDDUContrastiveMemory,
        anchor_slots: torch.Tensor,
        anchor_shifts: torch.Tensor,
        chunks: torch.Tensor,
    ) -> torch.Tensor:
        """
        ``sum_{k in chunk, k != j} exp(T_jk - shift_j)`` for the queue rows ``j`` at
        ``anchor_slots`` `(a,)` (shifts `(a,)` float64) and the chunks ``chunks`` `(g,)` of the
        current queue. Returns `(a, g)` float64.
        """
        queue = memory.queue.float()
        size = queue.shape[0]
        chunk = self.chunk_size
        column_slots = (chunks[:, None] * chunk + torch.arange(chunk, device=queue.device)).view(-1)
        excluded = (anchor_slots[:, None] == column_slots[None, :]) | (column_slots >= size)[
            None, :
        ]
        columns = queue.index_select(0, column_slots.clamp(max=size - 1))  # [g * chunk, d]
        anchors = queue.index_select(0, anchor_slots) * (0.5 / memory.temperature)
        exp = (anchors @ columns.T).sub_(anchor_shifts.float()[:, None]).exp_()  # [a, g * chunk]
        exp.masked_fill_(excluded, 0.0)
        return exp.view(anchor_slots.shape[0], chunks.shape[0], chunk).sum(dim=-1).double()

    # Cache validity
    def _statistics_key(self, memory: LDDUContrastiveMemory) -> tuple | None:
        buffers = (memory.queue, memory.queue_classes, memory.queue_ptr)
        try:
            versions = tuple((buffer.data_ptr(), buffer._version) for buffer in buffers)
        except RuntimeError:  # inference tensors have no version counter: never trust a cache
            return None
        shape, temperature = tuple(memory.queue.shape), float(memory.temperature)
        return versions, shape, memory.queue.device, temperature, self.chunk_size

    def is_current(self, memory: LDDUContrastiveMemory) -> bool:
        """Whether the statistics describe the memory's buffers as they are now."""
        statistics = self.statistics
        if statistics is None:
            return False
        key = self._statistics_key(memory)
        return key is not None and statistics.key == key

    def _current_statistics(self, memory: LDDUContrastiveMemory) -> _QueueStatistics:
        """The cache, rebuilt if the buffers changed since it was last updated."""
        if not self.is_current(memory):
            self.statistics = self.build(memory)
        statistics = self.statistics
        if not torch.is_inference_mode_enabled():
            # Parts built or replaced under inference_mode (an evaluation can raise the norm
            # bound, which replaces the shifts): clone, so that training-mode updates can write.
            for name in ("exp_sums", "row_norms", "shifts", "norm_bound"):
                value = getattr(statistics, name)
                if value.is_inference():
                    setattr(statistics, name, value.clone())
        return statistics

    def build(self, memory: LDDUContrastiveMemory) -> _QueueStatistics:
        """The statistics of the memory's queue from scratch: one pass over the queue, a block of
        anchors at a time (never a Q x Q matrix)."""
        queue = memory.queue.float()
        size, device = queue.shape[0], queue.device
        chunk = self.chunk_size
        num_chunks = -(-size // chunk)
        row_norms = torch.linalg.vector_norm(queue, dim=1).double()
        norm_bound = torch.clamp(row_norms.max(), min=math.sqrt(2.0))
        statistics = _QueueStatistics(
            exp_sums=torch.zeros(size, num_chunks, dtype=torch.float64, device=device),
            row_norms=row_norms,
            shifts=_shifts(row_norms, norm_bound, memory.temperature),
            norm_bound=norm_bound,
            chunk_size=chunk,
            pointer=int(memory.queue_ptr),
        )
        all_chunks = torch.arange(num_chunks, device=device)
        self._recompute_chunks_for_all_anchors(memory, statistics, all_chunks)
        statistics.key = self._statistics_key(memory)
        return statistics

    def _raise_norm_bound(
        self, memory: LDDUContrastiveMemory, statistics: _QueueStatistics, norm: torch.Tensor
    ) -> None:
        """Make ``R`` cover a row of norm ``norm``: new shifts, cached exponential sums rescaled
        (a no-op when ``norm <= R``; device ops only, no sync, except on the CPU where reading
        ``norm`` is free and skips the rescale)."""
        if norm.device.type == "cpu" and not bool(norm > statistics.norm_bound):
            return
        norm_bound = torch.maximum(statistics.norm_bound, norm.double())
        shifts = _shifts(statistics.row_norms, norm_bound, memory.temperature)
        statistics.exp_sums.mul_(torch.exp(statistics.shifts - shifts)[:, None])
        statistics.shifts, statistics.norm_bound = shifts, norm_bound


# The steps of the fast loss
def _shifts(norms: torch.Tensor, norm_bound: torch.Tensor, temperature: float) -> torch.Tensor:
    """The shifts ``c = |f| R / (2 temperature)`` of rows of norm ``norms`` (float64), rounded
    to float32 precision (kept as float64), so that the float32 exponentials and the float64
    sums use the same shift."""
    return (norms * norm_bound * (0.5 / temperature)).float().double()


def _positive_terms(
    contrast: torch.Tensor,
    contrast_classes: torch.Tensor,
    squared_norms: torch.Tensor,
    rows: int,
    scale: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    ``sum_k P_ak T_ak = (<f_a, S_class(a)> - |f_a|^2) * scale`` `(N,)` float64 and ``cnt_a`` `(N,)`
    float64 for every contrast row ``a``, and ``S_class(b)`` `(n, d)` of the first ``rows`` (batch)
    rows, for the gradient. Equal class values get equal ids; class-mates share their count.
    """
    total, device = contrast.shape[0], contrast.device
    class_ids = torch.searchsorted(torch.sort(contrast_classes).values, contrast_classes)
    class_sizes = torch.zeros(total, dtype=torch.float64, device=device)
    # index_add_ sums in a fixed order on the CPU (index_put_ with accumulate does not), so
    # that runs repeat bit for bit.
    class_sizes.index_add_(0, class_ids, torch.ones_like(class_sizes))
    class_sums = torch.zeros_like(contrast).index_add_(0, class_ids, contrast)
    mates = class_sums.index_select(0, class_ids)  # [N, d], S_class(a) per row
    batch_mates = mates[:rows].clone()  # [n, d], kept for the gradient
    count = class_sizes.index_select(0, class_ids) - 1.0  # [N]
    positive_logits = mates.mul_(contrast).sum(dim=1).double()
    positive_logits = (positive_logits - squared_norms) * scale  # [N]
    return positive_logits, count, batch_mates


def _exponential_sums(
    row_exp: torch.Tensor,
    column_exp: torch.Tensor,
    statistics: _QueueStatistics,
    batch_norms: torch.Tensor,
    batch_shifts: torch.Tensor,
    keep_sums: bool,
) -> tuple[torch.Tensor, _BatchSums | None]:
    """
    ``E_a`` `(N,)` float64 of every anchor: batch anchors from their rows of ``row_exp`` `(n, N)`;
    queue anchors from the cache plus their column of ``column_exp`` `(n, N)`. If ``keep_sums``
    (the rows are enqueued next), keep them by chunk: per batch anchor by chunk of the queue and by
    destination chunk of the batch rows, per queue anchor by destination chunk of the batch rows.
    """
    rows, size = row_exp.shape[0], statistics.exp_sums.shape[0]
    batch_sums = None
    if keep_sums:
        segments = _destination_segments(statistics.pointer, rows, size, statistics.chunk_size)
        row_queue_sums = _sum_over_chunks(row_exp[:, rows:], statistics.chunk_size)  # [n, C]
        row_batch_sums = _sum_over_segments(row_exp[:, :rows], segments, dim=1)  # [n, s]
        column_sums = _sum_over_segments(column_exp[:, rows:], segments, dim=0)  # [s, Q]
        batch_sums = _BatchSums(
            segments=segments,
            column_sums=column_sums,
            row_queue_sums=row_queue_sums,
            row_batch_sums=row_batch_sums,
            norms=batch_norms,
            shifts=batch_shifts,
        )
        batch_exp_sum = row_queue_sums.sum(dim=1) + row_batch_sums.sum(dim=1).double()
        column_exp_sum = column_sums.sum(dim=0).double()
    else:
        batch_exp_sum = row_exp.sum(dim=1).double()
        column_exp_sum = column_exp[:, rows:].sum(dim=0).double()
    exp_sum = torch.cat([batch_exp_sum, statistics.exp_sums.sum(dim=1) + column_exp_sum])
    return exp_sum, batch_sums


def _anchor_terms(
    exp_sum: torch.Tensor,
    positive_logits: torch.Tensor,
    count: torch.Tensor,
    shifts: torch.Tensor,
    diagonal_logits: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Per anchor (all float64, shape `(a,)`): its term ``m_a`` of the loss and the weight of its
    shifted exponentials in the gradient, from ``E_a = sum_{k != a} exp(T_ak - c_a)``
    (``exp_sum``), ``sum_k P_ak T_ak``, ``cnt_a``, ``c_a`` and ``T_aa`` (standing in for the row
    maximum, see docs/performance.md).
    """
    denominator = exp_sum + _EPS * torch.exp(diagonal_logits - shifts)  # exp(-c)(D + eps)e^M
    log_denominator = shifts + torch.log(denominator)  # = M + log(D + eps)
    terms = (positive_logits - count * log_denominator) / (count + _EPS)
    terms = torch.where(count > 0, terms, 0.0)  # no positives: exactly 0, as in the reference
    exp_weight = count / (count + _EPS) / denominator
    return terms, exp_weight


def _features_gradient(
    row_exp: torch.Tensor,
    column_exp: torch.Tensor,
    exp_weight: torch.Tensor,
    count: torch.Tensor,
    contrast: torch.Tensor,
    batch: torch.Tensor,
    batch_mates: torch.Tensor,
    scale: float,
) -> torch.Tensor:
    """
    The gradient `(n, d)` w.r.t. the batch rows: ``dL/dT_ak = -g_ak / N``, ``dT_ak/df_a = scale *
    f_k``, ``g_ak = P_ak / (cnt_a + eps) - exp_weight_a * exp(T_ak - c_a)``; both ``(b, k)`` and
    ``(k, b)``. Overwrites ``row_exp`` and ``batch_mates``.
    """
    rows, total = row_exp.shape
    weights = row_exp.mul_(exp_weight[:rows].float()[:, None])
    weights.addcmul_(column_exp, exp_weight.float()[None, :])  # [n, N]
    features_gradient = weights @ contrast  # [n, d]
    # Positive part: class-mates k != b weigh 1/(cnt_b + eps) + 1/(cnt_k + eps), equal.
    positive_weight = 2.0 * _positive_weight(count[:rows])  # [n]
    features_gradient.sub_(batch_mates.sub_(batch).mul_(positive_weight[:, None]))
    features_gradient.mul_(scale / total)
    return features_gradient


def _positive_weight(count: torch.Tensor) -> torch.Tensor:
    """``1 / (cnt + eps)`` as float32, 0 for anchors without positives (they weigh nothing)."""
    return torch.where(count > 0, 1.0 / (count + _EPS), 0.0).float()


def _sum_over_chunks(matrix: torch.Tensor, chunk: int) -> torch.Tensor:
    """`(a, Q)` -> `(a, ceil(Q / chunk))` float64: sums over consecutive groups of ``chunk`` columns."""
    rows, size = matrix.shape
    full = size // chunk
    sums = matrix[:, : full * chunk].reshape(rows, full, chunk).sum(dim=-1)
    if size % chunk:
        sums = torch.cat([sums, matrix[:, full * chunk :].sum(dim=-1, keepdim=True)], dim=1)
    return sums.double()


def _sum_over_segments(
    matrix: torch.Tensor, segments: list[tuple[int, int, int, bool]], dim: int
) -> torch.Tensor:
    """Sums of ``matrix`` over the index runs ``segments`` (consecutive, in order) along ``dim``
    (0 or 1), one reduction per run of equally long segments. Returns `(s, cols)` or `(rows, s)`."""
    parts, index = [], 0
    while index < len(segments):
        first, end = segments[index][:2]
        length, stop = end - first, index + 1
        while stop < len(segments) and segments[stop][1] - segments[stop][0] == length:
            stop += 1
        block = matrix.narrow(dim, first, segments[stop - 1][1] - first)
        if dim == 0:
            parts.append(block.reshape(stop - index, length, block.shape[1]).sum(dim=1))
        else:
            parts.append(block.reshape(block.shape[0], stop - index, length).sum(dim=2))
        index = stop
    return torch.cat(parts, dim=dim)


def _destination_segments(
    pointer: int, rows: int, size: int, chunk: int
) -> list[tuple[int, int, int, bool]]:
    """
    Where ``rows < size`` rows written from slot ``pointer`` land (FIFO, wrapping around), as runs
    ``(first_row, end_row, chunk, fills_the_whole_chunk)`` of consecutive rows with the same chunk.
    """
    segments = []
    row, slot = 0, pointer
    while row < rows:
        chunk_index = slot // chunk
        chunk_start, chunk_end = chunk_index * chunk, min(size, (chunk_index + 1) * chunk)
        count = min(rows - row, chunk_end - slot)
        whole = slot == chunk_start and slot + count == chunk_end
        segments.append((row, row + count, chunk_index, whole))
        row, slot = row + count, (slot + count) % size
    return segments


__all__ = ["LDDUContrastiveCache"]
