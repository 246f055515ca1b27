"""LDDU: Latent Distribution Decoupling for uncertainty-aware multimodal emotion recognition.

Huang et al., 2025, "Latent Distribution Decoupling: A Probabilistic Framework for Uncertainty-Aware
Multimodal Emotion Recognition" (arXiv 2502.13954).

The forward pass, in the paper's order (inputs in the package order (text, audio, visual); the
modality axis of every stacked tensor in the authors' (visual, audio, text), ``LATENT_MODALITY_ORDER``):

1. **Modality encoders** - per modality, a LayerNorm over the input features, a linear projection
   plus learned positions, and a post-LN transformer encoder.
2. **Label-wise attention** - one learned embedding per emotion queries each modality's sequence and
   returns one "label-related" feature per (modality, emotion).
3. **Latent Gaussian encoders** - per modality, an MLP maps each label-related feature to a Gaussian
   latent: a mean and a spread (standard deviation).
4. **Gated uncertainty fusion** - a mean-based and a spread-based prediction per emotion, mixed by a
   semantic score (the gate) computed from the label-related features.
5. **Contrastive memory** (training) - a supervised contrastive loss over the normalised
   (mean, spread) features of the batch and of a FIFO queue of earlier batches.
6. **Calibration loss** (training) - ties the spread magnitudes to the semantic scores.

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

from .configuration_lddu import LATENT_MODALITY_ORDER, MODALITIES, LDDUConfig
from .contrastive_lddu import LDDUContrastiveMemory

logger = logging.get_logger(__name__)


@dataclass
class LDDUModelOutput(ModelOutput):
    """
    Output of :class:`LDDUModel`. Modality axis in ``LATENT_MODALITY_ORDER``: (visual, audio, text).

    Args:
        label_features (`torch.FloatTensor` of shape `(batch, 3, num_labels, label_attention_dim)`):
            Label-wise attention output per modality and emotion (zero for an absent modality).
        means (`torch.FloatTensor` of shape `(batch, 3, num_labels, latent_size)`):
            Means of the per-modality Gaussian latents (0 for an absent modality).
        spreads (`torch.FloatTensor` of shape `(batch, 3, num_labels, latent_size)`):
            Standard deviations of those latents (1 for an absent modality).
        modality_presence (`torch.BoolTensor` of shape `(batch, 3)`):
            Whether each sample has each modality.
    """

    label_features: torch.FloatTensor | None = None
    means: torch.FloatTensor | None = None
    spreads: torch.FloatTensor | None = None
    modality_presence: torch.BoolTensor | None = None


@dataclass
class LDDUEmotionRecognitionOutput(ModelOutput):
    """
    Output of :class:`LDDUForEmotionRecognition`.

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` is given):
            ``semantic_loss_weight * semantic_loss + fused_loss_weight * fused_loss +
            contrastive_loss_weight * contrastive_loss + calibration_loss_weight * calibration_loss``.
        scores (`torch.FloatTensor` of shape `(batch, num_labels)`):
            Fused emotion probabilities, ``mean_scores * semantic_scores + spread_scores *
            (1 - semantic_scores)``. Compare with ``config.thresholds`` to predict.
        semantic_scores (`torch.FloatTensor` of shape `(batch, num_labels)`):
            The gate: semantic score from the label-wise features of all modalities.
        mean_scores / spread_scores (`torch.FloatTensor` of shape `(batch, num_labels)`):
            Predictions of the per-emotion classifiers over the latent means / spreads.
        uncertainty (`torch.FloatTensor` of shape `(batch, num_labels)`):
            Per-emotion predictive uncertainty in [0, 1]: the binary entropy (in bits) of the gated
            mixture ``scores``. It splits exactly into the gate-weighted entropies of the two
            experts, ``g * H(mean_scores) + (1 - g) * H(spread_scores)``, plus their gate-weighted
            disagreement (a Jensen-Shannon term): see :func:`gated_mixture_uncertainty`.
        gate_uncertainty (`torch.FloatTensor` of shape `(batch, num_labels)`):
            ``1 - |2 * semantic_scores - 1|``: how undecided the gate is (1 = an even mix of the two
            experts). A diagnostic of whether the gate alone says when the model is wrong.
        means / spreads / label_features: as in :class:`LDDUModelOutput`.
        semantic_loss / fused_loss / contrastive_loss / calibration_loss (`torch.FloatTensor`):
            The four unweighted loss terms (only with `labels`).
    """

    loss: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    semantic_scores: torch.FloatTensor | None = None
    mean_scores: torch.FloatTensor | None = None
    spread_scores: torch.FloatTensor | None = None
    uncertainty: torch.FloatTensor | None = None
    gate_uncertainty: torch.FloatTensor | None = None
    means: torch.FloatTensor | None = None
    spreads: torch.FloatTensor | None = None
    label_features: torch.FloatTensor | None = None
    semantic_loss: torch.FloatTensor | None = None
    fused_loss: torch.FloatTensor | None = None
    contrastive_loss: torch.FloatTensor | None = None
    calibration_loss: torch.FloatTensor | None = None


def lddu_dropout(hidden: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
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


class LDDUDropout(nn.Dropout):
    """``nn.Dropout`` computed with :func:`lddu_dropout`."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return lddu_dropout(hidden, self.p, self.training)


# 1. Modality encoder
class LDDUEmbeddings(nn.Module):
    """Input LayerNorm, feature projection and learned positions of one modality."""

    def __init__(self, config: LDDUConfig, feature_dim: int):
        super().__init__()
        # The authors normalise raw features with a LayerNorm of epsilon 1e-12 before projecting.
        self.input_norm = nn.LayerNorm(feature_dim, eps=config.layer_norm_eps)
        self.feature_projection = nn.Linear(feature_dim, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = LDDUDropout(config.hidden_dropout_prob)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # features: [batch, length, feature_dim] -> [batch, length, hidden]
        length = features.shape[1]
        # Inputs come as float32 from the feature extractor; compute in the dtype of the weights.
        hidden = self.feature_projection(self.input_norm(features.to(self.input_norm.weight.dtype)))
        hidden = hidden + self.position_embeddings.weight[:length]
        return self.dropout(self.layer_norm(hidden))


class LDDUSelfAttention(nn.Module):
    """
    Multi-head self-attention with the BERT parameterisation. ``config._attn_implementation``
    chooses the kernel: ``"sdpa"`` (the default: PyTorch's fused scaled dot-product attention) or
    ``"eager"`` (softmax of the explicit score matrix); both compute the same attention.
    """

    def __init__(self, config: LDDUConfig):
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
            # one uses lddu_dropout).
            scores = (query * self.head_dim**-0.5) @ key.transpose(-1, -2)  # [b, heads, l, l]
            if attention_mask is not None:  # [batch, 1, 1, length] bool, True = attend
                # + 0 / -inf: the same scores as a masked fill, and a pass-through backward.
                scores.add_(
                    torch.zeros_like(attention_mask, dtype=scores.dtype).masked_fill_(
                        ~attention_mask, float("-inf")
                    )
                )
            probabilities = lddu_dropout(scores.softmax(dim=-1), dropout, self.training)
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


class LDDUEncoderLayer(nn.Module):
    """Post-LN transformer layer: attention, residual + LN, feed-forward, residual + LN."""

    def __init__(self, config: LDDUConfig):
        super().__init__()
        self.attention = LDDUSelfAttention(config)
        self.attention_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = LDDUDropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention_output(self.attention(hidden, attention_mask))
        hidden = self.attention_layer_norm(self.dropout(attended) + hidden)
        feed_forward = self.output(F.gelu(self.intermediate(hidden)))
        return self.output_layer_norm(self.dropout(feed_forward) + hidden)


class LDDUModalityEncoder(nn.Module):
    """Transformer encoder of one modality: [batch, length, feature_dim] -> [batch, length, hidden]."""

    def __init__(self, config: LDDUConfig, modality: str):
        super().__init__()
        self.modality = modality
        self.embeddings = LDDUEmbeddings(config, config.feature_dim(modality))
        self.layers = nn.ModuleList(
            [LDDUEncoderLayer(config) for _ in range(config.num_layers(modality))]
        )

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        hidden = self.embeddings(features)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask)
        return hidden


# 2. Label-wise attention
class LDDULabelWiseAttention(nn.Module):
    """
    Each emotion's embedding attends over one modality's sequence (single head). As in the authors'
    code the projected sequence serves as both keys and values, and the scale is
    ``sqrt(label_attention_dim)``.
    """

    def __init__(self, config: LDDUConfig):
        super().__init__()
        width = config.label_attention_dim
        self.label_projection = nn.Linear(config.hidden_size, width)
        self.sequence_projection = nn.Linear(config.hidden_size, width)
        self.output_projection = nn.Linear(width, width)
        self.dropout = LDDUDropout(config.label_attention_dropout)
        self.scale = 1.0 / math.sqrt(width)

    def forward(
        self,
        label_embeddings: torch.Tensor,
        hidden: torch.Tensor,
        attention_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        queries = self.label_projection(label_embeddings)  # [labels, width]
        keys = self.sequence_projection(hidden)  # [batch, length, width], also the values
        scores = torch.einsum("cw,blw->bcl", queries, keys) * self.scale  # [batch, labels, length]
        if attention_mask is not None:
            scores = scores.masked_fill(~attention_mask[:, None, :], float("-inf"))
        weights = torch.softmax(scores, dim=-1)
        context = torch.bmm(weights, keys)  # [batch, labels, width]
        return self.output_projection(self.dropout(context))


# 3. Latent Gaussian encoder
class LDDULatentGaussianEncoder(nn.Module):
    """
    Maps each (emotion, modality) feature to a diagonal Gaussian: ReLU MLP, then a mean head and a
    log-variance head; the spread is ``exp(log_variance / 2)``. As in the authors' code the latent
    is deterministic: the mean is used, nothing is sampled.
    """

    def __init__(self, config: LDDUConfig):
        super().__init__()
        sizes = [config.label_attention_dim, *config.latent_hidden_sizes]
        self.layers = nn.ModuleList(
            [nn.Linear(sizes[index], sizes[index + 1]) for index in range(len(sizes) - 1)]
        )
        self.mean_projection = nn.Linear(sizes[-1], config.latent_size)
        self.log_variance_projection = nn.Linear(sizes[-1], config.latent_size)

    def forward(self, label_features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = label_features
        for layer in self.layers:
            hidden = F.relu(layer(hidden))
        mean = self.mean_projection(hidden)
        spread = torch.exp(0.5 * self.log_variance_projection(hidden))
        return mean, spread


# 4. Gated uncertainty fusion
class LDDUSemanticClassifier(nn.Module):
    """Shared MLP scoring each emotion from its label-wise features of all modalities (the gate)."""

    def __init__(self, config: LDDUConfig):
        super().__init__()
        self.hidden = nn.Linear(
            len(LATENT_MODALITY_ORDER) * config.label_attention_dim, config.classifier_hidden_size
        )
        self.dropout = LDDUDropout(config.classifier_dropout)
        self.output = nn.Linear(config.classifier_hidden_size, 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # features: [batch, labels, 3 * width] -> probabilities [batch, labels]
        hidden = F.relu(self.dropout(self.hidden(features)))
        return torch.sigmoid(self.output(hidden)).squeeze(-1)


class LDDUPerLabelClassifier(nn.Module):
    """
    One two-layer MLP per emotion (Linear, dropout, ReLU, Linear, sigmoid), stored as grouped
    weights and applied to all emotions at once with ``einsum``.
    """

    def __init__(self, config: LDDUConfig, input_size: int):
        super().__init__()
        num_labels, hidden_size = config.num_labels, config.classifier_hidden_size
        self.input_size = input_size
        self.hidden_weight = nn.Parameter(torch.empty(num_labels, input_size, hidden_size))
        self.hidden_bias = nn.Parameter(torch.empty(num_labels, hidden_size))
        self.output_weight = nn.Parameter(torch.empty(num_labels, hidden_size))
        self.output_bias = nn.Parameter(torch.empty(num_labels))
        self.dropout = LDDUDropout(config.classifier_dropout)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # features: [batch, labels, input_size] -> probabilities [batch, labels]
        hidden = torch.einsum("bci,cih->bch", features, self.hidden_weight) + self.hidden_bias
        hidden = F.relu(self.dropout(hidden))
        logits = torch.einsum("bch,ch->bc", hidden, self.output_weight) + self.output_bias
        return torch.sigmoid(logits)


class LDDUGatedUncertaintyFusion(nn.Module):
    """``scores = mean_scores * gate + spread_scores * (1 - gate)``, per emotion."""

    def __init__(self, config: LDDUConfig):
        super().__init__()
        latent_input = len(LATENT_MODALITY_ORDER) * config.latent_size
        self.semantic_classifier = LDDUSemanticClassifier(config)
        self.mean_classifier = LDDUPerLabelClassifier(config, latent_input)
        self.spread_classifier = LDDUPerLabelClassifier(config, latent_input)

    def forward(
        self, label_features: torch.Tensor, means: torch.Tensor, spreads: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        # [batch, 3, labels, d] -> [batch, labels, 3 * d], modality blocks in (v, a, t) order.
        semantic_scores = self.semantic_classifier(_concat_modalities(label_features))
        mean_scores = self.mean_classifier(_concat_modalities(means))
        spread_scores = self.spread_classifier(_concat_modalities(spreads))
        scores = mean_scores * semantic_scores + spread_scores * (1.0 - semantic_scores)
        return scores, semantic_scores, mean_scores, spread_scores


def gated_mixture_uncertainty(scores: torch.Tensor) -> torch.Tensor:
    """
    Binary entropy in bits of the fused scores, in [0, 1] (1 = a coin flip).

    The fused score is a two-expert mixture, ``s = g * p_mean + (1 - g) * p_spread``, so its entropy
    decomposes into ``g * H(p_mean) + (1 - g) * H(p_spread)`` (what each expert is unsure of) plus
    ``JS_g(p_mean, p_spread)`` (how much the experts disagree, weighted by the gate).
    """
    probabilities = scores.float().clamp(1e-7, 1.0 - 1e-7)
    entropy = -(
        probabilities * torch.log2(probabilities)
        + (1 - probabilities) * torch.log2(1 - probabilities)
    )
    return entropy.to(scores.dtype)


def _concat_modalities(per_modality: torch.Tensor) -> torch.Tensor:
    """[batch, modalities, labels, d] -> [batch, labels, modalities * d]."""
    batch, modalities, labels, width = per_modality.shape
    return per_modality.permute(0, 2, 1, 3).reshape(batch, labels, modalities * width)


# 6. Calibration loss
def uncertainty_calibration_loss(
    spreads: torch.Tensor, semantic_scores: torch.Tensor
) -> torch.Tensor:
    """
    The authors' CRLDis term: a symmetric KL between ``p = softmax`` of the spread norms over ALL
    (sample, emotion) entries of the batch, and ``q = softmax`` of the semantic scores over the
    emotions of each sample (so ``q`` sums to the batch size, as in the reference). Each KL is
    divided by the number of entries ("batchmean").

    Args:
        spreads: `(batch, 3, labels, latent)` standard deviations.
        semantic_scores: `(batch, labels)` gate probabilities.
    """
    spread_norms = _concat_modalities(spreads).float().norm(dim=-1).reshape(-1)  # [batch * labels]
    log_p = torch.log_softmax(spread_norms, dim=0)
    log_q = torch.log_softmax(semantic_scores.float(), dim=1).reshape(-1)
    p, q = log_p.exp(), log_q.exp()
    entries = spread_norms.shape[0]
    kl_q_p = (q * (log_q - log_p)).sum() / entries
    kl_p_q = (p * (log_p - log_q)).sum() / entries
    return 0.5 * (kl_q_p + kl_p_q)


def contrastive_features_and_classes(
    means: torch.Tensor, spreads: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    The contrastive view of a batch: per (sample, modality, emotion) the concatenation of the
    L2-normalised mean and the L2-normalised spread (norm sqrt(2)), flattened in that order, and its
    class id ``emotion + num_labels * (2 * modality + [label is negative])``: one class per
    (modality, emotion, polarity).

    Returns: features `(batch * 3 * labels, 2 * latent)`, class ids `(batch * 3 * labels,)` int64.
    """
    batch, modalities, num_labels, _ = means.shape
    features = torch.cat(
        [
            F.normalize(means.float(), dim=-1, eps=1e-12),
            F.normalize(spreads.float(), dim=-1, eps=1e-12),
        ],
        dim=-1,
    )
    negative = (labels < 0.5).long()  # [batch, labels]
    modality_index = torch.arange(modalities, device=labels.device)[None, :, None]
    label_index = torch.arange(num_labels, device=labels.device)[None, None, :]
    classes = label_index + num_labels * (2 * modality_index + negative[:, None, :])
    return features.reshape(batch * modalities * num_labels, -1), classes.reshape(-1)


class LDDUTextBackbone(nn.Module):
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


class LDDUPreTrainedModel(PreTrainedModel):
    config_class = LDDUConfig
    base_model_prefix = "lddu"
    main_input_name = "text_features"
    input_modalities = ("text", "audio", "video")
    _no_split_modules = ["LDDUModalityEncoder"]
    _supports_sdpa = True  # and eager: see LDDUSelfAttention
    # Gradient checkpointing reaches the text backbone's layers (the model's own are small).
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """
        The authors' initialisation: encoders as BERT (normal(0, initializer_range), zero biases,
        unit LayerNorms), label embeddings and latent encoder weights Xavier-uniform, everything
        else PyTorch's default ``uniform(+-1/sqrt(fan_in))``; the queue as in the reference (random
        rows normalised along dim 0, random non-integer class ids). Parents are visited after their
        children, so each block initialises all of its own descendants here.
        """
        std = self.config.initializer_range
        if isinstance(module, LDDUModalityEncoder):
            for submodule in module.modules():
                if isinstance(submodule, (nn.Linear, nn.Embedding)):
                    init.normal_(submodule.weight, mean=0.0, std=std)
                    if getattr(submodule, "bias", None) is not None:
                        init.zeros_(submodule.bias)
                elif isinstance(submodule, nn.LayerNorm):
                    init.ones_(submodule.weight)
                    init.zeros_(submodule.bias)
        elif isinstance(module, LDDULatentGaussianEncoder):
            for linear in module.modules():
                if isinstance(linear, nn.Linear):
                    init.xavier_uniform_(linear.weight)
                    _default_uniform_(linear.bias, fan_in=linear.in_features)
        elif isinstance(module, (LDDULabelWiseAttention, LDDUSemanticClassifier)):
            for linear in module.modules():
                if isinstance(linear, nn.Linear):
                    _default_uniform_(linear.weight, fan_in=linear.in_features)
                    _default_uniform_(linear.bias, fan_in=linear.in_features)
        elif isinstance(module, LDDUPerLabelClassifier):
            _default_uniform_(module.hidden_weight, fan_in=module.input_size)
            _default_uniform_(module.hidden_bias, fan_in=module.input_size)
            _default_uniform_(module.output_weight, fan_in=module.output_weight.shape[1])
            _default_uniform_(module.output_bias, fan_in=module.output_weight.shape[1])
        elif isinstance(module, LDDUModel):
            init.xavier_uniform_(module.label_embeddings.weight)
        elif isinstance(module, LDDUContrastiveMemory):
            if not getattr(module.queue, "_is_hf_initialized", False):  # not loaded
                module.reset_queue()
        elif isinstance(module, LDDUTextBackbone):
            for submodule in module.encoder.modules():  # the encoder's own initialisation
                module.encoder._init_weights(submodule)

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

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As `PreTrainedModel.from_pretrained`, then :meth:`check_loaded_state`: a folder whose
        weights would give NaN on the first request is refused at load, naming the tensor."""
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        model.check_loaded_state()
        model._freeze_text_backbone()
        return (model, info) if output_loading_info else model

    def _freeze_text_backbone(self) -> None:
        """Loading weights makes every one trainable: a text backbone's frozen ones are frozen
        again, as its config says."""
        backbone = getattr(self.base_model, "text_backbone", None)
        if backbone is not None:
            backbone.freeze(self.config)

    @torch.no_grad()
    def check_loaded_state(self) -> None:
        """Every floating-point weight and buffer finite, every queue pointer inside its queue."""
        for name, tensor in (*self.named_parameters(), *self.named_buffers()):
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                bad = int((~torch.isfinite(tensor)).sum())
                raise ValueError(
                    f"The checkpoint's tensor {name!r} holds {bad} non-finite value(s) (NaN or "
                    "inf); the model would answer NaN. Re-export or re-convert it."
                )
        for name, module in self.named_modules():
            if isinstance(module, LDDUContrastiveMemory):
                pointer = int(module.queue_ptr[0])
                if not 0 <= pointer < module.queue_size:
                    raise ValueError(
                        f"The checkpoint's {name}.queue_ptr is {pointer}, outside the queue "
                        f"[0, {module.queue_size})."
                    )

    def _initialize_weights(self, module: nn.Module, is_custom_code: bool = False) -> None:
        """
        Visit every block. `PreTrainedModel` skips a remote-code module whose own direct parameters
        were all loaded; but :meth:`_init_weights` initialises each block's descendants at the
        block, so that shortcut would leave a missing descendant (a resized label embedding, an
        added encoder layer, a head absent from the checkpoint) as uninitialised memory. The
        `transformers.initialization` functions used here skip every tensor that was loaded.
        """
        if not getattr(module, "_is_hf_initialized", False):
            self._init_weights(module)
            module._is_hf_initialized = True


def _default_uniform_(tensor: torch.Tensor, fan_in: int) -> None:
    bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
    init.uniform_(tensor, -bound, bound)


# Base model: encoders -> label-wise attention -> latent Gaussians
class LDDUModel(LDDUPreTrainedModel):
    """
    LDDU without its classifiers and losses: returns the label-wise features and the per-modality
    Gaussian latents (mean and spread) of every emotion.

    Any modality may be absent: leave its features out (``None``), or give a sample an all-zero
    mask. An absent (sample, modality) does not influence any output: its label-wise features are
    0 and its latent is the standard-normal prior (mean 0, spread 1). See ``docs/design.md``.
    """

    def __init__(self, config: LDDUConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict(
            {m: LDDUModalityEncoder(config, m) for m in LATENT_MODALITY_ORDER}
        )
        self.label_embeddings = nn.Embedding(config.num_labels, config.hidden_size)
        self.label_attention = nn.ModuleDict(
            {m: LDDULabelWiseAttention(config) for m in LATENT_MODALITY_ORDER}
        )
        self.latent_encoders = nn.ModuleDict(
            {m: LDDULatentGaussianEncoder(config) for m in LATENT_MODALITY_ORDER}
        )
        self.text_backbone = LDDUTextBackbone(config) if config.text_backbone_config else None
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
    ) -> LDDUModelOutput:
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
                marks the tokens that become frames (the processor's word pieces).
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
        label_embeddings = self.label_embeddings.weight  # [labels, hidden]
        num_labels = label_embeddings.shape[0]

        label_features, means, spreads, presence = [], [], [], []
        for modality in LATENT_MODALITY_ORDER:
            features, mask = inputs[modality]
            if features is None:
                width = self.config.label_attention_dim
                latent = self.config.latent_size
                label_features.append(label_embeddings.new_zeros(batch_size, num_labels, width))
                means.append(label_embeddings.new_zeros(batch_size, num_labels, latent))
                spreads.append(label_embeddings.new_ones(batch_size, num_labels, latent))
                presence.append(torch.zeros(batch_size, dtype=torch.bool, device=device))
                continue
            features, mask, present = self._check_and_prepare(modality, features, mask, batch_size)
            attention_mask = None if mask is None else mask[:, None, None, :]
            hidden = self.encoders[modality](features, attention_mask)
            label_mask = mask if self.config.mask_label_attention else None
            modality_label_features = self.label_attention[modality](
                label_embeddings, hidden, label_mask
            )
            mean, spread = self.latent_encoders[modality](modality_label_features)
            if present is not None:
                keep = present[:, None, None]
                modality_label_features = torch.where(keep, modality_label_features, 0.0)
                mean = torch.where(keep, mean, 0.0)
                spread = torch.where(keep, spread, 1.0)
            else:
                present = torch.ones(batch_size, dtype=torch.bool, device=device)
            label_features.append(modality_label_features)
            means.append(mean)
            spreads.append(spread)
            presence.append(present)

        return LDDUModelOutput(
            label_features=torch.stack(label_features, dim=1),
            means=torch.stack(means, dim=1),
            spreads=torch.stack(spreads, dim=1),
            modality_presence=torch.stack(presence, dim=1),
        )

    @staticmethod
    def _batch_size_and_device(inputs: dict) -> tuple[int, torch.device]:
        for modality in MODALITIES:
            features = inputs[modality][0]
            if features is not None:
                return features.shape[0], features.device
        raise ValueError(
            "LDDU needs at least one modality: pass text_features, audio_features or visual_features."
        )

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


# The full model: base + gated fusion + training losses
class LDDUForEmotionRecognition(LDDUPreTrainedModel):
    """
    LDDU for multi-label emotion recognition: :class:`LDDUModel`, the gated uncertainty fusion, and
    (when ``labels`` is given) the four training losses, including the supervised contrastive loss
    over a memory queue that is updated in training mode.
    """

    # The family contract of the shared layer (mmer/family.py).
    prediction_fields = ("scores", "uncertainty", "gate_uncertainty")
    lora_target_modules = (
        r".*encoders\.\w+\.layers\.\d+\.(attention\.(query|key|value)|attention_output|intermediate|output)"
        r"|.*label_attention\.\w+\.(label|sequence|output)_projection"
        r"|.*latent_encoders\.\w+\.(layers\.\d+|mean_projection|log_variance_projection)"
        r"|.*semantic_classifier\.(hidden|output)"
    )
    lora_modules_to_save = ("label_embeddings", "mean_classifier", "spread_classifier")

    def __init__(self, config: LDDUConfig):
        super().__init__(config)
        self.lddu = LDDUModel(config)
        self.fusion = LDDUGatedUncertaintyFusion(config)
        self.contrastive_memory = LDDUContrastiveMemory(
            queue_size=config.queue_size,
            feature_dim=2 * config.latent_size,
            temperature=config.contrastive_temperature,
            implementation=config.contrastive_implementation,
        )
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
    ) -> LDDUEmotionRecognitionOutput:
        r"""
        Args:
            labels (`torch.FloatTensor` of shape `(batch, num_labels)`, *optional*):
                Multi-hot emotion targets (one-hot rows for single-label data, trained with the
                same BCE losses). When given, the losses are computed; in training mode the
                contrastive queue is then updated with this batch.
            Other inputs: as :meth:`LDDUModel.forward`.
        """
        text_features, text_mask = self._text_frames(
            text_features, text_mask, text_input_ids, text_attention_mask
        )
        if self.training and self.config.modality_dropout:
            text_mask, audio_mask, visual_mask = self._drop_modalities(
                {
                    "text": (text_features, text_mask),
                    "audio": (audio_features, audio_mask),
                    "visual": (visual_features, visual_mask),
                }
            )
        base = self.lddu(
            text_features=text_features,
            text_mask=text_mask,
            audio_features=audio_features,
            audio_mask=audio_mask,
            visual_features=visual_features,
            visual_mask=visual_mask,
        )
        scores, semantic_scores, mean_scores, spread_scores = self.fusion(
            base.label_features, base.means, base.spreads
        )

        loss = semantic_loss = fused_loss = contrastive_loss = calibration_loss = None
        if labels is not None:
            if tuple(labels.shape) != tuple(scores.shape):
                raise ValueError(
                    f"labels must have shape (batch, num_labels) = {tuple(scores.shape)}; got "
                    f"{tuple(labels.shape)}."
                )
            labels = labels.float()
            config = self.config
            # Probability-space BCE, always in fp32 (autocast refuses binary_cross_entropy).
            with torch.autocast(device_type=scores.device.type, enabled=False):
                semantic_loss = F.binary_cross_entropy(semantic_scores.float(), labels)
                fused_loss = F.binary_cross_entropy(scores.float(), labels)
            features, classes = contrastive_features_and_classes(base.means, base.spreads, labels)
            keep = base.modality_presence[:, :, None].expand(-1, -1, labels.shape[1]).reshape(-1)
            contrastive_loss = self.contrastive_memory(
                features, classes, keep=keep, update_queue=self.training
            )
            calibration_loss = uncertainty_calibration_loss(base.spreads, semantic_scores)
            loss = (
                config.semantic_loss_weight * semantic_loss
                + config.fused_loss_weight * fused_loss
                + config.contrastive_loss_weight * contrastive_loss
                + config.calibration_loss_weight * calibration_loss
            )

        return LDDUEmotionRecognitionOutput(
            loss=loss,
            scores=scores,
            semantic_scores=semantic_scores,
            mean_scores=mean_scores,
            spread_scores=spread_scores,
            uncertainty=gated_mixture_uncertainty(scores),
            gate_uncertainty=1.0 - (2.0 * semantic_scores - 1.0).abs(),
            means=base.means,
            spreads=base.spreads,
            label_features=base.label_features,
            semantic_loss=semantic_loss,
            fused_loss=fused_loss,
            contrastive_loss=contrastive_loss,
            calibration_loss=calibration_loss,
        )

    def _drop_modalities(self, inputs: dict) -> tuple:
        """
        Training-time modality dropout: mark a (sample, modality) absent with probability
        ``config.modality_dropout[modality]``. A sample that would be left with no modality keeps
        one of those it had, chosen at random. Returns the three masks (text, audio, visual).
        """
        names = [m for m in MODALITIES if inputs[m][0] is not None]
        masks = {m: inputs[m][1] for m in MODALITIES}
        if not names:
            return masks["text"], masks["audio"], masks["visual"]
        first = inputs[names[0]][0]
        batch, device = first.shape[0], first.device
        present, dropped = [], []
        for modality in names:
            features, mask = inputs[modality]
            if mask is None:
                mask = torch.ones(features.shape[:2], dtype=torch.long, device=device)
            masks[modality] = mask
            present.append(mask.bool().any(dim=1))
            probability = self.config.modality_dropout.get(modality, 0.0)
            dropped.append(torch.rand(batch, device=device) < probability)
        present, dropped = torch.stack(present), torch.stack(dropped)  # [modalities, batch]
        emptied = ~(present & ~dropped).any(dim=0) & present.any(dim=0)
        # Rescue one present modality per emptied sample: the argmax of random keys over present ones.
        keys = torch.rand(present.shape, device=device).masked_fill(~present, -1.0)
        rescue = F.one_hot(keys.argmax(dim=0), num_classes=len(names)).T.bool() & emptied[None, :]
        dropped = dropped & ~rescue
        for index, modality in enumerate(names):
            keep = (~dropped[index]).to(masks[modality].dtype)
            masks[modality] = masks[modality] * keep[:, None]
        return masks["text"], masks["audio"], masks["visual"]

    def save_pretrained(self, save_directory, *args, **kwargs):
        """
        Save as transformers does (also what ``push_to_hub`` writes), so that the folder serves the
        Auto classes and the pipeline and never names a file it lacks:

        - ``auto_map`` also maps ``AutoModel`` to :class:`LDDUModel`, so that
          ``AutoModel.from_pretrained(folder, trust_remote_code=True)`` gives the base model;
        - the pipeline's code (``pipeline_lddu.py``) is always written, and ``custom_pipelines``
          names it (and nothing else), so that ``pipeline(model=folder, trust_remote_code=True)``
          finds the task's code in the folder, whether or not the model went through a pipeline.

        The feature extractor is not the model's to write: it holds the normalisation statistics
        fitted on the training data. Without it the pipeline stops with a message that says how to
        add it; the pipeline's own ``save_pretrained`` / ``push_to_hub`` write both.
        """
        # A relative import, which is what makes transformers copy `pipeline_lddu.py` (and what it
        # imports relatively) next to the weights, also when this class was loaded as remote code.
        from .pipeline_lddu import LDDUEmotionPipeline

        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", f"{LDDUModel.__module__.rsplit('.', 1)[-1]}.LDDUModel")
        self.config.auto_map = auto_map
        # The entry Pipeline.save_pretrained writes, with class names instead of classes.
        self.config.custom_pipelines = {
            task: {
                **info,
                "impl": f"{info['impl'].__module__.rsplit('.', 1)[-1]}.{info['impl'].__name__}",
                "pt": [model_class.__name__ for model_class in info["pt"]],
            }
            for task, info in LDDUEmotionPipeline._registered_impl.items()
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """
        As `PreTrainedModel.from_pretrained`. With a new label set (``num_labels=`` or ``id2label=``
        and ``ignore_mismatched_sizes=True``), the label-indexed weights that no longer fit are
        initialised by :meth:`_init_weights`, and the contrastive queue, whose class ids index the
        checkpoint's labels, is reset, as :meth:`reset_label_set` does.
        """
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
        if any(key.endswith("label_embeddings.weight") for key, *_ in info["mismatched_keys"]):
            model.contrastive_memory.reset_queue()
        return (model, info) if output_loading_info else model

    @torch.no_grad()
    def reset_label_set(self, id2label: dict[int, str]) -> None:
        """
        Switch to a new label set: re-create every label-indexed module (the label embeddings and
        the per-emotion mean and spread classifiers), initialise them with :meth:`_init_weights`,
        drop tuned per-label thresholds and reset the contrastive queue (its class ids are
        label-indexed).
        """
        config = self.config
        old = [config.id2label[index] for index in range(config.num_labels)]
        config.id2label = {int(key): value for key, value in id2label.items()}
        config.label2id = {value: key for key, value in config.id2label.items()}
        config.label_thresholds = None
        logger.info("Replacing the label set %s with %s", old, list(config.id2label.values()))
        device = self.lddu.label_embeddings.weight.device
        self.lddu.label_embeddings = nn.Embedding(config.num_labels, config.hidden_size).to(device)
        init.xavier_uniform_(self.lddu.label_embeddings.weight)
        latent_input = len(LATENT_MODALITY_ORDER) * config.latent_size
        for name in ("mean_classifier", "spread_classifier"):
            head = LDDUPerLabelClassifier(config, latent_input).to(device)
            self._init_weights(head)
            setattr(self.fusion, name, head)
        self.contrastive_memory.reset_queue()

    def predict(self, scores: torch.Tensor) -> torch.Tensor:
        """Binary predictions from fused scores at the config's threshold(s)."""
        thresholds = torch.tensor(self.config.thresholds, device=scores.device, dtype=scores.dtype)
        return (scores > thresholds).long()


# Auto classes: `save_pretrained` writes `auto_map` and copies this code next to the weights.
LDDUModel.register_for_auto_class("AutoModel")
LDDUForEmotionRecognition.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "LDDUEmotionRecognitionOutput",
    "LDDUForEmotionRecognition",
    "LDDUModel",
    "LDDUModelOutput",
    "LDDUPreTrainedModel",
    "contrastive_features_and_classes",
    "gated_mixture_uncertainty",
    "uncertainty_calibration_loss",
]
