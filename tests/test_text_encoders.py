"""Which encoder the processor settings name: a Hub id is stored with the commit of the snapshot
the features are computed from (a local folder stands in for the Hub cache), a folder by its
absolute path, the packaged MiniLM by its Hub id and commit."""

from __future__ import annotations

import json
from types import SimpleNamespace

import huggingface_hub
import numpy as np
import pytest

from dataset_scripts import raw_media, text_encoders
from dataset_scripts.raw_features import RawFeatureComputer
from dataset_scripts.text_encoders import (
    MINILM_REVISION,
    PACKAGED_MINILM,
    resolve_text_encoder,
)
from modeling_lddu import LDDUFeatureExtractor, LDDUProcessor

from .conftest import TINY_BERT_DIM, write_hub_cache_repo, write_tiny_bert

REPO = "org/tiny-bert"
MAIN = "a" * 40  # the commit the main branch names in the cache
TAGGED = "b" * 40  # the commit of the tag v1
SENTENCES = ["I love this!", "what a great day ."]


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """HF_HUB_CACHE pointed at a temporary folder holding `REPO` at two commits; the Hub itself
    is unreachable (asking it fails the test)."""
    cache = tmp_path / "hub"
    write_hub_cache_repo(cache, REPO, {"main": MAIN, "v1": TAGGED})
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def no_hub(*args, **kwargs):
        raise AssertionError("the Hub was asked although the cache has the snapshot")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", no_hub)
    return cache


@pytest.mark.parametrize(
    ("revision", "commit"),
    [(None, MAIN), ("main", MAIN), ("v1", TAGGED), (TAGGED, TAGGED), (MAIN, MAIN)],
)
def test_a_hub_id_is_stored_with_the_commit_of_its_cached_snapshot(hub_cache, revision, commit):
    assert resolve_text_encoder(REPO, revision) == (REPO, commit)


def test_the_settings_name_the_commit_and_it_decides_the_frames(hub_cache, tmp_path):
    settings = raw_media.make_settings(["text"], REPO)
    tagged = raw_media.make_settings(["text"], REPO, text_encoder_revision="v1")
    assert settings.text_encoder_revision == MAIN and tagged.text_encoder_revision == TAGGED
    # The frames are those of the snapshot of that commit, whatever "main" names later.
    frames = RawFeatureComputer(settings).text_frames(SENTENCES)[0]
    assert frames[0].shape == (4, TINY_BERT_DIM)  # i love this !
    (hub_cache / f"models--{REPO.replace('/', '--')}" / "refs" / "main").write_text(TAGGED)
    again = RawFeatureComputer(settings).text_frames(SENTENCES)[0]
    moved = RawFeatureComputer(raw_media.make_settings(["text"], REPO)).text_frames(SENTENCES)[0]
    for row in range(len(SENTENCES)):
        np.testing.assert_array_equal(again[row], frames[row])
        assert not np.allclose(moved[row], frames[row])
    # The model folder's processor config names the same commit.
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": TINY_BERT_DIM}, max_lengths={"text": None}
    )
    LDDUProcessor(extractor, **settings.to_dict()).save_pretrained(tmp_path / "model")
    saved = json.loads((tmp_path / "model" / "processor_config.json").read_text())
    assert (saved["text_encoder_name_or_path"], saved["text_encoder_revision"]) == (REPO, MAIN)


def test_a_hub_id_not_in_the_cache_is_resolved_to_the_commit_the_hub_names(hub_cache, monkeypatch):
    asked = []

    def model_info(self, repo_id, revision=None, **kwargs):
        asked.append((repo_id, revision))
        return SimpleNamespace(sha="c" * 40)

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", model_info)
    assert resolve_text_encoder("org/elsewhere", "v2") == ("org/elsewhere", "c" * 40)
    assert asked == [("org/elsewhere", "v2")]


