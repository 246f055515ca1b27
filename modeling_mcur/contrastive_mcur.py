"""MCB-CL: MCUR's Modality Combination-Based and Category-Based Contrastive Learning.

A supervised contrastive (SupCon) loss whose anchor/positive structure is a positive-weight matrix
``W`` over the ``N`` view embeddings of a batch (``N = batch * num_views``):

* logits ``l_ik = scale * <u_i, u_k> / temperature`` (``u`` unit-norm, ``scale`` 1);
* ``log p_ik = l_ik - log sum_{k' != i} exp(l_ik')`` (the anchor itself is never a contrast);
* per anchor ``L_i = -sum_{k != i} W_ik log p_ik / sum_{k != i} W_ik``;
* the loss is the mean of ``L_i`` over the anchors that have a positive (``sum_k W_ik > 0``).

Since ``log p_ik <= 0`` and ``W >= 0``, the loss is never negative. Two matrices (the
specification's two terms):

* category ``W_cat``: the Jaccard index of the two label sets (``1[y_i = y_k]`` for one-hot rows,
  the single-label case; 0 for an anchor with no label at all, which is then skipped);
* combination-and-category ``W_comb = W_cat * 1[c_i = c_k]``, ``c`` the available-modality
  combination of each view (the condition of the paper's abstract).

``L_MCB = comb_weight * L_comb + (1 - comb_weight) * L_cat``.

Compared with LDDU's :func:`supervised_contrastive_loss_reference` (``modeling_lddu/
contrastive_lddu.py``) with ``W_ik = 1[class_i == class_k]`` and an empty queue, two differences are
parameters of :func:`weighted_supervised_contrastive_loss`: LDDU halves the similarity of its
norm-sqrt(2) features (``similarity_scale=0.5``) and keeps anchors without positives in the mean
as zeros (``skip_anchors_without_positives=False``); it also adds ``1e-12`` inside its logarithm
and its positive count (``eps=1e-12``). ``tests/test_mcur.py`` checks the equality.

No queue, and no gathering across processes: under DDP each process contrasts its own
``batch * num_views`` views (the loss is then averaged over processes as any loss is).

This file is remote code: it imports only ``torch``.
"""

from __future__ import annotations

import torch

#: Floor of the softmax denominators (a guard; see :func:`weighted_supervised_contrastive_loss`).
_MIN_DENOMINATOR = 1e-30


def jaccard_weights(labels: torch.Tensor) -> torch.Tensor:
    """
    ``W_ik = |y_i & y_k| / |y_i | y_k|`` for multi-hot rows (``1[y_i = y_k]`` for one-hot rows);
    0 where both rows are empty.

    Args:
        labels: `(n, num_labels)` 0/1 rows.

    Returns: `(n, n)` float32.
    """
    labels = (labels > 0.5).float()
    intersection = labels @ labels.T
    counts = labels.sum(dim=1)
    union = counts[:, None] + counts[None, :] - intersection
    return torch.where(union > 0, intersection / union.clamp(min=1.0), 0.0)


def combination_ids(modality_mask: torch.Tensor) -> torch.Tensor:
    """``c_i = sum_m modality_mask[i, m] * 2**m`` (text = 1, audio = 2, visual = 4); int64 `(n,)`."""
    powers = 2 ** torch.arange(modality_mask.shape[-1], device=modality_mask.device)
    return (modality_mask.long() * powers).sum(dim=-1)


def weighted_supervised_contrastive_loss(
    embeddings: torch.Tensor,
    positive_weights: torch.Tensor,
    temperature: float,
    similarity_scale: float = 1.0,
    skip_anchors_without_positives: bool = True,
    eps: float = 0.0,
) -> torch.Tensor:
    """
    SupCon with a positive-weight matrix (see the module docstring), in float32.

    Args:
        embeddings: `(n, d)` features (unit-norm for MCUR's ``u``).
        positive_weights: `(n, n)` non-negative weights; the diagonal is ignored.
        temperature: Softmax temperature.
        similarity_scale: Factor on the dot products (LDDU: 0.5, for its norm-sqrt(2) features).
        skip_anchors_without_positives: Average over the anchors with a positive only (MCUR), or
            over all ``n`` anchors, those without positives counting 0 (LDDU).
        eps: Added inside the log-denominator and to each anchor's weight sum (LDDU: 1e-12).

    Returns: a scalar; 0 (with a gradient path) when no anchor has a positive, in particular for
    fewer than two rows (a batch of one sample with ``num_views = 1``). Value and gradients are
    finite for any finite unit-norm input and any temperature.
    """
    features = embeddings.float()
    size = features.shape[0]
    if size < 2:
        # One view has no contrast and no positive: a zero that keeps the graph (its gradient is
        # exactly 0, never 0 * inf).
        return features[:0].sum()
    logits = similarity_scale * (features @ features.T) / temperature  # [n, n]
    not_self = ~torch.eye(size, dtype=torch.bool, device=features.device)
    # Shifting a row by a constant changes no log-probability (eps aside). Without eps the shift is
    # the row's largest contrast (k != i): its term is exp(0) = 1, so the denominator is >= 1 and
    # no term of a row can underflow all at once. LDDU's convention (eps > 0) shifts by the row's
    # maximum, diagonal included, as its reference does: its eps is relative to that shift.
    contrasts = logits.masked_fill(~not_self, float("-inf"))
    shift = (logits if eps > 0 else contrasts).max(dim=1, keepdim=True).values.detach()
    logits = logits - shift
    weights = positive_weights.float() * not_self
    # exp(-inf) = 0 keeps each anchor out of its own denominator (multiplying by a 0/1 mask would
    # turn an overflowing diagonal exp into inf * 0 = NaN).
    denominator = torch.exp(contrasts - shift).sum(dim=1, keepdim=True)  # [n, 1]
    # A guard like LDDU's eps: the log never sees 0 (with the shift above it cannot anyway).
    log_prob = logits - torch.log((denominator + eps).clamp(min=_MIN_DENOMINATOR))  # [n, n]
    weight_sums = weights.sum(dim=1)  # [n]
    has_positive = weight_sums > 0
    # Anchors without positives divide 0 by 1: no 0 / 0 in the value or in its gradient.
    per_anchor = -(weights * log_prob).sum(dim=1) / torch.where(
        has_positive, weight_sums + eps, 1.0
    )
    if not skip_anchors_without_positives:
        return per_anchor.mean()
    count = has_positive.sum().clamp(min=1)
    return torch.where(has_positive, per_anchor, 0.0).sum() / count


def mcb_contrastive_loss(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    view_modality_mask: torch.Tensor,
    temperature: float,
    comb_weight: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """
    ``L_MCB`` over the view embeddings of a batch.

    Args:
        embeddings: `(n, proj_dim)` unit-norm ``u`` of every view.
        labels: `(n, num_labels)` 0/1 label rows of each view's sample.
        view_modality_mask: `(n, num_modalities)` bool, the modalities each view used.

    Returns: ``(L_MCB, L_cat, L_comb)``.
    """
    category = jaccard_weights(labels)
    ids = combination_ids(view_modality_mask)
    combination = category * (ids[:, None] == ids[None, :])
    category_loss = weighted_supervised_contrastive_loss(embeddings, category, temperature)
    combination_loss = weighted_supervised_contrastive_loss(embeddings, combination, temperature)
    loss = comb_weight * combination_loss + (1.0 - comb_weight) * category_loss
    return loss, category_loss, combination_loss


__all__ = [
    "combination_ids",
    "jaccard_weights",
    "mcb_contrastive_loss",
    "weighted_supervised_contrastive_loss",
]
