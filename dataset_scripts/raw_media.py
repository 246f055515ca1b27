"""A dataset from raw media: sentences and audio files, turned into frames by the raw features.

Usage::

    python -m dataset_scripts.raw_media --index clips/index.csv --output data/my-clips \\
        [--text_encoder packaged-minilm | bert-base-uncased | ./my-encoder] \\
        [--text_encoder_revision main] [--num_mel_bins 80] [--labels anger,joy,sadness] \\
        [--single_label]
    python train.py --dataset raw-media --data_dir data/my-clips ...

The index (CSV or JSONL, one row per sample: ``id``, ``text`` and/or ``audio``, ``labels``,
``split``), the frames (`dataset_scripts.raw_features`, the functions every model folder's
processor copies), the settings saved beside the dataset (``processor_settings.json``) and the raw
inputs each row keeps (``raw_text``, ``raw_audio``) are described in docs/processor.md, "Building a
dataset from raw media". A Hub encoder is pinned to the commit of the files used; the raw
inputs reach a model card only with ``train.py --publish_raw_examples``.
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

from .building import MULTI_LABEL, SINGLE_LABEL, build_dataset_dict
from .cli import builder_parser, parse_builder_args
from .conversion import ConversionResult
from .io import write_json_atomic
from .modalities import SPLITS
from .raw_features import RawFeatureComputer, RawFeatureSettings, add_raw_input_columns
from .saving import CLEANING_REPORT_FILENAME, atomic_output_dir
from .sources import SplitArrays
from .text_encoders import PACKAGED_MINILM, resolve_text_encoder
from .utterances import _INDEX_SUFFIXES, _read_index_rows

logger = logging.getLogger(__name__)

__all__ = ["RawSample", "build", "main", "make_settings", "read_index", "save"]

DATASET_NAME = "raw-media"
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


def make_settings(
    modalities: Sequence[str],
    text_encoder: str = PACKAGED_MINILM,
    num_mel_bins: int = 80,
    text_encoder_revision: str | None = None,
    **settings: Any,
) -> RawFeatureSettings:
    """The feature settings of a dataset of these modalities (`text_encoder`: `packaged-minilm`,
    a Hub id or a local folder, see `resolve_text_encoder`: a Hub id's `text_encoder_revision`,
    default its main branch, is stored as the commit hash of the files used; other
    `RawFeatureSettings` fields as keywords)."""
    encoder, revision = (
        resolve_text_encoder(text_encoder, text_encoder_revision)
        if "text" in modalities
        else (None, None)
    )
    return RawFeatureSettings(
        text_encoder_name_or_path=encoder,
        text_encoder_revision=revision,
        num_mel_bins=num_mel_bins,
        **settings,
    )


def _split_features(rows: list[RawSample], modalities, computer: RawFeatureComputer, batch_size):
    """The frames of one split's rows, per modality, and how many texts were cut."""
    features: dict[str, list[np.ndarray]] = {modality: [] for modality in modalities}
    cut = 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start : start + batch_size]
        if "text" in modalities:
            frames, counts = computer.text_frames([sample.text for sample in batch])
            features["text"] += frames
            cut += sum(count > computer.max_tokens for count in counts)
        if "audio" in modalities:
            features["audio"] += computer.audio_frames([sample.audio for sample in batch])
    return features, cut


