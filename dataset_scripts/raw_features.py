"""The canonical raw-input features: text through a frozen transformers encoder, speech as log-mel.

Everything that turns a sentence or a recording into frames lives here once, as plain functions:

* `load_text_encoder` (tokenizer + frozen encoder from a Hub id or folder at a revision, cache
  first), `checked_texts`, `max_text_tokens`, `encode_texts` (per-text `[tokens, dim]` token
  states of one hidden layer, special tokens dropped or kept, cut at a token limit);
* `read_audio_file` (size and duration limits, soundfile decoding, mono), `checked_waveform`,
  `check_audio_duration`, `resampled`, `log_mel_frames` (25 ms Hann window, 10 ms hop: 100
  frames/s; HTK mel bands; natural log).

The dataset builders (`raw_media`, `goemotions --text_encoder`) call these functions through
`RawFeatureComputer`; every model folder's processor (`modeling_<family>/processing_<family>.py`,
remote code that cannot import this package) holds block copies of them under
``# Copied from dataset_scripts.raw_features.<function>`` markers, which `utils/check_copies.py`
keeps identical. So the features a dataset is built with are, line for line, those a model folder
computes at inference. Edit the functions here, then run ``python utils/check_copies.py --fix``.

The copied functions import only numpy, torch and transformers (soundfile and soxr lazily, through
`optional_module`), log nothing (their callers report), and use the module constants below, which
the processor file defines with the same values (tests/test_copies.py checks them).

`RawFeatureSettings` is what a builder writes beside a dataset (`PROCESSOR_SETTINGS_FILE`): the
processor's constructor arguments that decide the features. `train.py` builds the family's
processor from them and saves it in the model folder.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.audio_utils import mel_filter_bank
from transformers.utils import cached_file

from .io import write_json_atomic

__all__ = [
    "AUDIO_HOP_SECONDS",
    "AUDIO_WINDOW_SECONDS",
    "PROCESSOR_SETTINGS_FILE",
    "RAW_INPUT_COLUMNS",
    "RawFeatureComputer",
    "RawFeatureSettings",
    "add_raw_input_columns",
    "check_audio_duration",
    "checked_texts",
    "checked_waveform",
    "encode_texts",
    "padded_tokens",
    "tokenize_texts",
    "load_text_encoder",
    "log_mel_frames",
    "max_text_tokens",
    "read_audio_file",
    "read_processor_settings",
    "resampled",
]

#: Analysis window and hop of the log-mel frames, in seconds (100 frames per second).
AUDIO_WINDOW_SECONDS = 0.025
AUDIO_HOP_SECONDS = 0.010
MEL_FLOOR = 1e-10
MIN_MEL_FREQUENCY = 20.0
#: Encoders whose tokenizer reports no real limit (a huge sentinel) fall back to this many tokens.
FALLBACK_MAX_TOKENS = 512
#: The processor settings a raw-input dataset is built with, beside the dataset.
PROCESSOR_SETTINGS_FILE = "processor_settings.json"


# --------------------------------------------------------------------------------------------------
# Copied into every processing_<family>.py (keep to numpy, torch, transformers; no logging)
# --------------------------------------------------------------------------------------------------


def optional_module(name: str, purpose: str):
    """Imports the optional package `name`, or raises an ImportError saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the Python package {name!r}, which is not installed: "
            f"`pip install {name}` (or the package's `audio` extra)."
        ) from error


def text_encoder_source(name: str, revision: str | None, subfolder: str = "") -> str:
    """A local folder holding the encoder: `name` (its `subfolder`) if it is a folder, else the Hub
    cache's snapshot of the repository `name` at `revision` (its `subfolder`) if it has one, else
    `name` itself (which downloads). A snapshot folder is named by its commit hash."""
    folder = os.path.join(name, subfolder) if subfolder else name
    if os.path.isdir(folder):
        return folder
    try:
        # transformers 5.24's AutoModel asks the Hub for an adapter file even with
        # local_files_only=True (slow retries offline), so a cached snapshot is loaded as a
        # folder instead.
        config_file = cached_file(
            name, "config.json", revision=revision, subfolder=subfolder, local_files_only=True
        )
    except OSError:
        config_file = None
    return os.path.dirname(config_file) if config_file else name


def from_pretrained_cache_first(auto_class, name: str, revision: str | None, subfolder: str = ""):
    """`auto_class.from_pretrained` from the cached snapshot when there is one, else the Hub."""
    source = text_encoder_source(name, revision, subfolder)
    if source != name:
        try:
            return auto_class.from_pretrained(source)
        except OSError:
            pass  # an incomplete snapshot: download what is missing
    if subfolder:
        return auto_class.from_pretrained(name, revision=revision, subfolder=subfolder)
    return auto_class.from_pretrained(name, revision=revision)


