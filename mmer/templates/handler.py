"""Inference Endpoints handler for a model folder of any family (copied into every published folder).

Request body (JSON)::

    {"inputs": {"text": [[...], ...], "audio": [[...], ...], "visual": [[...], ...]},
     "parameters": {"top_k": 3, "threshold": 0.3}}

``inputs`` may also be a list of such dicts (a batch). Any modality may be left out. The response
is, per sample, the emotions sorted by score with ``score``, ``predicted`` and ``uncertainty``.
A malformed request gets ``{"error": "..."}`` naming the problem instead of a server error.
"""

from __future__ import annotations

from typing import Any

from transformers import pipeline

TASK = "multimodal-emotion-recognition"
ALLOWED_PARAMETERS = ("top_k", "threshold")


class EndpointHandler:
    def __init__(self, path: str = ""):
        self.pipeline = pipeline(TASK, model=path or ".", trust_remote_code=True)

    def __call__(self, data: dict[str, Any]) -> list | dict:
        if not isinstance(data, dict) or "inputs" not in data:
            return {"error": "The request body must be a JSON object with an 'inputs' field."}
        inputs = data["inputs"]
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            return {"error": "'parameters' must be a JSON object, e.g. {\"top_k\": 3}."}
        unknown = sorted(set(parameters) - set(ALLOWED_PARAMETERS))
        if unknown:
            return {
                "error": f"Unknown parameter(s) {unknown}; allowed: {list(ALLOWED_PARAMETERS)}."
            }
        batch = inputs if isinstance(inputs, list) else [inputs]
        if not batch:
            return {"error": "'inputs' is an empty list."}
        for index, sample in enumerate(batch):
            if not isinstance(sample, dict):
                return {
                    "error": f"inputs[{index}] must be an object with any of the keys 'text', "
                    f"'audio', 'visual' (each a list of frames); got {type(sample).__name__}."
                }
        try:
            outputs = [self.pipeline(sample, **parameters) for sample in batch]
        except (ValueError, TypeError) as error:
            return {"error": str(error)}
        return outputs if isinstance(inputs, list) else outputs[0]
