# Copied from modeling_lddu.pipeline_lddu with LDDU->Lsgmer, lddu->lsgmer
"""The ``multimodal-emotion-recognition`` pipeline (remote code: torch, numpy, transformers).

Every model family of the project ships this same code (a copy with its own class name), so it
relies only on the family contract: the model's output ``scores`` (probabilities), its optional
``uncertainty`` / ``sample_uncertainty`` outputs, and the config's ``id2label``, ``thresholds``
and ``problem_type``.

    from transformers import pipeline
    recognizer = pipeline("multimodal-emotion-recognition", model="path/or/repo", trust_remote_code=True)
    recognizer("I love this!")                                  # raw text (folders with a processor)
    recognizer({"text": "I can't believe it", "audio": "clip.wav"})
    recognizer({"audio": waveform}, sampling_rate=16000)        # 1-D float samples
    recognizer({"text": text_frames, "audio": audio_frames, "visual": visual_frames})
    recognizer("sample.npz", top_k=3)

Input: a dict of feature arrays (any of ``text``, ``audio``, ``visual``; each `[frames, dim]`), or a
path to an ``.npz`` file with those keys; or a list of such inputs. A modality left out is treated
as absent; a list may mix samples with different modalities, also with ``batch_size=`` (each sample
gets every modality the model was trained with, an absent one as an all-zero mask).

Raw input, when the model folder has a processor (``processor_config.json``, saved by train.py for
a model trained on data built from raw text and audio): a string is a sentence (a string ending in
``.npz`` stays a path to an ``.npz`` file); in a dict, ``text`` may be a string, and ``audio`` an
audio file path or a 1-D float waveform (list or array) at the processor's rate (16 kHz; give
``sampling_rate=`` to make sure, another rate is refused). Raw and pre-extracted modalities mix.
The processor computes the frames the model was trained on (see its file); a folder without one
refuses raw input with a ``ValueError`` saying so. Output per sample: one entry per emotion, sorted
by score::

    {"label": "happy", "score": 0.71, "predicted": True, "uncertainty": 0.42}

``score`` is the model's probability for that emotion. ``predicted`` depends on the kind of model
(``config.problem_type``):

* multi-label models (any number of emotions per sample): the score is greater than the model's
  tuned threshold for that emotion (or ``threshold=`` if given);
* single-label models (``"single_label_classification"``: one emotion per sample): True for the
  top-scoring emotion only (the first in label order on a tie). ``threshold=`` is refused: the
  decision is the arg-max, there is no threshold to change.

``uncertainty`` is present when the model outputs a field of that name, ``[batch, labels]``: the
value for that emotion, higher = less sure; ``sample_uncertainty`` likewise for a model that outputs
one value per sample (``[batch]``), repeated on each entry of the sample. What they measure is the
model's own definition (its model card says it).

When the feature extractor changed a sample (a modality longer than the longest training sequence,
resampled or cut to it) or the processor cut a text (longer than its encoder's token limit),
every entry of that sample also carries ``preprocessing``, one record per given modality (with
``return_preprocessing=True``, every sample carries it)::

    "preprocessing": [{"modality": "audio", "input_frames": 500, "model_frames": 20,
                       "truncation": "resample"}, ...]

``input_frames`` are the frames given (for raw input, those the processor computed),
``model_frames`` those the model saw, ``truncation`` the feature extractor's policy
(``"resample"``: the whole sequence resampled in time to the maximum length; ``"cut"``: only the
first frames kept; ``"error"``: such inputs are refused). A raw modality's record also names its
``input`` (``"text"``, ``"audio file"`` or ``"waveform"``); a raw text's gives ``input_tokens``
(its tokens, special ones included) and ``encoded_tokens`` (those encoded: fewer when cut).

The folder needs the feature extractor (``preprocessor_config.json``): it holds the normalisation
statistics fitted on the training data, so it is never rebuilt from the model's config. Its
``max_lengths`` must fit the model's ``max_position_embeddings``.

Refused with a ``ValueError`` (see ``docs/promises.md``): values that are not numbers, NaN or
infinite, or beyond the float32 range; an input that makes the model's scores non-finite; a
``top_k`` that is not a positive integer, a ``threshold`` outside ``(0, 1)`` or any ``threshold``
for a single-label model; raw input without a processor, an empty text, a waveform that is not
float samples, audio at another rate or over the processor's length limits.
"""

