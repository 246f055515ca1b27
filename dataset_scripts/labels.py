"""Emotion label sets of the supported datasets, and the `tgt` token list <-> multi-hot conversion.

This module is the single place where each dataset's emotion order and token map are written.

The source files store labels as `tgt` token lists in the vocabulary of the CARAT/TAILOR
preprocessing: `<blank>` 0, `<unk>` 1, `<s>` 2 (begin), `</s>` 3 (end), then one token per emotion.
A sample's list is the begin token, its emotion tokens, then the end token, e.g. `[2, 4, 7, 3]`.
The reference code keeps `tgt[1:-1]` and sets the matching classes to 1 in a float32 multi-hot
vector.
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "GOEMOTIONS_LABELS",
    "LabelSpec",
    "M3ED_LABELS",
    "MOSEI_LABELS",
    "check_label_set",
    "check_target_vocabulary",
    "multi_hot_to_target_tokens",
    "target_tokens_to_multi_hot",
]


@dataclass(frozen=True)
class LabelSpec:
    """The emotion classes of one dataset and how `tgt` tokens map onto them.

    Args:
        dataset_name: Short name of the dataset (`"mosei"`, `"m3ed"`).
        label_names: Emotion names in class-index order; index `i` of a multi-hot vector is
            `label_names[i]`.
        token_to_class: `tgt` token id -> class index.
        begin_token: Token that starts every `tgt` list (`<s>`).
        end_token: Token that ends every `tgt` list (`</s>`).
        pad_token: Token that may follow the end token when lists are padded (`<blank>`).
        vocabulary_required: Source files of this dataset always carry their own `tgt`
            vocabulary (`dict['tgt']`); a file without one is refused (`check_label_set`).
    """

    dataset_name: str
    label_names: tuple[str, ...]
    token_to_class: Mapping[int, int] = field(repr=False)
    begin_token: int = 2
    end_token: int = 3
    pad_token: int = 0
    vocabulary_required: bool = False

    def __post_init__(self) -> None:
        classes = sorted(self.token_to_class.values())
        if classes != list(range(len(self.label_names))):
            raise ValueError(
                f"token_to_class of {self.dataset_name!r} must map onto every class index "
                f"0..{len(self.label_names) - 1} exactly once; got {dict(self.token_to_class)}"
            )

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    @property
    def id2label(self) -> dict[int, str]:
        return dict(enumerate(self.label_names))

    @property
    def class_to_token(self) -> dict[int, int]:
        return {class_index: token for token, class_index in self.token_to_class.items()}

    def token_summary(self) -> str:
        """The emotion tokens and their names for help texts, e.g. `"4..9 = happy, sad, ..."`."""
        tokens = sorted(self.token_to_class)
        names = ", ".join(self.label_names[self.token_to_class[token]] for token in tokens)
        return f"{tokens[0]}..{tokens[-1]} = {names}"


# CMU-MOSEI: emotion_dict {4:0, 5:1, 6:2, 7:3, 8:4, 9:5} of the reference loader. The class order
# is the one the reference's docstring gives (the label.csv that would confirm it is missing
# upstream).
MOSEI_LABELS = LabelSpec(
    dataset_name="mosei",
    label_names=("happy", "sad", "anger", "surprise", "disgust", "fear"),
    token_to_class={4: 0, 5: 1, 6: 2, 7: 3, 8: 4, 9: 5},
)

# M3ED: the `dict['tgt']` vocabulary that CARAT's preprocessing writes into the .pt file:
# Happy 4, Neutral 5, Sad 6, Disgust 7, Anger 8, Fear 9, Surprise 10.
M3ED_LABELS = LabelSpec(
    dataset_name="m3ed",
    label_names=("happy", "neutral", "sad", "disgust", "anger", "fear", "surprise"),
    token_to_class={4: 0, 5: 1, 6: 2, 7: 3, 8: 4, 9: 5, 10: 6},
    # CARAT's m3ed_reader always writes dict['tgt']; without it a MOSEI file (tokens 4..9, all
    # valid M3ED tokens) would be stored under M3ED's names.
    vocabulary_required=True,
)


# GoEmotions, Ekman grouping: the classes in the order of the label ids of its TSV files. Its labels
# are id lists, not `tgt` token lists, so they need no `LabelSpec`.
GOEMOTIONS_LABELS: tuple[str, ...] = tuple(
    "anger disgust fear joy neutral sadness surprise".split()
)


_SHORT_REPR = reprlib.Repr()
_SHORT_REPR.maxlevel, _SHORT_REPR.maxlist, _SHORT_REPR.maxother = 3, 12, 80


def short_repr(value: Any) -> str:
    """A repr cut to 3 levels and 12 items per level: error messages about a file's content stay
    short and cost bounded time however deep or shared the content is."""
    return _SHORT_REPR.repr(value)


def _as_token_list(tokens: Any) -> list[int]:
    """One `tgt` entry (list, tuple, numpy array or torch tensor of ints) as a list of ints."""
    if hasattr(tokens, "tolist"):
        tokens = tokens.tolist()
    if isinstance(tokens, (int, np.integer)):
        return [int(tokens)]
    result = []
    for token in tokens:
        if isinstance(token, float) and not token.is_integer():
            raise ValueError(f"token {token!r} is not an integer")
        if not isinstance(token, (int, float, np.integer, np.floating)):
            raise TypeError(f"token {short_repr(token)} is a {type(token).__name__}, not a number")
        result.append(int(token))
    return result


def target_tokens_to_multi_hot(
    targets: Sequence[Any], label_spec: LabelSpec, split: str = "?"
) -> np.ndarray:
    """Converts the `tgt` token lists of one split into a float32 multi-hot matrix.

    For each sample, trailing pad tokens are dropped, then the list must start with the begin
    token and end with the end token; both are dropped (the reference's `tgt[1:-1]`). Every
    remaining token must be an emotion token of `label_spec`. Repeated tokens are harmless. A
    sample with no emotion token gives an all-zero row. Returns float32
    `[num_samples, label_spec.num_labels]`.

    Raises:
        ValueError: If a list lacks its begin/end token or holds an unknown token; the message names
            the split, the sample index and the token.
    """
    labels = np.zeros((len(targets), label_spec.num_labels), dtype=np.float32)
    for sample_index, raw_tokens in enumerate(targets):
        try:
            tokens = _as_token_list(raw_tokens)
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"split {split!r}, sample {sample_index}: tgt entry {short_repr(raw_tokens)} is not a list "
                f"of integer tokens ({error})"
            ) from None
        while tokens and tokens[-1] == label_spec.pad_token:
            tokens.pop()
        if (
            len(tokens) < 2
            or tokens[0] != label_spec.begin_token
            or tokens[-1] != label_spec.end_token
        ):
            raise ValueError(
                f"split {split!r}, sample {sample_index}: tgt {short_repr(tokens)} must start with "
                "the begin "
                f"token {label_spec.begin_token} and end with the end token "
                f"{label_spec.end_token}"
            )
        for token in tokens[1:-1]:
            class_index = label_spec.token_to_class.get(token)
            if class_index is None:
                raise ValueError(
                    f"split {split!r}, sample {sample_index}: unknown {label_spec.dataset_name} "
                    f"emotion token {token} in tgt {short_repr(tokens)}; known tokens: "
                    f"{dict(label_spec.token_to_class)}"
                )
            labels[sample_index, class_index] = 1.0
    return labels


def multi_hot_to_target_tokens(
    labels: Iterable[Sequence[float]], label_spec: LabelSpec
) -> list[list[int]]:
    """Inverse of `target_tokens_to_multi_hot`: one `[begin, emotions..., end]` list per row."""
    class_to_token = label_spec.class_to_token
    targets = []
    for row in labels:
        row = np.asarray(row)
        if row.shape != (label_spec.num_labels,):
            raise ValueError(
                f"label rows must have {label_spec.num_labels} entries for "
                f"{label_spec.dataset_name}; got shape {row.shape}"
            )
        emotion_tokens = [class_to_token[int(index)] for index in np.flatnonzero(row > 0.5)]
        targets.append([label_spec.begin_token, *emotion_tokens, label_spec.end_token])
    return targets


def check_target_vocabulary(
    vocabulary: Mapping[Any, Any], label_spec: LabelSpec, source: str
) -> None:
    """Checks a source file's own `tgt` vocabulary (name -> token id) against `label_spec`.

    CARAT's M3ED file carries `dict['tgt']`, e.g. `{'<s>': 2, ..., 'Happy': 4, ...}`. Emotion names
    are compared case-insensitively; special entries (names in angle brackets) are skipped.

    Raises:
        ValueError: If an emotion of the file maps to a different token than `label_spec` says,
            or the file names an emotion `label_spec` does not know.
    """
    expected = {
        name: label_spec.class_to_token[index] for index, name in enumerate(label_spec.label_names)
    }
    found = {
        str(name).lower(): int(token)
        for name, token in vocabulary.items()
        if not (str(name).startswith("<") and str(name).endswith(">"))
    }
    mismatches = {
        name: (token, expected.get(name))
        for name, token in found.items()
        if expected.get(name) != token
    }
    if mismatches:
        details = ", ".join(
            f"{name}: file {token}, expected {'unknown emotion' if want is None else want}"
            for name, (token, want) in sorted(mismatches.items())
        )
        raise ValueError(
            f"The tgt vocabulary stored in {source} does not match the {label_spec.dataset_name} "
            f"label map of dataset_scripts/labels.py ({details})"
        )


def check_label_set(
    vocabulary: Mapping[Any, Any] | None,
    label_spec: LabelSpec,
    labels: np.ndarray,
    source: str,
) -> None:
    """Checks the label set a file holds against `label_spec`.

    With a vocabulary (name -> token): every name must map to `label_spec`'s token
    (`check_target_vocabulary`) and every emotion of `label_spec` must be named (same label
    count). Without one: refused if `label_spec.vocabulary_required`, naming the emotion tokens the
    file uses. `labels` is the multi-hot matrix of all splits, used only for that message.

    Raises:
        ValueError: If the file's label set is not `label_spec`'s.
    """
    used = [label_spec.class_to_token[int(i)] for i in np.flatnonzero(labels.sum(axis=0) > 0)]
    if vocabulary is None:
        if label_spec.vocabulary_required:
            raise ValueError(
                f"{source} carries no tgt vocabulary (dict['tgt']), which every "
                f"{label_spec.dataset_name} source file has, so its label set cannot be checked. "
                f"It uses {len(used)} emotion token(s) {used}; the {label_spec.dataset_name} "
                f"label set has {label_spec.num_labels} ({label_spec.token_summary()}). It is "
                "probably a file of another dataset (MOSEI's 6 emotions are tokens 4..9)."
            )
        return
    check_target_vocabulary(vocabulary, label_spec, source)
    named = {
        str(name).lower()
        for name in vocabulary
        if not (str(name).startswith("<") and str(name).endswith(">"))
    }
    missing = [name for name in label_spec.label_names if name not in named]
    if missing:
        raise ValueError(
            f"The tgt vocabulary stored in {source} names {len(named)} emotion(s), the "
            f"{label_spec.dataset_name} label set has {label_spec.num_labels}; missing: "
            f"{', '.join(missing)}"
        )
