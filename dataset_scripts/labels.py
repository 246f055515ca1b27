"""Emotion label sets of the supported datasets, and the `tgt` token list <-> multi-hot conversion.

This module is the single place where each dataset's emotion order and token map are written,
including the single-label class sets of IEMOCAP and MELD (`UtteranceClassSet`, at the end). The
`tgt` token lists of the source files (`[2, emotion tokens..., 3]`) and each dataset's tokens:
docs/data.md, "Labels".
"""

from __future__ import annotations

import reprlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "GOEMOTIONS_LABELS",
    "IEMOCAP4_CLASSES",
    "IEMOCAP6_CLASSES",
    "IEMOCAP_PICKLE_CLASSES",
    "LabelSpec",
    "M3ED_LABELS",
    "MELD7_CLASSES",
    "MOSEI_LABELS",
    "UTTERANCE_CLASS_SETS",
    "UtteranceClassSet",
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
                f"the begin token {label_spec.begin_token} and end with the end token "
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


# --------------------------------------------------------------------------------------------------
# Single-label utterance class sets (IEMOCAP, MELD): `dataset_scripts.utterances`
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UtteranceClassSet:
    """One single-label class set of an utterance-level dataset, and how source labels map onto it.

    Args:
        name: Configuration name of the class set (`"iemocap4"`, `"iemocap6"`, `"meld7"`).
        dataset: The dataset (`"iemocap"`, `"meld"`).
        label_names: The classes, in class-index order (the order of the one-hot `labels`).
        aliases: Source label name (lower case) -> class name. Names the dataset writes (IEMOCAP
            `neu`, `exc`; MELD `joy`) and the class names themselves.
        excluded: Label names the dataset uses that are outside this class set (IEMOCAP `fru`,
            `xxx` for the 4 classes): rows with them are left out and counted. Any other name is
            an error.
        pickle_classes: Label name of each class index in the utterance-feature pickles of the
            conversational-ER code bases (DialogueRNN, DialogueGCN, MMGCN, COGMEN).
    """

    name: str
    dataset: str
    label_names: tuple[str, ...]
    aliases: Mapping[str, str] = field(repr=False)
    excluded: frozenset[str] = field(default_factory=frozenset, repr=False)
    pickle_classes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        wrong = {
            alias: name for alias, name in self.aliases.items() if name not in self.label_names
        }
        unnamed = [name for name in self.label_names if name not in self.aliases.values()]
        both = sorted(set(self.aliases) & set(self.excluded))
        unknown = [name for name in self.pickle_classes if self.lookup(name) == "unknown"]
        if wrong or unnamed or both or unknown:
            raise ValueError(
                f"class set {self.name!r} is inconsistent: aliases to unknown classes {wrong}, "
                f"classes without alias {unnamed}, names both kept and excluded {both}, pickle "
                f"classes it does not know {unknown}"
            )

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def lookup(self, label: Any) -> int | str:
        """The class index of a source label name (case and surrounding spaces ignored), or
        `"excluded"` for a known name outside the class set, or `"unknown"`."""
        key = str(label).strip().lower()
        if key in self.aliases:
            return self.label_names.index(self.aliases[key])
        return "excluded" if key in self.excluded else "unknown"

    def pickle_class_name(self, index: Any) -> str:
        """The label name of a class index of the pickles; raises for an index out of range."""
        if isinstance(index, (bool, np.bool_)) or not isinstance(index, (int, np.integer)):
            if not (isinstance(index, (float, np.floating)) and float(index).is_integer()):
                raise ValueError(f"label {short_repr(index)} is not an integer class index")
        position = int(index)
        if not 0 <= position < len(self.pickle_classes):
            raise ValueError(
                f"class index {position} is outside 0..{len(self.pickle_classes) - 1} "
                f"({', '.join(self.pickle_classes)})"
            )
        return self.pickle_classes[position]


#: IEMOCAP's emotion codes as its annotation files write them, and the full names also accepted.
_IEMOCAP_CODES = {
    "neu": "neutral",
    "hap": "happy",
    "exc": "excited",
    "sad": "sad",
    "ang": "angry",
    "fru": "frustrated",
    "sur": "surprised",
    "fea": "fearful",
    "dis": "disgusted",
    "oth": "other",
    "xxx": "xxx",  # no majority among the annotators
}
#: The class index order of the IEMOCAP pickles: {'hap':0, 'sad':1, 'neu':2, 'ang':3, 'exc':4,
#: 'fru':5}.
IEMOCAP_PICKLE_CLASSES: tuple[str, ...] = ("hap", "sad", "neu", "ang", "exc", "fru")


def _iemocap_class_set(name: str, kept: Mapping[str, str]) -> UtteranceClassSet:
    """`kept`: IEMOCAP code -> class name. Every other code (and its full name) is excluded."""
    aliases = {**kept, **{_IEMOCAP_CODES[code]: name for code, name in kept.items()}}
    excluded = {
        spelling
        for code, full_name in _IEMOCAP_CODES.items()
        if code not in kept
        for spelling in (code, full_name)
    }
    return UtteranceClassSet(
        name=name,
        dataset="iemocap",
        label_names=tuple(dict.fromkeys(kept.values())),
        aliases=aliases,
        excluded=frozenset(excluded),
        pickle_classes=IEMOCAP_PICKLE_CLASSES,
    )


#: IEMOCAP, 4 classes, the usual protocol: `exc` (excited) merged into happy; `fru`, `xxx` and the
#: rarer emotions are left out.
IEMOCAP4_CLASSES = _iemocap_class_set(
    "iemocap4", {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
)
#: IEMOCAP, 6 classes, in the class index order of the pickles.
IEMOCAP6_CLASSES = _iemocap_class_set(
    "iemocap6",
    {
        "hap": "happy",
        "sad": "sad",
        "neu": "neutral",
        "ang": "angry",
        "exc": "excited",
        "fru": "frustrated",
    },
)
_MELD7 = ("neutral", "surprise", "fear", "sadness", "joy", "disgust", "anger")
#: MELD, 7 classes, in the class index order of its pickles: {'neutral': 0, 'surprise': 1,
#: 'fear': 2, 'sadness': 3, 'joy': 4, 'disgust': 5, 'anger': 6}.
MELD7_CLASSES = UtteranceClassSet(
    name="meld7",
    dataset="meld",
    label_names=_MELD7,
    aliases={name: name for name in _MELD7},
    pickle_classes=_MELD7,
)
#: Every utterance class set, by name.
UTTERANCE_CLASS_SETS: dict[str, UtteranceClassSet] = {
    class_set.name: class_set for class_set in (IEMOCAP4_CLASSES, IEMOCAP6_CLASSES, MELD7_CLASSES)
}
