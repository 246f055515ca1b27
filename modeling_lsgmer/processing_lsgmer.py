# Copied from modeling_lddu.processing_lddu with LDDU->Lsgmer, lddu->lsgmer
"""Processor for Lsgmer: raw text and speech (and pre-extracted frames) -> model inputs.

`LsgmerProcessor` turns what a user has into frame sequences and hands them to the feature extractor
(`LsgmerFeatureExtractor`: padding, truncation, masks, cleaning, normalisation):

* **text** (strings): tokenised and encoded by a frozen transformers text encoder named in the
  processor config (`text_encoder_name_or_path`, a Hub id or a local folder, at
  `text_encoder_revision`), or shipped in the processor's own folder (`text_encoder_subfolder`:
  `save_pretrained` copies an encoder that is a local folder there, since a path means nothing on
  another machine). The frames are the encoder's token states at `text_encoder_layer`
  (default -1, the last layer), one per real word piece: padding is dropped, and so are the
  special tokens ([CLS], [SEP]) unless `text_special_tokens=True`.
* **audio** (16 kHz mono float waveforms or audio files): log-mel filterbank frames, 25 ms Hann
  window, 10 ms hop (100 frames/s; frame `i` covers samples `[160 i, 160 i + 400)`, no edge
  padding), `num_mel_bins` mel bands (default 80, HTK scale, transformers' `mel_filter_bank`)
  between 20 Hz and the Nyquist frequency over a 512-point `torch.fft.rfft` power spectrum,
  natural log floored at 1e-10. Files are decoded with the optional `soundfile` library (WAV,
  FLAC, OGG/Vorbis/Opus, MP3, AIFF, ...: what libsndfile reads); multichannel files are averaged
  to mono. A sampling rate other than `sampling_rate` is an error unless resampling is asked for
  (`resample=True`), which uses the optional `soxr`.
* **visual** stays pre-extracted: `visual=` takes `[frames, dim]` arrays, as the feature extractor
  does. Any modality may be given pre-extracted with `text_features=`, `audio_features=` or
  `visual_features=`.

The frame computation itself is a set of functions copied from `dataset_scripts/raw_features.py`
(`# Copied from dataset_scripts.raw_features.<function>` markers, kept identical by
`utils/check_copies.py`): the dataset builders run the originals, so a dataset's frames are the
ones this processor computes at inference.

This file is remote code shipped next to a checkpoint: it imports only numpy, torch, transformers
and its sibling configuration file (soundfile and soxr are imported only when a file is decoded or
a waveform resampled). It is family-neutral: every family's folder holds a whole-file copy of it
with its own class name (see docs/architecture.md, "Copied code").
"""

from __future__ import annotations

import copy
import importlib
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.audio_utils import mel_filter_bank
from transformers.feature_extraction_utils import BatchFeature
from transformers.processing_utils import ProcessorMixin
from transformers.utils import cached_file, logging

from .configuration_lsgmer import MODALITIES

logger = logging.get_logger(__name__)

__all__ = ["LsgmerProcessor"]

#: Analysis window and hop of the log-mel frames, in seconds (100 frames per second). These
#: constants are those of dataset_scripts/raw_features.py (the copied functions below use them).
AUDIO_WINDOW_SECONDS = 0.025
AUDIO_HOP_SECONDS = 0.010
MEL_FLOOR = 1e-10
MIN_MEL_FREQUENCY = 20.0
#: Encoders whose tokenizer reports no real limit (a huge sentinel) fall back to this many tokens.
FALLBACK_MAX_TOKENS = 512
#: Channels an audio file may have (averaged to mono), and frames decoded at a time.
MAX_AUDIO_CHANNELS = 32
AUDIO_READ_BLOCK_FRAMES = 65536
#: The largest absolute waveform sample accepted (float audio lies in [-1, 1]).
MAX_WAVEFORM_PEAK = 2.0
#: The subfolder of a saved processor's folder that holds a copy of its local text encoder.
TEXT_ENCODER_SUBFOLDER = "text_encoder"


