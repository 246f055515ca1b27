"""The `transformers.Trainer` used by every model family of this project."""

from __future__ import annotations

import torch
from transformers import Trainer


class InferenceModeTrainer(Trainer):
    """`Trainer` whose evaluation and prediction steps run under `torch.inference_mode()`.

    `Trainer.prediction_step` only disables gradient recording (`torch.no_grad`); inference mode
    also skips version counting and view tracking. Training steps are unchanged.
    """

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        with torch.inference_mode():
            return super().prediction_step(
                model, inputs, prediction_loss_only, ignore_keys=ignore_keys
            )
