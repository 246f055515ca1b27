"""MCUR for the Hugging Face ecosystem.

Importing this package registers MCUR with the transformers Auto classes (in-process use). Saved
model folders carry the same files as remote code, so loading them needs only
``trust_remote_code=True`` and no install of this package.
"""

from transformers import (
    AutoConfig,
    AutoFeatureExtractor,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoProcessor,
)

from .configuration_mcur import MODALITIES, McurConfig
from .feature_extraction_mcur import McurFeatureExtractor
from .modeling_mcur import (
    McurEmotionRecognitionOutput,
    McurForEmotionRecognition,
    McurModel,
    McurModelOutput,
    McurPreTrainedModel,
)
from .pipeline_mcur import McurEmotionPipeline  # registers the pipeline task
from .processing_mcur import McurProcessor

AutoConfig.register(McurConfig.model_type, McurConfig, exist_ok=True)
AutoModel.register(McurConfig, McurModel, exist_ok=True)
AutoModelForSequenceClassification.register(McurConfig, McurForEmotionRecognition, exist_ok=True)
AutoFeatureExtractor.register(McurConfig, McurFeatureExtractor, exist_ok=True)
AutoProcessor.register(McurConfig, McurProcessor, exist_ok=True)

__all__ = [
    "MODALITIES",
    "McurConfig",
    "McurEmotionPipeline",
    "McurEmotionRecognitionOutput",
    "McurFeatureExtractor",
    "McurForEmotionRecognition",
    "McurModel",
    "McurModelOutput",
    "McurPreTrainedModel",
    "McurProcessor",
]
