"""Publishing an exported model folder to the Hugging Face Hub.

`model.push_to_hub()` uploads only the weights, the config and the modelling code; the feature
extractor, the pipeline file, our own model card, `handler.py`, `requirements.txt` and the images would
be left behind. `publish_folder` therefore uploads the whole export folder in one commit with
`HfApi.upload_folder`, after checking that the folder is complete.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from huggingface_hub import CommitInfo, HfApi, ModelCard
from huggingface_hub.errors import HfHubHTTPError, HFValidationError, LocalTokenNotFoundError
from huggingface_hub.utils import DEFAULT_IGNORE_PATTERNS, filter_repo_objects, validate_repo_id

logger = logging.getLogger(__name__)

__all__ = ["IGNORE_PATTERNS", "REQUIRED_FILES", "list_upload_files", "publish_folder"]
# train.py also imports check_publish_target and publish_adapter_folder by name; the exported
# set stays the one tests/test_hub.py pins.

#: Files that must be in the folder (relative paths). `model.safetensors` may be replaced by a
#: sharded checkpoint's `model.safetensors.index.json`.
REQUIRED_FILES: tuple[str, ...] = ("config.json", "model.safetensors", "README.md")

#: Never uploaded: Trainer checkpoints and TensorBoard runs, temporary files (including the hidden
#: `.<name>.*.tmp` files of `dataset_scripts.io`), Python caches. huggingface_hub adds its own defaults
#: (`.git`, `.cache/huggingface`).
IGNORE_PATTERNS: tuple[str, ...] = (
    ".staging/**",
    "checkpoints/**",
    "checkpoint-*/**",
    "runs/**",
    "*.tmp",
    "__pycache__/**",
    "**/__pycache__/**",
    "*.pyc",
)


def list_upload_files(
    folder: str | os.PathLike[str], ignore_patterns: Sequence[str] = IGNORE_PATTERNS
) -> list[str]:
    """The relative (POSIX) paths `publish_folder` would upload, sorted.

    This applies `ignore_patterns` plus huggingface_hub's default ignore patterns with
    huggingface_hub's own filter, i.e. the same selection `HfApi.upload_folder` makes.
    """
    root = Path(folder).expanduser().resolve()
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder.")
    relative_paths = sorted(
        path.relative_to(root).as_posix() for path in root.glob("**/*") if path.is_file()
    )
    return list(
        filter_repo_objects(
            relative_paths, ignore_patterns=[*ignore_patterns, *DEFAULT_IGNORE_PATTERNS]
        )
    )


def _referenced_code_files(root: Path) -> set[str]:
    """`.py` files named by `auto_map` / `custom_pipelines` in config.json and preprocessor_config.json."""
    referenced: set[str] = set()

    def add(reference: Any) -> None:
        if isinstance(reference, str):
            module = reference.split("--")[-1].rsplit(".", 1)[0]  # "repo--module.Class" -> "module"
            referenced.add(f"{module}.py")
        elif isinstance(reference, (list, tuple)):
            for item in reference:
                if item is not None:
                    add(item)

    for name in ("config.json", "preprocessor_config.json", "processor_config.json"):
        path = root / name
        if not path.is_file():
            continue
        try:
            content = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as error:
            raise ValueError(f"{path} is not valid JSON: {error}") from error
        for reference in (content.get("auto_map") or {}).values():
            add(reference)
        for pipeline in (content.get("custom_pipelines") or {}).values():
            add(pipeline.get("impl"))
    return referenced


def _shipped_text_encoder(root: Path) -> tuple[str | None, bool]:
    """The subfolder holding the processor's copy of its text encoder (`text_encoder_subfolder` in
    processor_config.json: the encoder was a local folder), or None; and whether the model holds
    the encoder's weights itself (`text_encoder_in_model`: the copy is tokenizer and config)."""
    path = root / "processor_config.json"
    if not path.is_file():
        return None, False
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON: {error}") from error
    if not isinstance(content, dict):
        return None, False
    subfolder = content.get("text_encoder_subfolder")
    in_model = content.get("text_encoder_in_model") is True
    return (subfolder.strip("/") if isinstance(subfolder, str) and subfolder else None), in_model


def _check_folder(root: Path, files: Sequence[str]) -> None:
    """Raise a ValueError listing everything missing from an export folder."""
    present = set(files)
    problems = []
    for required in REQUIRED_FILES:
        if required == "model.safetensors" and "model.safetensors.index.json" in present:
            continue
        if required not in present:
            problems.append(required)
    top_level_code = sorted(name for name in present if "/" not in name and name.endswith(".py"))
    if not top_level_code:
        problems.append("at least one remote-code *.py file at the top level")
    missing_code = sorted(_referenced_code_files(root) - present)
    if missing_code:
        problems.append(f"remote-code files named in the configs: {', '.join(missing_code)}")
    encoder, in_model = _shipped_text_encoder(root)
    # A model that holds its text encoder ships only the tokenizer and config beside it.
    needed = ("config.json",) if in_model else ("config.json", "model.safetensors")
    if encoder and not {f"{encoder}/{name}" for name in needed} <= present:
        problems.append(
            f"the processor's text encoder in {encoder}/ ({' and '.join(needed)}), "
            "which processor_config.json names"
        )
    if problems:
        raise ValueError(
            f"Cannot publish {root}: missing (or excluded by the ignore patterns) "
            + "; ".join(problems)
            + ". Export the model with save_pretrained (after register_for_auto_class) and save the "
            "model card into the folder first."
        )
    try:
        ModelCard.load(root / "README.md")
    except Exception as error:
        raise ValueError(f"{root / 'README.md'} has invalid metadata: {error}") from error


