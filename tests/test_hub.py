"""Tests of mmer.hub.publish_folder, with the Hub mocked at the network boundary."""

import json
import socket
from unittest import mock

import pytest
from huggingface_hub import CommitInfo, HfApi, ModelCard, ModelCardData

from mmer import hub
from mmer.hub import IGNORE_PATTERNS, list_upload_files, publish_folder

EXPECTED_UPLOAD = [
    "README.md",
    "config.json",
    "configuration_lddu.py",
    "examples/clip.npz",
    "feature_extraction_lddu.py",
    "handler.py",
    "images/training_curves.png",
    "model.safetensors",
    "modeling_lddu.py",
    "pipeline_lddu.py",
    "preprocessor_config.json",
    "requirements.txt",
]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any attempt to open a connection fails loudly instead of hanging or retrying."""

    def refuse(*args, **kwargs):
        raise RuntimeError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


def write(path, content=""):
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)


@pytest.fixture
def export_folder(tmp_path):
    folder = tmp_path / "export"
    config = {
        "model_type": "lddu",
        "auto_map": {
            "AutoConfig": "configuration_lddu.LDDUConfig",
            "AutoModelForSequenceClassification": "modeling_lddu.LDDUForSequenceClassification",
        },
        "custom_pipelines": {
            "multimodal-emotion-recognition": {
                "impl": "pipeline_lddu.LDDUEmotionPipeline",
                "pt": ["AutoModelForSequenceClassification"],
            }
        },
    }
    write(folder / "config.json", json.dumps(config))
    write(
        folder / "preprocessor_config.json",
        json.dumps(
            {"auto_map": {"AutoFeatureExtractor": "feature_extraction_lddu.LDDUFeatureExtractor"}}
        ),
    )
    for name in (
        "configuration_lddu.py",
        "modeling_lddu.py",
        "pipeline_lddu.py",
        "feature_extraction_lddu.py",
        "handler.py",
    ):
        write(folder / name, "# code\n")
    write(folder / "model.safetensors", b"\x00" * 16)
    write(folder / "requirements.txt", "transformers>=5.23\n")
    write(folder / "images" / "training_curves.png", b"\x89PNG")
    write(folder / "examples" / "clip.npz", b"PK")
    ModelCard.from_template(ModelCardData(license="apache-2.0", pipeline_tag="other")).save(
        folder / "README.md"
    )
    # Never uploaded:
    write(folder / "checkpoints" / "checkpoint-10" / "model.safetensors", b"\x00")
    write(folder / "checkpoint-500" / "optimizer.pt", b"\x00")
    write(folder / "runs" / "events.out.tfevents.1", b"\x00")
    write(folder / ".README.md.abc123.tmp", "half-written")
    write(folder / "__pycache__" / "modeling_lddu.cpython-311.pyc", b"\x00")
    write(folder / ".git" / "HEAD", "ref")
    return folder


def test_list_upload_files(export_folder):
    assert list_upload_files(export_folder) == EXPECTED_UPLOAD


def test_publish_folder_calls_create_repo_and_upload_folder(export_folder):
    commit = CommitInfo(
        commit_url="https://huggingface.co/me/lddu/commit/abc",
        commit_message="m",
        commit_description="",
        oid="abc",
    )
    ignore_before = tuple(IGNORE_PATTERNS)
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo,
        mock.patch.object(HfApi, "upload_folder", autospec=True, return_value=commit) as upload,
    ):
        result = publish_folder(
            export_folder,
            "me/lddu",
            token="hf_test",
            private=True,
            create_pr=True,
            commit_message="Release",
        )
    assert result is commit
    create_repo.assert_called_once()
    assert create_repo.call_args.kwargs == {
        "repo_id": "me/lddu",
        "repo_type": "model",
        "private": True,
        "exist_ok": True,
        "token": "hf_test",
    }
    upload.assert_called_once()
    kwargs = upload.call_args.kwargs
    assert kwargs["repo_id"] == "me/lddu" and kwargs["repo_type"] == "model"
    assert kwargs["folder_path"] == export_folder.resolve()
    assert kwargs["commit_message"] == "Release" and kwargs["create_pr"] is True
    assert kwargs["ignore_patterns"] == list(IGNORE_PATTERNS)
    assert tuple(IGNORE_PATTERNS) == ignore_before


def test_publish_folder_commit_operations_are_exactly_the_export(export_folder):
    """Run the real upload_folder down to create_commit and inspect the operations."""
    api = HfApi(token="hf_test")
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True),
        mock.patch.object(HfApi, "_validate_yaml", autospec=True),  # POSTs the YAML to the Hub
        mock.patch("huggingface_hub.hf_api.is_xet_available", return_value=False),
        mock.patch.object(HfApi, "create_commit", autospec=True) as create_commit,
    ):
        publish_folder(export_folder, "me/lddu", api=api)
    operations = create_commit.call_args.kwargs["operations"]
    assert sorted(operation.path_in_repo for operation in operations) == EXPECTED_UPLOAD
    assert all(type(operation).__name__ == "CommitOperationAdd" for operation in operations)


def test_missing_files_are_listed_and_nothing_is_sent(tmp_path):
    folder = tmp_path / "incomplete"
    write(folder / "config.json", "{}")
    write(folder / "checkpoints" / "modeling_lddu.py", "# ignored, so it does not count")
    with (
        mock.patch.object(HfApi, "create_repo", autospec=True) as create_repo,
        pytest.raises(ValueError) as error,
    ):
        publish_folder(folder, "me/lddu")
    message = str(error.value)
    assert "model.safetensors" in message and "README.md" in message
    assert "remote-code *.py" in message
    assert "config.json" not in message  # present, so not reported
    create_repo.assert_not_called()


def test_code_files_named_in_configs_must_exist(export_folder):
    (export_folder / "pipeline_lddu.py").unlink()
    with pytest.raises(ValueError, match="named in the configs: pipeline_lddu.py"):
        publish_folder(export_folder, "me/lddu", api=mock.create_autospec(HfApi))


def test_a_shipped_text_encoder_must_be_in_the_folder(export_folder):
    write(export_folder / "processor_config.json", json.dumps({"text_encoder_subfolder": "enc"}))
    api = mock.create_autospec(HfApi, instance=True)
    with pytest.raises(ValueError, match=r"text encoder in enc/ \(config.json and model"):
        publish_folder(export_folder, "me/lddu", api=api)
    api.upload_folder.assert_not_called()
    write(export_folder / "enc" / "config.json", "{}")
    write(export_folder / "enc" / "model.safetensors", b"\x00")
    publish_folder(export_folder, "me/lddu", api=api)
    uploaded = api.upload_folder.call_args.kwargs
    assert "enc/model.safetensors" in list_upload_files(uploaded["folder_path"])


def test_sharded_checkpoint_is_accepted(export_folder):
    (export_folder / "model.safetensors").unlink()
    write(export_folder / "model.safetensors.index.json", "{}")
    write(export_folder / "model-00001-of-00001.safetensors", b"\x00")
    api = mock.create_autospec(HfApi, instance=True)
    publish_folder(export_folder, "me/lddu", api=api)
    api.upload_folder.assert_called_once()


def test_invalid_readme_metadata_is_refused(export_folder):
    write(export_folder / "README.md", "---\nmodel-index: [oops\n---\n# card\n")
    with pytest.raises(ValueError, match="invalid metadata"):
        publish_folder(export_folder, "me/lddu", api=mock.create_autospec(HfApi, instance=True))


def test_module_exports():
    assert set(hub.__all__) == {
        "IGNORE_PATTERNS",
        "REQUIRED_FILES",
        "list_upload_files",
        "publish_folder",
    }
