"""The `transformers.Trainer` used by every model family of this project."""

from __future__ import annotations

import torch
from transformers import Trainer


class EmotionTrainer(Trainer):
    """`Trainer` that collects the model's predictions BY NAME and evaluates in inference mode.

    ``prediction_step`` returns the output fields the model declares in ``prediction_fields`` (the
    family contract, mmer/family.py), in that order, so ``predictions[i]`` is always the field
    ``prediction_fields[i]`` whatever else the model's output holds. It runs under
    `torch.inference_mode()` (`Trainer`'s own step only disables gradient recording; inference
    mode also skips version counting and view tracking). Training steps are unchanged.
    """

    def __init__(self, *args, text_backbone_learning_rate: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.text_backbone_learning_rate = text_backbone_learning_rate

    def create_optimizer(self, model=None):
        """`Trainer`'s optimizer (weight decay except on biases and LayerNorms), with the text
        backbone's parameters in groups of their own at ``text_backbone_learning_rate``."""
        optimizer = super().create_optimizer(model)
        rate = self.text_backbone_learning_rate
        if rate is None:
            return optimizer
        names = {id(p): name for name, p in (model or self.model).named_parameters()}
        groups = []
        for group in optimizer.param_groups:
            backbone = [p for p in group["params"] if "text_backbone." in names[id(p)]]
            rest = [p for p in group["params"] if "text_backbone." not in names[id(p)]]
            groups += [{**group, "params": rest}, {**group, "params": backbone, "lr": rate}]
        optimizer.param_groups.clear()
        for group in groups:
            if group["params"]:
                optimizer.add_param_group(group)
        return optimizer

    @property
    def prediction_fields(self) -> tuple[str, ...]:
        return tuple(self.accelerator.unwrap_model(self.model).prediction_fields)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        inputs = self._prepare_inputs(inputs)
        labels = inputs.get("labels")
        with torch.inference_mode(), self.compute_loss_context_manager():
            outputs = model(**inputs)
        loss = outputs.get("loss")
        loss = None if loss is None else loss.detach().mean()
        if prediction_loss_only:
            return loss, None, None
        missing = [name for name in self.prediction_fields if outputs.get(name) is None]
        if missing:
            raise KeyError(
                f"The model's output lacks the prediction field(s) {missing} that its class "
                f"declares in prediction_fields {self.prediction_fields}."
            )
        predictions = tuple(outputs[name].detach() for name in self.prediction_fields)
        return loss, predictions, labels
