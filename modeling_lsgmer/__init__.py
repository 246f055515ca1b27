"""LSGMER for the Hugging Face ecosystem.

Importing this package registers LSGMER with the transformers Auto classes (in-process use). Saved
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

from .configuration_lsgmer import IEMOCAP_EMOTIONS, MODALITIES, LsgmerConfig
from .feature_extraction_lsgmer import LsgmerFeatureExtractor
from .modeling_lsgmer import (
    LsgmerEmotionRecognitionOutput,
    LsgmerForEmotionRecognition,
    LsgmerModel,
    LsgmerModelOutput,
    LsgmerPreTrainedModel,
)
from .pipeline_lsgmer import LsgmerEmotionPipeline  # registers the pipeline task
from .processing_lsgmer import LsgmerProcessor

AutoConfig.register(LsgmerConfig.model_type, LsgmerConfig, exist_ok=True)
AutoModel.register(LsgmerConfig, LsgmerModel, exist_ok=True)
AutoModelForSequenceClassification.register(
    LsgmerConfig, LsgmerForEmotionRecognition, exist_ok=True
)
AutoFeatureExtractor.register(LsgmerConfig, LsgmerFeatureExtractor, exist_ok=True)
AutoProcessor.register(LsgmerConfig, LsgmerProcessor, exist_ok=True)

__all__ = [
    "IEMOCAP_EMOTIONS",
    "MODALITIES",
    "LsgmerConfig",
    "LsgmerEmotionPipeline",
    "LsgmerEmotionRecognitionOutput",
    "LsgmerFeatureExtractor",
    "LsgmerForEmotionRecognition",
    "LsgmerModel",
    "LsgmerModelOutput",
    "LsgmerPreTrainedModel",
    "LsgmerProcessor",
]
