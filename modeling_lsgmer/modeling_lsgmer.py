"""LSGMER: label signal enhancement and attribution-prediction consistency for multimodal emotion
recognition.

Shao, Yu, Wang, 2025, "Leveraging Label Potential for Enhanced Multimodal Emotion Recognition"
(arXiv 2504.05158). Implemented from a description of the paper's equations, not from the authors'
code (none is public); every gap is a named design choice (DC) of ``LsgmerConfig``.

The forward pass, per modality ``m`` in ``config.modalities`` (default text and audio):

1. **Input projection** - ``H_m0 = LayerNorm(Linear(x_m))``.
2. **Unimodal encoder** - learned positions and post-LN transformer layers (LDDU's blocks, copied):
   ``H_m1``.
3. **Label attention (E1)** - the label embeddings ``L_s`` query ``H_m1`` with ``lse_heads`` heads:
   ``H_m2`` ``[batch, labels, hidden]``.
4. **Gate (E2)** - ``Ĥ_m = sigmoid(H_m2) * pool(H_m0) + H_m2`` (pool: masked mean over frames).
5. **Fusion (DC-A4)** - per label, ``GELU(Linear(cat_m Ĥ_m))``, then attention pooling over the
   labels: the fused embedding ``H`` ``[batch, hidden]``.
6. **Classifier** - ``logits = Linear(Dropout(H))``; softmax (single-label) or sigmoid scores.
7. **Attribution (E4-E5)** - ``q = softmax(cos(H, L_s) / tau)`` (single-label) or its per-label
   sigmoid (multi-label).

Losses (with ``labels``): the task loss plus ``apc_weight`` times the Jensen-Shannon divergence
between the prediction ``p`` and the attribution ``q`` (APC, E6). In training mode the label
embeddings then move toward this batch's class means of ``H`` (E3).

This file is remote code: it imports only ``torch``, ``transformers`` and its sibling files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import AutoConfig, AutoModel, PreTrainedModel
from transformers import initialization as init
from transformers.utils import ModelOutput, logging

from .configuration_lsgmer import MODALITIES, LsgmerConfig

logger = logging.get_logger(__name__)


@dataclass
class LsgmerModelOutput(ModelOutput):
    """
    Output of :class:`LsgmerModel`.

    Args:
        fused_embedding (`torch.FloatTensor` of shape `(batch, hidden_size)`):
            ``H``: the label-fused features pooled over the labels (attribution compares it with
            the label embeddings).
        label_features (`torch.FloatTensor` of shape `(batch, num_labels, hidden_size)`):
            The fused per-label features before the pooling over labels.
        label_attentions (`dict[str, torch.FloatTensor]`):
            Per modality read, the label attention map: `(batch, lse_heads, num_labels, frames)`
            with ``lse_query="label"``, `(batch, lse_heads, frames, num_labels)` with
            ``"sequence"``. All zero for an absent (sample, modality).
        label_pooling_weights (`torch.FloatTensor` of shape `(batch, num_labels)`):
            Weights of the attention pooling over the labels.
        modality_presence (`torch.BoolTensor` of shape `(batch, len(config.modalities))`):
            Whether each sample has each modality the model reads, in ``config.modalities`` order.
    """

    fused_embedding: torch.FloatTensor | None = None
    label_features: torch.FloatTensor | None = None
    label_attentions: dict[str, torch.FloatTensor] | None = None
    label_pooling_weights: torch.FloatTensor | None = None
    modality_presence: torch.BoolTensor | None = None


@dataclass
class LsgmerEmotionRecognitionOutput(ModelOutput):
    """
    Output of :class:`LsgmerForEmotionRecognition`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` is given):
            ``task_loss + apc_weight * apc_loss`` (exactly ``task_loss`` when ``apc_weight`` is 0).
        scores (`torch.FloatTensor` of shape `(batch, num_labels)`):
            The predictive distribution ``p``: softmax of the logits (single-label) or their
            sigmoid (multi-label).
        logits (`torch.FloatTensor` of shape `(batch, num_labels)`): Classifier logits.
        attribution_probs (`torch.FloatTensor` of shape `(batch, num_labels)`):
            ``q``: softmax (single-label) or sigmoid (multi-label) of ``cos(H, L_s) / tau``.
        consistency_uncertainty (`torch.FloatTensor` of shape `(batch, num_labels)`):
            Jensen-Shannon disagreement in bits (0 = agree, 1 = disjoint) between ``p`` and ``q``:
            per label for multi-label (the Bernoulli pair), the sample's categorical JS repeated
            over the labels for single-label. Higher = less sure.
        sample_uncertainty (`torch.FloatTensor` of shape `(batch,)`):
            The same disagreement per sample: the categorical JS (single-label) or the mean over
            labels of the Bernoulli JS (multi-label), in bits; the APC loss is its batch mean
            (in nats).
        label_attentions (`dict[str, torch.FloatTensor]`): As in :class:`LsgmerModelOutput`.
        fused_embedding (`torch.FloatTensor` of shape `(batch, hidden_size)`): ``H``.
        task_loss / apc_loss (`torch.FloatTensor` of shape `()`): The unweighted loss terms (only
            with `labels`; ``apc_loss`` in nats).
    """

    loss: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    attribution_probs: torch.FloatTensor | None = None
    consistency_uncertainty: torch.FloatTensor | None = None
    sample_uncertainty: torch.FloatTensor | None = None
    label_attentions: dict[str, torch.FloatTensor] | None = None
    fused_embedding: torch.FloatTensor | None = None
    task_loss: torch.FloatTensor | None = None
    apc_loss: torch.FloatTensor | None = None


# Copied from modeling_lddu.modeling_lddu.lddu_dropout with LDDU->Lsgmer, lddu->lsgmer
def lsgmer_dropout(hidden: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
    """
    Inverted dropout: zero each element with ``probability``, scale the others by
    ``1 / (1 - probability)`` (the distribution of ``F.dropout``). On the CPU, torch's dropout draws
    its mask with ``bernoulli_`` and keeps it as float32 for backward; here the mask is drawn as
    ``rand >= probability`` and kept as a bool (4x less memory). Other devices use
    ``F.dropout``.
    """
    if not training or probability == 0.0:
        return hidden
    if hidden.device.type != "cpu" or probability == 1.0:
        return F.dropout(hidden, probability, training)
    keep = torch.rand_like(hidden) >= probability
    return (hidden * keep).mul_(1.0 / (1.0 - probability))


# Copied from modeling_lddu.modeling_lddu.LDDUDropout with LDDU->Lsgmer, lddu->lsgmer
class LsgmerDropout(nn.Dropout):
    """``nn.Dropout`` computed with :func:`lsgmer_dropout`."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return lsgmer_dropout(hidden, self.p, self.training)


# 1.-2. Input projection and unimodal encoder
class LsgmerInputProjection(nn.Module):
    """``H_m0 = LayerNorm(Linear(x_m))``: one modality's frames projected to the model width."""

    def __init__(self, config: LsgmerConfig, feature_dim: int):
        super().__init__()
        self.feature_projection = nn.Linear(feature_dim, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # features: [batch, length, feature_dim] -> [batch, length, hidden]
        features = features.to(self.feature_projection.weight.dtype)
        return self.layer_norm(self.feature_projection(features))


# Copied from modeling_lddu.modeling_lddu.LDDUSelfAttention with LDDU->Lsgmer, lddu->lsgmer
class LsgmerSelfAttention(nn.Module):
    """
    Multi-head self-attention with the BERT parameterisation. ``config._attn_implementation``
    chooses the kernel: ``"sdpa"`` (the default: PyTorch's fused scaled dot-product attention) or
    ``"eager"`` (softmax of the explicit score matrix); both compute the same attention.
    """

    def __init__(self, config: LsgmerConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.query = nn.Linear(config.hidden_size, config.hidden_size)
        self.key = nn.Linear(config.hidden_size, config.hidden_size)
        self.value = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_dropout = config.attention_probs_dropout_prob

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        batch, length, width = hidden.shape

        def heads(projection: nn.Linear) -> torch.Tensor:
            # [batch, length, hidden] -> [batch, heads, length, head_dim]
            return (
                projection(hidden)
                .view(batch, length, self.num_heads, self.head_dim)
                .transpose(1, 2)
            )

        query, key, value = heads(self.query), heads(self.key), heads(self.value)
        dropout = self.attention_dropout if self.training else 0.0
        if self.config._attn_implementation == "eager" or (
            dropout > 0.0 and hidden.device.type == "cpu"
        ):
            # Eager, and CPU training with dropout, where SDPA takes its unfused path anyway (this
            # one uses lsgmer_dropout).
            scores = (query * self.head_dim**-0.5) @ key.transpose(-1, -2)  # [b, heads, l, l]
            if attention_mask is not None:  # [batch, 1, 1, length] bool, True = attend
                # + 0 / -inf: the same scores as a masked fill, and a pass-through backward.
                scores.add_(
                    torch.zeros_like(attention_mask, dtype=scores.dtype).masked_fill_(
                        ~attention_mask, float("-inf")
                    )
                )
            probabilities = lsgmer_dropout(scores.softmax(dim=-1), dropout, self.training)
            context = probabilities @ value
        else:
            context = F.scaled_dot_product_attention(
                query,
                key,
                value,
                attn_mask=attention_mask,  # [batch, 1, 1, length] bool, True = attend
                dropout_p=dropout,
            )
        return context.transpose(1, 2).reshape(batch, length, width)


# Copied from modeling_lddu.modeling_lddu.LDDUEncoderLayer with LDDU->Lsgmer, lddu->lsgmer
class LsgmerEncoderLayer(nn.Module):
    """Post-LN transformer layer: attention, residual + LN, feed-forward, residual + LN."""

    def __init__(self, config: LsgmerConfig):
        super().__init__()
        self.attention = LsgmerSelfAttention(config)
        self.attention_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = LsgmerDropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention_output(self.attention(hidden, attention_mask))
        hidden = self.attention_layer_norm(self.dropout(attended) + hidden)
        feed_forward = self.output(F.gelu(self.intermediate(hidden)))
        return self.output_layer_norm(self.dropout(feed_forward) + hidden)


class LsgmerModalityEncoder(nn.Module):
    """
    One modality: the input projection ``H_m0``, then learned positions, dropout and
    ``num_hidden_layers`` transformer layers, ``H_m1``. Returns both, `[batch, length, hidden]`.
    """

    def __init__(self, config: LsgmerConfig, modality: str):
        super().__init__()
        self.modality = modality
        self.input_projection = LsgmerInputProjection(config, config.feature_dim(modality))
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.dropout = LsgmerDropout(config.hidden_dropout_prob)
        self.layers = nn.ModuleList(
            [LsgmerEncoderLayer(config) for _ in range(config.num_hidden_layers)]
        )

    def forward(
        self, features: torch.Tensor, attention_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        projected = self.input_projection(features)  # H_m0
        length = projected.shape[1]
        hidden = self.dropout(projected + self.position_embeddings.weight[:length])
        for layer in self.layers:
            hidden = layer(hidden, attention_mask)
        return projected, hidden  # H_m0, H_m1


# 3. Label signal enhancement: label embeddings (E3) and label attention (E1)
class LsgmerLabelEmbeddings(nn.Module):
    """
    ``L_s`` `[num_labels, hidden]`, read by the label attention (E1) and the attribution (E4).

    * ``label_update="ema_prototype"`` (DC-A3 (i)): one buffer, moved without gradient toward the
      class means of the fused embeddings (:meth:`update_from_batch`); E1 and E4 read it.
    * ``"ema_param"`` (DC-A3 (ii), a mean teacher): ``weight`` is a trained parameter (the
      student, read by E1, where its gradient comes from) and ``ema_weight`` a buffer holding its
      moving average (the teacher, read by E4-E5, the attribution targets of the APC loss), moved
      at each training forward by :meth:`teacher_step`.
    """

    def __init__(self, config: LsgmerConfig):
        super().__init__()
        self.label_update = config.label_update
        self.decay = config.label_ema
        shape = (config.num_labels, config.hidden_size)
        if self.label_update == "ema_param":
            self.weight = nn.Parameter(torch.empty(shape))
            self.register_buffer("ema_weight", torch.empty(shape))
        else:
            self.register_buffer("weight", torch.empty(shape))

    def forward(self) -> torch.Tensor:
        """The label embeddings of E1: the parameter, or a copy of the buffer (so that the in-place
        update after the loss does not touch a tensor autograd saved)."""
        if self.label_update == "ema_param":
            return self.weight
        return self.weight.clone()

    def attribution_embeddings(self) -> torch.Tensor:
        """The label embeddings of E4: the teacher under ``"ema_param"``, else those of E1."""
        if self.label_update == "ema_param":
            return self.ema_weight.clone()
        return self.forward()

    @torch.no_grad()
    def teacher_step(self) -> None:
        """E3 with ``L'`` the current parameter: ``teacher <- a * teacher + (1 - a) * weight``
        (``a = 1`` freezes the teacher). Applied at every training forward (with gradient
        accumulation, as many times per optimiser step as there are micro-batches)."""
        self.ema_weight.mul_(self.decay).add_(
            self.weight.detach().to(self.ema_weight.dtype), alpha=1.0 - self.decay
        )

    @torch.no_grad()
    def update_from_batch(self, fused: torch.Tensor, targets: torch.Tensor) -> None:
        """
        E3 with ``L'`` the class means of the fused embeddings: ``L'_j = sum_i y_ij H_i / sum_i
        y_ij``, ``L_j <- a * L_j + (1 - a) * L'_j`` for the labels present in the batch (the other
        rows are left alone). Class sums and counts are summed over all processes first, so that
        every rank makes the same update.

        Args:
            fused: `(batch, hidden)` fused embeddings ``H``.
            targets: `(batch, num_labels)` non-negative label weights (one-hot or multi-hot).
        """
        targets = targets.to(torch.float32)
        sums = targets.T @ fused.detach().to(torch.float32)  # [labels, hidden]
        counts = targets.sum(dim=0)  # [labels]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            if torch.distributed.get_world_size() > 1:
                totals = torch.cat([sums, counts[:, None]], dim=1)
                torch.distributed.all_reduce(totals)
                sums, counts = totals[:, :-1], totals[:, -1]
        present = counts > 0
        prototypes = sums / counts.clamp(min=1e-12)[:, None]
        updated = self.decay * self.weight.to(torch.float32) + (1.0 - self.decay) * prototypes
        self.weight.copy_(torch.where(present[:, None], updated, self.weight.to(torch.float32)))


class LsgmerLabelAttention(nn.Module):
    """
    E1: multi-head attention (``lse_heads`` heads) between the label embeddings and one modality's
    encoded sequence. ``lse_query="label"``: the labels query the frames (masked keys), giving one
    vector per label; ``"sequence"``: the frames query the labels, one vector per frame.
    """

    def __init__(self, config: LsgmerConfig):
        super().__init__()
        width = config.hidden_size
        self.num_heads = config.lse_heads
        self.head_dim = width // config.lse_heads
        self.query_projection = nn.Linear(width, width)
        self.key_projection = nn.Linear(width, width)
        self.value_projection = nn.Linear(width, width)
        self.output_projection = nn.Linear(width, width)
        self.attention_dropout = config.attention_probs_dropout_prob
        self.dropout = LsgmerDropout(config.hidden_dropout_prob)

    def _heads(self, projected: torch.Tensor) -> torch.Tensor:
        # [batch, length, width] -> [batch, heads, length, head_dim]
        batch, length, _ = projected.shape
        return projected.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)

    def forward(
        self, queries: torch.Tensor, memory: torch.Tensor, key_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Args:
            queries: `(batch, num_queries, hidden)`; memory: `(batch, num_keys, hidden)`, the keys
            and values; key_mask: `(batch, num_keys)` bool, True = attend (each row has a True).

        Returns: the context `(batch, num_queries, hidden)` and the attention weights
        `(batch, heads, num_queries, num_keys)`.
        """
        batch, num_queries, width = queries.shape
        query = self._heads(self.query_projection(queries))
        key = self._heads(self.key_projection(memory))
        value = self._heads(self.value_projection(memory))
        scores = (query * self.head_dim**-0.5) @ key.transpose(-1, -2)  # [b, heads, q, k]
        if key_mask is not None:
            scores = scores.masked_fill(~key_mask[:, None, None, :], float("-inf"))
        weights = scores.softmax(dim=-1)
        attended = lsgmer_dropout(weights, self.attention_dropout, self.training) @ value
        context = attended.transpose(1, 2).reshape(batch, num_queries, width)
        return self.dropout(self.output_projection(context)), weights


# 4. Gate
def gate_label_features(enhanced: torch.Tensor, original: torch.Tensor) -> torch.Tensor:
    """E2: ``sigmoid(enhanced) * original + enhanced`` (the gate from the enhanced features scales
    the original ones; the enhanced ones are added back as a residual)."""
    return torch.sigmoid(enhanced) * original + enhanced


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over frames `(batch, length, d) -> (batch, d)` of the frames with mask True; 0 for a
    row without any."""
    if mask is None:
        return hidden.mean(dim=1)
    weights = mask.to(hidden.dtype)[:, :, None]
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


# 5. Fusion
class LsgmerAttentionPooling(nn.Module):
    """Pools `(batch, labels, hidden)` over the labels with a learned query: softmax over the labels
    of ``<row, query> / sqrt(hidden)``, then the weighted sum. Invariant to the label order."""

    def __init__(self, config: LsgmerConfig):
        super().__init__()
        self.query = nn.Parameter(torch.empty(config.hidden_size))
        self.scale = config.hidden_size**-0.5

    def forward(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        weights = torch.softmax((rows @ self.query) * self.scale, dim=-1)  # [batch, labels]
        return torch.einsum("bc,bcd->bd", weights, rows), weights


class LsgmerLabelFusion(nn.Module):
    """DC-A4: per label, the modalities' gated rows concatenated (``config.modalities`` order),
    ``GELU(Linear(M * hidden -> hidden))``, then attention pooling over the labels."""

    def __init__(self, config: LsgmerConfig):
        super().__init__()
        self.projection = nn.Linear(len(config.modalities) * config.hidden_size, config.hidden_size)
        self.pooling = LsgmerAttentionPooling(config)

    def forward(self, gated: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        label_features = F.gelu(self.projection(torch.cat(gated, dim=-1)))  # [batch, labels, d]
        fused, weights = self.pooling(label_features)  # [batch, d], [batch, labels]
        return fused, label_features, weights


# 6.-7. Prediction and attribution distributions, APC
def distribution_log_probs(logits: torch.Tensor, multi_label: bool) -> torch.Tensor:
    """Log-probabilities in fp32: `(batch, labels)` categorical (log-softmax), or, multi-label,
    `(batch, labels, 2)` Bernoulli pairs ``(log sigmoid(z), log sigmoid(-z))``."""
    logits = logits.float()
    if multi_label:
        return torch.stack([F.logsigmoid(logits), F.logsigmoid(-logits)], dim=-1)
    return torch.log_softmax(logits, dim=-1)


def jensen_shannon(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    """``JS(p, q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, in nats, over the last
    axis; computed from log-probabilities in fp32 (finite gradients also where ``p`` or ``q`` are
    0). Symmetric, 0 iff ``p = q``, at most ``ln 2``."""
    log_p, log_q = log_p.float(), log_q.float()
    log_m = torch.logaddexp(log_p, log_q) - math.log(2.0)
    kl_p = (log_p.exp() * (log_p - log_m)).sum(dim=-1)
    kl_q = (log_q.exp() * (log_q - log_m)).sum(dim=-1)
    return (0.5 * (kl_p + kl_q)).clamp(min=0.0)


# Copied from modeling_lddu.modeling_lddu.LDDUTextBackbone with LDDU->Lsgmer
class LsgmerTextBackbone(nn.Module):
    """
    A pretrained transformers text encoder inside the model (``config.text_backbone_config``): it
    turns the processor's token ids into the text frames, the token states of hidden state
    ``config.text_backbone_layer``, one per position that ``frame_mask`` marks (the processor
    marks the word pieces: not [CLS], [SEP] or padding), moved to the front of the sequence in
    order. A frozen backbone so gives exactly the frames the processor's frozen path computes.
    The layers above ``text_backbone_layer`` are dropped (they would compute states nobody
    reads, and train without a gradient).

    Frozen (``config.freeze_text_backbone``, the default) it runs without gradients and in eval
    mode (no dropout); unfrozen, the top ``config.text_backbone_trainable_layers`` of its kept
    layers train (all of it, embeddings included, when None). Adapters added to it (LoRA) make it
    trainable too: what counts is whether any of its parameters requires a gradient.
    """

    def __init__(self, config):
        super().__init__()
        self.encoder = AutoModel.from_config(AutoConfig.for_model(**config.text_backbone_config))
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # a pooled [CLS] vector is not a frame; never trained
        layers = self.transformer_layers()
        layer = config.text_backbone_layer
        kept = layer if layer >= 0 else len(layers) + 1 + layer
        if not 0 <= kept <= len(layers):
            raise ValueError(
                f"text_backbone_layer {layer} is out of range for an encoder of {len(layers)} "
                f"layers (hidden states 0 to {len(layers)}, or -1 to -{len(layers) + 1})."
            )
        del layers[kept:]
        self.freeze(config)

    def freeze(self, config) -> None:
        """Sets which weights train, from the config (construction, and after loading weights,
        which makes every one trainable)."""
        self.encoder.requires_grad_(not config.freeze_text_backbone)
        count = config.text_backbone_trainable_layers
        if not config.freeze_text_backbone and count is not None:
            layers = self.transformer_layers()
            self.encoder.requires_grad_(False)
            for layer in layers[max(len(layers) - count, 0) :]:
                layer.requires_grad_(True)

    def transformer_layers(self) -> nn.ModuleList:
        """The encoder's stack of transformer layers (its longest `ModuleList`)."""
        stacks = [module for module in self.encoder.modules() if isinstance(module, nn.ModuleList)]
        if not stacks:
            raise ValueError(f"{type(self.encoder).__name__} has no stack of layers.")
        return max(stacks, key=len)

    @property
    def trainable(self) -> bool:
        return any(parameter.requires_grad for parameter in self.encoder.parameters())

    def train(self, mode: bool = True):
        super().train(mode)
        if not self.trainable:
            self.encoder.eval()  # a frozen encoder computes fixed features: no dropout
        return self

    @torch.no_grad()
    def load_pretrained(self, encoder: nn.Module) -> None:
        """Copies a loaded pretrained encoder's weights in; what this backbone does not hold (a
        pooler, the layers above ``text_backbone_layer``) is left out."""
        own = self.encoder.state_dict()
        weights = {name: value for name, value in encoder.state_dict().items() if name in own}
        missing = sorted(set(own) - set(weights))
        if missing:
            raise ValueError(
                f"The pretrained text encoder does not match text_backbone_config: it lacks "
                f"{missing[:5]}."
            )
        self.encoder.load_state_dict(weights)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, frame_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """`(frames [batch, frames, hidden], mask [batch, frames])` of the marked positions."""
        if not bool(attention_mask[:, 0].all()):
            # Left padding (a batch padded on that side): the tokens are moved to the front, as
            # the processor gives them, so that their positions are those it encodes.
            order = torch.sort((attention_mask == 0).to(torch.uint8), dim=1, stable=True).indices
            input_ids, attention_mask, frame_mask = (
                tensor.gather(1, order) for tensor in (input_ids, attention_mask, frame_mask)
            )
        with torch.set_grad_enabled(torch.is_grad_enabled() and self.trainable):
            output = self.encoder(
                input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
            )
            states = output.hidden_states[-1]  # hidden state `text_backbone_layer`
        keep = frame_mask.bool() & attention_mask.bool()
        # A stable sort of "not kept" brings the kept positions to the front, in their order.
        order = torch.sort((~keep).to(torch.uint8), dim=1, stable=True).indices
        order = order[:, : max(int(keep.sum(dim=1).max()), 1)]
        frames = states.gather(1, order[:, :, None].expand(-1, -1, states.shape[-1]))
        return frames, keep.gather(1, order).to(frame_mask.dtype)


class LsgmerPreTrainedModel(PreTrainedModel):
    config_class = LsgmerConfig
    base_model_prefix = "lsgmer"
    main_input_name = "text_features"
    input_modalities = ("text", "audio", "video")
    _no_split_modules = ["LsgmerModalityEncoder"]
    _supports_sdpa = True  # and eager: see LsgmerSelfAttention
    # Gradient checkpointing reaches the text backbone's layers (the model's own are small).
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """
        Linear and embedding weights normal(0, initializer_range) with zero biases, LayerNorms
        unit; the pooling query normal(0, initializer_range); the label embeddings Xavier-normal
        (deterministic given the seed; E1 needs distinct label queries at step 0), and under
        ``ema_param`` the running average starts equal to them.
        """
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, LsgmerAttentionPooling):
            init.normal_(module.query, mean=0.0, std=std)
        elif isinstance(module, LsgmerLabelEmbeddings):
            init.xavier_normal_(module.weight)
            if module.label_update == "ema_param":
                init.copy_(module.ema_weight, module.weight)
        elif isinstance(module, LsgmerTextBackbone):
            # The encoder's own initialisation (after the generic branches above met its layers).
            for submodule in module.encoder.modules():
                module.encoder._init_weights(submodule)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As `PreTrainedModel.from_pretrained`, then refuses a folder whose weights or label
        embeddings hold NaN or inf, naming the tensor."""
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        for name, tensor in (*model.named_parameters(), *model.named_buffers()):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(
                    f"The checkpoint's tensor {name!r} holds non-finite values (NaN or inf); the "
                    "model would answer NaN."
                )
        model._freeze_text_backbone()
        return (model, info) if output_loading_info else model

    # Copied from modeling_lddu.modeling_lddu.LDDUPreTrainedModel._freeze_text_backbone
    def _freeze_text_backbone(self) -> None:
        """Loading weights makes every one trainable: a text backbone's frozen ones are frozen
        again, as its config says."""
        backbone = getattr(self.base_model, "text_backbone", None)
        if backbone is not None:
            backbone.freeze(self.config)

    # Copied from modeling_lddu.modeling_lddu.LDDUPreTrainedModel._text_frames
    def _text_frames(
        self,
        text_features: torch.Tensor | None,
        text_mask: torch.Tensor | None,
        text_input_ids: torch.Tensor | None,
        text_attention_mask: torch.Tensor | None,
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """The text frames and mask: given, or computed by the text backbone from token ids
        (``text_mask`` then marks which tokens become frames; default: every attended one)."""
        if text_input_ids is None:
            return text_features, text_mask
        if text_features is not None:
            raise ValueError("Pass text_features or text_input_ids, not both.")
        backbone = getattr(self.base_model, "text_backbone", None)
        if backbone is None:
            raise ValueError(
                "text_input_ids were given, but this model has no text backbone "
                "(config.text_backbone_config is None): pass text frames as text_features."
            )
        if text_input_ids.dim() != 2:
            raise ValueError(
                f"text_input_ids must have shape (batch, tokens); got {tuple(text_input_ids.shape)}."
            )
        if text_attention_mask is None:
            text_attention_mask = torch.ones_like(text_input_ids)
        if text_mask is None:
            text_mask = text_attention_mask
        for name, mask in (("text_attention_mask", text_attention_mask), ("text_mask", text_mask)):
            if tuple(mask.shape) != tuple(text_input_ids.shape):
                raise ValueError(
                    f"{name} must have the shape of text_input_ids {tuple(text_input_ids.shape)}; "
                    f"got {tuple(mask.shape)}."
                )
        return backbone(text_input_ids, text_attention_mask, text_mask)


# Base model: encoders -> label attention -> gate -> fusion
class LsgmerModel(LsgmerPreTrainedModel):
    """
    LSGMER without its classifier and losses: returns the fused embedding ``H`` and the label
    attention maps.

    A modality that is absent for a sample (an all-zero mask row, or its features left out) gives
    zero gated label features ``Ĥ_m`` and a zero attention map for that sample (DC-miss): the
    masked mean over no frames is 0 and attention over no keys contributes nothing. A modality not
    in ``config.modalities`` (by default visual) is accepted and ignored.
    """

    def __init__(self, config: LsgmerConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict(
            {m: LsgmerModalityEncoder(config, m) for m in config.modalities}
        )
        self.label_embeddings = LsgmerLabelEmbeddings(config)
        self.label_attention = nn.ModuleDict(
            {m: LsgmerLabelAttention(config) for m in config.modalities}
        )
        self.fusion = LsgmerLabelFusion(config)
        self.text_backbone = LsgmerTextBackbone(config) if config.text_backbone_config else None
        self.post_init()

    def forward(
        self,
        text_features: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
    ) -> LsgmerModelOutput:
        r"""
        Args:
            text_features / audio_features / visual_features (`torch.FloatTensor` of shape
                `(batch, length_m, feature_dim_m)`, *optional*): frame features per modality.
                Lengths may differ between modalities and must not exceed
                ``config.max_position_embeddings``.
            text_mask / audio_mask / visual_mask (`torch.Tensor` of shape `(batch, length_m)`,
                *optional*): 1 for real frames, 0 for padding. An all-zero row marks the modality
                as absent for that sample. Omitted: every frame is real.
            text_input_ids / text_attention_mask (`torch.LongTensor` of shape `(batch, tokens)`,
                *optional*): the processor's tokens, for a model with a text backbone
                (``config.text_backbone_config``) instead of ``text_features``; ``text_mask`` then
                marks the tokens that become frames.
        """
        text_features, text_mask = self._text_frames(
            text_features, text_mask, text_input_ids, text_attention_mask
        )
        inputs = {
            "text": (text_features, text_mask),
            "audio": (audio_features, audio_mask),
            "visual": (visual_features, visual_mask),
        }
        batch_size, device = self._batch_size_and_device(inputs)
        if self.training and self.config.label_update == "ema_param":
            self.label_embeddings.teacher_step()
        label_embeddings = self.label_embeddings()  # [labels, hidden]
        num_labels, width = label_embeddings.shape

        gated, attentions, presence = [], {}, []
        for modality in self.config.modalities:
            features, mask = inputs[modality]
            if features is None:
                gated.append(label_embeddings.new_zeros(batch_size, num_labels, width))
                presence.append(torch.zeros(batch_size, dtype=torch.bool, device=device))
                continue
            features, mask, present = self._check_and_prepare(modality, features, mask, batch_size)
            attention_mask = None if mask is None else mask[:, None, None, :]
            projected, hidden = self.encoders[modality](features, attention_mask)  # H_m0, H_m1
            labels = label_embeddings.to(hidden.dtype)
            if self.config.lse_query == "label":
                # E1: [batch, labels, d] queries over the frames; E2 with the pooled H_m0.
                enhanced, weights = self.label_attention[modality](
                    labels.expand(batch_size, -1, -1), hidden, mask
                )
                modality_gated = gate_label_features(
                    enhanced, masked_mean(projected, mask)[:, None]
                )
            else:
                # Frames query the labels; gate per frame, then pool the frames, shared by labels.
                enhanced, weights = self.label_attention[modality](
                    hidden, labels.expand(batch_size, -1, -1), None
                )
                frames = gate_label_features(enhanced, projected)
                modality_gated = masked_mean(frames, mask)[:, None].expand(-1, num_labels, -1)
            if present is not None:
                modality_gated = torch.where(present[:, None, None], modality_gated, 0.0)
                weights = torch.where(present[:, None, None, None], weights, 0.0)
            else:
                present = torch.ones(batch_size, dtype=torch.bool, device=device)
            gated.append(modality_gated)
            attentions[modality] = weights
            presence.append(present)

        fused, label_features, pooling_weights = self.fusion(gated)
        return LsgmerModelOutput(
            fused_embedding=fused,
            label_features=label_features,
            label_attentions=attentions,
            label_pooling_weights=pooling_weights,
            modality_presence=torch.stack(presence, dim=1),
        )

    def _batch_size_and_device(self, inputs: dict) -> tuple[int, torch.device]:
        for modality in self.config.modalities:
            features = inputs[modality][0]
            if features is not None:
                return features.shape[0], features.device
        ignored = [m for m in MODALITIES if m not in self.config.modalities]
        given = [m for m in ignored if inputs[m][0] is not None]
        raise ValueError(
            "LSGMER needs at least one of the modalities it reads: pass any of "
            f"{', '.join(f'{m}_features' for m in self.config.modalities)}"
            + (f" ({', '.join(given)} given, which this model ignores)." if given else ".")
        )

    # Copied from modeling_lddu.modeling_lddu.LDDUModel._check_and_prepare with LDDU->Lsgmer
    def _check_and_prepare(
        self, modality: str, features: torch.Tensor, mask: torch.Tensor | None, batch_size: int
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Validate shapes; return the features, a bool mask and a per-sample presence flag."""
        expected_dim = self.config.feature_dim(modality)
        if features.dim() != 3:
            raise ValueError(
                f"{modality}_features must have shape (batch, length, {expected_dim}); got "
                f"{tuple(features.shape)}."
            )
        if features.shape[0] != batch_size:
            raise ValueError(
                f"{modality}_features has batch size {features.shape[0]} but another modality has "
                f"{batch_size}."
            )
        if features.shape[2] != expected_dim:
            raise ValueError(
                f"{modality}_features has feature size {features.shape[2]} but the config says "
                f"{modality}_dim={expected_dim}."
            )
        length = features.shape[1]
        if length > self.config.max_position_embeddings:
            raise ValueError(
                f"{modality}_features has {length} frames, more than max_position_embeddings="
                f"{self.config.max_position_embeddings}; truncate it (the feature extractor does)."
            )
        if mask is None:
            return features, None, None
        if tuple(mask.shape) != (batch_size, length):
            raise ValueError(
                f"{modality}_mask must have shape {(batch_size, length)}; got {tuple(mask.shape)}."
            )
        if mask.is_floating_point() and not torch.isfinite(mask).all():
            raise ValueError(f"{modality}_mask holds NaN or inf; it must hold only 0 and 1.")
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError(
                f"{modality}_mask must hold only 0 (padding) and 1 (real frame); got values "
                f"{sorted(set(mask[(mask != 0) & (mask != 1)].tolist()))[:5]}."
            )
        mask = mask.bool()
        # Padding is excluded by the masks, but a NaN there would still reach the attention's
        # weighted sums as 0 * NaN: padded frames are zeroed (valid frames are untouched).
        features = torch.where(mask[:, :, None], features, 0.0)
        present = mask.any(dim=1)  # [batch]
        # An absent sample attends to all of its (zeroed) frames so that no softmax sees only -inf;
        # its outputs are replaced by the prior afterwards, so its features cannot leak.
        mask = mask | ~present[:, None]
        features = torch.where(present[:, None, None], features, 0.0)
        return features, mask, present


# The full model: base + classifier + attribution + losses + label update
class LsgmerForEmotionRecognition(LsgmerPreTrainedModel):
    """
    LSGMER for emotion recognition, single-label (``problem_type="single_label_classification"``,
    the default) or multi-label: :class:`LsgmerModel`, a linear classifier on the fused embedding,
    the attribution distribution and (with ``labels``) the task and APC losses. In training mode a
    forward with ``labels`` also updates the label embeddings (E3).
    """

    # The family contract of the shared layer (mmer/family.py).
    prediction_fields = ("scores", "consistency_uncertainty")
    lora_target_modules = (
        r".*encoders\.\w+\.layers\.\d+\.(attention\.(query|key|value)|attention_output|intermediate|output)"
        r"|.*label_attention\.\w+\.(query|key|value|output)_projection"
        r"|.*fusion\.projection"
    )
    lora_modules_to_save = ("label_embeddings", "classifier")

    def __init__(self, config: LsgmerConfig):
        super().__init__(config)
        self.lsgmer = LsgmerModel(config)
        self.dropout = LsgmerDropout(config.hidden_dropout_prob)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.post_init()

    def forward(
        self,
        text_features: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
    ) -> LsgmerEmotionRecognitionOutput:
        r"""
        Args:
            labels (`torch.Tensor`, *optional*): `(batch, num_labels)` float rows, one-hot
                (single-label) or multi-hot (multi-label), as the package's datasets store them;
                for single-label also `(batch,)` class indices. When given, the losses are
                computed, and in training mode the label embeddings are updated.
            text_input_ids / text_attention_mask (`torch.LongTensor` of shape `(batch, tokens)`,
                *optional*): the processor's tokens, for a model with a text backbone
                (``config.text_backbone_config``) instead of ``text_features``; ``text_mask`` then
                marks the tokens that become frames.
        """
        text_features, text_mask = self._text_frames(
            text_features, text_mask, text_input_ids, text_attention_mask
        )
        base = self.lsgmer(
            text_features=text_features,
            text_mask=text_mask,
            audio_features=audio_features,
            audio_mask=audio_mask,
            visual_features=visual_features,
            visual_mask=visual_mask,
        )
        fused = base.fused_embedding
        multi_label = self.config.is_multi_label
        logits = self.classifier(self.dropout(fused))  # [batch, labels]
        # E4-E5 (fp32): cosine of H with each label embedding, over the temperature.
        label_embeddings = self.lsgmer.label_embeddings.attribution_embeddings()
        similarity = F.cosine_similarity(
            fused.float()[:, None, :], label_embeddings.float()[None, :, :], dim=-1, eps=1e-8
        )
        attribution_logits = similarity / self.config.apc_temperature
        # E6 (fp32 even under autocast): per-sample / per-label JS between p and q.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            log_p = distribution_log_probs(logits, multi_label)
            log_q = distribution_log_probs(attribution_logits, multi_label)
            divergence = jensen_shannon(log_p, log_q)  # [batch] or [batch, labels]
        per_sample = divergence.mean(dim=-1) if multi_label else divergence
        per_label = divergence if multi_label else divergence[:, None].expand_as(logits)
        if multi_label:
            scores, attribution = torch.sigmoid(logits), torch.sigmoid(attribution_logits)
        else:
            scores, attribution = logits.softmax(dim=-1), attribution_logits.softmax(dim=-1)

        loss = task_loss = apc_loss = None
        if labels is not None:
            targets = self._targets(labels, logits)
            with torch.autocast(device_type=logits.device.type, enabled=False):
                if multi_label:
                    task_loss = F.binary_cross_entropy_with_logits(logits.float(), targets)
                else:
                    task_loss = F.cross_entropy(logits.float(), targets)
            apc_loss = per_sample.mean()
            weight = self.config.apc_weight
            loss = task_loss + weight * apc_loss if weight > 0 else task_loss
            if self.training and self.config.label_update == "ema_prototype":
                self.lsgmer.label_embeddings.update_from_batch(fused, targets)

        bits = 1.0 / math.log(2.0)
        return LsgmerEmotionRecognitionOutput(
            loss=loss,
            scores=scores,
            logits=logits,
            attribution_probs=attribution.to(scores.dtype),
            consistency_uncertainty=(per_label * bits).to(scores.dtype),
            sample_uncertainty=(per_sample * bits).to(scores.dtype),
            label_attentions=base.label_attentions,
            fused_embedding=fused,
            task_loss=task_loss,
            apc_loss=apc_loss,
        )

    def _targets(self, labels: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """Float `(batch, num_labels)` targets, checked against ``problem_type``."""
        batch, num_labels = logits.shape
        if not self.config.is_multi_label and labels.dim() == 1:
            if labels.is_floating_point() or labels.shape[0] != batch:
                raise ValueError(
                    f"Single-label class indices must be an integer tensor of shape ({batch},); got "
                    f"{labels.dtype} of shape {tuple(labels.shape)}."
                )
            if ((labels < 0) | (labels >= num_labels)).any():
                raise ValueError(f"labels hold class indices outside [0, {num_labels}).")
            return F.one_hot(labels.long(), num_labels).float()
        if tuple(labels.shape) != (batch, num_labels):
            raise ValueError(
                f"labels must have shape (batch, num_labels) = {(batch, num_labels)}"
                + ("" if self.config.is_multi_label else f" or ({batch},) class indices")
                + f"; got {tuple(labels.shape)}."
            )
        targets = labels.float()
        if not torch.isfinite(targets).all() or ((targets < 0) | (targets > 1)).any():
            raise ValueError("labels must hold values in [0, 1].")
        if not self.config.is_multi_label:
            positives = targets.sum(dim=1)
            if not torch.allclose(positives, torch.ones_like(positives), atol=1e-4):
                bad = positives[(positives - 1).abs() > 1e-4][:5].tolist()
                raise ValueError(
                    "problem_type is single_label_classification, so each labels row must sum to 1 "
                    f"(one emotion per sample); found row sums {bad}. Multi-label data needs "
                    "problem_type='multi_label_classification'."
                )
        return targets

    # Copied from modeling_lddu.modeling_lddu.LDDUForEmotionRecognition.save_pretrained with LDDU->Lsgmer, lddu->lsgmer
    def save_pretrained(self, save_directory, *args, **kwargs):
        """
        Save as transformers does (also what ``push_to_hub`` writes), so that the folder serves the
        Auto classes and the pipeline and never names a file it lacks:

        - ``auto_map`` also maps ``AutoModel`` to :class:`LsgmerModel`, so that
          ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` gives the base model;
        - the pipeline's code (``pipeline_lsgmer.py``) is always written, and ``custom_pipelines``
          names it (and nothing else), so that ``pipeline(model=folder, trust_remote_code=True)``
          finds the task's code in the folder, whether or not the model went through a pipeline.

        The feature extractor is not the model's to write: it holds the normalisation statistics
        fitted on the training data. Without it the pipeline stops with a message that says how to
        add it; the pipeline's own ``save_pretrained`` / ``push_to_hub`` write both.
        """
        # A relative import, which is what makes transformers copy `pipeline_lsgmer.py` (and what it
        # imports relatively) next to the weights, also when this class was loaded as remote code.
        from .pipeline_lsgmer import LsgmerEmotionPipeline

        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", f"{LsgmerModel.__module__.rsplit('.', 1)[-1]}.LsgmerModel")
        self.config.auto_map = auto_map
        # The entry Pipeline.save_pretrained writes, with class names instead of classes.
        self.config.custom_pipelines = {
            task: {
                **info,
                "impl": f"{info['impl'].__module__.rsplit('.', 1)[-1]}.{info['impl'].__name__}",
                "pt": [model_class.__name__ for model_class in info["pt"]],
            }
            for task, info in LsgmerEmotionPipeline._registered_impl.items()
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def reset_label_set(self, id2label: dict[int, str]) -> None:
        """
        Switch to a new label set: re-create and initialise the label-indexed parts (the label
        embeddings and the classifier) and drop tuned per-label thresholds.
        """
        config = self.config
        old = [config.id2label[index] for index in range(config.num_labels)]
        config.id2label = {int(key): value for key, value in id2label.items()}
        config.label2id = {value: key for key, value in config.id2label.items()}
        config.label_thresholds = None
        logger.info("Replacing the label set %s with %s", old, list(config.id2label.values()))
        device = self.classifier.weight.device
        self.lsgmer.label_embeddings = LsgmerLabelEmbeddings(config).to(device)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels).to(device)
        for module in (self.lsgmer.label_embeddings, self.classifier):
            self._init_weights(module)


# Auto classes: `save_pretrained` writes `auto_map` and copies this code next to the weights.
LsgmerModel.register_for_auto_class("AutoModel")
LsgmerForEmotionRecognition.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "LsgmerEmotionRecognitionOutput",
    "LsgmerForEmotionRecognition",
    "LsgmerModel",
    "LsgmerModelOutput",
    "LsgmerPreTrainedModel",
    "distribution_log_probs",
    "gate_label_features",
    "jensen_shannon",
    "masked_mean",
]