def check_publish_target(
    repo_id: str | None, *, token: str | None = None, api: HfApi | None = None
) -> str:
    """Check, before any work, that ``repo_id`` is a well-formed model repo id and that the token
    (``token``, else the locally saved one) is valid and may write to its namespace.

    Returns the repo id with its namespace (a bare name is placed in the token owner's namespace).
    Raises ``ValueError`` saying what to fix.
    """
    if not repo_id:
        raise ValueError(
            "--push_to_hub needs --hub_model_id USER/NAME (the model repo to publish to)."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"--hub_model_id {repo_id!r} is not a valid repo id: {error}") from error
    hub_api = api if api is not None else HfApi(token=token)
    try:
        identity = hub_api.whoami(token=token)
    except (LocalTokenNotFoundError, HfHubHTTPError) as error:
        raise ValueError(
            f"--push_to_hub: the Hub token is missing or invalid ({error}). Log in with "
            "`hf auth login`, set HF_TOKEN, or pass --hub_token; nothing was trained."
        ) from error
    user = identity.get("name")
    namespaces = {user, *(org.get("name") for org in identity.get("orgs") or ())}
    owner, _, name = repo_id.rpartition("/")
    if owner and owner not in namespaces:
        raise ValueError(
            f"--hub_model_id {repo_id!r}: the token belongs to {user!r}, who cannot write to "
            f"{owner!r} (its namespaces: {sorted(filter(None, namespaces))})."
        )
    role = ((identity.get("auth") or {}).get("accessToken") or {}).get("role")
    if role == "read":
        raise ValueError(
            f"--push_to_hub: the token of {user!r} is read-only; publishing needs a write token."
        )
    return repo_id if owner else f"{user}/{name}"


def publish_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload model, remote code and model card",
    create_pr: bool = False,
    api: HfApi | None = None,
    ignore_patterns: Sequence[str] = IGNORE_PATTERNS,
) -> CommitInfo:
    """Upload an exported model folder to a Hub model repository in one commit.

    The folder must contain `config.json`, `model.safetensors` (or a sharded index), `README.md` with
    valid metadata and at least one `.py` remote-code file at the top level; every `.py` file named in
    `auto_map` / `custom_pipelines` must be present. Everything else in the folder (feature extractor
    config, `handler.py`, `requirements.txt`, images, example files) is uploaded as well, except paths
    matching `ignore_patterns`. Files already in the repository but absent from the folder are kept.

    Args:
        folder: The export folder.
        repo_id: Target model repository, `"user/name"`; created if it does not exist.
        token: Hub token; defaults to the locally saved one.
        private: Create the repository as private (no effect on an existing repository).
        commit_message: Commit message.
        create_pr: Open a pull request instead of committing to `main`.
        api: The `HfApi` to use (e.g. with another endpoint); a new one by default.
        ignore_patterns: Glob patterns of files not to upload.

    Returns:
        The `CommitInfo` returned by `HfApi.upload_folder`.
    """
    root = Path(folder).expanduser().resolve()
    files = list_upload_files(root, ignore_patterns)
    _check_folder(root, files)
    logger.info("Publishing %d files from %s to %s: %s", len(files), root, repo_id, files)

    hub_api = api if api is not None else HfApi(token=token)
    hub_api.create_repo(
        repo_id=repo_id, repo_type="model", private=private, exist_ok=True, token=token
    )
    commit_info = hub_api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=root,
        commit_message=commit_message,
        token=token,
        create_pr=create_pr,
        # upload_folder appends its defaults to this list in place: always pass a fresh copy.
        ignore_patterns=list(ignore_patterns),
    )
    logger.info("Published to %s", getattr(commit_info, "commit_url", repo_id))
    return commit_info


#: What a peft adapter folder must hold to be loadable with ``PeftModel.from_pretrained``.
ADAPTER_FILES: tuple[str, ...] = ("adapter_config.json", "adapter_model.safetensors", "README.md")


def publish_adapter_folder(
    folder: str | os.PathLike[str],
    repo_id: str,
    *,
    token: str | None = None,
    private: bool = False,
    api: HfApi | None = None,
) -> CommitInfo:
    """Upload a LoRA adapter folder (peft's files, its card and the adapted config) in one commit."""
    root = Path(folder).expanduser().resolve()
    files = list_upload_files(root)
    missing = [name for name in ADAPTER_FILES if name not in files]
    if missing:
        raise ValueError(f"Cannot publish the adapter {root}: missing {', '.join(missing)}.")
    base = json.loads((root / "adapter_config.json").read_text())["base_model_name_or_path"]
    logger.info("Publishing the adapter %s (base %s) to %s: %s", root, base, repo_id, files)
    hub_api = api if api is not None else HfApi(token=token)
    hub_api.create_repo(
        repo_id=repo_id, repo_type="model", private=private, exist_ok=True, token=token
    )
    return hub_api.upload_folder(
        repo_id=repo_id,
        repo_type="model",
        folder_path=root,
        commit_message=f"Upload LoRA adapter of {base}",
        token=token,
        ignore_patterns=list(IGNORE_PATTERNS),
    )
