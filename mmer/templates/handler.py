"""Inference Endpoints handler for a model folder of any family (copied into every published folder).

Request body (JSON)::

    {"inputs": {"text": [[...], ...], "audio": [[...], ...], "visual": [[...], ...]},
     "parameters": {"top_k": 3, "threshold": 0.3}}

``inputs`` may also be a list of such dicts (a batch), run through the model in batches of
``batch_size``. Any modality may be left out.

A model folder with a processor (``processor_config.json``) also takes raw input::

    {"inputs": {"text": "I can't believe you did that", "audio": [0.01, -0.02, ...]},
     "parameters": {"sampling_rate": 16000}}

``text`` a string, ``audio`` a flat list of float samples (mono, at the processor's rate, 16 kHz)
or the path of an audio file inside the model folder (such as the widget's ``examples/`` clips;
other paths are refused: a client may not make the endpoint read its files). A folder without a
processor answers raw input with 400. The response is, per sample, the emotions sorted by
score with ``score``, ``predicted`` and, when the model outputs them, ``uncertainty`` /
``sample_uncertainty``. For a multi-label model ``predicted`` marks every emotion above its
threshold (``threshold`` overrides them); for a single-label model (``problem_type
"single_label_classification"``: one emotion per sample) it marks only the top-scoring emotion,
and a ``threshold`` parameter is refused (400).

Every failure is answered with JSON, ``{"error": "<what is wrong>", "status": <code>}``: 400 for a
malformed request (wrong shape, non-numeric, NaN/inf or beyond-float32 values, non-binary masks, a
bad parameter), 413 for a request over the limits, 500 for anything else. No answer holds NaN.

Limits (constructor arguments, or environment variables read when the handler starts):

- ``max_samples`` / ``MMER_MAX_SAMPLES``: samples per request (default 64);
- ``max_frames`` / ``MMER_MAX_FRAMES``: frames per modality of one sample (default 4096);
- ``batch_size`` / ``MMER_BATCH_SIZE``: samples per forward pass (default 16);
- ``max_text_chars`` / ``MMER_MAX_TEXT_CHARS``: characters of one raw text (default 10000);
- ``max_audio_seconds`` / ``MMER_MAX_AUDIO_SECONDS``: seconds of one raw waveform or audio file
  (default 60; the processor's own limit also applies).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from transformers import pipeline

TASK = "multimodal-emotion-recognition"
ALLOWED_PARAMETERS = ("top_k", "threshold", "sampling_rate")
DEFAULT_MAX_SAMPLES = 64
DEFAULT_MAX_FRAMES = 4096
DEFAULT_BATCH_SIZE = 16
DEFAULT_MAX_TEXT_CHARS = 10000
DEFAULT_MAX_AUDIO_SECONDS = 60


class RequestError(Exception):
    """A request the handler refuses; ``status`` is the HTTP-like code of the answer."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


def _limit(value: int | None, variable: str, default: int) -> int:
    if value is None:
        value = int(os.environ.get(variable, default))
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{variable.removeprefix('MMER_').lower()} must be a positive integer.")
    return value


