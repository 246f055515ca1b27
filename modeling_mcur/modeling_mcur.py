"""MCUR: Modality-aware Contrastive and Uncertainty-Regularized multimodal emotion recognition.

Zhuang, Liu, Zhang, Deng, Ren, arXiv 2605.06245. Built from the paper's abstract: the two module
ideas (MCB-CL, SUGR) are the paper's, everything else is a design choice (DC) of this package; see
``configuration_mcur.py``, whose docstring lists them.

The forward pass (modality axis in the package order (text, audio, visual) throughout):

1. **Unimodal encoders** (LDDU's blocks, copied): per modality a LayerNorm, a projection plus learned
   positions and a post-LN transformer encoder; a masked mean over the frames gives ``z_m``. Where a
   modality is unavailable, ``z_m`` is a learned missing token (DC).
2. **Modality-aware fusion** (DC): tokens ``z_m + type_m``, one transformer layer whose keys are
   every token, the missing tokens included (``fusion_attends_missing_tokens``; False: the available
   ones only), then a mean over the available tokens: ``h``.
3. **Heads**: ``logits = Linear(h)``; ``u = normalize(MLP(h))`` (the contrastive embedding); with
   SUGR ``learned``, ``s = Linear(h)``, a log-variance clamped to ``+-sugr_clamp``.
4. **Training views** (DC, training mode with labels): each sample is fused ``num_views`` times;
   view 0 uses its available modalities, every other view a random non-empty subset of them (a
   modality really missing is never used). The encoders run once; only the fusion is repeated.
5. **Losses**: ``loss = L_task + con_weight * L_MCB``; ``L_task`` per-sample CE / BCE weighted by
   SUGR; ``L_MCB`` the modality-combination and category SupCon of ``contrastive_mcur.py``.

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

from .configuration_mcur import MODALITIES, McurConfig
from .contrastive_mcur import mcb_contrastive_loss

logger = logging.get_logger(__name__)


@dataclass
class McurModelOutput(ModelOutput):
    """
    Output of :class:`McurModel`. Modality axis in (text, audio, visual) order.

    Args:
        pooled_output (`torch.FloatTensor` of shape `(batch, hidden_size)`):
            The fused representation ``h``.
        modality_tokens (`torch.FloatTensor` of shape `(batch, 3, hidden_size)`):
            ``z_m`` per modality, the learned missing token where the modality is unavailable.
        modality_mask (`torch.BoolTensor` of shape `(batch, 3)`):
            Which modalities each sample had (given, or derived as "has a valid frame").
    """

    pooled_output: torch.FloatTensor | None = None
    modality_tokens: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None


@dataclass
class McurEmotionRecognitionOutput(ModelOutput):
    """
    Output of :class:`McurForEmotionRecognition`. Every field but the losses describes view 0, the
    sample's available modalities.

    Args:
        loss (`torch.FloatTensor` of shape `()`, returned when `labels` is given):
            ``task_loss + con_weight * mcb_loss`` (float32).
        scores (`torch.FloatTensor` of shape `(batch, num_labels)`):
            Probabilities: softmax of ``logits`` (single-label) or sigmoid (multi-label); the
            specification's ``probs``. Compare with ``config.thresholds`` to predict (multi-label).
        logits (`torch.FloatTensor` of shape `(batch, num_labels)`): Classifier outputs.
        embeddings (`torch.FloatTensor` of shape `(batch, proj_dim)`):
            The unit-norm contrastive embedding ``u``.
        sample_uncertainty (`torch.FloatTensor` of shape `(batch,)`):
            Higher = less sure. SUGR ``learned``: ``exp(s)``, the predicted variance. ``entropy``
            and ``none``: the prediction entropy normalised to [0, 1] (softmax entropy / log C for
            single-label; mean binary entropy / log 2 over the labels for multi-label).
        modality_mask (`torch.BoolTensor` of shape `(batch, 3)`):
            The modalities each sample had, in (text, audio, visual) order.
        task_loss / mcb_loss / category_loss / combination_loss (`torch.FloatTensor` of shape
            `()`, with `labels`): ``L_task`` (after SUGR), ``L_MCB``, ``L_cat``, ``L_comb``.
    """

    loss: torch.FloatTensor | None = None
    scores: torch.FloatTensor | None = None
    logits: torch.FloatTensor | None = None
    embeddings: torch.FloatTensor | None = None
    sample_uncertainty: torch.FloatTensor | None = None
    modality_mask: torch.BoolTensor | None = None
    task_loss: torch.FloatTensor | None = None
    mcb_loss: torch.FloatTensor | None = None
    category_loss: torch.FloatTensor | None = None
    combination_loss: torch.FloatTensor | None = None


# 1. Unimodal encoders (LDDU's blocks)
# Copied from modeling_lddu.modeling_lddu.lddu_dropout with LDDU->Mcur, lddu->mcur
def mcur_dropout(hidden: torch.Tensor, probability: float, training: bool) -> torch.Tensor:
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


# Copied from modeling_lddu.modeling_lddu.LDDUDropout with LDDU->Mcur, lddu->mcur
class McurDropout(nn.Dropout):
    """``nn.Dropout`` computed with :func:`mcur_dropout`."""

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return mcur_dropout(hidden, self.p, self.training)


# Copied from modeling_lddu.modeling_lddu.LDDUEmbeddings with LDDU->Mcur
class McurEmbeddings(nn.Module):
    """Input LayerNorm, feature projection and learned positions of one modality."""

    def __init__(self, config: McurConfig, feature_dim: int):
        super().__init__()
        # The authors normalise raw features with a LayerNorm of epsilon 1e-12 before projecting.
        self.input_norm = nn.LayerNorm(feature_dim, eps=config.layer_norm_eps)
        self.feature_projection = nn.Linear(feature_dim, config.hidden_size)
        self.position_embeddings = nn.Embedding(config.max_position_embeddings, config.hidden_size)
        self.layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = McurDropout(config.hidden_dropout_prob)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # features: [batch, length, feature_dim] -> [batch, length, hidden]
        length = features.shape[1]
        # Inputs come as float32 from the feature extractor; compute in the dtype of the weights.
        hidden = self.feature_projection(self.input_norm(features.to(self.input_norm.weight.dtype)))
        hidden = hidden + self.position_embeddings.weight[:length]
        return self.dropout(self.layer_norm(hidden))


# Copied from modeling_lddu.modeling_lddu.LDDUSelfAttention with LDDU->Mcur, lddu->mcur
class McurSelfAttention(nn.Module):
    """
    Multi-head self-attention with the BERT parameterisation. ``config._attn_implementation``
    chooses the kernel: ``"sdpa"`` (the default: PyTorch's fused scaled dot-product attention) or
    ``"eager"`` (softmax of the explicit score matrix); both compute the same attention.
    """

    def __init__(self, config: McurConfig):
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
            # one uses mcur_dropout).
            scores = (query * self.head_dim**-0.5) @ key.transpose(-1, -2)  # [b, heads, l, l]
            if attention_mask is not None:  # [batch, 1, 1, length] bool, True = attend
                # + 0 / -inf: the same scores as a masked fill, and a pass-through backward.
                scores.add_(
                    torch.zeros_like(attention_mask, dtype=scores.dtype).masked_fill_(
                        ~attention_mask, float("-inf")
                    )
                )
            probabilities = mcur_dropout(scores.softmax(dim=-1), dropout, self.training)
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


# Copied from modeling_lddu.modeling_lddu.LDDUEncoderLayer with LDDU->Mcur
class McurEncoderLayer(nn.Module):
    """Post-LN transformer layer: attention, residual + LN, feed-forward, residual + LN."""

    def __init__(self, config: McurConfig):
        super().__init__()
        self.attention = McurSelfAttention(config)
        self.attention_output = nn.Linear(config.hidden_size, config.hidden_size)
        self.attention_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.intermediate = nn.Linear(config.hidden_size, config.intermediate_size)
        self.output = nn.Linear(config.intermediate_size, config.hidden_size)
        self.output_layer_norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = McurDropout(config.hidden_dropout_prob)

    def forward(self, hidden: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        attended = self.attention_output(self.attention(hidden, attention_mask))
        hidden = self.attention_layer_norm(self.dropout(attended) + hidden)
        feed_forward = self.output(F.gelu(self.intermediate(hidden)))
        return self.output_layer_norm(self.dropout(feed_forward) + hidden)


# Copied from modeling_lddu.modeling_lddu.LDDUModalityEncoder with LDDU->Mcur
class McurModalityEncoder(nn.Module):
    """Transformer encoder of one modality: [batch, length, feature_dim] -> [batch, length, hidden]."""

    def __init__(self, config: McurConfig, modality: str):
        super().__init__()
        self.modality = modality
        self.embeddings = McurEmbeddings(config, config.feature_dim(modality))
        self.layers = nn.ModuleList(
            [McurEncoderLayer(config) for _ in range(config.num_layers(modality))]
        )

    def forward(self, features: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        hidden = self.embeddings(features)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask)
        return hidden


# 2. Modality-aware fusion
class McurModalityFusion(nn.Module):
    """
    ``[batch, 3, hidden]`` modality tokens -> ``h`` ``[batch, hidden]``: type embeddings, one
    transformer layer (LDDU's encoder layer) and the mean over the available tokens. The layer's
    keys are all three tokens, so the available tokens attend to the missing tokens, which learn
    through it (``fusion_attends_missing_tokens``, DC default); with that option False, only the
    available tokens. A sample with no modality at all attends to and averages every (missing)
    token: its prediction is a learned prior.
    """

    def __init__(self, config: McurConfig):
        super().__init__()
        self.attend_missing_tokens = config.fusion_attends_missing_tokens
        self.type_embeddings = nn.Embedding(len(MODALITIES), config.hidden_size)
        self.layer = McurEncoderLayer(config)

    def forward(self, tokens: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
        hidden = tokens + self.type_embeddings.weight  # [n, 3, hidden]
        pooled = modality_mask | ~modality_mask.any(dim=1, keepdim=True)  # [n, 3]
        keys = torch.ones_like(pooled) if self.attend_missing_tokens else pooled
        hidden = self.layer(hidden, keys[:, None, None, :])  # bool, True = attend
        weights = pooled.to(hidden.dtype)[:, :, None]
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1)


# 3. Heads
class McurProjectionHead(nn.Module):
    """``u = normalize(Linear(GELU(Linear(h))))``: ``hidden -> hidden -> proj_dim``, unit norm."""

    def __init__(self, config: McurConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.output = nn.Linear(config.hidden_size, config.proj_dim)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.output(F.gelu(self.dense(pooled))), dim=-1)


# Copied from modeling_lddu.modeling_lddu.LDDUTextBackbone with LDDU->Mcur
class McurTextBackbone(nn.Module):
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


class McurPreTrainedModel(PreTrainedModel):
    config_class = McurConfig
    base_model_prefix = "mcur"
    main_input_name = "text_features"
    input_modalities = ("text", "audio", "video")
    _no_split_modules = ["McurModalityEncoder"]
    _supports_sdpa = True  # and eager: see McurSelfAttention
    # Gradient checkpointing reaches the text backbone's layers (the model's own are small).
    supports_gradient_checkpointing = True

    @torch.no_grad()
    def _init_weights(self, module: nn.Module) -> None:
        """BERT's initialisation for every block (DC): linear and embedding weights
        normal(0, initializer_range), zero biases, unit LayerNorms; the missing tokens
        normal(0, initializer_range)."""
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Embedding)):
            init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, McurModel):
            init.normal_(module.missing_tokens, mean=0.0, std=std)
        elif isinstance(module, McurTextBackbone):
            # The encoder's own initialisation (after the generic branches above met its layers).
            for submodule in module.encoder.modules():
                module.encoder._init_weights(submodule)

    @classmethod
    def from_pretrained(cls, *args, **kwargs):
        """As `PreTrainedModel.from_pretrained`; a text backbone's frozen weights stay frozen."""
        output_loading_info = kwargs.pop("output_loading_info", False)
        model, info = super().from_pretrained(*args, output_loading_info=True, **kwargs)
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


# 1-2. Base model: unimodal encoders -> missing tokens -> fusion
class McurModel(McurPreTrainedModel):
    """
    MCUR without its heads: the fused representation ``h`` of the available modalities.

    A modality is unavailable for a sample when its features are left out (``None``, or zero
    frames), when its mask row is all zero, or when ``modality_mask`` says so. An unavailable
    modality's frames never influence any output.
    """

    def __init__(self, config: McurConfig):
        super().__init__(config)
        self.encoders = nn.ModuleDict({m: McurModalityEncoder(config, m) for m in MODALITIES})
        self.missing_tokens = nn.Parameter(torch.empty(len(MODALITIES), config.hidden_size))
        self.fusion = McurModalityFusion(config)
        self.text_backbone = McurTextBackbone(config) if config.text_backbone_config else None
        self.post_init()

    def forward(
        self,
        text_features: torch.Tensor | None = None,
        text_mask: torch.Tensor | None = None,
        audio_features: torch.Tensor | None = None,
        audio_mask: torch.Tensor | None = None,
        visual_features: torch.Tensor | None = None,
        visual_mask: torch.Tensor | None = None,
        modality_mask: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
    ) -> McurModelOutput:
        r"""
        Args:
            text_features / audio_features / visual_features (`torch.FloatTensor` of shape
                `(batch, length_m, feature_dim_m)`, *optional*): frame features per modality.
            text_mask / audio_mask / visual_mask (`torch.Tensor` of shape `(batch, length_m)`,
                *optional*): 1 for real frames, 0 for padding; an all-zero row marks the modality
                unavailable for that sample. Omitted: every frame is real.
            modality_mask (`torch.BoolTensor` of shape `(batch, 3)`, *optional*): availability per
                modality in (text, audio, visual) order. Omitted: "has a valid frame". It may
                mark a modality with frames unavailable, never one without frames available.
            text_input_ids / text_attention_mask (`torch.LongTensor` of shape `(batch, tokens)`,
                *optional*): the processor's tokens, for a model with a text backbone
                (``config.text_backbone_config``) instead of ``text_features``; ``text_mask`` then
                marks the tokens that become frames.
        """
        text_features, text_mask = self._text_frames(
            text_features, text_mask, text_input_ids, text_attention_mask
        )
        tokens, modality_mask = self.encode_modalities(
            {
                "text": (text_features, text_mask),
                "audio": (audio_features, audio_mask),
                "visual": (visual_features, visual_mask),
            },
            modality_mask,
        )
        return McurModelOutput(
            pooled_output=self.fuse(tokens, modality_mask),
            modality_tokens=torch.where(modality_mask[:, :, None], tokens, self.missing_tokens),
            modality_mask=modality_mask,
        )

    def encode_modalities(
        self, inputs: dict, modality_mask: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per modality the masked mean ``z_m`` of its encoded frames (0 where it has no frame),
        stacked ``[batch, 3, hidden]``, and the availability ``[batch, 3]`` bool."""
        batch_size, device = self._batch_size_and_device(inputs)
        pooled, has_frames = [], []
        for modality in MODALITIES:
            features, mask = inputs[modality]
            if features is None or features.shape[1] == 0:
                if features is not None:
                    self._check_features(modality, features, batch_size)
                pooled.append(self.missing_tokens.new_zeros(batch_size, self.config.hidden_size))
                has_frames.append(torch.zeros(batch_size, dtype=torch.bool, device=device))
                continue
            self._check_features(modality, features, batch_size)
            frames = self._checked_mask(modality, mask, features)  # [batch, length] bool
            present = frames.any(dim=1)
            # Padding is excluded by the mask, but a NaN there would reach the weighted sums as
            # 0 * NaN: padded frames are zeroed. A sample without frames attends to all of its
            # (zeroed) frames, so that no softmax sees only -inf; its token is replaced afterwards.
            features = torch.where(frames[:, :, None], features, 0.0)
            attend = frames | ~present[:, None]
            hidden = self.encoders[modality](features, attend[:, None, None, :])
            weights = frames.to(hidden.dtype)[:, :, None]
            pooled.append((hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0))
            has_frames.append(present)
        has_frames = torch.stack(has_frames, dim=1)  # [batch, 3]
        return torch.stack(pooled, dim=1), self._availability(modality_mask, has_frames)

    def fuse(self, tokens: torch.Tensor, modality_mask: torch.Tensor) -> torch.Tensor:
        """``h`` from per-modality tokens ``[n, 3, hidden]``; unavailable ones become the missing
        tokens first."""
        tokens = torch.where(modality_mask[:, :, None], tokens, self.missing_tokens)
        return self.fusion(tokens, modality_mask)

    @staticmethod
    def _availability(modality_mask: torch.Tensor | None, has_frames: torch.Tensor) -> torch.Tensor:
        if modality_mask is None:
            return has_frames
        expected = tuple(has_frames.shape)
        if not isinstance(modality_mask, torch.Tensor) or tuple(modality_mask.shape) != expected:
            shape = tuple(modality_mask.shape) if isinstance(modality_mask, torch.Tensor) else None
            raise ValueError(
                f"modality_mask must be a bool tensor of shape (batch, {len(MODALITIES)}) = "
                f"{expected} in {MODALITIES} order; got {shape or type(modality_mask).__name__}."
            )
        if modality_mask.dtype != torch.bool:
            if modality_mask.is_floating_point() or modality_mask.is_complex():
                raise ValueError(
                    f"modality_mask must be bool (or 0/1 integers); got dtype {modality_mask.dtype}."
                )
            if not ((modality_mask == 0) | (modality_mask == 1)).all():
                raise ValueError("modality_mask must hold only 0 / 1 (False / True).")
            modality_mask = modality_mask.bool()
        modality_mask = modality_mask.to(has_frames.device)
        claimed = modality_mask & ~has_frames
        if claimed.any():
            sample, index = (int(value) for value in claimed.nonzero()[0])
            raise ValueError(
                f"modality_mask marks {MODALITIES[index]} available for sample {sample}, but that "
                f"sample has no valid {MODALITIES[index]} frame (features missing or mask row all "
                "zero)."
            )
        return modality_mask

    @staticmethod
    def _batch_size_and_device(inputs: dict) -> tuple[int, torch.device]:
        for modality in MODALITIES:
            features = inputs[modality][0]
            if features is not None:
                return features.shape[0], features.device
        raise ValueError(
            "MCUR needs the features of at least one modality: pass text_features, "
            "audio_features or visual_features."
        )

    def _check_features(self, modality: str, features: torch.Tensor, batch_size: int) -> None:
        expected_dim = self.config.feature_dim(modality)
        if features.dim() != 3 or features.shape[2] != expected_dim:
            raise ValueError(
                f"{modality}_features must have shape (batch, length, {expected_dim}) "
                f"({modality}_dim={expected_dim}); got {tuple(features.shape)}."
            )
        if features.shape[0] != batch_size:
            raise ValueError(
                f"{modality}_features has batch size {features.shape[0]} but another modality has "
                f"{batch_size}."
            )
        if features.shape[1] > self.config.max_position_embeddings:
            raise ValueError(
                f"{modality}_features has {features.shape[1]} frames, more than "
                f"max_position_embeddings={self.config.max_position_embeddings}; truncate it (the "
                "feature extractor does)."
            )

    @staticmethod
    def _checked_mask(
        modality: str, mask: torch.Tensor | None, features: torch.Tensor
    ) -> torch.Tensor:
        batch_size, length = features.shape[:2]
        if mask is None:
            return torch.ones(batch_size, length, dtype=torch.bool, device=features.device)
        if tuple(mask.shape) != (batch_size, length):
            raise ValueError(
                f"{modality}_mask must have shape {(batch_size, length)}; got {tuple(mask.shape)}."
            )
        if not ((mask == 0) | (mask == 1)).all():
            raise ValueError(f"{modality}_mask must hold only 0 (padding) and 1 (real frame).")
        return mask.bool()


# The full model: heads, training views and losses
class McurForEmotionRecognition(McurPreTrainedModel):
    """
    MCUR for emotion recognition, single- or multi-label (``config.problem_type``): the base
    model, the classifier, the contrastive projection and the SUGR head; with ``labels`` the
    losses, over ``num_views`` views per sample in training mode.
    """

    # The family contract of the shared layer (mmer/family.py); the evaluation scores the per-sample
    # `sample_uncertainty` by how well it ranks wrong predictions above right ones.
    prediction_fields = ("scores", "sample_uncertainty")
    lora_target_modules = (
        r".*(encoders\.\w+|fusion)\.layers?(\.\d+)?\.(attention\.(query|key|value)"
        r"|attention_output|intermediate|output)"
        r"|.*projection\.(dense|output)"
    )
    lora_modules_to_save = ("classifier",)

    def __init__(self, config: McurConfig):
        super().__init__(config)
        self.mcur = McurModel(config)
        self.classifier = nn.Linear(config.hidden_size, config.num_labels)
        self.projection = McurProjectionHead(config)
        # Only where it is trained: an unused head would stop DDP (find_unused_parameters=False).
        self.uncertainty_head = (
            nn.Linear(config.hidden_size, 1) if config.sugr_mode == "learned" else None
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
        modality_mask: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        text_input_ids: torch.Tensor | None = None,
        text_attention_mask: torch.Tensor | None = None,
    ) -> McurEmotionRecognitionOutput:
        r"""
        Args:
            modality_mask (`torch.BoolTensor` of shape `(batch, 3)`, *optional*): see
                :meth:`McurModel.forward`.
            labels (`torch.Tensor`, *optional*): `(batch, num_labels)` one-hot (single-label) or
                multi-hot (multi-label) rows, or `(batch,)` class indices (single-label). When
                given, the losses are computed; in training mode over ``num_views`` views.
            text_input_ids / text_attention_mask (`torch.LongTensor` of shape `(batch, tokens)`,
                *optional*): the processor's tokens, for a model with a text backbone
                (``config.text_backbone_config``) instead of ``text_features``; ``text_mask`` then
                marks the tokens that become frames.
        """
        text_features, text_mask = self._text_frames(
            text_features, text_mask, text_input_ids, text_attention_mask
        )
        config = self.config
        tokens, modality_mask = self.mcur.encode_modalities(
            {
                "text": (text_features, text_mask),
                "audio": (audio_features, audio_mask),
                "visual": (visual_features, visual_mask),
            },
            modality_mask,
        )
        batch_size = tokens.shape[0]
        views = modality_mask[None]  # [views, batch, 3]
        if labels is not None and self.training and config.num_views > 1:
            views = torch.cat([views, self._draw_views(modality_mask, config.num_views - 1)])
        num_views = views.shape[0]
        view_mask = views.reshape(num_views * batch_size, -1)  # view-major: row v * batch + i
        pooled = self.mcur.fuse(tokens.repeat(num_views, 1, 1), view_mask)
        all_logits = self.classifier(pooled)
        all_embeddings = self.projection(pooled)
        all_log_variances = None
        if self.uncertainty_head is not None:
            all_log_variances = (
                self.uncertainty_head(pooled)
                .squeeze(-1)
                .clamp(-config.sugr_clamp, config.sugr_clamp)
            )

        logits = all_logits[:batch_size]
        scores = logits.softmax(dim=-1) if config.is_single_label else torch.sigmoid(logits)
        if all_log_variances is not None:
            sample_uncertainty = all_log_variances[:batch_size].exp()
        else:
            sample_uncertainty = normalized_entropy(logits, config.is_single_label).to(logits.dtype)

        loss = task_loss = mcb_loss = category_loss = combination_loss = None
        if labels is not None:
            label_rows = self._label_rows(labels, batch_size, logits.device)
            task_views = num_views if config.task_loss_views == "all" else 1
            rows = task_views * batch_size
            # Losses in float32, also under autocast.
            with torch.autocast(device_type=logits.device.type, enabled=False):
                task_loss = sugr_task_loss(
                    all_logits[:rows].float(),
                    label_rows.repeat(task_views, 1),
                    None if all_log_variances is None else all_log_variances[:rows].float(),
                    config.sugr_mode,
                    config.is_single_label,
                )
                mcb_loss, category_loss, combination_loss = mcb_contrastive_loss(
                    all_embeddings.float(),
                    label_rows.repeat(num_views, 1),
                    view_mask,
                    config.con_temperature,
                    config.comb_weight,
                )
                loss = task_loss + config.con_weight * mcb_loss

        return McurEmotionRecognitionOutput(
            loss=loss,
            scores=scores,
            logits=logits,
            embeddings=all_embeddings[:batch_size],
            sample_uncertainty=sample_uncertainty,
            modality_mask=modality_mask,
            task_loss=task_loss,
            mcb_loss=mcb_loss,
            category_loss=category_loss,
            combination_loss=combination_loss,
        )

    @staticmethod
    def _draw_views(modality_mask: torch.Tensor, count: int) -> torch.Tensor:
        """
        ``count`` further views ``[count, batch, 3]``: each a subset of the sample's available
        modalities drawn uniformly among the non-empty ones (``train_missing="uniform_subsets"``),
        from torch's global generator. A sample without modalities keeps its empty set.
        """
        num_modalities = modality_mask.shape[1]
        device = modality_mask.device
        ids = torch.arange(1, 2**num_modalities, device=device)  # the non-empty combinations
        bits = 2 ** torch.arange(num_modalities, device=device)
        subsets = (ids[:, None] & bits) > 0  # [subsets, 3]
        allowed = ~(subsets[None] & ~modality_mask[:, None]).any(dim=-1)  # [batch, subsets]
        keys = torch.rand(count, *allowed.shape, device=device).masked_fill(~allowed, -1.0)
        chosen = subsets[keys.argmax(dim=-1)]  # [count, batch, 3]
        return torch.where(allowed.any(dim=-1)[None, :, None], chosen, modality_mask[None])

    def _label_rows(self, labels: torch.Tensor, batch_size: int, device) -> torch.Tensor:
        """0/1 float rows `(batch, num_labels)`, checked against the problem type."""
        num_labels = self.config.num_labels
        labels = labels.to(device)
        if labels.dim() == 1 and self.config.is_single_label:
            if labels.shape[0] != batch_size or labels.is_floating_point() or labels.is_complex():
                raise ValueError(
                    f"Class-index labels must be an integer tensor of shape ({batch_size},); got "
                    f"{labels.dtype} {tuple(labels.shape)}."
                )
            if ((labels < 0) | (labels >= num_labels)).any():
                raise ValueError(
                    f"Class-index labels must lie in [0, {num_labels}); got "
                    f"{labels[(labels < 0) | (labels >= num_labels)][:5].tolist()}."
                )
            return F.one_hot(labels.long(), num_labels).float()
        if tuple(labels.shape) != (batch_size, num_labels):
            accepted = " or (batch,) class indices" if self.config.is_single_label else ""
            raise ValueError(
                f"labels must have shape (batch, num_labels) = {(batch_size, num_labels)}"
                f"{accepted}; got {tuple(labels.shape)}."
            )
        labels = labels.float()
        if not ((labels == 0) | (labels == 1)).all():
            raise ValueError("labels rows must hold only 0 and 1 (one-hot or multi-hot).")
        if self.config.is_single_label and not (labels.sum(dim=1) == 1).all():
            raise ValueError(
                "single_label_classification labels must be one-hot rows (exactly one 1 per row)."
            )
        return labels

    def save_pretrained(self, save_directory, *args, **kwargs):
        """
        Save as transformers does, plus (as LDDU does) ``auto_map["AutoModel"]`` ->
        :class:`McurModel` and the pipeline's code (``pipeline_mcur.py``) with its
        ``custom_pipelines`` entry, so that the folder serves the Auto classes and
        ``pipeline(model=folder, trust_remote_code=True)`` without this package.
        """
        # The relative import is what makes transformers copy `pipeline_mcur.py` next to the
        # weights, also when this class was itself loaded as remote code.
        from .pipeline_mcur import McurEmotionPipeline

        auto_map = dict(getattr(self.config, "auto_map", None) or {})
        auto_map.setdefault("AutoModel", f"{McurModel.__module__.rsplit('.', 1)[-1]}.McurModel")
        self.config.auto_map = auto_map
        self.config.custom_pipelines = {
            task: {
                **info,
                "impl": f"{info['impl'].__module__.rsplit('.', 1)[-1]}.{info['impl'].__name__}",
                "pt": [model_class.__name__ for model_class in info["pt"]],
            }
            for task, info in McurEmotionPipeline._registered_impl.items()
        }
        return super().save_pretrained(save_directory, *args, **kwargs)

    @torch.no_grad()
    def reset_label_set(self, id2label: dict[int, str]) -> None:
        """Switch to a new label set: a new classifier, initialised by :meth:`_init_weights`, and
        no tuned per-label thresholds. Nothing else is label-indexed (no queue)."""
        config = self.config
        config.id2label = {int(key): value for key, value in id2label.items()}
        config.label2id = {value: key for key, value in config.id2label.items()}
        config.label_thresholds = None
        device = self.classifier.weight.device
        self.classifier = nn.Linear(config.hidden_size, config.num_labels).to(device)
        self._init_weights(self.classifier)

    def predict(self, scores: torch.Tensor) -> torch.Tensor:
        """Predictions from scores: the argmax class (single-label) or ``score > threshold``."""
        if self.config.is_single_label:
            return scores.argmax(dim=-1)
        thresholds = torch.tensor(self.config.thresholds, device=scores.device, dtype=scores.dtype)
        return (scores > thresholds).long()


# 5. Losses
def per_sample_task_loss(
    logits: torch.Tensor, label_rows: torch.Tensor, single_label: bool
) -> torch.Tensor:
    """``l_i``: cross-entropy (single-label) or the BCE averaged over the labels; `(n,)`."""
    if single_label:
        return F.cross_entropy(logits, label_rows.argmax(dim=-1), reduction="none")
    return F.binary_cross_entropy_with_logits(logits, label_rows, reduction="none").mean(dim=-1)


def normalized_entropy(logits: torch.Tensor, single_label: bool) -> torch.Tensor:
    """Prediction entropy in [0, 1] per sample (float32): ``H(softmax) / log C``, or the mean
    binary entropy of the sigmoids over the labels / ``log 2``."""
    logits = logits.float()
    if single_label:
        log_p = logits.log_softmax(dim=-1)
        return -(log_p.exp() * log_p).sum(dim=-1) / math.log(logits.shape[-1])
    log_p, log_not_p = F.logsigmoid(logits), F.logsigmoid(-logits)
    binary = -(log_p.exp() * log_p + log_not_p.exp() * log_not_p)
    return binary.mean(dim=-1) / math.log(2.0)


def sugr_task_loss(
    logits: torch.Tensor,
    label_rows: torch.Tensor,
    log_variances: torch.Tensor | None,
    mode: str,
    single_label: bool,
) -> torch.Tensor:
    """
    SUGR (Sample-wise Uncertainty-Guided Regularization) on the per-sample task losses ``l_i``:

    * ``learned``: ``mean_i[exp(-s_i) * l_i + s_i / 2]`` (``s`` the clamped log-variance);
    * ``entropy``: ``mean_i[w_i * l_i]``, ``w_i = stopgrad(1 - H(p_i) / H_max)`` renormalised to mean
      1 (all weights 0, every prediction at maximum entropy: plain mean);
    * ``none``: ``mean_i l_i``.
    """
    losses = per_sample_task_loss(logits, label_rows, single_label)
    if mode == "learned":
        return (torch.exp(-log_variances) * losses + 0.5 * log_variances).mean()
    if mode == "entropy":
        with torch.no_grad():
            weights = 1.0 - normalized_entropy(logits, single_label)
            mean = weights.mean()
            weights = weights / mean if mean > 0 else torch.ones_like(weights)
        return (weights * losses).mean()
    return losses.mean()


# Auto classes: `save_pretrained` writes `auto_map` and copies this code next to the weights.
McurModel.register_for_auto_class("AutoModel")
McurForEmotionRecognition.register_for_auto_class("AutoModelForSequenceClassification")

__all__ = [
    "McurEmotionRecognitionOutput",
    "McurForEmotionRecognition",
    "McurModel",
    "McurModelOutput",
    "McurPreTrainedModel",
    "normalized_entropy",
    "per_sample_task_loss",
    "sugr_task_loss",
]
