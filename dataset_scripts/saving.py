"""Writing prepared datasets: atomic `save_to_disk`, the Hub layout (parquet + card), upload.

`save_prepared` writes a `save_to_disk` folder (the metadata in each split's description) and
`cleaning_report.json`, the conversion report for people to read. `write_hub_layout` writes one
configuration of a folder that `datasets.load_dataset(HUB_DIR, CONFIG)` reads: `CONFIG/` with the
parquet shards, `dataset_metadata.json` (parquet cannot carry a description) and
`cleaning_report.json`, listed in the README's `configs:`. Both layouts: docs/data.md, "Outputs".
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import re
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import datasets

from .building import SINGLE_LABEL, metadata_from_dataset
from .io import write_json_atomic, write_text_atomic
from .outputs import (
    check_output_target,
    output_lock,
    recover_leftovers,
    replace_output,
    temporary_output_dir,
)
from .sources import non_finite_total

logger = logging.getLogger(__name__)

__all__ = [
    "CLEANING_REPORT_FILENAME",
    "METADATA_FILENAME",
    "atomic_output_dir",
    "check_dataset_output",
    "push_hub_layout",
    "save_prepared",
    "write_hub_layout",
]

METADATA_FILENAME = "dataset_metadata.json"
CLEANING_REPORT_FILENAME = "cleaning_report.json"
DEFAULT_MAX_SHARD_BYTES = 500 * 2**20
#: The name the builders' outputs carry in their manifest (`dataset_scripts.outputs`).
TOOL = "dataset_scripts"

_CONFIG_SECTION_START = "<!-- dataset-config:{} -->"
_CONFIG_SECTION_END = "<!-- /dataset-config:{} -->"


#: The parquet file names `write_hub_layout` gives a split.
_HUB_SHARD = re.compile(r"[A-Za-z0-9_.-]+-\d{5}-of-\d{5}\.parquet")


def _is_saved_dataset(folder: Path) -> bool:
    """A `save_prepared` or Hub-layout config folder written before manifests existed: every entry
    is one this module writes."""
    names = {"dataset_dict.json", CLEANING_REPORT_FILENAME, METADATA_FILENAME}
    entries = {entry.name: entry for entry in folder.iterdir()}
    if "dataset_dict.json" in entries:  # save_to_disk: exactly the splits it lists
        try:
            splits = set(json.loads(entries["dataset_dict.json"].read_text())["splits"])
        except (OSError, ValueError, KeyError, TypeError):
            return False
        allowed = names | splits
        return all(
            name in allowed and (entry.is_file() or (entry / "dataset_info.json").is_file())
            for name, entry in entries.items()
        )
    if METADATA_FILENAME in entries:  # a Hub-layout config folder: our parquet names only
        return all(
            name in names or (entry.is_file() and _HUB_SHARD.fullmatch(name))
            for name, entry in entries.items()
        )
    return False


def check_dataset_output(
    target: str | os.PathLike,
    overwrite: bool = False,
    sources: Sequence[Any] = (),
    flag: str = "overwrite=True (--overwrite)",
    recognised: Callable[[Path], bool] = _is_saved_dataset,
) -> Path:
    """Refuses, before the build, an output that is or contains a source, that is not writable,
    or that exists and is not a dataset this package wrote (see `dataset_scripts.outputs`)."""
    return check_output_target(
        target,
        tool=TOOL,
        overwrite=overwrite,
        sources=sources,
        recognised=recognised,
        flag=flag,
    )


@contextlib.contextmanager
def atomic_output_dir(
    target: str | os.PathLike,
    overwrite: bool = False,
    sources: Sequence[Any] = (),
    manifest: bool = True,
    recognised: Callable[[Path], bool] = _is_saved_dataset,
) -> Iterator[Path]:
    """Yields a fresh temporary folder beside `target`, moved to `target` when the block succeeds.

    Under a lock on `target`: leftovers of an interrupted run are settled first (see
    `recover_leftovers`), the target is checked (`check_dataset_output`), and on success a previous
    output is replaced only once the new content is complete. On an error the temporary folder is
    removed and `target` is untouched. `manifest=False` writes no manifest (the Hub layout's
    config folders, recognised by their entries); `recognised` says which existing folders without a
    manifest the caller wrote (default: saved datasets and Hub-layout config folders).

    Raises:
        FileExistsError: If `target` exists and `overwrite` is False, or it is not a dataset this
            package wrote.
        OutputInUseError: If another process is writing `target`.
    """
    target = Path(target)
    check_dataset_output(target, overwrite, sources, recognised=recognised)
    with output_lock(target):
        recover_leftovers(target)
        check_dataset_output(target, overwrite, sources, recognised=recognised)
        temporary = temporary_output_dir(target)
        try:
            yield temporary
            if target.exists() and not overwrite:
                raise FileExistsError(
                    f"{target} appeared while it was being written; nothing was replaced"
                )
            replace_output(temporary, target, TOOL, manifest=manifest)
        except BaseException:
            shutil.rmtree(temporary, ignore_errors=True)
            raise


def save_prepared(
    dataset_dict: datasets.DatasetDict,
    output_dir: str | os.PathLike,
    overwrite: bool = False,
    sources: Sequence[Any] = (),
    extra_json: Mapping[str, Any] | None = None,
) -> Path:
    """`save_to_disk` into `output_dir` atomically, plus the cleaning report file.

    The metadata needs no file here: `save_to_disk` keeps each split's `info.description`.
    `extra_json` maps file names to JSON values written beside the dataset in the same atomic step
    (e.g. `processor_settings.json`, see `raw_features.RawFeatureSettings`).

    Raises:
        FileExistsError: If `output_dir` exists and `overwrite` is False.
    """
    output_dir = Path(output_dir)
    with atomic_output_dir(output_dir, overwrite=overwrite, sources=sources) as temporary:
        dataset_dict.save_to_disk(str(temporary))
        metadata = metadata_from_dataset(dataset_dict)
        if metadata is not None:
            write_json_atomic(temporary / CLEANING_REPORT_FILENAME, metadata.get("report", {}))
        for name, value in (extra_json or {}).items():
            if Path(name).name != name or name == CLEANING_REPORT_FILENAME:
                raise ValueError(f"extra_json file name {name!r} must be a plain, unused file name")
            write_json_atomic(temporary / name, value)
    logger.info(
        "Saved %s to %s", {split: ds.num_rows for split, ds in dataset_dict.items()}, output_dir
    )
    return output_dir


def _config_section(
    config_name: str, metadata: Mapping[str, Any], card_description: str | None
) -> str:
    lengths = metadata["sequence_lengths"]
    label_kind = "one-hot" if metadata.get("problem_type") == SINGLE_LABEL else "multi-hot"
    lines = [
        _CONFIG_SECTION_START.format(config_name),
        f"## Configuration `{config_name}`",
        "",
    ]
    if card_description:
        lines += [card_description.strip(), ""]
    lines += [
        f"Labels ({label_kind} `labels` column, in this order): "
        f"{', '.join(metadata['label_names'])}.",
        "",
        "| column | type |",
        "|---|---|",
        "| `id` | string |",
    ]
    for modality, dim in metadata["feature_dims"].items():  # only the modalities the dataset has
        length = "variable" if lengths[modality] is None else lengths[modality]
        lines.append(f"| `{modality}` | float32 sequence, length {length}, dim {dim} |")
    lines.append(f"| `labels` | {len(metadata['label_names'])} float32 (0/1) |")
    lines += ["", "| split | samples |", "|---|---|"]
    lines += [f"| {split} | {count} |" for split, count in metadata["num_samples"].items()]
    non_finite = metadata.get("report", {}).get("non_finite", {})
    replaced = {
        f"{split}/{modality}": non_finite_total(counts)
        for split, per_modality in non_finite.items()
        for modality, counts in per_modality.items()
        if non_finite_total(counts)
    }
    if replaced:
        lines += [
            "",
            "Non-finite values replaced by 0: "
            + ", ".join(f"{k} {v}" for k, v in replaced.items())
            + ".",
        ]
    lines += [
        "",
        f"Details: `{config_name}/{METADATA_FILENAME}`, "
        f"`{config_name}/{CLEANING_REPORT_FILENAME}`.",
        _CONFIG_SECTION_END.format(config_name),
    ]
    return "\n".join(lines)


def _merge_card_body(old_body: str, config_name: str, section: str, pretty_name: str) -> str:
    start, end = _CONFIG_SECTION_START.format(config_name), _CONFIG_SECTION_END.format(config_name)
    if start in old_body and end in old_body:
        before, rest = old_body.split(start, 1)
        after = rest.split(end, 1)[1]
        return before + section + after
    if not old_body.strip():
        old_body = (
            f"# {pretty_name}\n\n"
            "Pre-extracted text/audio/visual feature sequences with multi-hot emotion labels, "
            "converted with `dataset_scripts`. Check the license of the "
            "original features before you share this dataset.\n\n"
            "```python\nfrom datasets import load_dataset\n"
            "dataset = load_dataset(REPO_OR_FOLDER, CONFIG)\n```\n"
        )
    return old_body.rstrip("\n") + "\n\n" + section + "\n"


def write_hub_layout(
    dataset_dict: datasets.DatasetDict,
    hub_dir: str | os.PathLike,
    config_name: str | None = None,
    overwrite: bool = False,
    pretty_name: str | None = None,
    card_description: str | None = None,
    max_shard_bytes: int = DEFAULT_MAX_SHARD_BYTES,
) -> Path:
    """Writes `dataset_dict` as parquet under `hub_dir/<config_name>/` and lists it in the README.

    Other configurations already in `hub_dir` (folders and README `configs` entries) are kept, so
    one folder can hold e.g. MOSEI `aligned` and `unaligned`. The first configuration is marked
    default.

    Args:
        dataset_dict: The prepared dataset.
        hub_dir: The repository folder.
        config_name: Defaults to the config name in the dataset's metadata.
        overwrite: Replace an existing `hub_dir/<config_name>`.
        pretty_name: Title for a new README.
        card_description: Paragraph describing this configuration in the README.
        max_shard_bytes: Upper bound for one parquet file (splits are sharded by rows).

    Raises:
        FileExistsError: If `hub_dir/<config_name>` exists and `overwrite` is False.
    """
    from huggingface_hub import DatasetCard, DatasetCardData

    hub_dir = Path(hub_dir)
    metadata = metadata_from_dataset(dataset_dict) or {}
    config_name = config_name or metadata.get("config_name") or "default"
    with atomic_output_dir(hub_dir / config_name, overwrite=overwrite, manifest=False) as temporary:
        for split, dataset in dataset_dict.items():
            num_shards = max(1, math.ceil(dataset.data.nbytes / max_shard_bytes))
            for index in range(num_shards):
                shard = dataset.shard(num_shards=num_shards, index=index, contiguous=True)
                shard.to_parquet(
                    str(temporary / f"{split}-{index:05d}-of-{num_shards:05d}.parquet")
                )
        if metadata:  # the metadata without the report, then the report in its own file
            without_report = {key: value for key, value in metadata.items() if key != "report"}
            write_json_atomic(temporary / METADATA_FILENAME, without_report)
            write_json_atomic(temporary / CLEANING_REPORT_FILENAME, metadata.get("report", {}))

    readme = hub_dir / "README.md"
    if readme.exists():
        card = DatasetCard.load(readme)
        configs = [
            entry
            for entry in card.data.get("configs") or []
            if entry.get("config_name") != config_name
        ]
        body = card.text
        card_data = card.data
    else:
        configs, body, card_data = [], "", DatasetCardData()
    configs.append(
        {
            "config_name": config_name,
            "data_files": [
                {"split": split, "path": f"{config_name}/{split}-*"} for split in dataset_dict
            ],
        }
    )
    if not any(entry.get("default") for entry in configs):
        configs[0]["default"] = True
    card_data.configs = configs
    title = pretty_name or card_data.get("pretty_name") or metadata.get("dataset_name", "dataset")
    card_data.pretty_name = card_data.get("pretty_name") or title
    card_data.tags = sorted(
        set(card_data.get("tags") or [])
        | {"multimodal", "emotion-recognition"}
        | {"single-label" if metadata.get("problem_type") == SINGLE_LABEL else "multi-label"}
    )
    section = _config_section(config_name, metadata, card_description) if metadata else ""
    card = DatasetCard(
        f"---\n{card_data.to_yaml()}\n---\n{_merge_card_body(body, config_name, section, title)}"
    )
    write_text_atomic(readme, str(card))
    logger.info("Wrote the Hub layout of %r to %s", config_name, hub_dir)
    return hub_dir


def push_hub_layout(
    hub_dir: str | os.PathLike,
    repo_id: str,
    config_name: str,
    private: bool = False,
    token: str | None = None,
) -> str:
    """Uploads `hub_dir/<config_name>/` and `hub_dir/README.md` to the dataset repo `repo_id`.

    The README uploaded is the local one, so keep one local Hub layout folder per repository.
    Returns the commit URL.
    """
    from huggingface_hub import HfApi

    api = HfApi(token=token)
    api.create_repo(repo_id, repo_type="dataset", private=private, exist_ok=True)
    commit = api.upload_folder(
        repo_id=repo_id,
        repo_type="dataset",
        folder_path=str(hub_dir),
        allow_patterns=[f"{config_name}/*", "README.md"],
        commit_message=f"Add the {config_name} configuration",
    )
    url = getattr(commit, "commit_url", None) or str(commit)
    logger.info("Pushed %s to %s: %s", config_name, repo_id, url)
    return url