class _LoadedTextEncoder:
    """Holds the loaded tokenizer and encoder out of the processor's serialised state.

    `ProcessorMixin.to_dict` deep-copies the processor's `__dict__`; sharing this holder instead of
    copying a frozen model keeps that cheap (the model is read-only, so sharing is safe).
    """

    def __init__(self) -> None:
        self.tokenizer = None
        self.model = None
        self.max_tokens = None
        self.device = torch.device("cpu")
        # `(folder or Hub id, revision, subfolder)` the processor was loaded from (from_pretrained):
        # where a `text_encoder_subfolder` is found.
        self.origin = None

    def __deepcopy__(self, memo: dict) -> _LoadedTextEncoder:
        return self


# --------------------------------------------------------------------------------------------------
# The feature functions: copies of dataset_scripts/raw_features.py, which the dataset builders run
# --------------------------------------------------------------------------------------------------


# Copied from dataset_scripts.raw_features.optional_module
def optional_module(name: str, purpose: str):
    """Imports the optional package `name`, or raises an ImportError saying how to install it."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise ImportError(
            f"{purpose} needs the Python package {name!r}, which is not installed: "
            f"`pip install {name}` (or the package's `audio` extra)."
        ) from error


# Copied from dataset_scripts.raw_features.text_encoder_source
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


# Copied from dataset_scripts.raw_features.from_pretrained_cache_first
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


# Copied from dataset_scripts.raw_features.load_text_encoder
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


# Copied from dataset_scripts.raw_features.max_text_tokens
def max_text_tokens(tokenizer, config, text_max_tokens: int | None) -> int:
    """Most tokens encoded per text: the encoder's (its `config`) and the tokenizer's limit, and
    `text_max_tokens` if given."""
    limits = [getattr(config, "max_position_embeddings", None)]
    limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [int(limit) for limit in limits if limit is not None and limit < 1_000_000]
    limit = min(limits) if limits else FALLBACK_MAX_TOKENS
    return limit if text_max_tokens is None else min(limit, text_max_tokens)


# Copied from dataset_scripts.raw_features.checked_texts
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


# Copied from dataset_scripts.raw_features.tokenize_texts
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


# Copied from dataset_scripts.raw_features.padded_tokens
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


# Copied from dataset_scripts.raw_features.encode_texts
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


# Copied from dataset_scripts.raw_features.check_audio_duration
def check_audio_duration(samples: int, rate: int, what: str, max_seconds: float) -> None:
    """Refuses audio longer than `max_seconds`."""
    seconds = samples / rate
    if seconds > max_seconds:
        raise ValueError(
            f"{what} lasts {seconds:.1f} s, more than max_audio_seconds = {max_seconds:g} s; cut "
            "it, or raise the processor's max_audio_seconds"
        )


# Copied from dataset_scripts.raw_features.read_audio_file
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


# Copied from dataset_scripts.raw_features.checked_waveform
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


# Copied from dataset_scripts.raw_features.resampled
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


# Copied from dataset_scripts.raw_features.log_mel_frames
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


class LsgmerProcessor(ProcessorMixin):
    r"""
    Turns sentences, waveforms, audio files and pre-extracted frames into the inputs of an Lsgmer
    model (see the module docstring for what each modality becomes).

    Args:
        feature_extractor ([`LsgmerFeatureExtractor`]):
            Pads, truncates, masks and normalises the frames. Its `feature_dims["text"]` must be
            the text encoder's hidden size and `feature_dims["audio"]` must be `num_mel_bins` for
            raw text and audio to be accepted.
        text_encoder_name_or_path (`str`, *optional*):
            Hub id or local folder of a transformers encoder (and its tokenizer) used for text
            given as strings. None: text must come pre-extracted.
        text_encoder_revision (`str`, *optional*):
            Hub revision (pin a commit hash: the features must not change between training and
            inference). Ignored for a local folder.
        text_encoder_subfolder (`str`, *optional*):
            Instead of `text_encoder_name_or_path`: the encoder is shipped in this subfolder of the
            folder (or Hub repository) the processor is loaded from with `from_pretrained`.
            `save_pretrained` writes it for an encoder that is a local folder, which it copies
            there.
        text_encoder_layer (`int`, *optional*, defaults to -1):
            Index into the encoder's hidden states (0 = embeddings, -1 = last layer).
        text_special_tokens (`bool`, *optional*, defaults to `False`):
            Keep the frames of the tokenizer's special tokens ([CLS], [SEP]).
        text_max_tokens (`int`, *optional*):
            Most tokens (special ones included) encoded per text; longer texts are cut, and the
            number cut is logged. Default: the tokenizer's and the encoder's limit.
        text_batch_size (`int`, *optional*, defaults to 32):
            Texts encoded per forward pass.
        text_encoder_in_model (`bool`, *optional*, defaults to `False`):
            The model holds the text encoder itself (a text backbone, `text_backbone_config` in
            its config): text becomes the tokens `text_input_ids`, `text_attention_mask` and
            `text_mask` (the tokens that become frames: the word pieces, as above) instead of
            frames, and only the tokenizer is loaded.
        sampling_rate (`int`, *optional*, defaults to 16000):
            The sampling rate audio must have (or is resampled to with `resample=True`).
        num_mel_bins (`int`, *optional*, defaults to 80):
            Mel bands per audio frame (the audio feature dim).
        max_audio_seconds (`float`, *optional*, defaults to 600.0):
            Longest accepted clip; longer ones are refused before decoding.
        max_audio_file_bytes (`int`, *optional*, defaults to 200 MiB):
            Largest accepted audio file.
        resample (`bool`, *optional*, defaults to `False`):
            Default of `__call__`'s `resample`: resample audio of another rate with soxr instead of
            refusing it.
    """

    def __init__(
        self,
        feature_extractor,
        text_encoder_name_or_path: str | None = None,
        text_encoder_revision: str | None = None,
        text_encoder_subfolder: str | None = None,
        text_encoder_layer: int = -1,
        text_special_tokens: bool = False,
        text_max_tokens: int | None = None,
        text_batch_size: int = 32,
        text_encoder_in_model: bool = False,
        sampling_rate: int = 16000,
        num_mel_bins: int = 80,
        max_audio_seconds: float = 600.0,
        max_audio_file_bytes: int = 200 * 2**20,
        resample: bool = False,
    ) -> None:
        for name, value in (
            ("text_batch_size", text_batch_size),
            ("sampling_rate", sampling_rate),
            ("num_mel_bins", num_mel_bins),
            ("max_audio_file_bytes", max_audio_file_bytes),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if text_max_tokens is not None and (
            isinstance(text_max_tokens, bool) or not isinstance(text_max_tokens, int)
        ):
            raise ValueError(f"text_max_tokens must be an int or None; got {text_max_tokens!r}")
        if text_max_tokens is not None and text_max_tokens < 3:
            raise ValueError(f"text_max_tokens must be at least 3; got {text_max_tokens}")
        if isinstance(text_encoder_layer, bool) or not isinstance(text_encoder_layer, int):
            raise ValueError(f"text_encoder_layer must be an int; got {text_encoder_layer!r}")
        if not (isinstance(max_audio_seconds, (int, float)) and max_audio_seconds > 0):
            raise ValueError(f"max_audio_seconds must be positive; got {max_audio_seconds!r}")
        if text_encoder_name_or_path is not None and not (
            isinstance(text_encoder_name_or_path, str) and text_encoder_name_or_path.strip()
        ):
            raise ValueError(
                "text_encoder_name_or_path must be a Hub id, a folder or None; got "
                f"{text_encoder_name_or_path!r}"
            )
        if text_encoder_subfolder is not None:
            parts = str(text_encoder_subfolder).replace("\\", "/").split("/")
            if (
                not isinstance(text_encoder_subfolder, str)
                or os.path.isabs(text_encoder_subfolder)
                or any(part in ("", ".", "..") for part in parts)
            ):
                raise ValueError(
                    "text_encoder_subfolder must be a relative folder inside the processor's "
                    f"folder; got {text_encoder_subfolder!r}"
                )
            if text_encoder_name_or_path is not None:
                raise ValueError(
                    "give text_encoder_name_or_path or text_encoder_subfolder (an encoder shipped "
                    "in the processor's folder), not both"
                )
        self.text_encoder_name_or_path = text_encoder_name_or_path
        self.text_encoder_revision = text_encoder_revision
        self.text_encoder_subfolder = text_encoder_subfolder
        self.text_encoder_layer = text_encoder_layer
        self.text_special_tokens = bool(text_special_tokens)
        self.text_max_tokens = text_max_tokens
        self.text_batch_size = text_batch_size
        self.text_encoder_in_model = bool(text_encoder_in_model)
        self.sampling_rate = sampling_rate
        self.num_mel_bins = num_mel_bins
        self.max_audio_seconds = float(max_audio_seconds)
        self.max_audio_file_bytes = max_audio_file_bytes
        self.resample = bool(resample)
        self._loaded = _LoadedTextEncoder()
        super().__init__(feature_extractor)

    # ----------------------------------------------------------------------------------------------
    # Text
    # ----------------------------------------------------------------------------------------------

    def to(self, device: str | torch.device) -> LsgmerProcessor:
        """Runs the text encoder on `device` from now on (CPU by default); returns `self`."""
        self._loaded.device = torch.device(device)
        if self._loaded.model is not None:
            self._loaded.model.to(self._loaded.device)
        return self

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *args, **kwargs):
        """`ProcessorMixin.from_pretrained`, remembering the folder (or Hub repository, at the
        revision asked) it was loaded from: a `text_encoder_subfolder` is found there."""
        processor = super().from_pretrained(pretrained_model_name_or_path, *args, **kwargs)
        processor._loaded.origin = (
            str(pretrained_model_name_or_path),
            kwargs.get("revision"),
            kwargs.get("subfolder") or "",
        )
        return processor

    def _encoder_location(self) -> tuple[str, str | None, str]:
        """`(name, revision, subfolder)` to load the text encoder from."""
        if self.text_encoder_subfolder is not None:
            if self._loaded.origin is None:
                raise ValueError(
                    "This processor's text encoder is shipped in the subfolder "
                    f"{self.text_encoder_subfolder!r} of its folder: load the processor with "
                    "from_pretrained(folder) (or AutoProcessor, or the pipeline of the model "
                    "folder), which knows that folder."
                )
            folder, revision, subfolder = self._loaded.origin
            parts = (subfolder, self.text_encoder_subfolder)
            return folder, revision, "/".join(part for part in parts if part)
        if self.text_encoder_name_or_path is None:
            raise ValueError(
                "This processor has no text encoder (text_encoder_name_or_path is None): give text "
                "as pre-extracted frames with text_features=, or set text_encoder_name_or_path."
            )
        return self.text_encoder_name_or_path, self.text_encoder_revision, ""

    def _encoder_name(self) -> str:
        name, _, subfolder = self._encoder_location()
        return f"{name}/{subfolder}" if subfolder else name

    def text_encoder_config(self):
        """The text encoder's config (loaded from its name, without the weights)."""
        name, revision, subfolder = self._encoder_location()
        return from_pretrained_cache_first(AutoConfig, name, revision, subfolder)

    def _local_text_encoder(self) -> str | None:
        """The folder of a text encoder that is not a Hub id (a local folder, or the subfolder
        this processor was loaded with), which `save_pretrained` copies; None otherwise."""
        if self.text_encoder_subfolder is not None:
            return text_encoder_source(*self._encoder_location())
        name = self.text_encoder_name_or_path
        return name if name is not None and os.path.isdir(name) else None

    def save_pretrained(self, save_directory, push_to_hub: bool = False, **kwargs):
        """`ProcessorMixin.save_pretrained`; an encoder that is a local folder is saved with it.

        A local folder's path means nothing on another machine, so the tokenizer and the encoder
        are written (`save_pretrained`: config, weights, tokenizer files; nothing else of the
        folder) into `<save_directory>/text_encoder/`, and the saved config names that subfolder
        (`text_encoder_subfolder`) instead of the path. A Hub encoder is named, not copied. With
        `text_encoder_in_model` the weights stay out: the model's own file holds them.
        """
        source = self._local_text_encoder()
        if source is None:
            return super().save_pretrained(save_directory, push_to_hub=push_to_hub, **kwargs)
        if push_to_hub:
            raise ValueError(
                "This processor's text encoder is a local folder, which save_pretrained copies "
                "into the saved folder: save it, then upload the whole folder."
            )
        target = os.path.join(str(save_directory), TEXT_ENCODER_SUBFOLDER)
        if os.path.realpath(source) != os.path.realpath(target) and self.text_encoder_in_model:
            # The model holds the encoder's weights: the tokenizer and the config suffice here.
            self._text_tokenizer()[0].save_pretrained(target)
            self.text_encoder_config().save_pretrained(target)
        elif os.path.realpath(source) != os.path.realpath(target):
            name, revision, subfolder = self._encoder_location()
            tokenizer, model = self._loaded.tokenizer, self._loaded.model
            if model is None:  # not loaded yet: loaded for the copy only
                tokenizer, model = load_text_encoder(
                    name, revision, self.text_encoder_layer, subfolder
                )
            tokenizer.save_pretrained(target)
            model.save_pretrained(target)
        saved = copy.copy(self)  # the same processor, naming the copy
        saved.text_encoder_name_or_path = None
        saved.text_encoder_revision = None
        saved.text_encoder_subfolder = TEXT_ENCODER_SUBFOLDER
        return ProcessorMixin.save_pretrained(saved, save_directory, **kwargs)

    @property
    def text_feature_dim(self) -> int:
        """The dim of the text frames: the encoder's hidden size."""
        return int(self.text_encoder_config().hidden_size)

    def _text_encoder(self):
        loaded = self._loaded
        if loaded.model is None and self.text_encoder_in_model:
            raise ValueError(
                "This processor's model holds the text encoder and computes the text frames "
                "itself (text_encoder_in_model): the processor gives tokens (tokenize_text, or "
                "calling it with text=)."
            )
        if loaded.model is None:
            name = self._encoder_name()
            location, revision, subfolder = self._encoder_location()
            tokenizer, model = load_text_encoder(
                location, revision, self.text_encoder_layer, subfolder
            )
            dim = self.feature_extractor.feature_dims.get("text")
            if dim != model.config.hidden_size:
                raise ValueError(
                    f"text encoder {name!r} gives {model.config.hidden_size}-d token states but "
                    f"the feature extractor expects text features of dim {dim} "
                    "(feature_dims['text'])"
                )
            loaded.max_tokens = max_text_tokens(tokenizer, model.config, self.text_max_tokens)
            loaded.tokenizer, loaded.model = tokenizer, model.to(loaded.device)
        return loaded.tokenizer, loaded.model

    def _text_tokenizer(self):
        """The tokenizer and the token limit (the encoder's weights are not loaded)."""
        loaded = self._loaded
        if loaded.tokenizer is None:
            location, revision, subfolder = self._encoder_location()
            tokenizer = from_pretrained_cache_first(AutoTokenizer, location, revision, subfolder)
            config = self.text_encoder_config()
            loaded.max_tokens = max_text_tokens(tokenizer, config, self.text_max_tokens)
            loaded.tokenizer = tokenizer
        return loaded.tokenizer, loaded.max_tokens

    def tokenize_text(
        self, text: str | Sequence[str], return_token_counts: bool = False
    ) -> BatchFeature | tuple[BatchFeature, list[tuple[int, int]]]:
        """The tokens of each text for a model holding the encoder: int64 tensors
        `text_input_ids`, `text_attention_mask` and `text_mask` (the tokens that become frames),
        right-padded. Cuts and reports as :meth:`encode_text`."""
        texts = checked_texts(text)
        tokenizer, limit = self._text_tokenizer()
        ids, frames, counts = tokenize_texts(tokenizer, texts, self.text_special_tokens, limit)
        self._warn_cut(counts, limit)
        batch = BatchFeature(padded_tokens(ids, frames, tokenizer.pad_token_id), tensor_type="pt")
        if return_token_counts:
            return batch, [(count, min(count, limit)) for count in counts]
        return batch

    @staticmethod
    def _warn_cut(counts: list[int], limit: int) -> None:
        cut = sum(count > limit for count in counts)
        if cut:
            logger.warning(
                f"{cut} text(s) longer than {limit} tokens (the longest has {max(counts)}) were "
                f"cut to their first {limit} tokens."
            )

    def encode_text(
        self, text: str | Sequence[str], return_token_counts: bool = False
    ) -> list[np.ndarray] | tuple[list[np.ndarray], list[tuple[int, int]]]:
        """The frames of each text: float32 `[tokens, hidden_size]` token states (see the class).

        Texts longer than the token limit are cut to it, with a warning. With
        `return_token_counts`, also returns per text `(tokens given, tokens encoded)` (special
        tokens included), which differ for a text that was cut.
        """
        texts = checked_texts(text)
        tokenizer, model = self._text_encoder()
        limit = self._loaded.max_tokens
        frames, counts = encode_texts(
            tokenizer,
            model,
            texts,
            layer=self.text_encoder_layer,
            special_tokens=self.text_special_tokens,
            max_tokens=limit,
            batch_size=self.text_batch_size,
        )
        self._warn_cut(counts, limit)
        if return_token_counts:
            return frames, [(count, min(count, limit)) for count in counts]
        return frames

    # ----------------------------------------------------------------------------------------------
    # Audio
    # ----------------------------------------------------------------------------------------------

    def log_mel_frames(self, waveform: np.ndarray, what: str = "audio") -> np.ndarray:
        """float32 `[frames, num_mel_bins]` log-mel frames of a mono waveform at `sampling_rate`
        (`log_mel_frames`: frame `i` covers samples `[i * hop, i * hop + window)`)."""
        return log_mel_frames(waveform, self.sampling_rate, self.num_mel_bins, what)

    def _clip_waveform(self, clip: Any, what: str, sampling_rate: int | None, resample: bool):
        if isinstance(clip, (str, os.PathLike)):
            waveform, rate = read_audio_file(
                clip, what, self.max_audio_seconds, self.max_audio_file_bytes
            )
        else:
            if sampling_rate is None:
                logger.warning_once(
                    f"No sampling_rate given with the audio arrays: they are taken to be "
                    f"{self.sampling_rate} Hz. Pass sampling_rate= to make sure."
                )
            rate = self.sampling_rate if sampling_rate is None else int(sampling_rate)
            waveform = checked_waveform(clip, what, rate, self.max_audio_seconds)
        return resampled(waveform, rate, self.sampling_rate, what, resample)

    def encode_audio(
        self, audio: Any, sampling_rate: int | None = None, resample: bool | None = None
    ) -> list[np.ndarray]:
        """The log-mel frames of each clip: a waveform, a file path, or a list of them."""
        resample = self.resample if resample is None else resample
        single = isinstance(audio, (str, os.PathLike)) or (
            isinstance(audio, (np.ndarray, torch.Tensor)) and audio.ndim == 1
        )
        clips = [audio] if single else audio
        if not isinstance(clips, (list, tuple)) or not clips:
            shape = getattr(audio, "shape", None)
            raise ValueError(
                "audio must be a 1-D waveform, an audio file path, or a non-empty list of them"
                + (f"; got an array of shape {tuple(shape)}" if shape is not None else "")
                + " (for pre-extracted audio frames use audio_features=)"
            )
        frames = []
        for index, clip in enumerate(clips):
            what = f"audio {index}"
            waveform = self._clip_waveform(clip, what, sampling_rate, resample)
            frames.append(self.log_mel_frames(waveform, what))
        return frames

    # ----------------------------------------------------------------------------------------------
    # Everything together
    # ----------------------------------------------------------------------------------------------

    def __call__(
        self,
        text: str | Sequence[str] | None = None,
        audio: Any = None,
        visual: Any = None,
        sampling_rate: int | None = None,
        resample: bool | None = None,
        padding: str | bool = "max_length",
        truncation: bool | str = True,
        return_tensors: str | None = "pt",
        **pre_extracted: Any,
    ) -> BatchFeature:
        """Frames for every given modality, padded and masked by the feature extractor.

        Args:
            text: A string or a list of strings (one per sample), encoded by the text encoder.
            audio: A 1-D float waveform at `sampling_rate`, an audio file path, or a list of them.
            visual: Pre-extracted visual frames (`[frames, dim]`, a batch or a list of them).
            sampling_rate: Rate of the audio arrays (files carry their own); taken to be the
                processor's rate, with a warning, when omitted.
            resample: Resample audio of another rate (soxr) instead of refusing it; default the
                processor's `resample`.
            padding, truncation, return_tensors: As for the feature extractor.
            **pre_extracted: `text_features=`, `audio_features=`, `visual_features=`: pre-extracted
                frames of that modality, instead of `text=`, `audio=` or `visual=`.

        Returns:
            The feature extractor's `BatchFeature`: `{modality}_features` and `{modality}_mask`
            for each given modality; with `text_encoder_in_model`, text as the tokens of
            :meth:`tokenize_text` instead.
        """
        frames: dict[str, Any] = {}
        for key, value in pre_extracted.items():
            modality = key.removesuffix("_features")
            if not key.endswith("_features") or modality not in MODALITIES:
                raise TypeError(
                    f"unexpected argument {key!r}; pre-extracted frames are passed as "
                    f"{', '.join(f'{m}_features=' for m in MODALITIES)}"
                )
            if value is not None:
                frames[modality] = value
        raw = {"text": text, "audio": audio, "visual": visual}
        for modality, value in raw.items():
            if value is not None and modality in frames:
                raise ValueError(f"give {modality}= or {modality}_features=, not both")
        tokens = None
        if text is not None and self.text_encoder_in_model:
            tokens = self.tokenize_text(text)
        elif text is not None:
            frames["text"] = self.encode_text(text)
        if audio is not None:
            audio_frames = self.encode_audio(audio, sampling_rate, resample)
            dim = self.feature_extractor.feature_dims.get("audio")
            if dim != self.num_mel_bins:
                raise ValueError(
                    f"raw audio gives {self.num_mel_bins}-d log-mel frames (num_mel_bins) but the "
                    f"feature extractor expects audio features of dim {dim} (feature_dims['audio'])"
                )
            frames["audio"] = audio_frames
        if visual is not None:
            frames["visual"] = visual
        if not frames and tokens is None:
            raise ValueError(
                "Pass at least one modality: text=, audio=, visual= or <modality>_features="
            )
        inputs = BatchFeature({})
        if frames:
            inputs = self.feature_extractor(
                **{modality: frames.get(modality) for modality in MODALITIES},
                padding=padding,
                truncation=truncation,
                return_tensors=return_tensors,
            )
        if tokens is not None:
            inputs.update(tokens.convert_to_tensors(return_tensors) if return_tensors else tokens)
        return inputs

    @property
    def model_input_names(self) -> list[str]:
        names = list(self.feature_extractor.model_input_names)
        if self.text_encoder_in_model:
            tokens = ["text_input_ids", "text_attention_mask", "text_mask"]
            names += [name for name in tokens if name not in names]
        return names


LsgmerProcessor.register_for_auto_class("AutoProcessor")
