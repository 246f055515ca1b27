"""mmer: the shared layer for every model family of multimodal emotion recognition.

The family contract (`mmer.family`), the trainer (`mmer.trainer`), the evaluation protocol
(`mmer.evaluation`), metrics (`mmer.metrics`), plots (`mmer.plots`), model cards
(`mmer.model_card`), the model folder (`mmer.export`), publishing to the Hugging Face Hub
(`mmer.hub`) and LoRA (`mmer.lora`). Submodules are imported on demand, so `import mmer` stays
cheap and pulls in neither matplotlib nor huggingface_hub.
"""

__version__ = "0.1.0"
