"""Processor throughput: texts per second through the text encoder, seconds of audio per second.

Measures `LDDUProcessor` on this machine, CPU only, after one warm-up call:

* text: `encode_text` over `--num_texts` sentences (8 to 30 words) with the packaged
  all-MiniLM-L6-v2 (the `text` extra), `--text_batch_size` at a time; texts/s and tokens/s;
* audio: `encode_audio` of `--num_clips` clips of `--clip_seconds` seconds (16 kHz noise, 80 mel
  bands), from arrays and from WAV files; seconds of audio per second;
* one request: `processor(text=one sentence, audio=one clip)`, all steps, median of 5;
* its share of the pipeline's latency: the same request through the
  `multimodal-emotion-recognition` pipeline of a model folder holding LDDU at its paper size
  (`LDDUConfig()` with text 384 / audio 80 inputs) and this processor, median of 5.

Usage::

    python benchmarks/bench_processor.py [--num_texts 256] [--num_clips 32] [--output out.json]

Prints the command, the machine and the figures; asserts nothing. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from dataset_scripts.text_encoders import install_packaged_minilm  # noqa: E402
from modeling_lddu import (  # noqa: E402
    LDDUConfig,
    LDDUFeatureExtractor,
    LDDUForEmotionRecognition,
    LDDUProcessor,
)

WORDS = (
    "i really love how this turned out but the ending made me so angry and sad "
    "what a surprise nobody expected that terrible awful wonderful day at all"
).split()
RATE = 16000


def sentences(count: int, seed: int = 0) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=rng.integers(8, 31))) for _ in range(count)]


def timed(function, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    result = function(*args, **kwargs)
    return time.perf_counter() - start, result


def _settings_of(processor) -> dict:
    return {
        "text_encoder_name_or_path": processor.text_encoder_name_or_path,
        "text_batch_size": processor.text_batch_size,
    }


def _pipeline_request_seconds(folder: Path, extractor, processor, text: str, clip) -> float:
    """Median seconds of one pipeline request (a sentence and a clip) on a saved model folder."""
    from transformers import pipeline

    torch.manual_seed(0)
    # Positions for a 3 s clip (300 frames); texts are far shorter.
    model = LDDUForEmotionRecognition(
        LDDUConfig(text_dim=384, audio_dim=80, max_position_embeddings=512)
    ).eval()
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": 384, "audio": 80}, max_lengths={"text": 512, "audio": 512}
    )
    processor = LDDUProcessor(extractor, **_settings_of(processor))
    pipeline(
        "multimodal-emotion-recognition", model=model, feature_extractor=extractor
    ).save_pretrained(folder)
    processor.save_pretrained(folder)
    recognizer = pipeline(
        "multimodal-emotion-recognition", model=str(folder), trust_remote_code=True
    )
    recognizer({"text": text, "audio": clip}, sampling_rate=RATE)  # warm-up
    seconds = []
    for _ in range(5):
        elapsed, _ = timed(recognizer, {"text": text, "audio": clip}, sampling_rate=RATE)
        seconds.append(elapsed)
    return statistics.median(seconds)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num_texts", type=int, default=256)
    parser.add_argument("--text_batch_size", type=int, default=32)
    parser.add_argument("--num_clips", type=int, default=32)
    parser.add_argument("--clip_seconds", type=float, default=5.0)
    parser.add_argument("--output", type=Path, default=None, help="Also write the figures here.")
    args = parser.parse_args(argv)

    print("command:", shlex.join([sys.executable, *sys.argv]))
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, torch "
        f"{torch.__version__} with {torch.get_num_threads()} threads, {platform.platform()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        encoder = install_packaged_minilm(Path(scratch) / "hub")
        extractor = LDDUFeatureExtractor(
            feature_dims={"text": 384, "audio": 80}, max_lengths={"text": None, "audio": None}
        )
        processor = LDDUProcessor(
            extractor, text_encoder_name_or_path=str(encoder), text_batch_size=args.text_batch_size
        )
        load_seconds, _ = timed(processor.encode_text, "warm up")  # loads the encoder
        texts = sentences(args.num_texts)
        text_seconds, frames = timed(processor.encode_text, texts)
        tokens = sum(len(f) for f in frames)

        rng = np.random.default_rng(0)
        clips = [
            (0.1 * rng.standard_normal(int(args.clip_seconds * RATE))).astype(np.float32)
            for _ in range(args.num_clips)
        ]
        processor.encode_audio(clips[0], sampling_rate=RATE)
        array_seconds, _ = timed(processor.encode_audio, clips, sampling_rate=RATE)
        import soundfile

        paths = []
        for index, clip in enumerate(clips):
            paths.append(Path(scratch) / f"clip{index}.wav")
            soundfile.write(paths[-1], clip, RATE)
        file_seconds, _ = timed(processor.encode_audio, [str(path) for path in paths])

        request = []
        for _ in range(5):
            seconds, _ = timed(
                processor, text=texts[0], audio=clips[0][: 3 * RATE], sampling_rate=RATE
            )
            request.append(seconds)
        pipeline_request = _pipeline_request_seconds(
            Path(scratch) / "model", extractor, processor, texts[0], clips[0][: 3 * RATE]
        )
    audio_total = args.num_clips * args.clip_seconds
    figures = {
        "encoder_load_s": round(load_seconds, 2),
        "texts_per_s": round(args.num_texts / text_seconds, 1),
        "tokens_per_s": round(tokens / text_seconds, 1),
        "audio_seconds_per_s_arrays": round(audio_total / array_seconds, 1),
        "audio_seconds_per_s_wav_files": round(audio_total / file_seconds, 1),
        "one_request_text_and_3s_audio_ms": round(1000 * statistics.median(request), 1),
        "pipeline_request_ms": round(1000 * pipeline_request, 1),
        "processor_share_of_pipeline_request": round(
            statistics.median(request) / pipeline_request, 2
        ),
    }
    for name, value in figures.items():
        print(f"{name:<36}{value}")
    if args.output:
        args.output.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
