"""The ``multimodal-emotion-recognition`` pipeline for LDDU (remote code: torch, numpy, transformers).

    from transformers import pipeline
    recognizer = pipeline("multimodal-emotion-recognition", model="path/or/repo", trust_remote_code=True)
    recognizer({"text": text_frames, "audio": audio_frames, "visual": visual_frames})
    recognizer("sample.npz", top_k=3)

Input: a dict of feature arrays (any of ``text``, ``audio``, ``visual``; each `[frames, dim]`), or a
path to an ``.npz`` file with those keys; or a list of such inputs. A modality left out is treated
as absent. Output per sample: one entry per emotion, sorted by score::

    {"label": "happy", "score": 0.71, "predicted": True, "uncertainty": 0.42}

``score`` is the fused probability, ``predicted`` compares it with the model's tuned threshold for
that emotion (or ``threshold=`` if given), ``uncertainty`` is the binary entropy in bits of the
score (0 = certain, 1 = a coin flip; see the model card for its decomposition over the two experts
of the gated fusion).
"""

from __future__ import annotations

import os

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .configuration_lddu import MODALITIES

TASK = "multimodal-emotion-recognition"


class LDDUEmotionPipeline(Pipeline):
    _load_processor = False
    _load_image_processor = False
    _load_feature_extractor = True
    _load_tokenizer = False

    def _sanitize_parameters(self, threshold=None, top_k=None, **kwargs):
        postprocess = {}
        if threshold is not None:
            threshold = float(threshold)
            if not 0.0 < threshold < 1.0:
                raise ValueError(f"threshold must be in (0, 1), got {threshold}.")
            postprocess["threshold"] = threshold
        if top_k is not None:
            if int(top_k) < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k}.")
            postprocess["top_k"] = int(top_k)
        return {}, {}, postprocess

    def preprocess(self, inputs):
        features = load_sample(inputs)
        return self.feature_extractor(**features, return_tensors="pt")

    def _forward(self, model_inputs):
        output = self.model(**model_inputs)
        return {"scores": output.scores, "uncertainty": output.get("uncertainty")}

    def postprocess(self, model_outputs, threshold=None, top_k=None):
        scores = model_outputs["scores"].float().cpu().numpy()
        uncertainty = model_outputs["uncertainty"]  # None for a model that has no uncertainty
        uncertainty = (
            [None] * len(scores) if uncertainty is None else uncertainty.float().cpu().numpy()
        )
        config = self.model.config
        thresholds = (
            np.full(scores.shape[-1], threshold)
            if threshold is not None
            else np.asarray(config.thresholds)
        )
        results = []
        for sample_scores, sample_uncertainty in zip(scores, uncertainty):
            entries = [
                {
                    "label": config.id2label[index],
                    "score": float(sample_scores[index]),
                    "predicted": bool(sample_scores[index] > thresholds[index]),
                }
                | (
                    {}
                    if sample_uncertainty is None
                    else {"uncertainty": float(sample_uncertainty[index])}
                )
                for index in range(sample_scores.shape[0])
            ]
            entries.sort(key=lambda entry: entry["score"], reverse=True)
            results.append(entries[:top_k] if top_k is not None else entries)
        return results[0] if len(results) == 1 else results


def load_sample(inputs) -> dict:
    """A dict of modality arrays from a dict or an ``.npz`` path; clear errors otherwise."""
    if isinstance(inputs, (str, os.PathLike)):
        path = os.fspath(inputs)
        if not path.endswith(".npz"):
            raise ValueError(
                f"A path input must be an .npz file with text/audio/visual arrays; got {path!r}."
            )
        with np.load(path, allow_pickle=False) as archive:
            inputs = {key: archive[key] for key in archive.files}
    if not isinstance(inputs, dict):
        raise ValueError(
            "Each input must be a dict with any of the keys 'text', 'audio', 'visual' (arrays of shape "
            f"[frames, dim]) or a path to an .npz file; got {type(inputs).__name__}."
        )
    unknown = sorted(set(inputs) - set(MODALITIES))
    if unknown:
        raise ValueError(f"Unknown input key(s) {unknown}; expected any of {list(MODALITIES)}.")
    features = {key: value for key, value in inputs.items() if value is not None}
    if not features:
        raise ValueError(
            "The input holds no modality: give at least one of 'text', 'audio', 'visual'."
        )
    for key, value in features.items():
        if isinstance(value, torch.Tensor):
            value = value.detach().cpu().numpy()
        array = np.asarray(value, dtype=np.float32)
        if array.ndim != 2:
            raise ValueError(
                f"'{key}' must be a 2-D array [frames, dim] for one sample; got shape {array.shape}."
            )
        features[key] = array
    return features


PIPELINE_REGISTRY.register_pipeline(
    TASK,
    pipeline_class=LDDUEmotionPipeline,
    pt_model=AutoModelForSequenceClassification,
    type="multimodal",
)

__all__ = ["LDDUEmotionPipeline", "TASK", "load_sample"]