def test_a_hub_id_that_cannot_be_resolved_is_an_error(hub_cache, monkeypatch):
    def offline(self, repo_id, revision=None, **kwargs):
        raise huggingface_hub.errors.OfflineModeIsEnabled("offline")

    monkeypatch.setattr(huggingface_hub.HfApi, "model_info", offline)
    with pytest.raises(OSError, match=r"org/elsewhere at revision main to a commit.*offline"):
        resolve_text_encoder("org/elsewhere")
    # A revision the cache does not hold is not replaced by another one.
    with pytest.raises(OSError, match=r"tiny-bert at revision v9"):
        resolve_text_encoder(REPO, "v9")


def test_a_local_folder_is_named_by_its_absolute_path_without_a_revision(tmp_path, monkeypatch):
    write_tiny_bert(tmp_path / "encoder")
    monkeypatch.chdir(tmp_path)
    assert resolve_text_encoder("encoder") == (str(tmp_path / "encoder"), None)
    with pytest.raises(ValueError, match="local folder, which has no revision"):
        resolve_text_encoder("encoder", "main")


def test_the_packaged_minilm_has_one_revision(monkeypatch):
    monkeypatch.setattr(text_encoders, "install_packaged_minilm", lambda: None)
    assert resolve_text_encoder(PACKAGED_MINILM, MINILM_REVISION)[1] == MINILM_REVISION
    with pytest.raises(ValueError, match="has no revision 'main'"):
        resolve_text_encoder(PACKAGED_MINILM, "main")


def test_an_incomplete_snapshot_is_completed_from_the_hub(hub_cache):
    """A snapshot that lacks a file (e.g. only the config was fetched) is loaded again by Hub id
    and commit, which downloads what is missing, not again from the incomplete folder."""
    from dataset_scripts.raw_features import from_pretrained_cache_first

    calls = []

    class Loader:
        @staticmethod
        def from_pretrained(source, **kwargs):
            calls.append((str(source), kwargs))
            if source != REPO:
                raise OSError("no weights in the folder")
            return "downloaded"

    assert from_pretrained_cache_first(Loader, REPO, MAIN) == "downloaded"
    snapshot = hub_cache / f"models--{REPO.replace('/', '--')}" / "snapshots" / MAIN
    assert calls == [(str(snapshot), {}), (REPO, {"revision": MAIN})]


def test_the_builder_command_stores_the_commit_of_the_revision_asked(hub_cache, tmp_path):
    rows = [("a", "I love this!", "train"), ("b", "oh really ?", "validation")]
    rows += [("c", "what a great day .", "test")]
    lines = ["id,text,labels,split"] + [f'{key},"{text}",joy,{split}' for key, text, split in rows]
    (tmp_path / "index.csv").write_text("\n".join(lines) + "\n")
    output = tmp_path / "data"
    argv = ["--index", str(tmp_path / "index.csv"), "--output", str(output)]
    assert raw_media.main([*argv, "--text_encoder", REPO, "--text_encoder_revision", "v1"]) == 0
    saved = json.loads((output / "processor_settings.json").read_text())
    assert (saved["text_encoder_name_or_path"], saved["text_encoder_revision"]) == (REPO, TAGGED)


def test_the_export_warns_about_settings_naming_a_hub_id_without_a_revision(caplog, tmp_path):
    """Data built before the builders pinned the commit still trains, with a warning."""
    from dataset_scripts.raw_features import RawFeatureSettings
    from mmer.export import _build_processor
    from mmer.family import ModelFamily

    family = ModelFamily.from_model_type("lddu")
    extractor = LDDUFeatureExtractor(feature_dims={"text": TINY_BERT_DIM})
    with caplog.at_level("WARNING", logger="mmer.export"):
        _build_processor(family, extractor, RawFeatureSettings(text_encoder_name_or_path=REPO))
    assert f"Hub text encoder {REPO} without a revision" in caplog.text
    caplog.clear()
    for settings in (
        RawFeatureSettings(text_encoder_name_or_path=REPO, text_encoder_revision=MAIN),
        RawFeatureSettings(text_encoder_name_or_path=str(write_tiny_bert(tmp_path / "enc"))),
    ):
        with caplog.at_level("WARNING", logger="mmer.export"):
            _build_processor(family, extractor, settings)
    assert "without a revision" not in caplog.text
