"""Adapt a trained model to new data and a new label set, fully or with LoRA (peft).

A new label set changes every label-indexed part of a model; the family re-creates them in its
``reset_label_set`` (the family contract, mmer/family.py). Under LoRA those parts
(``lora_modules_to_save``) are trained in full and the modules matching ``lora_target_modules``
get adapters.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from transformers import AutoModelForSequenceClassification

from .family import MODALITIES, ModelFamily

logger = logging.getLogger(__name__)

#: Written beside a LoRA adapter: the adapted label set and thresholds (peft saves only weights).
ADAPTED_CONFIG_FILENAME = "adapted_config.json"


def load_for_adaptation(model_args, data_fields: dict, overrides: dict):
    """Load ``model_args.model_name_or_path`` for training on data described by ``data_fields``."""
    # Overrides go through from_pretrained so that modules are built with them (dropouts, loss
    # weights); an architectural override that contradicts the weights fails the load loudly.
    model = AutoModelForSequenceClassification.from_pretrained(
        model_args.model_name_or_path, **overrides
    )
    ModelFamily.of(model)  # a clear error if the folder's model does not follow the contract
    config = model.config
    for name in (f"{modality}_dim" for modality in MODALITIES):
        if getattr(config, name) != data_fields[name]:
            raise ValueError(
                f"The base model has {name}={getattr(config, name)} but the data has "
                f"{data_fields[name]}: adaptation needs features from the same extractors."
            )
    if data_fields["max_position_embeddings"] > config.max_position_embeddings:
        raise ValueError(
            f"The data has sequences of {data_fields['max_position_embeddings']} frames; the base "
            f"model's position table holds {config.max_position_embeddings}."
        )
    new_labels = dict(data_fields["id2label"])
    if _label_list(config.id2label) != _label_list(new_labels):
        model.reset_label_set(new_labels)
    if model_args.use_lora:
        model = wrap_with_lora(
            model, r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout
        )
    return model


def wrap_with_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.0):
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=model.lora_target_modules,
        modules_to_save=list(model.lora_modules_to_save),
    )
    peft_model = get_peft_model(model, lora_config)
    logger.info(
        "LoRA: %s trainable of %s parameters (%.2f%%)",
        f"{sum(p.numel() for p in peft_model.parameters() if p.requires_grad):,}",
        f"{sum(p.numel() for p in peft_model.parameters()):,}",
        100 * trainable_fraction(peft_model),
    )
    return peft_model


def save_adapter(peft_model, adapter_dir: Path) -> None:
    """The adapter weights (peft) and the adapted config (label set, thresholds) beside them."""
    peft_model.save_pretrained(adapter_dir)
    peft_model.base_model.model.config.to_json_file(adapter_dir / ADAPTED_CONFIG_FILENAME)


def load_adapted(base_path, adapter_path, **from_pretrained_kwargs):
    """An adapted model from its base and a LoRA adapter folder written by ``train.py --use_lora``.

    The base loads through ``AutoModelForSequenceClassification``: import the family's package
    first, or pass ``trust_remote_code=True`` to use the code saved with the base.
    """
    from peft import PeftModel

    model = AutoModelForSequenceClassification.from_pretrained(base_path, **from_pretrained_kwargs)
    adapted = json.loads((Path(adapter_path) / ADAPTED_CONFIG_FILENAME).read_text())
    id2label = {int(key): value for key, value in adapted["id2label"].items()}
    if _label_list(model.config.id2label) != _label_list(id2label):
        model.reset_label_set(id2label)
    for name in ("decision_threshold", "label_thresholds"):
        setattr(model.config, name, adapted.get(name))
    return PeftModel.from_pretrained(model, adapter_path)


def trainable_fraction(model) -> float:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable / sum(p.numel() for p in model.parameters())


def _label_list(id2label: dict) -> list[str]:
    return [id2label[index] for index in range(len(id2label))]
