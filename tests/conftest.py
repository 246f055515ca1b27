"""Shared test helpers: tiny configs and the location of the authors' reference fixtures."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]


def fixtures_root() -> Path:
    """`../shared/fixtures/lddu-reference` beside the checkout, or $LDDU_REFERENCE_FIXTURES."""
    override = os.environ.get("LDDU_REFERENCE_FIXTURES")
    if override:
        return Path(override)
    return REPO_ROOT.parent / "shared" / "fixtures" / "lddu-reference"


@pytest.fixture(scope="session")
def reference_fixtures() -> Path:
    root = fixtures_root()
    if not (root / "small" / "reference_state.safetensors").is_file():
        # The parity tests are the point of the suite: a missing fixture folder is an error in CI.
        if os.environ.get("CI"):
            pytest.fail(f"Reference fixtures not found at {root}")
        pytest.skip(f"Reference fixtures not found at {root}")
    return root


@pytest.fixture(scope="session")
def hub_cache(tmp_path_factory):
    """A Hub cache holding the packaged MiniLM as the snapshot of its Hub repository."""
    from dataset_scripts.text_encoders import install_packaged_minilm

    cache = tmp_path_factory.mktemp("hub")
    try:
        install_packaged_minilm(cache)
    except ImportError as error:
        # The `test` extra installs it: in CI its absence is an error.
        if os.environ.get("CI"):
            pytest.fail(str(error))
        pytest.skip(str(error))
    return cache


@pytest.fixture(scope="session")
def minilm_folder(hub_cache):
    from dataset_scripts.text_encoders import install_packaged_minilm

    return install_packaged_minilm(hub_cache)


#: The words the tiny generated BERT knows (anything else is [UNK]).
TINY_BERT_WORDS = (
    "i love this ! what a great day . hate awful oh really ? miss her you did that so happy sad"
).split()
TINY_BERT_DIM = 8


def write_tiny_bert(folder, seed: int = 0):
    """Saves a tiny generated BERT (1 layer, hidden size `TINY_BERT_DIM`, random weights from
    `seed`) and its uncased word-piece tokenizer into `folder`; returns the folder. A stand-in for
    a real text encoder: a local folder, or a Hub cache snapshot."""
    from transformers import BertConfig, BertModel, BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *TINY_BERT_WORDS]
    tokenizer = BertTokenizer(vocab={word: index for index, word in enumerate(words)})
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=TINY_BERT_DIM,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=32,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def write_hub_cache_repo(cache, repo_id: str, refs: dict[str, str]) -> Path:
    """A Hub cache entry for the model repository `repo_id`, as huggingface_hub lays it out:
    `models--org--name/snapshots/<commit>/` (a tiny BERT per commit, seeded by its position) and
    `refs/<branch or tag>` holding a commit. Returns the repository's cache folder."""
    repo = Path(cache) / ("models--" + repo_id.replace("/", "--"))
    for seed, commit in enumerate(dict.fromkeys(refs.values())):
        write_tiny_bert(repo / "snapshots" / commit, seed=seed)
    for ref, commit in refs.items():
        (repo / "refs" / ref).parent.mkdir(parents=True, exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return repo


def tiny_config(**overrides):
    from modeling_lddu import LDDUConfig

    values = dict(
        text_dim=12,
        audio_dim=5,
        visual_dim=7,
        hidden_size=16,
        num_attention_heads=2,
        intermediate_size=16,
        text_num_layers=2,
        audio_num_layers=1,
        visual_num_layers=1,
        max_position_embeddings=20,
        label_attention_dim=16,
        latent_hidden_sizes=[12, 8],
        latent_size=8,
        classifier_hidden_size=8,
        queue_size=64,
    )
    values.update(overrides)
    return LDDUConfig(**values)


def plain_feature_extractor(split, modalities=None):
    """The feature extractor for `InMemoryMultimodalDataset`: no length limits, no normalisation."""
    from dataset_scripts.modalities import MODALITIES
    from modeling_lddu.feature_extraction_lddu import LDDUFeatureExtractor

    modalities = modalities or [m for m in MODALITIES if m in split.column_names]
    return LDDUFeatureExtractor(
        feature_dims={m: split.features[m].shape[1] for m in modalities},
        max_lengths={m: None for m in modalities},
    )


def tiny_inputs(
    config, batch_size: int = 3, lengths=(10, 6, 4), seed: int = 0, labels: bool = False
):
    generator = torch.Generator().manual_seed(seed)
    text_length, audio_length, visual_length = lengths
    inputs = {
        "text_features": torch.randn(batch_size, text_length, config.text_dim, generator=generator),
        "text_mask": torch.ones(batch_size, text_length, dtype=torch.long),
        "audio_features": torch.randn(
            batch_size, audio_length, config.audio_dim, generator=generator
        ),
        "audio_mask": torch.ones(batch_size, audio_length, dtype=torch.long),
        "visual_features": torch.randn(
            batch_size, visual_length, config.visual_dim, generator=generator
        ),
        "visual_mask": torch.ones(batch_size, visual_length, dtype=torch.long),
    }
    if labels:
        inputs["labels"] = (
            torch.rand(batch_size, config.num_labels, generator=generator) < 0.4
        ).float()
    return inputs


def disable_dropout(model: torch.nn.Module) -> None:
    """Set every dropout probability to 0, including the encoders' SDPA attention dropout."""
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "attention_dropout"):
            module.attention_dropout = 0.0


#: Prepended to every "fresh process" script: makes this checkout invisible, as on a machine where
#: the package was never installed. `python -I` drops the cwd and PYTHONPATH, but an editable
#: install (`pip install -e .`, what `make` does) still maps the packages through a finder that a
#: site-packages `.pth` file installs; remove that finder and any path into the checkout too.
ISOLATION_PREAMBLE = f"""
import importlib, sys
def _module_of(finder):
    return finder.__module__ if isinstance(finder, type) else type(finder).__module__
sys.meta_path[:] = [f for f in sys.meta_path if "__editable__" not in _module_of(f)]
sys.path_hooks[:] = [h for h in sys.path_hooks if "__editable__" not in getattr(h, "__module__", "")]
import os
sys.path[:] = [p for p in sys.path if os.path.realpath(p or ".") != {str(REPO_ROOT.resolve())!r}]
sys.path_importer_cache.clear()
importlib.invalidate_caches()
for _name in ("modeling_lddu", "dataset_scripts", "mmer"):
    assert importlib.util.find_spec(_name) is None, f"{{_name}} must not be importable here"
"""


def run_without_the_package(
    script: str, tmp_path: Path, *, cwd: Path | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """Run `script` (dedented, after `ISOLATION_PREAMBLE`) with `python -I` in a fresh process
    that cannot import this checkout: offline, without the caller's PYTHON* and HF_* variables,
    and with its own remote-code module cache under `tmp_path`."""
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "HF_"))
    }
    environment.update(HF_HUB_OFFLINE="1", HF_MODULES_CACHE=str(tmp_path / "modules"))
    return subprocess.run(
        [sys.executable, "-I", "-c", ISOLATION_PREAMBLE + textwrap.dedent(script)],
        cwd=cwd or tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