class EndpointHandler:
    def __init__(
        self,
        path: str = "",
        max_samples: int | None = None,
        max_frames: int | None = None,
        batch_size: int | None = None,
        max_text_chars: int | None = None,
        max_audio_seconds: int | None = None,
    ):
        self.max_samples = _limit(max_samples, "MMER_MAX_SAMPLES", DEFAULT_MAX_SAMPLES)
        self.max_frames = _limit(max_frames, "MMER_MAX_FRAMES", DEFAULT_MAX_FRAMES)
        self.batch_size = _limit(batch_size, "MMER_BATCH_SIZE", DEFAULT_BATCH_SIZE)
        self.max_text_chars = _limit(max_text_chars, "MMER_MAX_TEXT_CHARS", DEFAULT_MAX_TEXT_CHARS)
        self.max_audio_seconds = _limit(
            max_audio_seconds, "MMER_MAX_AUDIO_SECONDS", DEFAULT_MAX_AUDIO_SECONDS
        )
        self.root = Path(path or ".").resolve()
        self.pipeline = pipeline(TASK, model=path or ".", trust_remote_code=True)

    def __call__(self, data: Any) -> list | dict:
        try:
            outputs = self._answer(data)
            json.dumps(outputs, allow_nan=False)  # never NaN or inf in the answer
            return outputs
        except RequestError as error:
            return {"error": str(error), "status": error.status}
        except (ValueError, TypeError, OverflowError) as error:
            return {"error": str(error), "status": 400}
        except Exception as error:  # an answer, not a crashed worker
            return {"error": f"Internal error: {type(error).__name__}: {error}", "status": 500}

    def _answer(self, data: Any) -> list | dict:
        if not isinstance(data, dict) or "inputs" not in data:
            raise RequestError("The request body must be a JSON object with an 'inputs' field.")
        inputs = data["inputs"]
        parameters = data.get("parameters") or {}
        if not isinstance(parameters, dict):
            raise RequestError("'parameters' must be a JSON object, e.g. {\"top_k\": 3}.")
        unknown = sorted(set(parameters) - set(ALLOWED_PARAMETERS))
        if unknown:
            raise RequestError(
                f"Unknown parameter(s) {unknown}; allowed: {list(ALLOWED_PARAMETERS)}."
            )
        batch = inputs if isinstance(inputs, list) else [inputs]
        if not batch:
            raise RequestError("'inputs' is an empty list.")
        if len(batch) > self.max_samples:
            raise RequestError(
                f"{len(batch)} samples in one request; the limit is {self.max_samples}.", 413
            )
        rate = parameters.get("sampling_rate")  # required with a waveform: never assumed
        if rate is not None and (isinstance(rate, bool) or not isinstance(rate, int) or rate < 1):
            raise RequestError(f"sampling_rate must be a positive integer, got {rate!r}.")
        batch = [self._check_sample(index, sample, rate) for index, sample in enumerate(batch)]
        outputs = self.pipeline(batch, batch_size=min(self.batch_size, len(batch)), **parameters)
        return outputs if isinstance(inputs, list) else outputs[0]

    def _check_sample(self, index: int, sample: Any, rate: int) -> dict:
        """The sample as the pipeline takes it (audio paths resolved), or a RequestError."""
        if not isinstance(sample, dict):
            raise RequestError(
                f"inputs[{index}] must be an object with any of the keys 'text', 'audio', "
                f"'visual' (each a list of frames; or a string text, an audio path or a list of "
                f"samples); got {type(sample).__name__}."
            )
        checked = dict(sample)
        for modality, value in sample.items():
            where = f"inputs[{index}]['{modality}']"
            if isinstance(value, str) and modality == "text":
                if len(value) > self.max_text_chars:
                    raise RequestError(
                        f"{where} has {len(value)} characters; the limit is {self.max_text_chars}.",
                        413,
                    )
            elif isinstance(value, str) and modality == "audio":
                checked[modality] = self._audio_path(where, value)
            elif (
                modality == "audio"
                and isinstance(value, list)
                and value
                and not isinstance(value[0], list)
            ):
                if rate is None:  # a flat list: a waveform, whose rate the client must say
                    raise RequestError(
                        f"{where} is a waveform; give its rate in parameters.sampling_rate "
                        "(e.g. 16000): the server never assumes one."
                    )
                seconds = len(value) / rate
                if seconds > self.max_audio_seconds:
                    raise RequestError(
                        f"{where} holds {seconds:.1f} s of audio at {rate} Hz; the limit is "
                        f"{self.max_audio_seconds} s.",
                        413,
                    )
            elif isinstance(value, list) and len(value) > self.max_frames:
                raise RequestError(
                    f"{where} has {len(value)} frames; the limit is {self.max_frames}.", 413
                )
        return checked

    def _audio_path(self, where: str, value: str) -> str:
        """An audio file inside the model folder (e.g. a widget example), checked and resolved."""
        path = (self.root / value).resolve()
        if Path(value).is_absolute() or self.root not in path.parents:
            raise RequestError(
                f"{where}: the audio path {value!r} is not inside the model folder; send the "
                "samples as a list of floats instead."
            )
        if not path.is_file():
            raise RequestError(f"{where}: the model folder holds no audio file {value!r}.")
        return str(path)
