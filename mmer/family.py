"""The contract between a model family and the shared layer.

The shared layer (training, evaluation, export, publishing, LoRA) never imports a model folder.
A *family* (a ``modeling_<family>/`` remote-code folder) joins by registering its classes with
the transformers Auto classes when its package is imported, as any transformers model does::

    AutoConfig.register(config_class.model_type, config_class)
    AutoModel.register(config_class, base_model_class)
    AutoModelForSequenceClassification.register(config_class, model_class)
    AutoFeatureExtractor.register(config_class, feature_extractor_class)
    AutoProcessor.register(config_class, processor_class)            # optional: raw input
    PIPELINE_REGISTRY.register_pipeline(EMOTION_TASK, pipeline_class, pt_model=...)

and by following these conventions (:meth:`ModelFamily.from_model_type` checks the classes):

* **Config.** Takes ``<modality>_dim`` for every modality in :data:`MODALITIES`,
  ``max_position_embeddings``, ``id2label`` and ``problem_type`` (transformers' names:
  ``"multi_label_classification"`` or ``"single_label_classification"``; None counts as
  multi-label); holds ``decision_threshold`` and ``label_thresholds`` (None or one per label) and
  the property ``thresholds`` (one per label). ``train.py`` reads the dims, the labels and the
  problem type from the training data, never from ``--config_overrides``; a model given with
  ``--model_name_or_path`` must have the data's problem type. A family that reads only some
  modalities names them in ``config.modalities`` (e.g. text and audio); the per-combination
  evaluation then covers only combinations of those.
* **Model** (``AutoModelForSequenceClassification``). ``forward`` takes ``<modality>_features``
  ``[batch, frames, dim]`` and ``<modality>_mask`` ``[batch, frames]`` (an all-zero mask row marks
  the modality absent for that sample) and ``labels``, and returns a ``ModelOutput`` with ``loss``
  (when labels are given) and ``scores``, the probabilities ``[batch, labels]``: a softmax for a
  family that models one class per sample, sigmoids otherwise. ``labels`` arrive as the dataset's
  float rows ``[batch, labels]``: multi-hot for multi-label data, one-hot for single-label data (a
  model may also accept ``[batch]`` class indices, but the shared layer never sends them).
  **Decisions are the shared layer's**: multi-label, ``score > threshold`` with thresholds tuned on
  validation; single-label, the arg-max of ``scores`` (no threshold), whatever the model's loss.
  Class attributes:

  - ``prediction_fields``: the output fields the evaluation collects, by name; ``scores`` first.
    A field named ``uncertainty`` or ``<name>_uncertainty`` (higher = less sure) is scored by the
    AUROC of telling wrong decisions from right ones: ``[batch, labels]`` per (sample, emotion)
    (single-label: the value of the arg-max class), or ``[batch]`` per sample (a sample is wrong
    when its arg-max class is, or, multi-label, when any of its labels is).
  - ``lora_target_modules`` (a regex over module names) and ``lora_modules_to_save`` (the
    label-indexed modules, trained in full under LoRA).

  Method ``reset_label_set(id2label)``: re-create and re-initialise every label-indexed part for a
  new label set (and anything keyed by label, such as a memory queue).
  ``forward`` takes no ``**kwargs``: a misspelled argument is an error, and `Trainer` then
  averages the loss over gradient-accumulation steps itself.
* **Feature extractor.** ``__init__(feature_dims=..., max_lengths=...)``, the attribute
  ``feature_dims`` (the modalities the model was trained with), ``fit_normalization
  (train_split)``, ``do_normalize``, ``padding_side``, ``save_pretrained``; called with
  ``<modality>=[batch of [frames, dim] arrays], padding=, truncation=, return_tensors=`` it
  returns the model's inputs.
* **Pipeline** (the task :data:`EMOTION_TASK`). Takes a dict of ``[frames, dim]`` arrays or the
  path of an ``.npz`` file holding them, the parameters ``top_k`` and ``threshold``, and returns
  per emotion ``{"label", "score", "predicted", ...}`` sorted by score (single-label models: only
  the top class is ``predicted`` and ``threshold`` is refused). Transformers keeps one pipeline class
  per task, so every family ships the same pipeline code (a ``# Copied from`` copy in its folder):
  whichever family registered it last, it serves them all. Exporting a folder goes through the
  family's own copy (:attr:`ModelFamily.pipeline_class`, the ``Pipeline`` subclass its package
  exports), so that the folder holds only its own family's remote code.
* **Processor** (optional, ``AutoProcessor``). ``__init__(feature_extractor, **settings)`` where
  the settings are the keys of ``dataset_scripts.raw_features.RawFeatureSettings`` (text encoder,
  layer, special tokens, token limit, sampling rate, mel bands), ``save_pretrained``,
  ``encode_text(texts, return_token_counts=)`` and ``encode_audio(clips, sampling_rate=)``.
  Every family ships the same code (a ``# Copied from`` copy of the first family's processing
  file). ``train.py`` saves one into the model folder when the data was built from raw inputs
  (it has ``processor_settings.json``); the pipeline then takes raw text and audio.
* **Model card text.** ``model_cards/<model_type>.yaml`` (see ``model_cards/``).

``tests/test_family_contract.py`` builds a minimal family from this contract alone and trains it
through ``train.py``'s code path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from transformers import AutoModelForSequenceClassification, Pipeline
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.auto.feature_extraction_auto import FEATURE_EXTRACTOR_MAPPING
from transformers.models.auto.processing_auto import PROCESSOR_MAPPING
from transformers.pipelines import PIPELINE_REGISTRY

from dataset_scripts.building import MULTI_LABEL, PROBLEM_TYPES, SINGLE_LABEL
from dataset_scripts.modalities import MODALITIES

#: The pipeline task every family serves.
EMOTION_TASK = "multimodal-emotion-recognition"

REQUIRED_MODEL_ATTRIBUTES = (
    "prediction_fields",
    "lora_target_modules",
    "lora_modules_to_save",
    "reset_label_set",
)

__all__ = [
    "EMOTION_TASK",
    "MODALITIES",
    "MULTI_LABEL",
    "PROBLEM_TYPES",
    "SINGLE_LABEL",
    "ModelFamily",
    "problem_type_of",
]


def problem_type_of(config) -> str:
    """The config's ``problem_type``, one of :data:`PROBLEM_TYPES` (None counts as multi-label,
    the only kind there was before the field was read)."""
    problem_type = getattr(config, "problem_type", None) or MULTI_LABEL
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(
            f"The model's config has problem_type {problem_type!r}; this package handles "
            f"{PROBLEM_TYPES}."
        )
    return problem_type


@dataclass(frozen=True)
class ModelFamily:
    """A family's classes, found through the transformers registries by ``model_type``."""

    model_type: str
    config_class: type
    model_class: type
    feature_extractor_class: type

    @classmethod
    def from_model_type(cls, model_type: str) -> ModelFamily:
        if model_type not in CONFIG_MAPPING:
            raise ValueError(
                f"Unknown model_type {model_type!r}: no config class is registered under that "
                "name. Import the family's package first (train.py imports every family it ships)."
            )
        config_class = CONFIG_MAPPING[model_type]
        model_mapping = AutoModelForSequenceClassification._model_mapping
        missing = [
            name
            for name, mapping in (
                ("AutoModelForSequenceClassification", model_mapping),
                ("AutoFeatureExtractor", FEATURE_EXTRACTOR_MAPPING),
            )
            if config_class not in mapping
        ]
        if EMOTION_TASK not in PIPELINE_REGISTRY.get_supported_tasks():
            missing.append(f"PIPELINE_REGISTRY ({EMOTION_TASK!r})")
        if missing:
            raise ValueError(f"model_type {model_type!r} registers no class with {missing}.")
        model_class = model_mapping[config_class]
        for name in REQUIRED_MODEL_ATTRIBUTES:
            if not hasattr(model_class, name):
                raise TypeError(
                    f"{model_class.__name__} lacks {name!r}, which the family contract asks for "
                    "(see mmer/family.py)."
                )
        if tuple(model_class.prediction_fields[:1]) != ("scores",):
            raise TypeError(
                f"{model_class.__name__}.prediction_fields must start with 'scores'; got "
                f"{model_class.prediction_fields!r}."
            )
        return cls(
            model_type=model_type,
            config_class=config_class,
            model_class=model_class,
            feature_extractor_class=FEATURE_EXTRACTOR_MAPPING[config_class],
        )

    @property
    def pipeline_class(self) -> type | None:
        """The family's own copy of the task's pipeline: the ``Pipeline`` subclass its package
        exports (None if it exports none, and then the registered one serves it).

        The registry keeps one class per task, the last one registered; exporting through the
        family's own class keeps the other families' remote-code files out of its folder.
        """
        package = sys.modules.get(self.config_class.__module__.rpartition(".")[0])
        found = (
            [
                value
                for value in vars(package).values()
                if isinstance(value, type) and issubclass(value, Pipeline) and value is not Pipeline
            ]
            if package is not None
            else []
        )
        return found[0] if len(found) == 1 else None

    @property
    def processor_class(self) -> type | None:
        """The processor class the family registered with `AutoProcessor` (raw text and audio in),
        or None if it registers none."""
        try:
            return PROCESSOR_MAPPING[self.config_class]
        except KeyError:
            return None

    @classmethod
    def of(cls, model) -> ModelFamily:
        """The family of a model instance."""
        return cls.from_model_type(model.config.model_type)


def describe_text_backbone(config) -> str | None:
    """A short description of a model's text backbone (the contract's optional
    ``text_backbone_config``: architecture, the layers it keeps, width, how it was trained), or
    None when the model has none."""
    backbone = getattr(config, "text_backbone_config", None)
    if not backbone:
        return None
    from transformers import AutoConfig

    encoder = AutoConfig.for_model(**backbone)
    layer = config.text_backbone_layer
    kept = layer if layer >= 0 else encoder.num_hidden_layers + 1 + layer
    if config.freeze_text_backbone:
        training = "kept frozen"
    elif config.text_backbone_trainable_layers is not None:
        training = f"its top {config.text_backbone_trainable_layers} layer(s) fine-tuned"
    else:
        training = "fine-tuned"
    return (
        f"{encoder.model_type}, {kept} of its {encoder.num_hidden_layers} layers, hidden size "
        f"{encoder.hidden_size}, {training}"
    )