def build(
    index: str | os.PathLike,
    settings: RawFeatureSettings | None = None,
    text_encoder: str = PACKAGED_MINILM,
    label_names: Sequence[str] | None = None,
    problem_type: str = MULTI_LABEL,
    batch_size: int = 64,
) -> tuple[ConversionResult, RawFeatureSettings]:
    """Builds the `DatasetDict` of an index with `settings` (default: `make_settings`).

    Args:
        index: The CSV or JSONL index (see docs/processor.md).
        settings: What the frames are; built from `text_encoder` if None.
        text_encoder: `packaged-minilm`, a Hub id or a local folder (when `settings` is None).
        label_names: The label set, in order; default the names found in the index, sorted.
        problem_type: `MULTI_LABEL` or `SINGLE_LABEL` (exactly one label per row).
        batch_size: Samples whose frames are computed together.

    Returns:
        `(ConversionResult(dataset_dict, report), settings)`.
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
    settings = settings if settings is not None else make_settings(modalities, text_encoder)
    computer = RawFeatureComputer(settings)
    column = {name: position for position, name in enumerate(label_names)}
    root = Path(index).resolve().parent
    splits: dict[str, SplitArrays] = {}
    raw: dict[str, dict[str, list[str]]] = {}
    report: dict[str, Any] = {
        "index": str(index),
        "audio_root": str(root) if "audio" in modalities else None,
        "modalities": modalities,
        "processor_settings": settings.to_dict(),
        "splits": {},
    }
    for split in SPLITS:
        rows = [sample for sample in samples if sample.split == split]
        if not rows:
            continue
        features, cut = _split_features(rows, modalities, computer, batch_size)
        labels = np.zeros((len(rows), len(label_names)), dtype=np.float32)
        for row, sample in enumerate(rows):
            labels[row, [column[name] for name in sample.labels]] = 1.0
        splits[split] = SplitArrays(
            ids=[sample.id for sample in rows], features=features, labels=labels
        )
        raw[split] = _raw_inputs(rows, modalities, root)
        report["splits"][split] = {
            "samples": len(rows),
            **({"texts_cut": cut} if "text" in modalities else {}),
            **{
                f"{modality}_frames_mean": float(np.mean([len(f) for f in features[modality]]))
                for modality in modalities
            },
        }
    dataset_dict = build_dataset_dict(
        splits, label_names, DATASET_NAME, "+".join(modalities), report, problem_type
    )
    dataset_dict = add_raw_input_columns(dataset_dict, raw)
    return ConversionResult(dataset_dict=dataset_dict, report=report), settings


def _raw_inputs(rows: list[RawSample], modalities, root: Path) -> dict[str, list[str]]:
    columns = {}
    if "text" in modalities:
        columns["raw_text"] = [sample.text for sample in rows]
    if "audio" in modalities:
        columns["raw_audio"] = [sample.audio.relative_to(root).as_posix() for sample in rows]
    return columns


def save(
    result: ConversionResult,
    settings: RawFeatureSettings,
    output: str | os.PathLike,
    overwrite: bool = False,
    sources: Sequence[Any] = (),
) -> Path:
    """`save_to_disk` plus the feature settings in `<output>/processor_settings.json`, atomically."""
    with atomic_output_dir(output, overwrite=overwrite, sources=sources) as temporary:
        result.dataset_dict.save_to_disk(str(temporary))
        write_json_atomic(temporary / CLEANING_REPORT_FILENAME, result.report)
        settings.write(temporary)
    return Path(output)


def main(argv: Sequence[str] | None = None) -> int:
    parser = builder_parser(
        prog="python -m dataset_scripts.raw_media",
        description="Build a dataset from an index of sentences and audio files, through the "
        "model's processor (text encoder token states, log-mel audio frames).",
        output_help="Folder for the saved dataset (save_to_disk) and its processor_settings.json.",
        overwrite_help="Replace an existing --output.",
    )
    parser.add_argument("--index", required=True, type=Path, help="The CSV or JSONL index.")
    parser.add_argument(
        "--text_encoder",
        default=PACKAGED_MINILM,
        help=f"'{PACKAGED_MINILM}' (all-MiniLM-L6-v2 from the `text` extra, works offline), a Hub "
        "id (e.g. bert-base-uncased) or a local model folder.",
    )
    parser.add_argument(
        "--text_encoder_revision",
        default=None,
        help="Branch, tag or commit of a Hub --text_encoder (default: main); the settings store "
        "the commit hash.",
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
        settings = make_settings(
            modalities, args.text_encoder, args.num_mel_bins, args.text_encoder_revision
        )
        result, settings = build(
            args.index,
            settings=settings,
            label_names=args.labels.split(",") if args.labels else None,
            problem_type=SINGLE_LABEL if args.single_label else MULTI_LABEL,
        )
    except (ImportError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    save(result, settings, args.output, overwrite=args.overwrite, sources=[args.index])
    counts = {split: dataset.num_rows for split, dataset in result.dataset_dict.items()}
    print(f"raw-media dataset ({', '.join(modalities)}) from {args.index}: {counts}")
    print(f"text encoder: {settings.text_encoder_name_or_path} @ {settings.text_encoder_revision}")
    print(f"saved dataset: {args.output} (feature settings: processor_settings.json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