from __future__ import annotations

import os

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoProcessor, Pipeline
from transformers.feature_extraction_utils import BatchFeature
from transformers.pipelines import PIPELINE_REGISTRY
from transformers.utils import cached_file

from .configuration_lsgmer import MODALITIES

TASK = "multimodal-emotion-recognition"
#: The processor's file in a model folder that takes raw input.
PROCESSOR_FILE = "processor_config.json"
#: ``config.problem_type`` of a model that gives each sample exactly one emotion.
SINGLE_LABEL = "single_label_classification"
#: The optional output fields the pipeline reports, as the model computes them.
UNCERTAINTY_FIELDS = ("uncertainty", "sample_uncertainty")


class LsgmerEmotionPipeline(Pipeline):
    # Not transformers' loading: AutoProcessor would build a default processor from the feature
    # extractor's file where the folder has none. `__init__` loads the folder's own, if it has one.
    _load_processor = False
    _load_image_processor = False
    # None: load it if the folder has one, so that a missing one gets the error of __init__ below.
    _load_feature_extractor = None
    _load_tokenizer = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.feature_extractor is None:
            raise OSError(MISSING_FEATURE_EXTRACTOR)
        check_max_lengths(self.feature_extractor, self.model.config)
        if self.processor is None:
            self.processor = load_folder_processor(self.model)

    def _sanitize_parameters(
        self, threshold=None, top_k=None, return_preprocessing=None, sampling_rate=None, **kwargs
    ):
        preprocess, postprocess = {}, {}
        if sampling_rate is not None:
            if (
                isinstance(sampling_rate, bool)
                or not isinstance(sampling_rate, (int, np.integer))
                or sampling_rate < 1
            ):
                raise ValueError(
                    f"sampling_rate must be a positive integer, got {sampling_rate!r}."
                )
            preprocess["sampling_rate"] = int(sampling_rate)
        if return_preprocessing is not None:
            postprocess["return_preprocessing"] = bool(return_preprocessing)
        if threshold is not None:
            if self._single_label:
                raise ValueError(
                    f"threshold={threshold!r} was given, but this model is single-label "
                    f"(problem_type {SINGLE_LABEL!r}): it predicts the top-scoring emotion of "
                    "each sample, with no threshold. Leave threshold out."
                )
            if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)):
                raise ValueError(f"threshold must be a number in (0, 1), got {threshold!r}.")
            if not 0.0 < float(threshold) < 1.0:  # also refuses NaN and inf
                raise ValueError(f"threshold must be in (0, 1), got {threshold!r}.")
            postprocess["threshold"] = float(threshold)
        if top_k is not None:
            # Not rounded: 1.5, inf or "3" is a client's mistake, not a request for 1 or 3.
            if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 1:
                raise ValueError(f"top_k must be a positive integer, got {top_k!r}.")
            postprocess["top_k"] = int(top_k)
        return preprocess, {}, postprocess

    @property
    def _single_label(self) -> bool:
        return getattr(self.model.config, "problem_type", None) == SINGLE_LABEL

    def preprocess(self, inputs, sampling_rate=None):
        features, raw = load_sample(inputs)
        raw_notes, tokens = {}, None
        if raw:
            raw_frames, raw_notes, tokens = self._raw_frames(raw, sampling_rate)
            features.update(raw_frames)
        model_inputs = BatchFeature({})
        if features:
            model_inputs = self.feature_extractor(**features, return_tensors="pt")
        if tokens is not None:  # the model's text backbone computes the text frames
            model_inputs.update(tokens)
        elif "text" not in features and getattr(self.processor, "text_encoder_in_model", False):
            # No text for a model that reads tokens: one attended padding token that becomes no
            # frame (text absent), so that samples with and without text batch together.
            for name, value in (
                ("text_input_ids", 0),
                ("text_attention_mask", 1),
                ("text_mask", 0),
            ):
                model_inputs[name] = torch.full((1, 1), value, dtype=torch.long)
        # Every modality the model was trained with, so that samples with different modality sets
        # batch together: an absent one is one zero frame with mask 0 (batching pads with zeros).
        for modality, dim in self.feature_extractor.feature_dims.items():
            if modality not in features:
                model_inputs[f"{modality}_features"] = torch.zeros(1, 1, dim)
                model_inputs[f"{modality}_mask"] = torch.zeros(1, 1, dtype=torch.long)
        policy = getattr(self.feature_extractor, "truncation", None)
        model_inputs["preprocessing"] = [
            {
                "modality": modality,
                "input_frames": int(features[modality].shape[0]),
                "model_frames": int(model_inputs[f"{modality}_mask"].sum()),
                "truncation": policy,
                **raw_notes.get(modality, {}),
            }
            for modality in MODALITIES
            if modality in features
        ]
        if tokens is not None:
            frames = int(tokens["text_mask"].sum())
            model_inputs["preprocessing"].insert(
                0,
                {"modality": "text", "input_frames": frames, "model_frames": frames}
                | raw_notes["text"],
            )
        return model_inputs

    def _raw_frames(self, raw: dict, sampling_rate=None) -> tuple[dict, dict, dict | None]:
        """The processor's frames of the raw modalities, what to report about each, and the text
        tokens instead of text frames for a model that holds its text encoder."""
        if self.processor is None:
            raise ValueError(NO_PROCESSOR.format(modalities=" and ".join(sorted(raw))))
        frames, notes, tokens = {}, {}, None
        if "text" in raw and getattr(self.processor, "text_encoder_in_model", False):
            tokens, counts = self.processor.tokenize_text([raw["text"]], return_token_counts=True)
            notes["text"] = {
                "input": "text",
                "input_tokens": counts[0][0],
                "encoded_tokens": counts[0][1],
            }
        elif "text" in raw:
            encoded, counts = self.processor.encode_text([raw["text"]], return_token_counts=True)
            frames["text"] = encoded[0]
            notes["text"] = {
                "input": "text",
                "input_tokens": counts[0][0],
                "encoded_tokens": counts[0][1],
            }
        if "audio" in raw:
            clip = raw["audio"]
            frames["audio"] = self.processor.encode_audio([clip], sampling_rate=sampling_rate)[0]
            is_file = isinstance(clip, (str, os.PathLike))
            notes["audio"] = {"input": "audio file" if is_file else "waveform"}
        for modality, array in frames.items():
            dim = self.feature_extractor.feature_dims.get(modality)
            if dim is None:
                raise ValueError(
                    f"This model was trained without '{modality}'; it takes "
                    f"{sorted(self.feature_extractor.feature_dims)}."
                )
            if array.shape[1] != dim:
                raise ValueError(
                    f"The processor gives {array.shape[1]}-d {modality} frames but the model takes "
                    f"{dim}-d ones: the processor does not belong to this model."
                )
        return frames, notes, tokens

    def _forward(self, model_inputs):
        # One sample's records, or (when batched, gathered by the collate function) one list of
        # records per sample.
        notes = model_inputs.pop("preprocessing")
        if isinstance(notes[0], dict):
            notes = [notes]
        output = self.model(**model_inputs)
        return {
            "scores": output.scores,
            **{name: output.get(name) for name in UNCERTAINTY_FIELDS},
            "preprocessing": notes,
        }

    def postprocess(self, model_outputs, threshold=None, top_k=None, return_preprocessing=False):
        scores = model_outputs["scores"].float().cpu().numpy()
        if not np.isfinite(scores).all():
            # Finite inputs can still overflow inside the model (e.g. frames of 3e38): an answer
            # of NaN would be neither a prediction nor valid JSON.
            raise ValueError(
                "The model produced non-finite scores for this input; its feature values are "
                "probably far outside the range of the training features."
            )
        # One list of records per sample; a sample cut from a batch arrives as its own list.
        notes = model_outputs["preprocessing"]
        if isinstance(notes[0], dict):
            notes = [notes]
        predicted = self._decisions(scores, threshold)
        extras = self._uncertainty_entries(model_outputs, scores.shape)
        id2label = self.model.config.id2label
        results = []
        for sample, note in enumerate(notes):
            entries = [
                {
                    "label": id2label[index],
                    "score": float(scores[sample, index]),
                    "predicted": bool(predicted[sample, index]),
                }
                | extras[sample][index]
                | ({"preprocessing": note} if return_preprocessing or _changed(note) else {})
                for index in range(scores.shape[1])
            ]
            entries.sort(key=lambda entry: entry["score"], reverse=True)
            results.append(entries[:top_k] if top_k is not None else entries)
        return results[0] if len(results) == 1 else results

    def _decisions(self, scores: np.ndarray, threshold=None) -> np.ndarray:
        """Booleans ``[batch, labels]``: the top score (single-label) or the scores above the
        thresholds (multi-label: ``threshold`` if given, else the config's per-label ones)."""
        if self._single_label:
            return np.eye(scores.shape[1], dtype=bool)[np.argmax(scores, axis=1)]
        thresholds = (
            np.full(scores.shape[-1], threshold)
            if threshold is not None
            else np.asarray(self.model.config.thresholds)
        )
        return scores > thresholds

    @staticmethod
    def _uncertainty_entries(model_outputs, shape) -> list[list[dict]]:
        """Per sample and emotion, the uncertainty fields the model gave (``[batch, labels]``:
        that emotion's value; ``[batch]``: the sample's, on every emotion)."""
        extras = [[{} for _ in range(shape[1])] for _ in range(shape[0])]
        for name in UNCERTAINTY_FIELDS:
            values = model_outputs.get(name)
            if values is None:
                continue
            values = values.float().cpu().numpy().reshape(shape[0], -1)
            if values.shape[1] not in (1, shape[1]):
                raise ValueError(
                    f"The model's {name!r} output has {values.shape[1]} values per sample; "
                    f"expected one per sample or one per emotion ({shape[1]})."
                )
            for sample in range(shape[0]):
                for index in range(shape[1]):
                    column = index if values.shape[1] == shape[1] else 0
                    extras[sample][index][name] = float(values[sample, column])
        return extras


