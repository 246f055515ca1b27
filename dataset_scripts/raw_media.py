"""A dataset from raw media: sentences and audio files, turned into frames by the model's processor.

Usage::

    python -m dataset_scripts.raw_media --index clips/index.csv --output data/my-clips \\
        [--text_encoder packaged-minilm | bert-base-uncased | ./my-encoder] [--num_mel_bins 80] \\
        [--labels anger,joy,sadness] [--single_label]
    python train.py --data_dir data/my-clips ...

The index (CSV with a header row, or JSONL of objects) has one row per sample:

* ``id``: unique sample id;
* ``text``: the sentence (optional column);
* ``audio``: the audio file's path relative to the index's folder, which it may not leave
  (optional column);
* ``labels``: emotion names, ``;``-separated (``joy;surprise``); may be empty for multi-label data;
* ``split``: ``train``, ``validation`` or ``test``.

A modality is in the dataset when its column is; then every row must fill it (a dataset stores no
sample without frames). The frames are exactly what `LDDUProcessor` computes at inference (token
states of the text encoder, 100 log-mel frames per second), stored at their real lengths; the
feature extractor pads, truncates and normalises them at training time as it does for any dataset.
The processor's configuration is saved in ``<output>/processor/`` (`PROCESSOR_FOLDER`), so that
training can ship the very same processor inside the model folder.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modeling_lddu.feature_extraction_lddu import LDDUFeatureExtractor
from modeling_lddu.processing_lddu import LDDUProcessor

from .building import MULTI_LABEL, SINGLE_LABEL, build_dataset_dict
from .cli import builder_parser, parse_builder_args
from .conversion import ConversionResult
from .io import write_json_atomic
from .modalities import SPLITS
from .saving import CLEANING_REPORT_FILENAME, atomic_output_dir
from .sources import SplitArrays
from .text_encoders import PACKAGED_MINILM, resolve_text_encoder
from .utterances import _INDEX_SUFFIXES, _read_index_rows

logger = logging.getLogger(__name__)

__all__ = ["PROCESSOR_FOLDER", "RawSample", "build", "main", "make_processor", "read_index", "save"]

DATASET_NAME = "raw-media"
#: The processor's folder inside a saved raw-media dataset.
PROCESSOR_FOLDER = "processor"
_DEFAULT_MAX_INDEX_BYTES = 256 * 2**20
_LABEL_SEPARATOR = ";"


@dataclass
class RawSample:
    """One index row: id, split, text (or None), resolved audio path (or None), label names."""

    id: str
    split: str
    text: str | None
    audio: Path | None
    labels: list[str]
    where: str


def _resolve_audio_path(root: Path, value: str, where: str) -> Path:
    """`value` (relative to `root`) as a file inside `root`; refuses escapes and missing files."""
    if Path(value).is_absolute() or value.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", value):
        raise ValueError(
            f"{where}: audio path {value!r} is absolute; it must be relative to the index's "
            f"folder {root}"
        )
    resolved = (root / value).resolve()
    if root not in resolved.parents:
        raise ValueError(
            f"{where}: audio path {value!r} leads outside the index's folder {root} (to "
            f"{resolved}, through '..' or a symbolic link)"
        )
    if not resolved.is_file():
        raise FileNotFoundError(f"{where}: the audio file {root / value} does not exist")
    return resolved


def read_index(
    path: str | os.PathLike, max_index_bytes: int = _DEFAULT_MAX_INDEX_BYTES
) -> tuple[list[RawSample], list[str]]:
    """The samples of a CSV or JSONL index and its modalities (`text`, `audio`, in that order).

    Raises:
        ValueError: Naming the file and line of a row with a missing or duplicate id, an unknown
            split, an empty text or audio cell in a column that is present, or an audio path that is
            absolute or leaves the index's folder.
    """
    path = Path(path)
    if path.suffix.lower() not in _INDEX_SUFFIXES:
        raise ValueError(f"{path}: the index must be .csv or .jsonl; got {path.suffix!r}")
    root = path.resolve().parent
    samples: list[RawSample] = []
    columns: set[str] | None = None
    seen: set[str] = set()
    for line, row in _read_index_rows(path, max_index_bytes):
        where = f"{path}, line {line}"
        row = {key.strip(): (value or "") for key, value in row.items() if key is not None}
        columns = set(row) if columns is None else columns
        if set(row) != columns:
            raise ValueError(f"{where}: has columns {sorted(row)}, the first row {sorted(columns)}")
        sample_id = row.get("id", "").strip()
        if not sample_id:
            raise ValueError(f"{where}: the id is missing")
        if sample_id in seen:
            raise ValueError(f"{where}: the id {sample_id!r} appears twice")
        seen.add(sample_id)
        split = row.get("split", "").strip()
        if split not in SPLITS:
            raise ValueError(f"{where}: split {split!r} is not one of {list(SPLITS)}")
        text = audio = None
        if "text" in columns:
            text = row["text"]
            if not text.strip():
                raise ValueError(
                    f"{where}: the text is empty (every row must fill the text column)"
                )
        if "audio" in columns:
            if not row["audio"].strip():
                raise ValueError(f"{where}: the audio path is empty (every row must fill it)")
            audio = _resolve_audio_path(root, row["audio"].strip(), where)
        labels = [name.strip() for name in row.get("labels", "").split(_LABEL_SEPARATOR)]
        samples.append(RawSample(sample_id, split, text, audio, [n for n in labels if n], where))
    if not samples:
        raise ValueError(f"{path} holds no rows")
    missing = [name for name in ("id", "labels", "split") if name not in columns]
    modalities = [name for name in ("text", "audio") if name in columns]
    if missing or not modalities:
        raise ValueError(
            f"{path} lacks the column(s) {missing + ([] if modalities else ['text or audio'])}"
        )
    return samples, modalities


def make_processor(
    modalities: Sequence[str],
    text_encoder: str = PACKAGED_MINILM,
    num_mel_bins: int = 80,
    **processor_kwargs: Any,
) -> LDDUProcessor:
    """The processor a dataset of these modalities is built with (no length limits, no
    normalisation: the training feature extractor sets those)."""
    encoder, revision = resolve_text_encoder(text_encoder) if "text" in modalities else (None, None)
    processor = LDDUProcessor(
        LDDUFeatureExtractor(feature_dims={"text": 1}),  # replaced below, once the dims are known
        text_encoder_name_or_path=encoder,
        text_encoder_revision=revision,
        num_mel_bins=num_mel_bins,
        **processor_kwargs,
    )
    dims = {}
    if "text" in modalities:
        dims["text"] = processor.text_feature_dim
    if "audio" in modalities:
        dims["audio"] = num_mel_bins
    processor.feature_extractor = LDDUFeatureExtractor(
        feature_dims=dims, max_lengths={modality: None for modality in dims}
    )
    return processor


def build(
    index: str | os.PathLike,
    processor: LDDUProcessor | None = None,
    text_encoder: str = PACKAGED_MINILM,
    label_names: Sequence[str] | None = None,
    problem_type: str = MULTI_LABEL,
    batch_size: int = 64,
) -> tuple[ConversionResult, LDDUProcessor]:
    """Builds the `DatasetDict` of an index through `processor` (default: `make_processor`).

    Args:
        index: The CSV or JSONL index (see the module docstring).
        processor: The processor that computes the frames; built from `text_encoder` if None.
        text_encoder: `packaged-minilm`, a Hub id or a local folder (when `processor` is None).
        label_names: The label set, in order; default the names found in the index, sorted.
        problem_type: `MULTI_LABEL` or `SINGLE_LABEL` (exactly one label per row).
        batch_size: Samples whose frames are computed together.

    Returns:
        `(ConversionResult(dataset_dict, report), processor)`.
    """
    samples, modalities = read_index(index)
    found = sorted({name for sample in samples for name in sample.labels})
    label_names = list(found if label_names is None else label_names)
    unknown = sorted(set(found) - set(label_names))
    if unknown:
        first = next(s for s in samples if set(s.labels) & set(unknown))
        raise ValueError(
            f"{index} uses label names outside {label_names}: {unknown} (first at {first.where})"
        )
    if processor is None:
        processor = make_processor(modalities, text_encoder)
    column = {name: position for position, name in enumerate(label_names)}
    splits: dict[str, SplitArrays] = {}
    report: dict[str, Any] = {
        "index": str(index),
        "modalities": modalities,
        "text_encoder": processor.text_encoder_name_or_path,
        "text_encoder_revision": processor.text_encoder_revision,
        "text_encoder_layer": processor.text_encoder_layer,
        "num_mel_bins": processor.num_mel_bins if "audio" in modalities else None,
        "splits": {},
    }
    for split in SPLITS:
        rows = [sample for sample in samples if sample.split == split]
        if not rows:
            continue
        features: dict[str, list[np.ndarray]] = {modality: [] for modality in modalities}
        for start in range(0, len(rows), batch_size):
            batch = rows[start : start + batch_size]
            if "text" in modalities:
                features["text"] += processor.encode_text([sample.text for sample in batch])
            if "audio" in modalities:
                features["audio"] += processor.encode_audio([sample.audio for sample in batch])
        labels = np.zeros((len(rows), len(label_names)), dtype=np.float32)
        for row, sample in enumerate(rows):
            labels[row, [column[name] for name in sample.labels]] = 1.0
        splits[split] = SplitArrays(
            ids=[sample.id for sample in rows], features=features, labels=labels
        )
        report["splits"][split] = {
            "samples": len(rows),
            **{
                f"{modality}_frames_mean": float(np.mean([len(f) for f in features[modality]]))
                for modality in modalities
            },
        }
    dataset_dict = build_dataset_dict(
        splits, label_names, DATASET_NAME, "+".join(modalities), report, problem_type
    )
    return ConversionResult(dataset_dict=dataset_dict, report=report), processor


def save(
    result: ConversionResult,
    processor: LDDUProcessor,
    output: str | os.PathLike,
    overwrite: bool = False,
    sources: Sequence[Any] = (),
) -> Path:
    """`save_to_disk` plus the processor in `<output>/processor/`, atomically."""
    with atomic_output_dir(output, overwrite=overwrite, sources=sources) as temporary:
        result.dataset_dict.save_to_disk(str(temporary))
        write_json_atomic(temporary / CLEANING_REPORT_FILENAME, result.report)
        processor.save_pretrained(temporary / PROCESSOR_FOLDER)
    return Path(output)


def main(argv: Sequence[str] | None = None) -> int:
    parser = builder_parser(
        prog="python -m dataset_scripts.raw_media",
        description="Build a dataset from an index of sentences and audio files, through the "
        "model's processor (text encoder token states, log-mel audio frames).",
        output_help="Folder for the saved dataset (save_to_disk) and its processor/.",
        overwrite_help="Replace an existing --output.",
    )
    parser.add_argument("--index", required=True, type=Path, help="The CSV or JSONL index.")
    parser.add_argument(
        "--text_encoder",
        default=PACKAGED_MINILM,
        help=f"'{PACKAGED_MINILM}' (all-MiniLM-L6-v2 from the `text` extra, works offline), a Hub "
        "id (e.g. bert-base-uncased) or a local model folder.",
    )
    parser.add_argument("--num_mel_bins", type=int, default=80, help="Mel bands per audio frame.")
    parser.add_argument(
        "--labels", default=None, help="Comma-separated label set in order (default: as found)."
    )
    parser.add_argument(
        "--single_label", action="store_true", help="Exactly one label per row (one-hot)."
    )
    args = parse_builder_args(parser, argv)
    try:
        samples, modalities = read_index(args.index)
        processor = make_processor(modalities, args.text_encoder, args.num_mel_bins)
        result, processor = build(
            args.index,
            processor=processor,
            label_names=args.labels.split(",") if args.labels else None,
            problem_type=SINGLE_LABEL if args.single_label else MULTI_LABEL,
        )
    except (ImportError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save(result, processor, args.output, overwrite=args.overwrite, sources=[args.index])
    counts = {split: dataset.num_rows for split, dataset in result.dataset_dict.items()}
    print(f"raw-media dataset ({', '.join(modalities)}) from {args.index}: {counts}")
    print(
        f"text encoder: {processor.text_encoder_name_or_path} @ {processor.text_encoder_revision}"
    )
    print(f"saved dataset: {args.output}; processor: {args.output / PROCESSOR_FOLDER}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
