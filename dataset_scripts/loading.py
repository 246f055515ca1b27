"""Fast loading of prepared datasets for training.

Random access into Arrow costs about 2-3k samples/s, so a split is materialised once in RAM
(`InMemoryMultimodalDataset`); a batch is then one `numpy.take` per column, done in
`__getitems__`, which `torch.utils.data.DataLoader` calls with the batch's indices.

Typical use (also with `transformers.Trainer(train_dataset=..., data_collator=...)`)::

    dataset_dict = load_prepared("data/mosei_aligned")
    train = InMemoryMultimodalDataset(dataset_dict["train"], feature_extractor)
    loader = DataLoader(train, batch_size=64, shuffle=True, collate_fn=MultimodalDataCollator())
    for batch in loader:
        outputs = model(**batch)   # text_features, text_mask, ..., visual_mask, labels
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import datasets
import numpy as np
import torch
from torch.nn.utils.rnn import pad_sequence

from .building import (
    MULTI_LABEL,
    PROBLEM_TYPES,
    SINGLE_LABEL,
    metadata_from_dataset,
    metadata_to_description,
)
from .modalities import MODALITIES
from .saving import CLEANING_REPORT_FILENAME, METADATA_FILENAME

logger = logging.getLogger(__name__)

__all__ = [
    "FeatureExtractor",
    "InMemoryMultimodalDataset",
    "MultimodalDataCollator",
    "load_label_names",
    "load_metadata",
    "load_prepared",
]


def _default_hub_config(readme: Path) -> str:
    from huggingface_hub import DatasetCard

    configs = DatasetCard.load(readme).data.get("configs") or []
    defaults = [entry["config_name"] for entry in configs if entry.get("default")]
    if defaults or len(configs) == 1:
        return (defaults or [configs[0]["config_name"]])[0]
    names = [entry["config_name"] for entry in configs]
    raise ValueError(
        f"{readme} lists several configurations {names} and none is the default; pass config_name"
    )


def _is_saved_dataset(path: Path) -> bool:
    """True for a `save_prepared` folder, False for a Hub layout folder or a repository id."""
    if (path / "dataset_dict.json").is_file():
        return True
    if path.exists() and not (path / "README.md").is_file():
        raise ValueError(
            f"{path} is neither a saved dataset (dataset_dict.json) nor a Hub layout (README.md)"
        )
    return False


def load_metadata(
    path_or_repo: str | os.PathLike, config_name: str | None = None
) -> dict[str, Any]:
    """The dataset metadata, with the conversion report under `report`.

    Keys: `dataset_name`, `config_name`, `label_names`, `feature_dims`, `sequence_lengths`,
    `num_samples`, `report`. Works for a folder written by `save_prepared` (the metadata is in the
    splits' `info.description`), a Hub layout folder (`write_hub_layout`: `dataset_metadata.json`
    and `cleaning_report.json`) and, with network access, a dataset repository on the Hub.
    """
    path = Path(path_or_repo)
    if _is_saved_dataset(path):
        metadata = metadata_from_dataset(datasets.load_from_disk(str(path)))
        if metadata is None:
            raise FileNotFoundError(
                f"{path} holds no dataset metadata; was the dataset written by dataset_scripts?"
            )
        return metadata
    if path.exists():
        folder = path / (config_name or _default_hub_config(path / "README.md"))
    else:
        from huggingface_hub import hf_hub_download

        repo_id = str(path_or_repo)
        if config_name is None:
            config_name = _default_hub_config(
                Path(hf_hub_download(repo_id, "README.md", repo_type="dataset"))
            )
        metadata_file = hf_hub_download(
            repo_id, f"{config_name}/{METADATA_FILENAME}", repo_type="dataset"
        )
        folder = Path(metadata_file).parent
    metadata_file = folder / METADATA_FILENAME
    if not metadata_file.is_file():
        raise FileNotFoundError(
            f"{metadata_file} does not exist; was the dataset written by dataset_scripts?"
        )
    metadata = json.loads(metadata_file.read_text(encoding="utf-8"))
    report_file = folder / CLEANING_REPORT_FILENAME
    metadata["report"] = (
        json.loads(report_file.read_text(encoding="utf-8")) if report_file.is_file() else {}
    )
    return metadata


def load_label_names(path_or_repo: str | os.PathLike, config_name: str | None = None) -> list[str]:
    """The emotion names, in the order of the `labels` column."""
    return list(load_metadata(path_or_repo, config_name)["label_names"])


def load_prepared(
    path_or_repo: str | os.PathLike, config_name: str | None = None
) -> datasets.DatasetDict:
    """Loads a prepared dataset.

    `path_or_repo` is a `save_prepared` folder (read with `load_from_disk`), a Hub layout folder or
    a Hub dataset repository (read with `load_dataset(path_or_repo, config_name)`; `config_name`
    defaults to the README's default configuration).

    The metadata is attached to every split, so `building.metadata_from_dataset(split)` (and
    `InMemoryMultimodalDataset.label_names`) work whatever the origin.
    """
    path = Path(path_or_repo)
    if _is_saved_dataset(path):
        return datasets.load_from_disk(str(path))
    if config_name is None and path.exists():
        config_name = _default_hub_config(path / "README.md")
    dataset_dict = datasets.load_dataset(str(path_or_repo), config_name)
    try:
        metadata = load_metadata(path_or_repo, config_name)
    except (FileNotFoundError, OSError, ValueError):
        return dataset_dict
    description = metadata_to_description(metadata)
    for split in dataset_dict.values():
        split.info.description = description
    return dataset_dict


class FeatureExtractor(Protocol):
    """What the loader needs of a feature extractor (a model family's, passed in by the caller).

    `padding_side` is `"right"` or `"left"`. Called with one `[N, L, D]` array (or list of `[L, D]`
    arrays) per modality name, it returns `{modality}_features` `[N, L', D]` float32 and
    `{modality}_mask` `[N, L']` int64 numpy arrays, padded or truncated as asked.
    """

    padding_side: str

    def __call__(
        self, *, padding: str, truncation: bool, return_tensors: str, **modalities: Any
    ) -> Mapping[str, np.ndarray]: ...


def split_label_names(split: datasets.Dataset) -> list[str]:
    """The label names a split's metadata carries, else ``label_0 .. label_{C-1}`` (with a warning)."""
    metadata = metadata_from_dataset(split)
    if metadata and metadata.get("label_names"):
        return list(metadata["label_names"])
    count = len(split[0]["labels"])
    logger.warning("The dataset carries no label names; using label_0..label_%d.", count - 1)
    return [f"label_{index}" for index in range(count)]


def split_problem_type(split: datasets.Dataset) -> str:
    """``"single_label_classification"`` or ``"multi_label_classification"``, from the split's
    metadata; data without the key (written before it existed, or by hand) is multi-label."""
    metadata = metadata_from_dataset(split) or {}
    problem_type = metadata.get("problem_type", MULTI_LABEL)
    if problem_type not in PROBLEM_TYPES:
        raise ValueError(
            f"The dataset's metadata names problem_type {problem_type!r}; expected one of "
            f"{PROBLEM_TYPES}."
        )
    if problem_type == SINGLE_LABEL and len(split):
        positives = np.asarray(split.with_format("numpy", columns=["labels"])["labels"]).sum(1)
        if not (positives == 1).all():
            raise ValueError(
                "The dataset's metadata says single_label_classification, but "
                f"{int((positives != 1).sum())} rows of its labels column do not hold exactly one "
                "positive."
            )
    return problem_type


def split_shapes(split: datasets.Dataset) -> tuple[dict[str, int], dict[str, int]]:
    """Feature dims and the longest sequence per modality present in ``split``."""
    dims, lengths = {}, {}
    for modality in (m for m in MODALITIES if m in split.column_names):
        feature = split.features[modality]
        dims[modality] = int(feature.shape[1])
        if feature.shape[0] is not None:
            lengths[modality] = int(feature.shape[0])
        else:
            column = split.with_format("numpy", columns=[modality])[modality]
            lengths[modality] = int(max(np.asarray(sample).shape[0] for sample in column))
    return dims, lengths


def _owns_memory(array: np.ndarray) -> bool:
    """Whether the memory under `array` belongs to numpy (not to an Arrow buffer or a file map)."""
    root = array
    while isinstance(root.base, np.ndarray):
        root = root.base
    return root.base is None


class InMemoryMultimodalDataset(torch.utils.data.Dataset):
    """A prepared split held in RAM, yielding model inputs (torch tensors) by model input name.

    Built once from a `datasets.Dataset` (columns `text`, `audio`, `visual`, `labels`): the
    columns are read as numpy in one go and passed through the feature extractor (padding,
    truncation, masks, cleaning, optional normalisation) for the whole split.

    `dataset[i]` is a dict of tensors for one sample; `dataset.__getitems__(indices)` (called by
    `DataLoader`) returns the whole batch as one dict of stacked tensors: `{modality}_features`
    float32 `[batch, length, dim]`, `{modality}_mask` int64 `[batch, length]` and `labels` float32
    `[batch, num_labels]`. Use `MultimodalDataCollator` as the loader's `collate_fn`.

    Args:
        dataset: One split of a prepared `DatasetDict`.
        feature_extractor: Decides max lengths, padding/truncation sides, padding value and
            normalisation (see `FeatureExtractor`); the model family's, built by the caller.
        padding: `"longest"` trims each batch to its longest real sequence (variable-length
            splits); `"max_length"` keeps every batch at the feature extractor's (or the split's)
            full length.
        modalities: Subset of `MODALITIES` to load; defaults to all present.
        text_tokens: For a model that holds its text encoder: the split's text as right-padded
            token arrays `text_input_ids`, `text_attention_mask` and `text_mask` `[rows, tokens]`
            (`RawFeatureComputer.text_tokens`), batched like the frames (trimmed to the longest
            text of each batch); `text` is then not read as frames.
    """

    def __init__(
        self,
        dataset: datasets.Dataset,
        feature_extractor: FeatureExtractor,
        padding: str = "longest",
        modalities: Sequence[str] | None = None,
        text_tokens: dict[str, np.ndarray] | None = None,
    ) -> None:
        if padding not in ("longest", "max_length"):
            raise ValueError(f"padding must be 'longest' or 'max_length'; got {padding!r}")
        if modalities is None:
            modalities = [m for m in MODALITIES if m in dataset.column_names]
            if text_tokens is not None:
                modalities = [m for m in modalities if m != "text"]
        self.modalities = tuple(modalities)
        missing = [m for m in (*self.modalities, "labels") if m not in dataset.column_names]
        if missing:
            raise ValueError(
                f"The dataset lacks the columns {missing}; it has {dataset.column_names}"
            )
        self.padding = padding
        self.padding_side = feature_extractor.padding_side
        metadata = metadata_from_dataset(dataset)
        self.label_names: list[str] | None = metadata["label_names"] if metadata else None

        columns = dataset.with_format("numpy", columns=[*self.modalities, "labels"])[:]
        encoded = {}
        if self.modalities:
            encoded = feature_extractor(
                **{m: columns[m] for m in self.modalities},
                padding=padding,
                truncation=True,
                return_tensors="np",
            )
        # Batches are gathered with numpy's `take`: single-threaded, so it neither competes with
        # the model's intra-op threads nor spins in OpenMP barriers when the CPU is busy.
        self._arrays: dict[str, np.ndarray] = {}
        for modality in self.modalities:
            features = encoded[f"{modality}_features"]
            # Arrays that are views of Arrow buffers (memory-mapped files) are copied into RAM
            # once, so that random batches never page-fault through the file.
            self._arrays[f"{modality}_features"] = (
                features if _owns_memory(features) else features.copy()
            )
            self._arrays[f"{modality}_mask"] = encoded[f"{modality}_mask"]
        self._arrays["labels"] = np.array(columns["labels"], dtype=np.float32)
        self._token_lengths = None
        self._token_names = tuple(text_tokens or ())
        if text_tokens is not None:
            for name in self._token_names:
                array = np.asarray(text_tokens[name], dtype=np.int64)
                if array.ndim != 2 or array.shape[0] != len(self._arrays["labels"]):
                    raise ValueError(
                        f"text_tokens[{name!r}] has shape {array.shape}; expected "
                        f"({len(self._arrays['labels'])}, tokens)"
                    )
                self._arrays[name] = array
            self._token_lengths = self._arrays["text_attention_mask"].sum(axis=1)
        #: The whole split as tensors (sharing memory with the arrays batches are gathered from).
        self.tensors: dict[str, torch.Tensor] = {
            name: torch.from_numpy(array) for name, array in self._arrays.items()
        }
        self._lengths = {m: self._arrays[f"{m}_mask"].sum(axis=1) for m in self.modalities}
        # Modalities whose batches can be trimmed: some sample is shorter than the stored length.
        self._trimmable = {
            m
            for m in self.modalities
            if padding == "longest"
            and bool((self._lengths[m] < self._arrays[f"{m}_mask"].shape[1]).any())
        }

    def __len__(self) -> int:
        return self._arrays["labels"].shape[0]

    def __getitems__(self, indices: Sequence[int]) -> dict[str, torch.Tensor]:
        index = np.asarray(indices, dtype=np.intp)
        batch: dict[str, torch.Tensor] = {}
        for modality in self.modalities:
            # Rows first, then frames: `np.take` of a sliced (non-contiguous) view would copy the
            # whole split to make it contiguous, for every batch.
            features = np.take(self._arrays[f"{modality}_features"], index, axis=0)
            mask = np.take(self._arrays[f"{modality}_mask"], index, axis=0)
            if modality in self._trimmable:
                # At least one frame: a batch in which every sample lacks the modality keeps one
                # padding frame (mask 0), so that no model sees a zero-length sequence.
                length = max(int(self._lengths[modality][index].max()), 1)
                if self.padding_side == "right":
                    frames = slice(0, length)
                else:
                    frames = slice(mask.shape[1] - length, None)
                features = np.ascontiguousarray(features[:, frames])
                mask = np.ascontiguousarray(mask[:, frames])
            batch[f"{modality}_features"] = torch.from_numpy(features)
            batch[f"{modality}_mask"] = torch.from_numpy(mask)
        if self._token_lengths is not None:
            length = int(self._token_lengths[index].max())
            for name in self._token_names:
                rows = np.take(self._arrays[name], index, axis=0)
                batch[name] = torch.from_numpy(np.ascontiguousarray(rows[:, :length]))
        batch["labels"] = torch.from_numpy(np.take(self._arrays["labels"], index, axis=0))
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} is out of range for {len(self)} samples")
        return {name: value[0] for name, value in self.__getitems__([index % len(self)]).items()}


@dataclass
class MultimodalDataCollator:
    """`collate_fn` for `InMemoryMultimodalDataset` (and Trainer's `data_collator`).

    A batch that `__getitems__` already built (a mapping of tensors) is passed through. A list of
    per-sample dicts (from `dataset[i]`, or from any dataset yielding model input names) is padded
    to its longest sequence per modality (features with `padding_value`, masks with 0) and
    stacked.
    """

    padding_side: str = "right"
    padding_value: float = 0.0

    def __call__(
        self, features: Mapping[str, Any] | Sequence[Mapping[str, Any]]
    ) -> dict[str, torch.Tensor]:
        if isinstance(features, Mapping):
            return dict(features)
        if len(features) == 0:
            raise ValueError("Cannot collate an empty list of samples")
        batch: dict[str, torch.Tensor] = {}
        for key in features[0]:
            values = [torch.as_tensor(sample[key]) for sample in features]
            if key.endswith(("_features", "_mask", "_input_ids")):
                batch[key] = pad_sequence(
                    values,
                    batch_first=True,
                    padding_value=self.padding_value if key.endswith("_features") else 0,
                    padding_side=self.padding_side,
                )
            else:
                batch[key] = torch.stack(values)
        return batch
