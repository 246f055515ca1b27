"""Configuration of LDDU (Latent Distribution Decoupling, Huang et al. 2025, arXiv 2502.13954).

The defaults are the paper configuration: the authors' ``train.sh`` over their ``train.py`` defaults
(see ``docs/reference-lddu.md`` §0 in the project's shared documentation).

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

#: The order of the modality axis INSIDE the model: module construction (and so the order in which
#: initialisation draws random numbers), concatenations, the stacked outputs (``means``, ``spreads``,
#: ``label_features``, ``modality_presence``) and the contrastive class ids. It is the authors'
#: (visual, audio, text): their checkpoints' classifier weights and memory queues are laid out in it,
#: so parity with their code keeps it. Nothing outside this folder depends on it.
LATENT_MODALITY_ORDER: tuple[str, ...] = ("visual", "audio", "text")

#: CMU-MOSEI's six emotions in the authors' class order (their ``emotion_dict`` maps tgt tokens
#: 4..9 to these indices).
MOSEI_EMOTIONS: tuple[str, ...] = ("happy", "sad", "anger", "surprise", "disgust", "fear")

#: The values of ``LDDUConfig.problem_type`` (transformers' names): the kind of data the model was
#: trained on, which decides how its scores become decisions (thresholds, or the top score).
PROBLEM_TYPES: tuple[str, ...] = ("multi_label_classification", "single_label_classification")

#: The values of ``LDDUConfig.contrastive_implementation``: how the supervised contrastive loss is
#: computed (same value and gradients either way).
CONTRASTIVE_IMPLEMENTATIONS: tuple[str, ...] = ("cached", "direct")

#: Keys a config may carry besides its fields: those `PreTrainedConfig.__post_init__` consumes and
#: those transformers (or this package's `save_pretrained`) writes into config.json. Any other key
#: is a typo (``hiden_size``) that would otherwise be stored and ignored; keys starting with ``_``
#: are transformers' internals and pass.
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


class LDDUConfig(PreTrainedConfig):
    r"""
    Configuration of an LDDU model. Every hyperparameter of the network and of its four training
    losses lives here; nothing about paths, devices or schedules does.

    Args:
        text_dim / audio_dim / visual_dim (`int`):
            Feature size of each modality's pre-extracted frames (768 BERT text, 74 COVAREP audio,
            35 FACET visual for CMU-MOSEI).
        hidden_size (`int`): Width of the three modality transformer encoders and of the label
            embeddings.
        num_attention_heads (`int`): Heads of the encoders' self-attention.
        intermediate_size (`int`): Feed-forward width of the encoders (the authors keep it equal to
            ``hidden_size``).
        text_num_layers / audio_num_layers / visual_num_layers (`int`): Encoder depth per modality.
        hidden_act (`str`): Activation of the encoder feed-forward (``"gelu"``: exact erf form).
        hidden_dropout_prob / attention_probs_dropout_prob (`float`): Encoder dropouts.
        max_position_embeddings (`int`): Size of the learned position tables; no modality sequence
            may be longer.
        layer_norm_eps (`float`): Epsilon of every LayerNorm (inside the square root).
        initializer_range (`float`): Standard deviation of the encoders' normal initialisation.
        label_attention_dim (`int`): Projection size of the label-wise attention (the authors'
            ``pro_dim``).
        label_attention_dropout (`float`): Dropout on the label-wise attention context.
        mask_label_attention (`bool`): Whether label-wise attention ignores padded frames. The
            authors attend to every frame; their masks are all ones, where both choices agree.
        latent_hidden_sizes (`list[int]`): Widths of the ReLU layers of each latent Gaussian
            encoder (the authors: 192, 128 and an output layer of 128).
        latent_size (`int`): Size of each emotion's Gaussian latent (mean and spread) per modality.
        classifier_hidden_size (`int`): Hidden width of the semantic, mean and spread classifiers.
        classifier_dropout (`float`): Dropout inside those classifiers.
        queue_size (`int`): Length of the supervised-contrastive memory queue.
        contrastive_temperature (`float`): Temperature of the supervised contrastive loss.
        contrastive_implementation (`str`): How that loss is computed; both give the same value
            and gradients. ``"cached"`` (default): the exact fast path, which keeps statistics of
            the queue between steps (``contrastive_cache_lddu.py``). ``"direct"``: the authors'
            computation over the ``N x N`` matrix (``N`` = batch rows + ``queue_size``), slower
            and larger, e.g. for an A/B comparison.
        semantic_loss_weight (`float`): Weight of the BCE on the semantic (gate) score (``cml``).
        fused_loss_weight (`float`): Weight of the BCE on the fused score (``final_loss``).
        contrastive_loss_weight (`float`): Weight of the supervised contrastive loss (``cdl``).
        calibration_loss_weight (`float`): Weight of the uncertainty-calibration loss (``crl``).
        decision_threshold (`float`): Score above which an emotion is predicted.
        label_thresholds (`list[float]`, *optional*): One threshold per emotion; overrides
            ``decision_threshold`` when set (e.g. tuned on the validation split).
        modality_dropout (`dict[str, float]`, *optional*): Training-time probability of dropping
            each modality of a sample (missing-modality robustness); off by default.
        text_backbone_config (`dict`, *optional*): The config (``to_dict()``, with its
            ``model_type``) of a pretrained transformers text encoder held inside the model
            (``text_backbone``): the model then also takes the processor's token ids
            (``text_input_ids``, ``text_attention_mask``, ``text_mask``) and computes the text
            frames itself; its weights are saved with the model's. ``text_dim`` must be its
            ``hidden_size``. None (default): text arrives as frames.
        text_backbone_layer (`int`): Which hidden state becomes the frames (-1: the last).
        freeze_text_backbone (`bool`): Keep the backbone's weights fixed (default; it then runs
            without gradients and without dropout).
        text_backbone_trainable_layers (`int`, *optional*): When not frozen, train only the top
            this-many transformer layers (the embeddings stay fixed); None trains all of it.
        id2label / label2id: The emotions, in class order. Default: CMU-MOSEI's six.
        problem_type (`str`): ``"multi_label_classification"`` (default; the paper's setting) or
            ``"single_label_classification"`` (one emotion per sample, e.g. IEMOCAP). The model is
            the same for both: LDDU is multi-label by design, and on single-label data it trains
            its BCE losses on the one-hot targets; the field only tells the evaluation, the
            pipeline and the card to decide by the top score instead of a threshold.
    """

    model_type = "lddu"
    # Outputs a plain `transformers.Trainer` should not collect as predictions (class attribute,
    # not saved). This package's trainer collects the model's `prediction_fields` by name instead.
    keys_to_ignore_at_inference = [
        "means",
        "spreads",
        "label_features",
        "semantic_loss",
        "fused_loss",
        "contrastive_loss",
        "calibration_loss",
    ]

    text_dim: int = 768
    audio_dim: int = 74
    visual_dim: int = 35
    hidden_size: int = 256
    num_attention_heads: int = 8
    intermediate_size: int = 256
    text_num_layers: int = 3
    audio_num_layers: int = 3
    visual_num_layers: int = 3
    hidden_act: str = "gelu"
    hidden_dropout_prob: float = 0.3
    attention_probs_dropout_prob: float = 0.3
    max_position_embeddings: int = 60
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    label_attention_dim: int = 256
    label_attention_dropout: float = 0.1
    mask_label_attention: bool = True
    latent_hidden_sizes: list[int] = field(default_factory=lambda: [192, 128, 128])
    latent_size: int = 128
    classifier_hidden_size: int = 128
    classifier_dropout: float = 0.1
    queue_size: int = 8192
    contrastive_temperature: float = 0.07
    contrastive_implementation: str = "cached"
    semantic_loss_weight: float = 0.3
    fused_loss_weight: float = 1.0
    contrastive_loss_weight: float = 1.0
    calibration_loss_weight: float = 0.3
    decision_threshold: float = 0.21
    label_thresholds: list[float] | None = None
    modality_dropout: dict[str, float] | None = None
    text_backbone_config: dict | None = None
    text_backbone_layer: int = -1
    freeze_text_backbone: bool = True
    text_backbone_trainable_layers: int | None = None

    def __post_init__(self, **kwargs):
        self._reject_unknown_keys(kwargs)
        if self.id2label is None and "num_labels" not in kwargs:
            self.id2label = dict(enumerate(MOSEI_EMOTIONS))
        if self.problem_type is None:
            self.problem_type = "multi_label_classification"
        super().__post_init__(**kwargs)
        if self.id2label is not None and not self.label2id:
            self.label2id = {label: index for index, label in self.id2label.items()}
        thresholds = self.label_thresholds
        if "num_labels" in kwargs and thresholds is not None and len(thresholds) != self.num_labels:
            # A new label count (e.g. `from_pretrained(..., num_labels=3)`): the per-label
            # thresholds were tuned for the old labels and mean nothing for the new ones.
            logger.warning(
                "Dropping the %d per-label thresholds tuned for the previous label set; the %d "
                "new labels use decision_threshold=%s.",
                len(thresholds),
                self.num_labels,
                self.decision_threshold,
            )
            self.label_thresholds = None
        self._validate_lddu()
        self._validate_text_backbone()

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
            f"LDDUConfig got unknown key(s) {', '.join(hints)}; valid keys are the fields listed "
            "in LDDUConfig's docstring."
        )

    def feature_dim(self, modality: str) -> int:
        """Feature size of ``modality`` (one of :data:`MODALITIES`)."""
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {MODALITIES}.")
        return getattr(self, f"{modality}_dim")

    def num_layers(self, modality: str) -> int:
        """Encoder depth of ``modality``."""
        if modality not in MODALITIES:
            raise ValueError(f"Unknown modality {modality!r}; expected one of {MODALITIES}.")
        return getattr(self, f"{modality}_num_layers")

    # Long (one check per field, in the fields' order) but flat: splitting it would only scatter
    # the checks that a reader compares with the field list above.
    def _validate_lddu(self) -> None:
        def positive_int(name: str) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"LDDUConfig.{name} must be a positive integer, got {value!r}.")

        def probability(name: str, value=None) -> None:
            value = getattr(self, name) if value is None else value
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ValueError(f"LDDUConfig.{name} must be a number in [0, 1), got {value!r}.")
            if not 0.0 <= value < 1.0:
                raise ValueError(f"LDDUConfig.{name} must be in [0, 1), got {value!r}.")

        for name in (
            "text_dim",
            "audio_dim",
            "visual_dim",
            "hidden_size",
            "num_attention_heads",
            "intermediate_size",
            "text_num_layers",
            "audio_num_layers",
            "visual_num_layers",
            "max_position_embeddings",
            "label_attention_dim",
            "latent_size",
            "classifier_hidden_size",
            "queue_size",
        ):
            positive_int(name)
        if self.hidden_size % self.num_attention_heads != 0:
            raise ValueError(
                f"LDDUConfig.hidden_size ({self.hidden_size}) must be divisible by "
                f"num_attention_heads ({self.num_attention_heads})."
            )
        for name in (
            "hidden_dropout_prob",
            "attention_probs_dropout_prob",
            "label_attention_dropout",
            "classifier_dropout",
        ):
            probability(name)
        if self.hidden_act != "gelu":
            raise ValueError(f"LDDUConfig.hidden_act must be 'gelu', got {self.hidden_act!r}.")
        if not (isinstance(self.layer_norm_eps, (int, float)) and self.layer_norm_eps > 0):
            raise ValueError(f"LDDUConfig.layer_norm_eps must be > 0, got {self.layer_norm_eps!r}.")
        if not (isinstance(self.initializer_range, (int, float)) and self.initializer_range > 0):
            raise ValueError(
                f"LDDUConfig.initializer_range must be > 0, got {self.initializer_range!r}."
            )
        sizes = self.latent_hidden_sizes
        if not isinstance(sizes, (list, tuple)) or len(sizes) == 0:
            raise ValueError(
                f"LDDUConfig.latent_hidden_sizes must be a non-empty list of positive integers, "
                f"got {sizes!r}."
            )
        for size in sizes:
            if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
                raise ValueError(
                    f"LDDUConfig.latent_hidden_sizes must hold positive integers, got {sizes!r}."
                )
        self.latent_hidden_sizes = list(sizes)
        temperature = self.contrastive_temperature
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature)):
            raise ValueError(
                f"LDDUConfig.contrastive_temperature must be a finite number, got {temperature!r}."
            )
        if temperature <= 0:
            raise ValueError(
                f"LDDUConfig.contrastive_temperature must be > 0, got {temperature!r}."
            )
        if self.contrastive_implementation not in CONTRASTIVE_IMPLEMENTATIONS:
            raise ValueError(
                f"LDDUConfig.contrastive_implementation must be one of "
                f"{CONTRASTIVE_IMPLEMENTATIONS}, got {self.contrastive_implementation!r}."
            )
        for name in (
            "semantic_loss_weight",
            "fused_loss_weight",
            "contrastive_loss_weight",
            "calibration_loss_weight",
        ):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"LDDUConfig.{name} must be a finite number >= 0, got {value!r}.")
        if self.problem_type not in PROBLEM_TYPES:
            raise ValueError(
                f"LDDUConfig.problem_type must be one of {PROBLEM_TYPES}, got {self.problem_type!r}."
            )
        threshold = self.decision_threshold
        if not (isinstance(threshold, (int, float)) and 0.0 < threshold < 1.0):
            raise ValueError(f"LDDUConfig.decision_threshold must be in (0, 1), got {threshold!r}.")
        if self.num_labels < 1:
            raise ValueError(
                f"LDDUConfig needs at least one label, got num_labels={self.num_labels}."
            )
        keys = sorted(self.id2label) if self.id2label else []
        if keys != list(range(len(keys))):
            raise ValueError(
                f"LDDUConfig.id2label keys must be exactly 0..{len(keys) - 1} (one per label, in "
                f"class order); got {keys}."
            )
        if self.label_thresholds is not None:
            thresholds = list(self.label_thresholds)
            if len(thresholds) != self.num_labels:
                raise ValueError(
                    f"LDDUConfig.label_thresholds has {len(thresholds)} values but the model has "
                    f"{self.num_labels} labels."
                )
            for value in thresholds:
                if not (isinstance(value, (int, float)) and 0.0 < value < 1.0):
                    raise ValueError(
                        f"LDDUConfig.label_thresholds values must be in (0, 1), got {value!r}."
                    )
            self.label_thresholds = [float(value) for value in thresholds]
        if self.modality_dropout is not None:
            if not isinstance(self.modality_dropout, dict):
                raise ValueError(
                    "LDDUConfig.modality_dropout must be a dict {modality: probability}, got "
                    f"{self.modality_dropout!r}."
                )
            for modality, value in self.modality_dropout.items():
                if modality not in MODALITIES:
                    raise ValueError(
                        f"LDDUConfig.modality_dropout has unknown modality {modality!r}; expected "
                        f"one of {MODALITIES}."
                    )
                probability(f"modality_dropout[{modality!r}]", value)

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

    @property
    def thresholds(self) -> list[float]:
        """The decision threshold of every label, in class order."""
        if self.label_thresholds is not None:
            return list(self.label_thresholds)
        return [float(self.decision_threshold)] * self.num_labels


LDDUConfig.register_for_auto_class()

__all__ = [
    "CONTRASTIVE_IMPLEMENTATIONS",
    "LATENT_MODALITY_ORDER",
    "LDDUConfig",
    "MODALITIES",
    "MOSEI_EMOTIONS",
]
