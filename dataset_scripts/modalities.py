"""The fixed names every module of `dataset_scripts` shares: the modality order and the split order."""

from __future__ import annotations

__all__ = ["MODALITIES", "SPLITS"]

#: One modality order everywhere: columns, loops, the loader's batches and the model's inputs.
MODALITIES: tuple[str, ...] = ("text", "audio", "visual")
#: Output split names, in order.
SPLITS: tuple[str, ...] = ("train", "validation", "test")