def load_folder_processor(model):
    """The processor saved beside the model (``processor_config.json`` in its folder or Hub
    repository), loaded with its remote code, or None when there is none.

    The processor's code comes from the same folder as the model's and this pipeline's, which the
    caller already trusted (``trust_remote_code=True``) to run them. From a Hub repository it is
    read at the commit the model's config came from, so weights and processor always match.
    """
    source = getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
    if not source:
        return None
    revision = getattr(model.config, "_commit_hash", None)  # None for a local folder
    try:
        cached_file(source, PROCESSOR_FILE, revision=revision)
    except OSError:
        return None  # no processor_config.json: the folder takes pre-extracted features only
    return AutoProcessor.from_pretrained(source, revision=revision, trust_remote_code=True)


def _changed(note: list[dict]) -> bool:
    return any(
        record["input_frames"] != record["model_frames"]
        or record.get("input_tokens") != record.get("encoded_tokens")
        for record in note
    )


NO_PROCESSOR = (
    "Raw {modalities} was given, but this model folder has no processor (processor_config.json): "
    "it takes only pre-extracted features, a dict of [frames, dim] arrays or an .npz file. A model "
    "trained on data built from raw text and audio (dataset_scripts.raw_media, or goemotions "
    "--text_encoder) has one; or pass `processor=` to `pipeline(...)`."
)