def load_text_encoder(name: str, revision: str | None, layer: int, subfolder: str = ""):
    """`(tokenizer, model)`: the encoder `name` at `revision` (in its `subfolder`, for a model
    folder that ships its encoder), frozen, in eval mode, on the CPU.

    Raises:
        ValueError: If it is an encoder-decoder model or has no hidden state `layer`.
    """
    config = from_pretrained_cache_first(AutoConfig, name, revision, subfolder)
    if getattr(config, "is_encoder_decoder", False):
        raise ValueError(
            f"text encoder {name!r} is an encoder-decoder model; name an encoder-only model "
            "(BERT-like)"
        )
    layers = int(config.num_hidden_layers)
    if not -(layers + 1) <= layer <= layers:
        raise ValueError(
            f"text_encoder_layer {layer} is out of range for {name!r}, whose hidden states are 0 "
            f"(embeddings) to {layers}"
        )
    tokenizer = from_pretrained_cache_first(AutoTokenizer, name, revision, subfolder)
    model = from_pretrained_cache_first(AutoModel, name, revision, subfolder)
    model.requires_grad_(False)
    return tokenizer, model.eval()


def max_text_tokens(tokenizer, config, text_max_tokens: int | None) -> int:
    """Most tokens encoded per text: the encoder's (its `config`) and the tokenizer's limit, and
    `text_max_tokens` if given."""
    limits = [getattr(config, "max_position_embeddings", None)]
    limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [int(limit) for limit in limits if limit is not None and limit < 1_000_000]
    limit = min(limits) if limits else FALLBACK_MAX_TOKENS
    return limit if text_max_tokens is None else min(limit, text_max_tokens)


def checked_texts(text: Any) -> list[str]:
    """A non-empty list of non-blank strings from a string or a list of strings."""
    texts = [text] if isinstance(text, str) else text
    if not isinstance(texts, (list, tuple)) or not texts:
        raise ValueError(
            "text must be a string or a non-empty list of strings; for pre-extracted text "
            f"frames use text_features= (got {type(text).__name__})"
        )
    for index, item in enumerate(texts):
        if not isinstance(item, str):
            raise ValueError(
                f"text {index} is a {type(item).__name__}, not a string; for pre-extracted "
                "text frames use text_features="
            )
        if not item.strip():
            raise ValueError(
                f"text {index} is empty (or only whitespace): an empty text has no frames. "
                "Leave the text out (text=None) for a sample without text."
            )
    return list(texts)


def tokenize_texts(
    tokenizer, texts: Sequence[str], special_tokens: bool, max_tokens: int
) -> tuple[list[list[int]], list[list[int]], list[int]]:
    """`(input_ids, frame_masks, token_counts)` per text, for a model that holds the encoder:
    its token ids (special tokens included) cut to the first `max_tokens`; which of them become
    frames (1: a word piece; the special tokens too if `special_tokens`), the frames
    `encode_texts` computes; and its token count before the cut."""
    token_counts = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
    batch = tokenizer(
        list(texts), truncation=True, max_length=max_tokens, return_special_tokens_mask=True
    )
    input_ids, frame_masks = [], []
    for row, (ids, special) in enumerate(zip(batch["input_ids"], batch["special_tokens_mask"])):
        frames = [1 if special_tokens or not flag else 0 for flag in special]
        if not any(frames):
            raise ValueError(f"text {row} gives no tokens besides the special ones: {texts[row]!r}")
        input_ids.append(list(ids))
        frame_masks.append(frames)
    return input_ids, frame_masks, token_counts


def padded_tokens(
    input_ids: list[list[int]], frame_masks: list[list[int]], pad_token_id: int | None
) -> dict[str, np.ndarray]:
    """`tokenize_texts`' rows as right-padded int64 arrays `[texts, longest]`: `text_input_ids`
    (padded with `pad_token_id`, or 0), `text_attention_mask` and `text_mask` (the tokens that
    become frames): the inputs of a model that holds the text encoder."""
    shape = (len(input_ids), max(len(row) for row in input_ids))
    arrays = {
        "text_input_ids": np.full(shape, pad_token_id or 0, np.int64),
        "text_attention_mask": np.zeros(shape, np.int64),
        "text_mask": np.zeros(shape, np.int64),
    }
    for row, (row_ids, row_frames) in enumerate(zip(input_ids, frame_masks)):
        arrays["text_input_ids"][row, : len(row_ids)] = row_ids
        arrays["text_attention_mask"][row, : len(row_ids)] = 1
        arrays["text_mask"][row, : len(row_ids)] = row_frames
    return arrays


