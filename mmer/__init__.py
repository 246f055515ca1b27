"""mmer: shared, model-agnostic tools for multimodal multi-label emotion recognition.

Metrics (`mmer.metrics`), plots (`mmer.plots`), model cards (`mmer.model_card`), publishing to the
Hugging Face Hub (`mmer.hub`) and atomic file writing (`mmer.io`). Submodules are imported on demand,
so `import mmer` stays cheap and pulls in neither matplotlib nor huggingface_hub.
"""

__version__ = "0.1.0"