MISSING_FEATURE_EXTRACTOR = (
    "The model has no loadable feature extractor (its folder lacks preprocessor_config.json, or "
    "that file could not be loaded). The pipeline does not build a default one: the feature extractor carries the model's maximum lengths and the "
    "normalisation statistics fitted on its training data. Save it next to the model with "
    "`feature_extractor.save_pretrained(folder)` / `feature_extractor.push_to_hub(repo_id)` (the "
    "one train.py used is in its output folder), publish model and feature extractor together "
    'with `pipeline("multimodal-emotion-recognition", model=model, '
    "feature_extractor=feature_extractor).push_to_hub(repo_id)`, or pass "
    "`feature_extractor=` to `pipeline(...)`."
)


def load_sample(inputs) -> tuple[dict, dict]:
    """`(features, raw)`: the `[frames, dim]` float32 arrays of the pre-extracted modalities, and
    the raw ones (`text`: a string; `audio`: a file path or a 1-D waveform array), from a dict, a
    sentence, or an ``.npz`` path; clear errors otherwise."""
    if isinstance(inputs, str) and not inputs.endswith(".npz"):
        inputs = {"text": inputs}  # a sentence
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
            "Each input must be a sentence, a dict with any of the keys 'text', 'audio', 'visual' "
            "(arrays of shape [frames, dim], a text string, an audio file path or waveform) or a "
            f"path to an .npz file; got {type(inputs).__name__}."
        )
    unknown = sorted(set(inputs) - set(MODALITIES))
    if unknown:
        raise ValueError(f"Unknown input key(s) {unknown}; expected any of {list(MODALITIES)}.")
    given = {key: value for key, value in inputs.items() if value is not None}
    if not given:
        raise ValueError(
            "The input holds no modality: give at least one of 'text', 'audio', 'visual'."
        )
    features, raw = {}, {}
    for key, value in given.items():
        if _is_raw(key, value):
            raw[key] = np.asarray(value) if isinstance(value, list) else value
        else:
            features[key] = _checked_array(key, value)
    return features, raw