def encode_texts(
    tokenizer,
    model,
    texts: Sequence[str],
    layer: int,
    special_tokens: bool,
    max_tokens: int,
    batch_size: int,
) -> tuple[list[np.ndarray], list[int]]:
    """`(frames, token_counts)`: per text, float32 `[tokens, hidden_size]` token states of hidden
    state `layer` (real word pieces only: padding dropped, special tokens dropped unless
    `special_tokens`), the text cut to its first `max_tokens` tokens; and per text its token count
    before the cut (special tokens included), so that the caller can report what was cut."""
    token_counts = [len(ids) for ids in tokenizer(list(texts))["input_ids"]]
    device = next(model.parameters()).device
    frames = []
    with torch.no_grad():  # a decorator would not be copied with the block
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(
                list(texts[start : start + batch_size]),
                padding=True,
                truncation=True,
                max_length=max_tokens,
                return_special_tokens_mask=True,
                return_tensors="pt",
            )
            keep = batch.pop("special_tokens_mask") == 0
            keep &= batch["attention_mask"] > 0
            if special_tokens:
                keep = batch["attention_mask"] > 0
            states = model(**batch.to(device), output_hidden_states=True).hidden_states[layer]
            states = states.float().cpu().numpy()
            for row, row_keep in enumerate(keep.numpy()):
                if not row_keep.any():
                    raise ValueError(
                        f"text {start + row} gives no tokens besides the special ones: "
                        f"{texts[start + row]!r}"
                    )
                frames.append(np.ascontiguousarray(states[row, row_keep]))
    return frames, token_counts


def check_audio_duration(samples: int, rate: int, what: str, max_seconds: float) -> None:
    """Refuses audio longer than `max_seconds`."""
    seconds = samples / rate
    if seconds > max_seconds:
        raise ValueError(
            f"{what} lasts {seconds:.1f} s, more than max_audio_seconds = {max_seconds:g} s; cut "
            "it, or raise the processor's max_audio_seconds"
        )


def read_audio_file(
    path: str | os.PathLike, what: str, max_seconds: float, max_bytes: int
) -> tuple[np.ndarray, int]:
    """`(mono float32 waveform, sampling rate)` of an audio file (channels averaged), refusing a
    missing file, one over `max_bytes` (before opening) or `max_seconds` (before decoding), and
    one soundfile cannot decode."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what}: the audio file {path} does not exist")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(
            f"{what}: {path} has {size:,} bytes, more than max_audio_file_bytes = {max_bytes:,}"
        )
    soundfile = optional_module("soundfile", "Reading audio files")
    try:
        info = soundfile.info(str(path))
        check_audio_duration(info.frames, info.samplerate, f"{what} ({path})", max_seconds)
        if info.channels > MAX_AUDIO_CHANNELS:
            raise ValueError(
                f"{what}: {path} has {info.channels} channels; at most {MAX_AUDIO_CHANNELS} are "
                "read (mix it down first)"
            )
        # Decoded block by block and averaged to mono at once: the memory held is the mono
        # waveform, whatever the channel count.
        blocks = [
            block.mean(axis=1)
            for block in soundfile.blocks(
                str(path), blocksize=AUDIO_READ_BLOCK_FRAMES, dtype="float32", always_2d=True
            )
        ]
        rate = info.samplerate
    except RuntimeError as error:  # soundfile.LibsndfileError: not a format it decodes
        raise ValueError(
            f"{what}: {path} is not an audio file soundfile can decode ({error})"
        ) from None
    if not blocks or sum(len(block) for block in blocks) == 0:
        raise ValueError(f"{what}: {path} holds no audio samples")
    return np.concatenate(blocks).astype(np.float32, copy=False), int(rate)


#: Channels an audio file may have (they are averaged to mono).
MAX_AUDIO_CHANNELS = 32
#: Frames decoded at a time from an audio file.
AUDIO_READ_BLOCK_FRAMES = 65536
#: The largest absolute sample accepted (float audio lies in [-1, 1]; a little headroom for
#: clipping in decoders and resamplers).
MAX_WAVEFORM_PEAK = 2.0


def checked_waveform(value: Any, what: str, sampling_rate: int, max_seconds: float) -> np.ndarray:
    """A float32 1-D waveform of finite samples at most `max_seconds` long, or a ValueError."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.dtype.kind != "f":
        raise ValueError(
            f"{what} has dtype {array.dtype}; a waveform must be float samples in [-1, 1] "
            "(divide int16 PCM by 32768)"
        )
    if array.ndim != 1:
        raise ValueError(
            f"{what} has shape {array.shape}; a waveform is 1-D mono samples (average the "
            "channels first); for pre-extracted audio frames use audio_features="
        )
    if array.size == 0:
        raise ValueError(f"{what} has no samples")
    if not np.isfinite(array).all():
        raise ValueError(f"{what} holds non-finite samples (NaN or inf)")
    peak = float(np.abs(array).max())
    if peak > MAX_WAVEFORM_PEAK:
        raise ValueError(
            f"{what} peaks at {peak:.4g}; float waveforms lie in [-1, 1] (int16 PCM divided by "
            "32768): these samples would change every log-mel frame"
        )
    check_audio_duration(array.size, sampling_rate, what, max_seconds)
    return array.astype(np.float32, copy=False)


