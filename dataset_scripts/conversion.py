"""A whole conversion: source file -> validated, cleaned splits -> `DatasetDict` (with its report)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import datasets

from .building import build_dataset_dict
from .safe_load import load_source_file
from .sources import DatasetSpec, parse_source

__all__ = ["ConversionResult", "convert_source"]


@dataclass
class ConversionResult:
    """What a conversion returns: the dataset and the report of what was checked and changed."""

    dataset_dict: datasets.DatasetDict
    report: dict[str, Any]


def convert_source(
    source: str | os.PathLike,
    spec: DatasetSpec,
    feature_dims: Mapping[str, int | None] | None = None,
    use_lengths: bool = True,
) -> ConversionResult:
    """Loads `source` safely and converts it into a `DatasetDict` (train/validation/test).

    Args:
        source: Path of the `.pkl` or `.pt` file.
        spec: The dataset configuration (`mosei.MOSEI_SPECS[...]`, `m3ed.M3ED_SPEC`).
        feature_dims: Overrides of the expected feature dims, e.g. `{"text": 300}`.
        use_lengths: Cut padded sequences to the real lengths the source stores
            (`spec.length_keys`).
    """
    source = Path(source)
    raw = load_source_file(source)
    splits, report = parse_source(
        raw, spec, source.name, feature_dims=feature_dims, use_lengths=use_lengths
    )
    report["source_path"] = str(source)
    dataset_dict = build_dataset_dict(
        splits, spec.label_spec.label_names, spec.name, spec.config_name, report=report
    )
    return ConversionResult(dataset_dict=dataset_dict, report=report)
