"""Adapt a trained model to new data and a new label set, fully or with LoRA (peft).

A new label set changes every label-indexed part of LDDU: the label embeddings, the per-emotion mean
and spread classifiers, and the contrastive class ids (so the queue is reset). Those parts are
re-initialised and trained in full (peft ``modules_to_save``); the encoders, the label-wise
attention, the latent Gaussian encoders and the shared semantic classifier get LoRA adapters.
"""

from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)

#: Per model family: LoRA target modules (a regex over module names) and the label-indexed modules
#: that are re-created for a new label set and trained in full.
ADAPTATION_SPECS = {
    "lddu": {
        "target_modules": (
            r".*encoders\.\w+\.layers\.\d+\.(attention\.(query|key|value)|attention_output|intermediate|output)"
            r"|.*label_attention\.\w+\.(label|sequence|output)_projection"
            r"|.*latent_encoders\.\w+\.(layers\.\d+|mean_projection|log_variance_projection)"
            r"|.*semantic_classifier\.(hidden|output)"
        ),
        "modules_to_save": ["label_embeddings", "mean_classifier", "spread_classifier"],
    }
}


def load_for_adaptation(model_args, data_fields: dict, overrides: dict):
    """Load ``model_args.model_name_or_path`` for training on data described by ``data_fields``."""
    from modeling_lddu import LDDUForEmotionRecognition

    # Overrides go through from_pretrained so that modules are built with them (dropouts, loss
    # weights); an architectural override that contradicts the weights fails the load loudly.
    model = LDDUForEmotionRecognition.from_pretrained(model_args.model_name_or_path, **overrides)
    config = model.config
    for name in ("text_dim", "audio_dim", "visual_dim"):
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
    if [config.id2label[i] for i in range(config.num_labels)] != [
        new_labels[i] for i in range(len(new_labels))
    ]:
        replace_label_set(model, new_labels)
    if model_args.use_lora:
        model = wrap_with_lora(
            model, r=model_args.lora_r, alpha=model_args.lora_alpha, dropout=model_args.lora_dropout
        )
    return model


@torch.no_grad()
def replace_label_set(model, id2label: dict[int, str]) -> None:
    """Re-create the label-indexed modules of an LDDU model for ``id2label`` and reset its queue."""
    from modeling_lddu.modeling_lddu import LDDUPerLabelClassifier

    config = model.config
    old = [config.id2label[i] for i in range(config.num_labels)]
    config.id2label = {int(k): v for k, v in id2label.items()}
    config.label2id = {v: k for k, v in config.id2label.items()}
    config.label_thresholds = None
    logger.info("Replacing the label set %s with %s", old, list(config.id2label.values()))
    device = model.lddu.label_embeddings.weight.device
    model.lddu.label_embeddings = torch.nn.Embedding(config.num_labels, config.hidden_size).to(
        device
    )
    torch.nn.init.xavier_uniform_(model.lddu.label_embeddings.weight)
    latent_input = 3 * config.latent_size
    for name in ("mean_classifier", "spread_classifier"):
        head = LDDUPerLabelClassifier(config, latent_input).to(device)
        for parameter_name, parameter in head.named_parameters():
            fan_in = (
                head.input_size
                if parameter_name.startswith("hidden")
                else config.classifier_hidden_size
            )
            bound = 1.0 / fan_in**0.5
            parameter.uniform_(-bound, bound)
        setattr(model.fusion, name, head)
    model.contrastive_memory.reset_queue()


def wrap_with_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.0):
    from peft import LoraConfig, get_peft_model

    spec = ADAPTATION_SPECS.get(model.config.model_type)
    if spec is None:
        raise ValueError(f"No LoRA adaptation spec for model type {model.config.model_type!r}.")
    lora_config = LoraConfig(
        r=r,
        lora_alpha=alpha,
        lora_dropout=dropout,
        target_modules=spec["target_modules"],
        modules_to_save=list(spec["modules_to_save"]),
    )
    peft_model = get_peft_model(model, lora_config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in peft_model.parameters())
    logger.info(
        "LoRA: %s trainable of %s parameters (%.2f%%)",
        f"{trainable:,}",
        f"{total:,}",
        100 * trainable / total,
    )
    return peft_model


def load_adapted(base_path, adapter_path):
    """An adapted model from its base and a LoRA adapter folder written by ``train.py --use_lora``."""
    import json
    from pathlib import Path

    from peft import PeftModel

    from modeling_lddu import LDDUForEmotionRecognition

    model = LDDUForEmotionRecognition.from_pretrained(base_path)
    adapted = json.loads((Path(adapter_path) / "lddu_config.json").read_text())
    id2label = {int(key): value for key, value in adapted["id2label"].items()}
    if [model.config.id2label[i] for i in range(model.config.num_labels)] != [
        id2label[i] for i in range(len(id2label))
    ]:
        replace_label_set(model, id2label)
    for name in ("decision_threshold", "label_thresholds"):
        setattr(model.config, name, adapted.get(name))
    return PeftModel.from_pretrained(model, adapter_path)


def trainable_fraction(model) -> float:
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable / sum(p.numel() for p in model.parameters())
