"""Family-specific text of the model cards, one YAML file per `model_type` (e.g. `lddu.yaml`).

`mmer.model_card` renders every family with one shared template; what differs between families
(name, paper, architecture, uncertainty definition, differences from the authors' code, citation)
lives here as data, shipped as package data next to this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import yaml

__all__ = ["FamilyCardText", "PaperReference", "available_model_types", "load_family_card_text"]


@dataclass(frozen=True)
class PaperReference:
    """The paper that introduced the family."""

    title: str
    authors: str  # as cited in running text, e.g. "Huang et al."
    year: int
    arxiv_id: str
    url: str


@dataclass(frozen=True)
class FamilyCardText:
    """Everything family-specific in a model card. Markdown fields are inserted verbatim."""

    model_type: str
    display_name: str  # e.g. "LDDU"
    full_name: str  # e.g. "Latent Distribution Decoupling"
    description: str  # "the <description> of <authors> (<year>)"
    paper: PaperReference
    architecture: str  # body of "## Model description"
    citation_bibtex: str
    tags: tuple[str, ...] = ()
    metric_conventions: str | None = None  # after the results table
    uncertainty_definition: str | None = None  # body of "### Uncertainty"
    differences_from_reference: str | None = None  # body of "## Differences from the authors' code"
    single_label_note: str | None = None  # single-label cards: how the family handles such data


_REQUIRED = ("display_name", "full_name", "description", "paper", "architecture", "citation_bibtex")
_OPTIONAL = (
    "tags",
    "metric_conventions",
    "uncertainty_definition",
    "differences_from_reference",
    "single_label_note",
)


def available_model_types() -> list[str]:
    """The model types that have card text, sorted."""
    files = resources.files(__name__).iterdir()
    return sorted(f.name.removesuffix(".yaml") for f in files if f.name.endswith(".yaml"))


def load_family_card_text(model_type: str) -> FamilyCardText:
    """Read `model_cards/<model_type>.yaml`.

    Raises:
        FileNotFoundError: no card text for `model_type` (the message names the missing file).
        ValueError: the file lacks a required field or has an unknown one.
    """
    file_name = f"{model_type}.yaml"
    resource = resources.files(__name__) / file_name
    if not model_type or "/" in model_type or not resource.is_file():
        raise FileNotFoundError(
            f"No model card text for model_type {model_type!r}: {__name__}/{file_name} does not "
            f"exist (available: {available_model_types()}). Add that file to give the family a card."
        )
    fields = yaml.safe_load(resource.read_text(encoding="utf-8")) or {}
    missing = [key for key in _REQUIRED if not fields.get(key)]
    unknown = sorted(set(fields) - set(_REQUIRED) - set(_OPTIONAL))
    if missing or unknown:
        raise ValueError(
            f"{__name__}/{file_name}: missing fields {missing}, unknown fields {unknown}; "
            f"expected {list(_REQUIRED)} and optionally {list(_OPTIONAL)}."
        )
    paper = PaperReference(**fields.pop("paper"))
    strip = {
        key: value.strip() if isinstance(value, str) else value for key, value in fields.items()
    }
    strip["tags"] = tuple(strip.get("tags") or ())
    return FamilyCardText(model_type=model_type, paper=paper, **strip)