def _is_raw(key: str, value) -> bool:
    """A text string, or an audio path or 1-D waveform (a flat list of numbers counts)."""
    if key == "text":
        return isinstance(value, str)
    if key != "audio":
        return False
    if isinstance(value, (str, os.PathLike)):
        return True
    if isinstance(value, list):
        return not any(isinstance(item, (list, tuple, np.ndarray)) for item in value)
    return getattr(value, "ndim", None) == 1


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _checked_array(key: str, value) -> np.ndarray:
    """A float32 `[frames, dim]` array of finite numbers, or a ValueError naming the problem."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError) as error:
        raise ValueError(f"'{key}' is not a rectangular array of numbers: {error}") from None
    if array.dtype.kind not in "iuf":  # strings, booleans, ragged lists, ints beyond 64 bits
        raise ValueError(
            f"'{key}' must hold only numbers (within float32 range) in a rectangular "
            f"[frames, dim] array; got an array of {array.dtype}."
        )
    if array.ndim != 2:
        raise ValueError(
            f"'{key}' must be a 2-D array [frames, dim] for one sample; got shape {array.shape}."
        )
    if array.shape[0] == 0:
        raise ValueError(
            f"'{key}' has no frames (shape {array.shape}); give a missing modality by leaving it "
            "out."
        )
    wide = array.astype(np.float64, copy=False)
    if not np.isfinite(wide).all():
        raise ValueError(
            f"'{key}' holds {int((~np.isfinite(wide)).sum())} NaN or infinite value(s); give a "
            "missing modality by leaving it out, not as NaN."
        )
    if wide.size and float(np.abs(wide).max()) > _FLOAT32_MAX:
        raise ValueError(f"'{key}' holds values beyond the float32 range (+-{_FLOAT32_MAX:.3g}).")
    return wide.astype(np.float32)


def check_max_lengths(feature_extractor, config) -> None:
    """The feature extractor's maximum lengths must fit the model's position table, else the
    first long request fails inside the model."""
    limit = getattr(config, "max_position_embeddings", None)
    if limit is None:
        return
    for modality, length in getattr(feature_extractor, "max_lengths", {}).items():
        if length is None or length > limit:
            raise ValueError(
                f"The feature extractor's max_lengths[{modality!r}] is {length}, but the model "
                f"takes at most max_position_embeddings={limit} frames; set it to {limit} or less."
            )


PIPELINE_REGISTRY.register_pipeline(
    TASK,
    pipeline_class=LsgmerEmotionPipeline,
    pt_model=AutoModelForSequenceClassification,
    type="multimodal",
)

__all__ = [
    "MISSING_FEATURE_EXTRACTOR",
    "NO_PROCESSOR",
    "SINGLE_LABEL",
    "LsgmerEmotionPipeline",
    "TASK",
    "check_max_lengths",
    "load_folder_processor",
    "load_sample",
]