def resampled(waveform: np.ndarray, rate: int, target_rate: int, what: str, resample: bool):
    """`waveform` at `target_rate`: as it is, resampled with soxr when `resample`, else an error."""
    if rate == target_rate:
        return waveform
    if not resample:
        raise ValueError(
            f"{what} is sampled at {rate} Hz but this processor takes {target_rate} Hz; resample "
            "it first, or call with resample=True (soxr)"
        )
    soxr = optional_module("soxr", "Resampling audio")
    return soxr.resample(waveform, rate, target_rate, quality="HQ")


def log_mel_frames(
    waveform: np.ndarray, sampling_rate: int, num_mel_bins: int, what: str = "audio"
) -> np.ndarray:
    """float32 `[frames, num_mel_bins]` log-mel frames of a mono waveform.

    Frame `i` covers samples `[i * hop, i * hop + window)` (25 ms Hann window, 10 ms hop, no
    padding at the edges), so a clip of `n` samples gives `1 + (n - window) // hop` frames; power
    spectrum of a power-of-two FFT, HTK mel bands from 20 Hz to the Nyquist frequency, natural log
    floored at `MEL_FLOOR`.
    """
    window = int(round(AUDIO_WINDOW_SECONDS * sampling_rate))
    hop = int(round(AUDIO_HOP_SECONDS * sampling_rate))
    fft_length = 2 ** math.ceil(math.log2(window))
    if waveform.shape[0] < window:
        raise ValueError(
            f"{what} has {waveform.shape[0]} samples, fewer than one "
            f"{1000 * AUDIO_WINDOW_SECONDS:g} ms analysis window ({window} samples)"
        )
    filters = mel_filter_bank(
        num_frequency_bins=fft_length // 2 + 1,
        num_mel_filters=num_mel_bins,
        min_frequency=MIN_MEL_FREQUENCY,
        max_frequency=sampling_rate / 2,
        sampling_rate=sampling_rate,
        mel_scale="htk",
    )
    samples = torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))
    frames = samples.unfold(0, window, hop) * torch.hann_window(window, periodic=True)
    spectrum = torch.fft.rfft(frames, n=fft_length)  # [frames, fft_length // 2 + 1]
    power = spectrum.abs().square().to(torch.float64)
    mel = power @ torch.from_numpy(filters)  # [frames, num_mel_bins]
    return mel.clamp_min(MEL_FLOOR).log().to(torch.float32).numpy()


# --------------------------------------------------------------------------------------------------
# Builder side (not copied): the settings written beside a dataset, and the computer using them
# --------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RawFeatureSettings:
    """The settings that decide the raw-input features; the field names are the processor's
    constructor arguments, so ``ProcessorClass(feature_extractor, **settings.to_dict())`` builds
    the processor that computes the very same frames."""

    text_encoder_name_or_path: str | None = None
    text_encoder_revision: str | None = None
    text_encoder_layer: int = -1
    text_special_tokens: bool = False
    text_max_tokens: int | None = None
    text_encoder_in_model: bool = False
    sampling_rate: int = 16000
    num_mel_bins: int = 80

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Any, where: str = "processor settings") -> RawFeatureSettings:
        if not isinstance(values, dict):
            raise ValueError(f"{where} must be a JSON object; got {type(values).__name__}")
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"{where} has unknown key(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def write(self, folder: str | os.PathLike) -> Path:
        """Writes `<folder>/processor_settings.json` (atomically)."""
        path = Path(folder) / PROCESSOR_SETTINGS_FILE
        write_json_atomic(path, self.to_dict())
        return path


