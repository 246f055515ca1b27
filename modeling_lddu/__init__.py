"""LDDU for the Hugging Face ecosystem.

Importing this package registers LDDU with the transformers Auto classes (in-process use). Saved
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

from .configuration_lddu import MODALITIES, MOSEI_EMOTIONS, LDDUConfig
from .feature_extraction_lddu import LDDUFeatureExtractor
from .modeling_lddu import (
    LDDUEmotionRecognitionOutput,
    LDDUForEmotionRecognition,
    LDDUModel,
    LDDUModelOutput,
    LDDUPreTrainedModel,
)
from .pipeline_lddu import LDDUEmotionPipeline  # registers the pipeline task
from .processing_lddu import LDDUProcessor

AutoConfig.register(LDDUConfig.model_type, LDDUConfig, exist_ok=True)
AutoModel.register(LDDUConfig, LDDUModel, exist_ok=True)
AutoModelForSequenceClassification.register(LDDUConfig, LDDUForEmotionRecognition, exist_ok=True)
AutoFeatureExtractor.register(LDDUConfig, LDDUFeatureExtractor, exist_ok=True)
AutoProcessor.register(LDDUConfig, LDDUProcessor, exist_ok=True)

__all__ = [
    "MODALITIES",
    "MOSEI_EMOTIONS",
    "LDDUConfig",
    "LDDUEmotionPipeline",
    "LDDUEmotionRecognitionOutput",
    "LDDUFeatureExtractor",
    "LDDUForEmotionRecognition",
    "LDDUModel",
    "LDDUModelOutput",
    "LDDUPreTrainedModel",
    "LDDUProcessor",
]
