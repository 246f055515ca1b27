"""Configuration of MCUR (Modality-aware Contrastive and Uncertainty-Regularized multimodal emotion
recognition; Zhuang, Liu, Zhang, Deng, Ren, arXiv 2605.06245).

No code of the paper is public and only its abstract could be read: the network and the losses are
built from that description, and every gap is filled by a **design choice (DC)** of this package,
named as such in :class:`McurConfig`'s docstring below. Nothing here reproduces a number of the
paper.

Field names follow transformers where one exists; the mapping to the specification's names:
``d_model`` -> ``hidden_size``, ``input_dims`` -> ``text_dim`` / ``audio_dim`` / ``visual_dim``,
``modalities`` -> the fixed :data:`MODALITIES` (text, audio, visual), ``num_labels`` -> ``id2label``.

This file is remote code: it imports only ``transformers`` and the standard library.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import fields

from transformers import AutoConfig, PreTrainedConfig
from transformers.utils import logging

logger = logging.get_logger(__name__)

#: The modalities in the package's one order, also the order of MCUR's modality axis
#: (``modality_mask``, the fusion tokens, the combination ids: text = bit 0, audio = bit 1,
#: visual = bit 2).
MODALITIES: tuple[str, ...] = ("text", "audio", "visual")

#: ``McurConfig.problem_type`` values: softmax + cross-entropy, or sigmoid + binary cross-entropy.
PROBLEM_TYPES: tuple[str, ...] = ("single_label_classification", "multi_label_classification")

#: ``McurConfig.sugr_mode`` values (Sample-wise Uncertainty-Guided Regularization).
SUGR_MODES: tuple[str, ...] = ("learned", "entropy", "none")

#: ``McurConfig.train_missing`` values: how the extra training views pick their modalities.
TRAIN_MISSING_MODES: tuple[str, ...] = ("uniform_subsets",)

#: ``McurConfig.task_loss_views`` values: the task loss on view 0 only, or on every view.
TASK_LOSS_VIEWS: tuple[str, ...] = ("first", "all")

#: Keys a config may carry besides its fields: those ``PreTrainedConfig.__post_init__`` consumes
#: and those transformers (or ``save_pretrained``) writes into config.json. Any other key is a typo
#: that would otherwise be stored and ignored; keys starting with ``_`` are transformers' internals.
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


class McurConfig(PreTrainedConfig):
    r"""
    Configuration of an MCUR model: the network and its training losses; nothing about paths,
    devices or schedules. Defaults marked DC are design choices of this package, not the paper's.

    Args:
        text_dim / audio_dim / visual_dim (`int`): Feature size of each modality's frames (the
            specification's ``input_dims``; CMU-MOSEI's 768 / 74 / 35 by default).
        hidden_size (`int`, DC 256): Width ``d`` of the encoders, the fusion and the heads (the
            specification's ``d_model``).
        num_attention_heads (`int`, DC 8): Heads of every self-attention.
        intermediate_size (`int`, DC 256): Feed-forward width of every transformer layer (equal to
            ``hidden_size``, as in LDDU).
        encoder_layers (`int`, DC 2): Depth of each unimodal encoder (LDDU's encoder block).
        hidden_act (`str`): ``"gelu"`` (exact erf form), the only value.
        hidden_dropout_prob / attention_probs_dropout_prob (`float`, DC 0.1): Dropouts of the
            encoders and of the fusion layer.
        max_position_embeddings (`int`): Size of the learned position tables; no modality sequence
            may be longer.
        layer_norm_eps (`float`): Epsilon of every LayerNorm.
        initializer_range (`float`): Standard deviation of the normal initialisation.
        proj_dim (`int`, DC 128): Size of the contrastive embedding ``u``.
        con_temperature (`float`, DC 0.07): Temperature of the MCB-CL SupCon loss.
        con_weight (`float`, DC 0.3): Weight of ``L_MCB`` in ``loss = L_task + con_weight * L_MCB``.
        comb_weight (`float`, DC 0.5): ``L_MCB = comb_weight * L_comb + (1 - comb_weight) * L_cat``.
        num_views (`int`, DC 2): Encodings per sample in training (view 0: the available
            modalities; the others: random non-empty subsets of them).
        train_missing (`str`, DC ``"uniform_subsets"``): How the extra views choose their
            modalities: uniformly among the non-empty subsets of the sample's available ones.
        task_loss_views (`str`, DC ``"first"``): The task loss on view 0 only (``"first"``) or
            averaged over every view (``"all"``).
        sugr_mode (`str`, DC ``"learned"``): SUGR: ``"learned"`` (heteroscedastic weighting by a
            predicted log-variance ``s``), ``"entropy"`` (weights from the prediction entropy) or
            ``"none"`` (plain task loss; the ablation).
        sugr_clamp (`float`, DC 5.0): ``s`` is clamped to ``[-sugr_clamp, sugr_clamp]``.
        fusion_attends_missing_tokens (`bool`, DC True): Whether the fusion layer's attention
            keys include the unavailable modalities' (learned) missing tokens. The package's
            specification asks for two things that contradict each other: an unavailable
            modality's vector is "replaced by a learned missing token", and the fusion masks
            unavailable modalities out of its keys (``key_padding_mask = ~modality_mask``) before
            a mean over the available tokens. With both, a missing token reaches no output and
            gets no gradient unless the sample has no modality at all: the tokens stay at their
            initialisation, and a sample without any modality is answered from untrained tokens.
            DC: True, the available tokens attend to the missing tokens, which therefore learn
            from every sample and training view that lacks a modality; the mean still covers the
            available tokens only. False is the literal key padding (the tokens then only stand
            in for a sample without any modality). Either way the padded frames of an unavailable
            modality never reach an output: its token replaces them.
        decision_threshold (`float`): Score above which an emotion is predicted (multi-label).
        label_thresholds (`list[float]`, *optional*): One threshold per emotion; overrides
            ``decision_threshold`` when set.
        text_backbone_config (`dict`, *optional*), text_backbone_layer (`int`),
        freeze_text_backbone (`bool`), text_backbone_trainable_layers (`int`, *optional*): a
            pretrained text encoder inside the model, exactly as in ``LDDUConfig`` (the family
            contract's text backbone; default: none, text arrives as frames).
        problem_type (`str`): ``"multi_label_classification"`` (default: sigmoid scores, BCE) or
            ``"single_label_classification"`` (softmax scores, cross-entropy).
        id2label / label2id: The emotions, in class order (any number).
    """

    model_type = "mcur"
    # Outputs a plain `transformers.Trainer` should not collect as predictions.
    keys_to_ignore_at_inference = ["logits", "embeddings", "modality_mask", "task_loss", "mcb_loss"]

    text_dim: int = 768
    audio_dim: int = 74
    visual_dim: int = 35
    hidden_size: int = 256
    num_attention_heads: int = 8
    intermediate_size: int = 256
    encoder_layers: int = 2
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.1
    attention_probs_dropout_prob: float = 0.1
    max_position_embeddings: int = 60
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    proj_dim: int = 128
    con_temperature: float = 0.07
    con_weight: float = 0.3
    comb_weight: float = 0.5
    num_views: int = 2
    train_missing: str = "uniform_subsets"
    task_loss_views: str = "first"
    sugr_mode: str = "learned"
    sugr_clamp: float = 5.0
    fusion_attends_missing_tokens: bool = True
    decision_threshold: float = 0.5
    label_thresholds: list[float] | None = None
    text_backbone_config: dict | None = None
    text_backbone_layer: int = -1
    freeze_text_backbone: bool = True
    text_backbone_trainable_layers: int | None = None

    def __post_init__(self, **kwargs):
        self._reject_unknown_keys(kwargs)
        if self.problem_type is None:
            self.problem_type = "multi_label_classification"
        super().__post_init__(**kwargs)
        if self.id2label is not None and not self.label2id:
            self.label2id = {label: index for index, label in self.id2label.items()}
        thresholds = self.label_thresholds
        if "num_labels" in kwargs and thresholds is not None and len(thresholds) != self.num_labels:
            logger.warning(
                "Dropping the %d per-label thresholds tuned for the previous label set.",
                len(thresholds),
            )
            self.label_thresholds = None
        self._validate_mcur()
        self._validate_text_backbone()

    # Copied from modeling_lddu.configuration_lddu.LDDUConfig._reject_unknown_keys with LDDU->Mcur
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
            f"McurConfig got unknown key(s) {', '.join(hints)}; valid keys are the fields listed "
            "in McurConfig's docstring."
        )

    def feature_dim(self, modality: str) -> int:
        """Feature size of ``modality`` (one of :data:`MODALITIES`)."""
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {MODALITIES}.")
        return getattr(self, f"{modality}_dim")

    def num_layers(self, modality: str) -> int:
        """Encoder depth of ``modality`` (``encoder_layers`` for every modality)."""
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {MODALITIES}.")
        return self.encoder_layers

    @property
    def is_single_label(self) -> bool:
        return self.problem_type == "single_label_classification"

    # One check per field, in the fields' order.
    def _validate_mcur(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"McurConfig.{name} must be a positive integer, got {value!r}.")

        def number(name: str, low: float, high: float, low_open: bool, high_open: bool) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"McurConfig.{name} must be a number, got {value!r}.")
            too_low = value <= low if low_open else value < low
            too_high = value >= high if high_open else value > high
            if not math.isfinite(value) or too_low or too_high:
                interval = f"{'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
                raise ValueError(f"McurConfig.{name} must be in {interval}, got {value!r}.")

        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                raise ValueError(f"McurConfig.{name} must be one of {options}, got {value!r}.")

        for name in (
            "text_dim",
            "audio_dim",
            "visual_dim",
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "encoder_layers",
            "max_position_embeddings",
            "proj_dim",
            "num_views",
        ):
            positive_int(name)
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"McurConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})."
            )
        if self.hidden_act != "gelu":
            raise ValueError(f"McurConfig.hidden_act must be 'gelu', got {self.hidden_act!r}.")
        number("hidden_dropout_prob", 0.0, 1.0, low_open=False, high_open=True)
        number("attention_probs_dropout_prob", 0.0, 1.0, low_open=False, high_open=True)
        number("layer_norm_eps", 0.0, math.inf, low_open=True, high_open=True)
        number("initializer_range", 0.0, math.inf, low_open=True, high_open=True)
        number("con_temperature", 0.0, math.inf, low_open=True, high_open=True)
        number("con_weight", 0.0, math.inf, low_open=False, high_open=True)
        number("comb_weight", 0.0, 1.0, low_open=False, high_open=False)
        choice("train_missing", TRAIN_MISSING_MODES)
        choice("task_loss_views", TASK_LOSS_VIEWS)
        choice("sugr_mode", SUGR_MODES)
        number("sugr_clamp", 0.0, math.inf, low_open=True, high_open=True)
        if not isinstance(self.fusion_attends_missing_tokens, bool):
            raise ValueError(
                "McurConfig.fusion_attends_missing_tokens must be True or False, got "
                f"{self.fusion_attends_missing_tokens!r}."
            )
        number("decision_threshold", 0.0, 1.0, low_open=True, high_open=True)
        choice("problem_type", PROBLEM_TYPES)
        if self.num_labels < 1 or (self.is_single_label and self.num_labels < 2):
            raise ValueError(
                f"McurConfig needs at least {2 if self.is_single_label else 1} label(s) for "
                f"{self.problem_type}, got num_labels={self.num_labels}."
            )
        keys = sorted(self.id2label) if self.id2label else []
        if keys != list(range(len(keys))):
            raise ValueError(
                f"McurConfig.id2label keys must be exactly 0..{len(keys) - 1} (one per label, in "
                f"class order); got {keys}."
            )
        if self.label_thresholds is not None:
            thresholds = list(self.label_thresholds)
            if len(thresholds) != self.num_labels:
                raise ValueError(
                    f"McurConfig.label_thresholds has {len(thresholds)} values but the model has "
                    f"{self.num_labels} labels."
                )
            for value in thresholds:
                if isinstance(value, bool) or not (
                    isinstance(value, (int, float)) and 0.0 < value < 1.0
                ):
                    raise ValueError(
                        f"McurConfig.label_thresholds values must be in (0, 1), got {value!r}."
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


McurConfig.register_for_auto_class()

__all__ = [
    "MODALITIES",
    "PROBLEM_TYPES",
    "SUGR_MODES",
    "TASK_LOSS_VIEWS",
    "TRAIN_MISSING_MODES",
    "McurConfig",
]
