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

from .family import MODALITIES, MULTI_LABEL, ModelFamily, problem_type_of

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
    data_problem_type = data_fields.get("problem_type", MULTI_LABEL)
    if problem_type_of(config) != data_problem_type:
        raise ValueError(
            f"The base model {model_args.model_name_or_path} was made for "
            f"{problem_type_of(config)} but the data is {data_problem_type}: train a new model "
            "for this data (--model_type) or adapt a model of the same problem type."
        )
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


def add_text_backbone_lora(model, r: int = 8, alpha: int = 16, dropout: float = 0.0) -> None:
    """LoRA adapters (peft) on the model's text backbone (the family contract's
    ``base_model.text_backbone.encoder``), on peft's default target modules for its architecture
    (BERT: the attention's query and value); the backbone's own weights stay frozen and the rest
    of the model trains in full. :func:`merge_text_backbone_lora` folds them in for export."""
    from peft import LoraConfig, get_peft_model

    backbone = model.base_model.text_backbone
    backbone.encoder = get_peft_model(
        backbone.encoder, LoraConfig(r=r, lora_alpha=alpha, lora_dropout=dropout)
    )
    adapters = sum(p.numel() for p in backbone.encoder.parameters() if p.requires_grad)
    logger.info("LoRA on the text backbone: %s adapter parameters", f"{adapters:,}")


def merge_text_backbone_lora(model) -> None:
    """Merges the text backbone's LoRA adapters into its weights (a plain model again)."""
    from peft import PeftModel

    backbone = model.base_model.text_backbone
    if isinstance(backbone.encoder, PeftModel):
        backbone.encoder = backbone.encoder.merge_and_unload()


def base_hub_id(model_name_or_path: str | None, base_model_id: str | None = None) -> str | None:
    """The Hub id of the model adapted: ``base_model_id`` if given, else ``model_name_or_path``
    when it is not a local folder (``from_pretrained`` then fetched it from the Hub)."""
    if base_model_id:
        return base_model_id
    if model_name_or_path and not Path(model_name_or_path).exists():
        return model_name_or_path
    return None


def base_reference(model_name_or_path: str, base_model_id: str | None = None) -> str:
    """What an adapter records as its base: the Hub id when there is one, else the absolute path
    of the local folder (a relative one would mean nothing from another directory)."""
    hub_id = base_hub_id(model_name_or_path, base_model_id)
    return hub_id if hub_id else str(Path(model_name_or_path).resolve())


def save_adapter(peft_model, adapter_dir: Path, base: str | None = None) -> None:
    """The adapter weights and config (peft, with its card), the adapted config (label set,
    thresholds) beside them, and a section of the card on loading it. ``base`` replaces the base
    recorded in ``adapter_config.json`` and the card (see :func:`base_reference`)."""
    config = peft_model.base_model.model.config
    if base is not None:
        for adapter_config in peft_model.peft_config.values():
            adapter_config.base_model_name_or_path = base
        config._name_or_path = base  # peft's card takes its base_model from here
    # The model has no token embeddings; "auto" would look the base up on the Hub to find out.
    peft_model.save_pretrained(adapter_dir, save_embedding_layers=False)
    config.to_json_file(adapter_dir / ADAPTED_CONFIG_FILENAME)
    base = base or peft_model.peft_config["default"].base_model_name_or_path
    with open(adapter_dir / "README.md", "a", encoding="utf-8") as card:
        card.write(_ADAPTER_USAGE.format(base=base, labels=list(config.id2label.values())))


_ADAPTER_USAGE = """

## Loading this adapter

A LoRA adapter (peft) of [`{base}`]({base}) for the labels {labels}. The base's code is remote
code; `{adapted}` holds the adapted label set and the tuned thresholds.

```python
import json
from huggingface_hub import hf_hub_download
from peft import PeftModel
from transformers import AutoModelForSequenceClassification

adapter = "THIS_REPO_OR_FOLDER"
adapted = json.load(open(hf_hub_download(adapter, "{adapted}")))  # or the folder's file
base = AutoModelForSequenceClassification.from_pretrained(
    "{base}", trust_remote_code=True, id2label=adapted["id2label"],
    decision_threshold=adapted["decision_threshold"], label_thresholds=adapted["label_thresholds"],
    ignore_mismatched_sizes=True,  # only when the label set differs from the base's
)
model = PeftModel.from_pretrained(base, adapter)
```

With this project installed, `mmer.lora.load_adapted(base, adapter)` does the same.
""".replace("{adapted}", ADAPTED_CONFIG_FILENAME)


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
