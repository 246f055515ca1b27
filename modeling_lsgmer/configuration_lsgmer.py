"""Configuration of LSGMER (Shao, Yu, Wang, "Leveraging Label Potential for Enhanced Multimodal
Emotion Recognition", arXiv 2504.05158).

No code of the authors is public and only a third-party summary of the paper's equations could be
read, so this model is built from that description. Every gap is filled with a named **design
choice (DC)**, listed in :class:`LsgmerConfig`'s docstring and in the model card.

This file is remote code: it imports only ``transformers`` and the standard library.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import field, fields

from transformers import AutoConfig, PreTrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

#: The modalities in the package's one order: forward signatures, loops over inputs, the feature
#: extractor, the pipeline and every table.
MODALITIES: tuple[str, ...] = ("text", "audio", "visual")

#: IEMOCAP's four-class setting, the default label set (the paper evaluates on IEMOCAP and MELD).
IEMOCAP_EMOTIONS: tuple[str, ...] = ("neutral", "happy", "sad", "angry")

#: Values of ``LsgmerConfig.problem_type``.
PROBLEM_TYPES: tuple[str, ...] = ("single_label_classification", "multi_label_classification")

#: Values of ``LsgmerConfig.lse_query`` (ambiguity A1): which side queries in the label attention.
LSE_QUERIES: tuple[str, ...] = ("label", "sequence")

#: Values of ``LsgmerConfig.label_update`` (ambiguity A3): what the label-embedding EMA averages in.
LABEL_UPDATES: tuple[str, ...] = ("ema_prototype", "ema_param")

#: Keys a config may carry besides its fields: those `PreTrainedConfig.__post_init__` consumes and
#: those transformers (or `save_pretrained`) writes into config.json. Any other key is a typo that
#: would otherwise be stored and ignored; keys starting with ``_`` are transformers' internals.
# Copied from modeling_lddu.configuration_lddu.TRANSFORMERS_CONFIG_KEYS
TRANSFORMERS_CONFIG_KEYS: frozenset[str] = frozenset(
    {
        "num_labels",
        "model_type",
        "auto_map",
        "custom_pipelines",
        "transformers_version",
        "torch_dtype",
        "name_or_path",
        "output_attentions",
        "attn_implementation",
        "experts_implementation",
        "per_layer_config",
        "pad_token_id",
        "bos_token_id",
        "eos_token_id",
        "sep_token_id",
        "decoder_start_token_id",
        "tie_word_embeddings",
        "use_cache",
        "tokenizer_class",
        "finetuning_task",
        "task_specific_params",
        "prefix",
        "cross_attention_hidden_size",
        "add_cross_attention",
        "is_decoder",
        "tie_encoder_decoder",
        "pruned_heads",
        "torchscript",
    }
)


class LsgmerConfig(PreTrainedConfig):
    r"""
    Configuration of an LSGMER model: label signal enhancement (LSE: label attention per modality,
    a sigmoid gate and a moving-average update of the label embeddings) and joint objective
    optimisation (the task loss plus the attribution-prediction consistency loss, APC).

    Names follow transformers conventions; the names of the written specification map as
    ``input_dims -> text_dim / audio_dim / visual_dim``, ``d_model -> hidden_size``,
    ``encoder_layers -> num_hidden_layers``, ``encoder_heads -> num_attention_heads``,
    ``dropout -> hidden_dropout_prob`` and ``attention_probs_dropout_prob``, ``max_positions ->
    max_position_embeddings``.

    Design choices (DC), each a default that a field can change:

    - **DC-A1** ``lse_query="label"``: the label embeddings query each encoded sequence (one
      vector per label, ``[batch, labels, hidden]``), the literal reading of E1.
    - **DC-A2** the "original features" of E2 are the projected inputs ``LayerNorm(Linear(x))``,
      masked-mean pooled and broadcast over the labels; the attended ones are the encoder outputs.
    - **DC-A3** ``label_update="ema_prototype"``: the label embeddings are a buffer, moved after
      each training step toward the class means of the fused embeddings, ``label_ema=0.9``; labels
      absent from the batch keep their row.
    - **DC-A4** fusion: per label, the modalities' gated rows are concatenated, then
      ``GELU(Linear)``, then attention pooling over the labels with a learned query.
    - **DC-E5** attribution temperature ``apc_temperature=0.1``; multi-label attribution is a
      sigmoid per label (independent Bernoulli variables).
    - **DC-E6** ``apc_weight=0.5``; the JS divergence is computed in fp32, with gradients through
      both distributions; multi-label: the mean over labels of the Bernoulli JS.
    - **DC-enc** unimodal encoders: learned positions and post-LN transformer layers (LDDU's
      block, copied), ``intermediate_size = 4 * hidden_size``; one depth for every modality.
    - **DC-miss** an absent (sample, modality) contributes zero gated label features, and its
      label attention map is zero.
    - **DC-unc** ``consistency_uncertainty``: the Jensen-Shannon disagreement (in bits) between the
      prediction and the attribution distribution.

    Args:
        modalities (`list[str]`): The modalities the model reads, a subset of ``("text", "audio",
            "visual")`` (default text and audio, as in the paper). Inputs of other modalities are
            accepted and ignored.
        text_dim / audio_dim / visual_dim (`int`): Feature size of each modality's frames.
        hidden_size (`int`): Model width ``d`` (encoders, label embeddings, fusion).
        num_hidden_layers (`int`): Transformer layers of each unimodal encoder.
        num_attention_heads (`int`): Heads of the encoders' self-attention.
        intermediate_size (`int`): Feed-forward width of the encoder layers.
        hidden_dropout_prob (`float`): Dropout of the encoders, the label attention output and the
            classifier input.
        attention_probs_dropout_prob (`float`): Dropout on attention weights.
        max_position_embeddings (`int`): Size of the learned position tables; no modality sequence
            may be longer.
        layer_norm_eps (`float`): Epsilon of every LayerNorm.
        initializer_range (`float`): Standard deviation of the normal initialisation of weights.
        lse_heads (`int`): Heads of the label attention (E1).
        lse_query (`str`): ``"label"`` (DC-A1) or ``"sequence"`` (each frame queries the label
            embeddings; the gated frames are then masked-mean pooled and broadcast over labels).
        label_update (`str`): ``"ema_prototype"`` (DC-A3) or ``"ema_param"`` (a mean teacher): the
            label embeddings of E1 are a trained parameter, and those of the attribution (E4) a
            moving average of it, ``teacher <- label_ema * teacher + (1 - label_ema) * parameter``
            at each training forward.
        label_ema (`float`): ``alpha`` of E3 in [0, 1]; 1 freezes the label embeddings.
        apc_temperature (`float`): Temperature ``tau`` of the attribution distribution (E5).
        apc_weight (`float`): Weight of the APC loss; 0 gives the plain label-attention classifier.
        problem_type (`str`): ``"single_label_classification"`` (default: softmax, cross-entropy)
            or ``"multi_label_classification"`` (sigmoid, binary cross-entropy).
        decision_threshold (`float`): Score above which a label is predicted (multi-label).
        label_thresholds (`list[float]`, *optional*): One threshold per label; overrides
            ``decision_threshold`` when set.
        text_backbone_config (`dict`, *optional*), text_backbone_layer (`int`),
        freeze_text_backbone (`bool`), text_backbone_trainable_layers (`int`, *optional*): a
            pretrained text encoder inside the model, exactly as in ``LDDUConfig`` (the family
            contract's text backbone; default: none, text arrives as frames).
        id2label / label2id: The emotions, in class order. Default: IEMOCAP's four classes.
    """

    model_type = "lsgmer"
    # Outputs a plain `transformers.Trainer` should not collect as predictions (class attribute,
    # not saved). This package's trainer collects the model's `prediction_fields` by name instead.
    keys_to_ignore_at_inference = [
        "attribution_probs",
        "label_attentions",
        "fused_embedding",
        "label_features",
        "sample_uncertainty",
        "task_loss",
        "apc_loss",
    ]

    modalities: list[str] = field(default_factory=lambda: ["text", "audio"])
    text_dim: int = 768
    audio_dim: int = 768
    visual_dim: int = 35
    hidden_size: int = 256
    num_hidden_layers: int = 2
    num_attention_heads: int = 4
    intermediate_size: int = 1024
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 512
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    lse_heads: int = 4
    lse_query: str = "label"
    label_update: str = "ema_prototype"
    label_ema: float = 0.9
    apc_temperature: float = 0.1
    apc_weight: float = 0.5
    decision_threshold: float = 0.5
    label_thresholds: list[float] | None = None
    text_backbone_config: dict | None = None
    text_backbone_layer: int = -1
    freeze_text_backbone: bool = True
    text_backbone_trainable_layers: int | None = None

    def __post_init__(self, **kwargs):
        self._reject_unknown_keys(kwargs)
        if self.id2label is None and "num_labels" not in kwargs:
            self.id2label = dict(enumerate(IEMOCAP_EMOTIONS))
        if self.problem_type is None:
            self.problem_type = "single_label_classification"
        super().__post_init__(**kwargs)
        if self.id2label is not None and not self.label2id:
            self.label2id = {label: index for index, label in self.id2label.items()}
        thresholds = self.label_thresholds
        if "num_labels" in kwargs and thresholds is not None and len(thresholds) != self.num_labels:
            logger.warning(
                "Dropping the %d per-label thresholds tuned for the previous label set; the %d "
                "new labels use decision_threshold=%s.",
                len(thresholds),
                self.num_labels,
                self.decision_threshold,
            )
            self.label_thresholds = None
        self._validate_lsgmer()
        self._validate_text_backbone()

    # Copied from modeling_lddu.configuration_lddu.LDDUConfig._reject_unknown_keys with LDDU->Lsgmer
    def _reject_unknown_keys(self, kwargs: dict) -> None:
        """A key that is neither a field nor one transformers uses: a ValueError naming the
        nearest valid name, instead of an attribute stored and silently ignored."""
        valid = {item.name for item in fields(self)} | TRANSFORMERS_CONFIG_KEYS
        unknown = sorted(key for key in kwargs if key not in valid and not key.startswith("_"))
        if not unknown:
            return
        hints = []
        for key in unknown:
            nearest = difflib.get_close_matches(key, sorted(valid), n=1, cutoff=0.6)
            hints.append(f"{key!r}" + (f" (did you mean {nearest[0]!r}?)" if nearest else ""))
        raise ValueError(
            f"LsgmerConfig got unknown key(s) {', '.join(hints)}; valid keys are the fields listed "
            "in LsgmerConfig's docstring."
        )

    def feature_dim(self, modality: str) -> int:
        """Feature size of ``modality`` (one of :data:`MODALITIES`)."""
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {MODALITIES}.")
        return getattr(self, f"{modality}_dim")

    @property
    def is_multi_label(self) -> bool:
        return self.problem_type == "multi_label_classification"

    # One check per field, in the fields' order.
    def _validate_lsgmer(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"LsgmerConfig.{name} must be a positive integer, got {value!r}.")

        def number(name: str, low: float, high: float, *, closed_high: bool = False) -> None:
            value = getattr(self, name)
            ok = (
                not isinstance(value, bool)
                and isinstance(value, (int, float))
                and math.isfinite(value)
                and low <= value
                and (value <= high if closed_high else value < high)
            )
            if not ok:
                interval = f"[{low}, {high}]" if closed_high else f"[{low}, {high})"
                raise ValueError(
                    f"LsgmerConfig.{name} must be a number in {interval}, got {value!r}."
                )

        modalities = self.modalities
        if (
            not isinstance(modalities, (list, tuple))
            or not modalities
            or any(m not in MODALITIES for m in modalities)
            or len(set(modalities)) != len(modalities)
        ):
            raise ValueError(
                f"LsgmerConfig.modalities must be a non-empty list of distinct modalities from "
                f"{MODALITIES}; got {modalities!r}."
            )
        # Stored in the package order, whatever order they were given in.
        self.modalities = [m for m in MODALITIES if m in modalities]
        for name in (
            "text_dim",
            "audio_dim",
            "visual_dim",
            "hidden_size",
            "num_hidden_layers",
            "num_attention_heads",
            "intermediate_size",
            "max_position_embeddings",
            "lse_heads",
        ):
            positive_int(name)
        for heads in ("num_attention_heads", "lse_heads"):
            if self.hidden_size % getattr(self, heads) != 0:
                raise ValueError(
                    f"LsgmerConfig.hidden_size ({self.hidden_size}) must be divisible by {heads} "
                    f"({getattr(self, heads)})."
                )
        number("hidden_dropout_prob", 0.0, 1.0)
        number("attention_probs_dropout_prob", 0.0, 1.0)
        for name in ("layer_norm_eps", "initializer_range", "apc_temperature"):
            value = getattr(self, name)
            if not (
                isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0
            ) or not math.isfinite(value):
                raise ValueError(f"LsgmerConfig.{name} must be a finite number > 0, got {value!r}.")
        if self.lse_query not in LSE_QUERIES:
            raise ValueError(
                f"LsgmerConfig.lse_query must be one of {LSE_QUERIES}, got {self.lse_query!r}."
            )
        if self.label_update not in LABEL_UPDATES:
            raise ValueError(
                f"LsgmerConfig.label_update must be one of {LABEL_UPDATES}, got "
                f"{self.label_update!r}."
            )
        number("label_ema", 0.0, 1.0, closed_high=True)
        number("apc_weight", 0.0, math.inf)
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"LsgmerConfig.problem_type must be one of {PROBLEM_TYPES}, got "
                f"{self.problem_type!r}."
            )
        threshold = self.decision_threshold
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
            raise ValueError(
                f"LsgmerConfig.decision_threshold must be in (0, 1), got {threshold!r}."
            )
        if self.num_labels < 1:
            raise ValueError(
                f"LsgmerConfig needs at least one label, got num_labels={self.num_labels}."
            )
        keys = sorted(self.id2label) if self.id2label else []
        if keys != list(range(len(keys))):
            raise ValueError(
                f"LsgmerConfig.id2label keys must be exactly 0..{len(keys) - 1} (one per label, in "
                f"class order); got {keys}."
            )
        if self.label_thresholds is not None:
            thresholds = list(self.label_thresholds)
            if len(thresholds) != self.num_labels:
                raise ValueError(
                    f"LsgmerConfig.label_thresholds has {len(thresholds)} values but the model has "
                    f"{self.num_labels} labels."
                )
            for value in thresholds:
                if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                    raise ValueError(
                        f"LsgmerConfig.label_thresholds values must be in (0, 1), got {value!r}."
                    )
            self.label_thresholds = [float(value) for value in thresholds]

    # Copied from modeling_lddu.configuration_lddu.LDDUConfig._validate_text_backbone
    def _validate_text_backbone(self) -> None:
        """The text backbone's fields: a config dict naming its model type, whose hidden size is
        ``text_dim``; a layer index; a positive count of trainable layers."""
        name = type(self).__name__
        backbone = self.text_backbone_config
        if backbone is not None:
            if not isinstance(backbone, dict) or not isinstance(backbone.get("model_type"), str):
                raise ValueError(
                    f"{name}.text_backbone_config must be a text encoder's config as a dict with "
                    f"its 'model_type'; got {type(backbone).__name__}."
                )
            # Through the encoder's config class: some name the width otherwise (DistilBERT: dim).
            hidden_size = AutoConfig.for_model(**backbone).hidden_size
            if hidden_size != self.text_dim:
                raise ValueError(
                    f"{name}.text_dim is {self.text_dim} but the text backbone's hidden_size is "
                    f"{hidden_size}: they must agree."
                )
        if isinstance(self.text_backbone_layer, bool) or not isinstance(
            self.text_backbone_layer, int
        ):
            raise ValueError(
                f"{name}.text_backbone_layer must be an int, got {self.text_backbone_layer!r}."
            )
        layers = self.text_backbone_trainable_layers
        if layers is not None and (
            isinstance(layers, bool) or not isinstance(layers, int) or layers < 1
        ):
            raise ValueError(
                f"{name}.text_backbone_trainable_layers must be a positive int or None, got "
                f"{layers!r}."
            )

    # Copied from modeling_lddu.configuration_lddu.LDDUConfig.thresholds
    @property
    def thresholds(self) -> list[float]:
        """The decision threshold of every label, in class order."""
        if self.label_thresholds is not None:
            return list(self.label_thresholds)
        return [float(self.decision_threshold)] * self.num_labels


LsgmerConfig.register_for_auto_class()

__all__ = [
    "IEMOCAP_EMOTIONS",
    "LABEL_UPDATES",
    "LSE_QUERIES",
    "MODALITIES",
    "PROBLEM_TYPES",
    "LsgmerConfig",
]