def read_processor_settings(folder: str | os.PathLike | None) -> RawFeatureSettings | None:
    """The settings saved beside the dataset in `folder`, or None if it has none."""
    if folder is None:
        return None
    path = Path(folder) / PROCESSOR_SETTINGS_FILE
    if not path.is_file():
        return None
    try:
        values = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from None
    return RawFeatureSettings.from_dict(values, where=str(path))


class RawFeatureComputer:
    """Computes a builder's frames with `settings` (the text encoder loads on first use).

    Args:
        settings: What to compute.
        text_batch_size: Texts per forward pass of the encoder.
        max_audio_seconds, max_audio_file_bytes: Limits on each audio file.
    """

    def __init__(
        self,
        settings: RawFeatureSettings,
        text_batch_size: int = 64,
        max_audio_seconds: float = 600.0,
        max_audio_file_bytes: int = 200 * 2**20,
    ) -> None:
        self.settings = settings
        self.text_batch_size = text_batch_size
        self.max_audio_seconds = max_audio_seconds
        self.max_audio_file_bytes = max_audio_file_bytes
        self._encoder = None

    def _loaded_encoder(self):
        if self._encoder is None:
            name = self.settings.text_encoder_name_or_path
            if name is None:
                raise ValueError("these settings name no text encoder (text_encoder_name_or_path)")
            tokenizer, model = load_text_encoder(
                name, self.settings.text_encoder_revision, self.settings.text_encoder_layer
            )
            limit = max_text_tokens(tokenizer, model.config, self.settings.text_max_tokens)
            self._encoder = (tokenizer, model, limit)
        return self._encoder

    @property
    def text_dim(self) -> int:
        return int(self._loaded_encoder()[1].config.hidden_size)

    @property
    def max_tokens(self) -> int:
        """Most tokens encoded per text (special tokens included)."""
        return self._loaded_encoder()[2]

    def text_frames(self, texts: Sequence[str]) -> tuple[list[np.ndarray], list[int]]:
        """`encode_texts` of `texts`: per text its frames and its token count before any cut."""
        tokenizer, model, limit = self._loaded_encoder()
        return encode_texts(
            tokenizer,
            model,
            checked_texts(list(texts)),
            layer=self.settings.text_encoder_layer,
            special_tokens=self.settings.text_special_tokens,
            max_tokens=limit,
            batch_size=self.text_batch_size,
        )

    def text_tokens(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """`tokenize_texts` of `texts` as `padded_tokens`' arrays, for a model holding the text
        encoder."""
        tokenizer, _, limit = self._loaded_encoder()
        ids, frames, _ = tokenize_texts(
            tokenizer, checked_texts(list(texts)), self.settings.text_special_tokens, limit
        )
        return padded_tokens(ids, frames, tokenizer.pad_token_id)

    @property
    def text_encoder(self):
        """The loaded text encoder (a transformers model, frozen)."""
        return self._loaded_encoder()[1]

    def audio_frames(self, paths: Sequence[str | os.PathLike]) -> list[np.ndarray]:
        """The log-mel frames of each audio file (at the settings' rate; other rates refused)."""
        frames = []
        for index, path in enumerate(paths):
            what = f"audio {index}"
            waveform, rate = read_audio_file(
                path, what, self.max_audio_seconds, self.max_audio_file_bytes
            )
            waveform = resampled(waveform, rate, self.settings.sampling_rate, what, resample=False)
            frames.append(
                log_mel_frames(
                    waveform, self.settings.sampling_rate, self.settings.num_mel_bins, what
                )
            )
        return frames


#: The columns holding each sample's raw inputs in a dataset built from them (strings).
RAW_INPUT_COLUMNS = ("raw_text", "raw_audio")


def add_raw_input_columns(dataset_dict, raw: dict[str, dict[str, list[str]]]):
    """`dataset_dict` with string columns of raw inputs (`raw_text`: the sentence; `raw_audio`: the
    audio path) per split: `raw[split][column]`, one value per row. The metadata is kept; the
    loaders read only the modality and label columns, so these ride along unused until the
    model card takes its widget examples from them (with `train.py --publish_raw_examples`)."""
    for split, columns in raw.items():
        dataset = dataset_dict[split]
        for name, values in columns.items():
            if name not in RAW_INPUT_COLUMNS:
                raise ValueError(f"unknown raw-input column {name!r}; known: {RAW_INPUT_COLUMNS}")
            if len(values) != dataset.num_rows:
                raise ValueError(
                    f"{split}: {len(values)} values for the column {name!r} of {dataset.num_rows} "
                    "rows"
                )
            description = dataset.info.description
            dataset = dataset.add_column(name, [str(value) for value in values])
            dataset.info.description = description
        dataset_dict[split] = dataset
    return dataset_dict
