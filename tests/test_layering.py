"""The layering of docs/architecture.md: the shared layer (`mmer/`) and the dataset builders
(`dataset_scripts/`) never import a model folder and never name a family; only train.py does."""

from __future__ import annotations

import re

import pytest

from .conftest import REPO_ROOT

FAMILY_FOLDERS = sorted(path.name for path in REPO_ROOT.glob("modeling_*") if path.is_dir())
FAMILY_NAMES = sorted(name.removeprefix("modeling_") for name in FAMILY_FOLDERS)
#: `import modeling_x`, `from modeling_x ...`, `import_module("modeling_x")`, `__import__(...)`.
MODEL_FOLDER_IMPORT = re.compile(
    r"^\s*(?:import|from)\s+modeling_\w*|import_module\(\s*[\"']modeling_|__import__\(\s*[\"']"
    r"modeling_",
    re.MULTILINE,
)
LAYERS = ("dataset_scripts", "mmer")


def _files(layer: str):
    return sorted(path for path in (REPO_ROOT / layer).rglob("*") if path.is_file())


def test_there_are_families_and_layer_files_to_check():
    assert {"modeling_lddu", "modeling_lsgmer", "modeling_mcur"} <= set(FAMILY_FOLDERS)
    assert all(any(path.suffix == ".py" for path in _files(layer)) for layer in LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_the_layer_imports_no_model_folder(layer):
    offenders = [
        f"{path.relative_to(REPO_ROOT)}:{path.read_text()[: match.start()].count(chr(10)) + 1}"
        for path in _files(layer)
        if path.suffix == ".py"
        for match in MODEL_FOLDER_IMPORT.finditer(path.read_text())
    ]
    assert offenders == [], f"{layer}/ imports a model folder at {offenders}"


@pytest.mark.parametrize("layer", LAYERS)
def test_the_layer_names_no_family(layer):
    pattern = re.compile("|".join(map(re.escape, FAMILY_NAMES)), re.IGNORECASE)
    offenders = []
    for path in _files(layer):
        if path.suffix in {".pyc", ".png", ".npz"}:
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "\n".join(offenders)


def test_the_check_finds_an_import(tmp_path):
    """Guards the tests above against a pattern that matches nothing."""
    sample = "import os\nfrom modeling_lddu.processing_lddu import X\n"
    assert MODEL_FOLDER_IMPORT.search(sample)
    assert MODEL_FOLDER_IMPORT.search('importlib.import_module("modeling_mcur")')
    assert not MODEL_FOLDER_IMPORT.search("# the remote-code folders modeling_<family>/\n")
