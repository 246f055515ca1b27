"""Dataset builders: source formats, validation messages, cleaning, saving/loading, the loader."""

from __future__ import annotations

import copy
import json
import logging
import subprocess
import sys
from unittest import mock

import datasets
import numpy as np
import pytest
import torch

from dataset_scripts import m3ed, mosei
from dataset_scripts.building import build_dataset_dict, metadata_from_dataset
from dataset_scripts.labels import (
    M3ED_LABELS,
    MOSEI_LABELS,
    multi_hot_to_target_tokens,
    target_tokens_to_multi_hot,
)
from dataset_scripts.loading import (
    InMemoryMultimodalDataset,
    MultimodalDataCollator,
    load_label_names,
    load_metadata,
    load_prepared,
)
from dataset_scripts.modalities import MODALITIES, SPLITS
from dataset_scripts.saving import (
    CLEANING_REPORT_FILENAME,
    atomic_output_dir,
    push_hub_layout,
    save_prepared,
    write_hub_layout,
)
from dataset_scripts.sources import SplitArrays, parse_source
from dataset_scripts.synthetic import (
    generate_synthetic_splits,
    make_synthetic_dataset,
    write_source,
)
from modeling_lddu import LDDUForEmotionRecognition

from .conftest import REPO_ROOT, plain_feature_extractor, tiny_config

SMALL = {
    "num_train": 12,
    "num_validation": 4,
    "num_test": 5,
    "text_dim": 12,
    "audio_dim": 7,
    "visual_dim": 5,
    "text_length": 6,
    "audio_length": 6,
    "visual_length": 6,
}
SMALL_MOSEI_DIMS = {"audio": 7, "visual": 5}
SMALL_M3ED = {
    "num_train": 10,
    "num_validation": 4,
    "num_test": 4,
    "text_dim": 12,
    "audio_dim": 10,
    "visual_dim": 6,
    **{f"{m}_length": (2, 12) for m in MODALITIES},
}
SMALL_M3ED_DIMS = {"text": 12, "audio": 10, "visual": 6}
MODEL_INPUT_NAMES = [f"{m}_{kind}" for m in MODALITIES for kind in ("features", "mask")]


@pytest.fixture(autouse=True)
def _quiet_progress_bars():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def _assert_matches_generated(dataset_dict, generated, modalities_with_lengths=()):
    """The converted dataset holds exactly the generated features and labels, in order."""
    assert list(dataset_dict) == list(SPLITS)
    for split in SPLITS:
        converted = dataset_dict[split].with_format("numpy")
        want = generated[split]
        np.testing.assert_array_equal(converted["labels"], want.labels)
        for modality in MODALITIES:
            column = converted[modality]
            for index in (0, len(want) - 1):
                np.testing.assert_array_equal(column[index], want.features[modality][index])


# --------------------------------------------------------------------------------------------------
# Every supported source format
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_format", "array_type", "config", "overrides"),
    [
        ("mmsa_pkl", "numpy", "aligned", {}),
        ("mmsa_pkl", "numpy", "unaligned", {"audio_length": (2, 9), "visual_length": (3, 8)}),
        ("tailor_pt", "numpy", "aligned", {}),
        ("tailor_pt", "torch", "aligned", {}),
        ("tailor_pt", "torch", "unaligned", {"audio_length": (2, 9)}),
    ],
)
def test_mosei_converts_every_source_format(tmp_path, source_format, array_type, config, overrides):
    kwargs = {**SMALL, **overrides}
    suffix = ".pkl" if source_format.endswith("pkl") else ".pt"
    source = write_source(
        tmp_path / f"mosei{suffix}", source_format, array_type=array_type, **kwargs
    )

    result = mosei.convert_mosei(source, config, feature_dims=SMALL_MOSEI_DIMS)

    dataset_dict = result.dataset_dict
    _assert_matches_generated(dataset_dict, generate_synthetic_splits(**kwargs))
    features = dataset_dict["train"].features
    assert features["id"] == datasets.Value("string")
    assert features["text"] == datasets.Array2D((6, 12), "float32")
    expected_audio_length = None if "audio_length" in overrides else 6
    assert features["audio"] == datasets.Array2D((expected_audio_length, 7), "float32")
    assert features["labels"] == datasets.List(datasets.Value("float32"), length=6)
    assert result.report["num_samples"] == {"train": 12, "validation": 4, "test": 5}
    assert result.report["swapped_audio_visual"] is False
    metadata = metadata_from_dataset(dataset_dict)
    assert metadata["label_names"] == list(MOSEI_LABELS.label_names)
    assert (metadata["dataset_name"], metadata["config_name"]) == ("mosei", config)
    if source_format == "mmsa_pkl":  # MMSA files carry ids
        assert dataset_dict["train"]["id"][0] == "synthetic-train-000000"
        if config == "unaligned":
            assert result.report["lengths"]["train"]["audio"]["source_key"] == "audio_lengths"
    else:
        assert dataset_dict["validation"]["id"][1] == "validation-000001"


def test_mosei_swapped_audio_and_visual_are_exchanged_with_a_warning(tmp_path, caplog):
    source = write_source(tmp_path / "swapped.pt", "tailor_pt", swap_audio_visual=True, **SMALL)
    with caplog.at_level(logging.WARNING):
        result = mosei.convert_mosei(source, feature_dims=SMALL_MOSEI_DIMS)
    assert result.report["swapped_audio_visual"] is True
    assert "swapped" in caplog.text
    _assert_matches_generated(result.dataset_dict, generate_synthetic_splits(**SMALL))


@pytest.mark.parametrize("array_type", ["numpy", "torch"])
def test_m3ed_converts_carat_file(tmp_path, caplog, array_type):
    source = write_source(
        tmp_path / "m3ed.pt", "carat_m3ed_pt", array_type=array_type, padded_length=10, **SMALL_M3ED
    )
    raw = torch.load(source, weights_only=False)
    assert raw["train"]["src-visual"][0].shape[1] == 10  # CARAT stores audio under src-visual

    with caplog.at_level(logging.WARNING):
        result = m3ed.convert_m3ed(source, feature_dims=SMALL_M3ED_DIMS)

    assert result.report["swapped_audio_visual"] is True
    assert "swapped" in caplog.text
    dataset_dict = result.dataset_dict
    features = dataset_dict["train"].features
    assert features["audio"] == datasets.Array2D((None, 10), "float32")
    assert features["visual"] == datasets.Array2D((None, 6), "float32")
    assert features["labels"] == datasets.List(datasets.Value("float32"), length=7)
    assert metadata_from_dataset(dataset_dict)["label_names"] == list(M3ED_LABELS.label_names)

    generated = generate_synthetic_splits(**SMALL_M3ED, shared_lengths=True, num_labels=7)
    for split in SPLITS:
        converted = dataset_dict[split].with_format("numpy")
        np.testing.assert_array_equal(converted["labels"], generated[split].labels)
        for index in range(len(generated[split])):
            for modality in MODALITIES:
                # Cut to len_list, which is at most the stored 10 steps.
                want = generated[split].features[modality][index][:10]
                np.testing.assert_array_equal(converted[modality][index], want)
    clipped = result.report["lengths"]["train"]["text"]["clipped_to_stored_length"]
    assert clipped == sum(len(s) > 10 for s in generated["train"].features["text"])


def test_m3ed_keep_padding_stores_fixed_length(tmp_path):
    source = write_source(tmp_path / "m3ed.pt", "carat_m3ed_pt", padded_length=10, **SMALL_M3ED)
    result = m3ed.convert_m3ed(source, feature_dims=SMALL_M3ED_DIMS, use_lengths=False)
    assert result.dataset_dict["train"].features["text"] == datasets.Array2D((10, 12), "float32")
    assert result.report["lengths"] == {}


# --------------------------------------------------------------------------------------------------
# Labels
# --------------------------------------------------------------------------------------------------


def test_target_tokens_to_multi_hot_follows_the_reference():
    targets = [[2, 4, 7, 3], [2, 3], [2, 9, 9, 5, 3], np.array([2, 6, 3, 0, 0])]
    labels = target_tokens_to_multi_hot(targets, MOSEI_LABELS, split="train")
    expected = np.array(
        [[1, 0, 0, 1, 0, 0], [0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 1], [0, 0, 1, 0, 0, 0]], np.float32
    )
    np.testing.assert_array_equal(labels, expected)
    assert labels.dtype == np.float32
    assert multi_hot_to_target_tokens(expected[:1], MOSEI_LABELS) == [[2, 4, 7, 3]]
    m3ed_labels = target_tokens_to_multi_hot([[2, 10, 5, 3]], M3ED_LABELS)
    np.testing.assert_array_equal(m3ed_labels, [[0, 1, 0, 0, 0, 0, 1]])


def test_unknown_token_names_split_sample_and_token():
    with pytest.raises(
        ValueError, match=r"split 'validation', sample 1: unknown mosei emotion token 10"
    ):
        target_tokens_to_multi_hot([[2, 4, 3], [2, 10, 3]], MOSEI_LABELS, split="validation")


def test_missing_begin_or_end_token_is_an_error():
    with pytest.raises(
        ValueError, match=r"split 'test', sample 0: tgt \[4, 5\] must start with the begin"
    ):
        target_tokens_to_multi_hot([[4, 5]], MOSEI_LABELS, split="test")


# --------------------------------------------------------------------------------------------------
# Validation errors, each with its message
# --------------------------------------------------------------------------------------------------


def _raw_source(source_format: str = "tailor_pt") -> dict:
    """An in-memory source dict as the loaders return it."""
    splits = generate_synthetic_splits(
        **{**SMALL, "num_train": 4, "num_validation": 3, "num_test": 3}
    )
    keys = {"text": "src-text", "audio": "src-audio", "visual": "src-visual"}
    raw = {}
    for split, source_split in zip(SPLITS, ("train", "valid", "test"), strict=True):
        arrays = splits[split]
        entry = {keys[m]: arrays.features[m] for m in keys}
        entry["tgt"] = multi_hot_to_target_tokens(arrays.labels, MOSEI_LABELS)
        raw[source_split] = entry
    return raw


def _parse(raw, spec=None, **kwargs):
    spec = spec or mosei.MOSEI_SPECS["aligned"]
    kwargs.setdefault("feature_dims", SMALL_MOSEI_DIMS)
    return parse_source(raw, spec, "source.pt", **kwargs)


def test_valid_raw_source_parses():
    splits, report = _parse(_raw_source())
    assert list(splits) == list(SPLITS)
    assert report["feature_dims"] == {"text": 12, "audio": 7, "visual": 5}


def test_missing_split_names_file_and_keys_found():
    raw = _raw_source()
    del raw["valid"]
    with pytest.raises(ValueError) as error:
        _parse(raw)
    assert str(error.value) == (
        "source.pt has no split 'valid' (also looked for 'validation'); top-level keys found: "
        "['test', 'train']"
    )


def test_validation_is_accepted_for_valid():
    raw = _raw_source()
    raw["validation"] = raw.pop("valid")
    splits, _ = _parse(raw)
    assert len(splits["validation"]) == 3


def test_missing_modality_key_names_file_and_keys_found():
    raw = _raw_source()
    del raw["train"]["src-audio"]
    with pytest.raises(ValueError) as error:
        _parse(raw)
    assert str(error.value) == (
        "Split 'train' of source.pt has no audio features: looked for 'src-audio' or 'audio'; "
        "keys found: ['src-text', 'src-visual', 'tgt']"
    )


def test_missing_labels_key():
    raw = _raw_source()
    del raw["test"]["tgt"]
    with pytest.raises(
        ValueError, match=r"Split 'test' of source.pt has no labels: looked for 'tgt'"
    ):
        _parse(raw)


def test_sample_counts_that_disagree():
    raw = _raw_source()
    raw["train"]["src-visual"] = raw["train"]["src-visual"][:3]
    with pytest.raises(ValueError) as error:
        _parse(raw)
    assert str(error.value) == (
        "Split 'train' of source.pt: the modalities and labels disagree on the number of samples "
        "(text 4, audio 4, visual 3, labels 4)"
    )


def test_wrong_rank():
    raw = _raw_source()
    raw["valid"]["src-audio"] = raw["valid"]["src-audio"][:, 0]
    with pytest.raises(ValueError) as error:
        _parse(raw)
    assert str(error.value) == (
        "Split 'validation' of source.pt: audio features must be a [samples, length, dim] array or "
        "a "
        "list of [length, dim] arrays; got an array of shape (3, 7)"
    )


def test_wrong_rank_of_one_sample_in_a_list():
    raw = _raw_source()
    raw["train"]["src-text"] = list(raw["train"]["src-text"])
    raw["train"]["src-text"][2] = raw["train"]["src-text"][2][0]
    with pytest.raises(ValueError, match=r"text features must be .*; sample 2 has shape \(12,\)"):
        _parse(raw)


def test_feature_dims_that_differ_within_a_modality():
    raw = _raw_source()
    audio = list(raw["train"]["src-audio"])
    audio[2] = audio[2][:, :6]
    raw["train"]["src-audio"] = audio
    with pytest.raises(ValueError) as error:
        _parse(raw)
    assert str(error.value) == (
        "Split 'train' of source.pt: audio feature dims differ between samples "
        "(sample 0: 7, sample 2: 6)"
    )


def test_feature_dims_that_differ_between_splits():
    raw = _raw_source()
    raw["test"]["src-text"] = raw["test"]["src-text"][:, :, :10]
    with pytest.raises(ValueError) as error:
        _parse(raw)
    assert str(error.value) == (
        "source.pt: text feature dims differ between splits (train 12, validation 12, test 10)"
    )


def test_empty_split():
    raw = _raw_source()
    raw["test"] = {key: value[:0] for key, value in raw["test"].items()}
    with pytest.raises(ValueError) as error:
        _parse(raw)
    assert str(error.value) == "Split 'test' of source.pt is empty (0 samples)"


def test_unexpected_feature_dims():
    with pytest.raises(ValueError) as error:
        _parse(_raw_source(), spec=m3ed.M3ED_SPEC, feature_dims={"text": 12})
    assert str(error.value).startswith(
        "source.pt: unexpected feature dims (audio has dim 7 but 1024 is expected, visual has dim "
        "5 "
        "but 342 is expected)."
    )
    assert "--feature_dims text=12,audio=7,visual=5" in str(error.value)


def test_unknown_token_in_a_file_names_split_and_sample():
    raw = _raw_source()
    raw["valid"]["tgt"][2] = [2, 4, 11, 3]
    with pytest.raises(
        ValueError, match=r"split 'validation', sample 2: unknown mosei emotion token 11"
    ):
        _parse(raw)


def test_file_vocabulary_is_checked_against_labels_py(tmp_path):
    source = write_source(tmp_path / "m3ed.pt", "carat_m3ed_pt", **SMALL_M3ED)
    raw = torch.load(source, weights_only=False)
    raw["dict"]["tgt"]["Happy"], raw["dict"]["tgt"]["Sad"] = 6, 4
    with pytest.raises(ValueError) as error:
        parse_source(raw, m3ed.M3ED_SPEC, "m3ed.pt", feature_dims=SMALL_M3ED_DIMS)
    assert str(error.value) == (
        "The tgt vocabulary stored in m3ed.pt does not match the m3ed label map of "
        "dataset_scripts/labels.py (happy: file 6, expected 4, sad: file 4, expected 6)"
    )


def test_errors_name_the_source_file(tmp_path):
    source = write_source(tmp_path / "broken.pkl", "mmsa_pkl", **SMALL)
    with pytest.raises(ValueError, match=r"^broken.pkl: unexpected feature dims"):
        mosei.convert_mosei(source)  # MOSEI's audio 74 / visual 35 expected, the file has 7 / 5


# --------------------------------------------------------------------------------------------------
# Non-finite values
# --------------------------------------------------------------------------------------------------


def test_non_finite_values_are_replaced_counted_and_reported(tmp_path, caplog):
    raw = _raw_source()
    raw["train"]["src-audio"][0, 0, 0] = -np.inf
    raw["train"]["src-audio"][1, 2, :3] = -np.inf
    raw["train"]["src-audio"][1, 3, 1] = np.nan
    raw["test"]["src-text"][2, 1, 4] = np.inf
    raw["valid"]["src-visual"] = raw["valid"]["src-visual"].astype(np.float64)
    raw["valid"]["src-visual"][0, 0, 0] = 1e300  # overflows float32
    original = copy.deepcopy(raw)

    with caplog.at_level(logging.WARNING):
        splits, report = _parse(raw)

    counts = report["non_finite"]
    assert counts["train"]["audio"] == {"nan": 1, "posinf": 0, "neginf": 4, "samples_affected": 2}
    assert counts["test"]["text"] == {"nan": 0, "posinf": 1, "neginf": 0, "samples_affected": 1}
    assert counts["validation"]["visual"] == {
        "nan": 0,
        "posinf": 1,
        "neginf": 0,
        "samples_affected": 1,
    }
    assert counts["train"]["text"] == {"nan": 0, "posinf": 0, "neginf": 0, "samples_affected": 0}
    assert "replaced 5 non-finite values by 0 (NaN 1, +inf 0, -inf 4) in 2 samples" in caplog.text
    audio = splits["train"].features["audio"]
    assert np.isfinite(audio).all()
    assert audio[0, 0, 0] == 0 and (audio[1, 2, :3] == 0).all() and audio[1, 3, 1] == 0
    np.testing.assert_array_equal(audio[0, 1], original["train"]["src-audio"][0, 1])
    # The caller's arrays are untouched.
    np.testing.assert_array_equal(raw["train"]["src-audio"], original["train"]["src-audio"])
    assert np.isneginf(raw["train"]["src-audio"][0, 0, 0])

    source = tmp_path / "dirty.pt"
    torch.save(original, source)
    result = mosei.convert_mosei(source, feature_dims=SMALL_MOSEI_DIMS)
    saved = save_prepared(result.dataset_dict, tmp_path / "saved")
    written = json.loads((saved / CLEANING_REPORT_FILENAME).read_text())
    assert written["non_finite"]["train"]["audio"]["neginf"] == 4
    assert load_metadata(saved)["report"]["non_finite"] == written["non_finite"]
    stored = load_prepared(saved)["train"].with_format("numpy")["audio"]
    assert np.isfinite(stored).all()


def test_non_finite_values_in_variable_length_samples(tmp_path):
    raw = _raw_source()
    audio = [sample.copy() for sample in raw["train"]["src-audio"]]
    audio[3][1, 1] = np.nan
    raw["train"]["src-audio"] = audio
    splits, report = _parse(raw)
    assert report["non_finite"]["train"]["audio"] == {
        "nan": 1,
        "posinf": 0,
        "neginf": 0,
        "samples_affected": 1,
    }
    assert splits["train"].features["audio"][3][1, 1] == 0
    assert splits["train"].features["audio"][2] is audio[2]  # clean samples are not copied
    assert np.isnan(audio[3][1, 1])


# --------------------------------------------------------------------------------------------------
# Saving, Hub layout, round trips
# --------------------------------------------------------------------------------------------------


def _assert_same_dataset(left: datasets.DatasetDict, right: datasets.DatasetDict) -> None:
    assert list(left) == list(right)
    for split in left:
        assert left[split].features == right[split].features
        a, b = left[split].with_format("numpy")[:], right[split].with_format("numpy")[:]
        assert list(a["id"]) == list(b["id"])
        for column in (*MODALITIES, "labels"):
            for x, y in zip(a[column], b[column], strict=True):
                np.testing.assert_array_equal(x, y)


@pytest.fixture()
def converted_unaligned(tmp_path):
    kwargs = {**SMALL, "audio_length": (2, 9)}
    source = write_source(tmp_path / "unaligned.pkl", "mmsa_pkl", **kwargs)
    return mosei.convert_mosei(source, "unaligned", feature_dims=SMALL_MOSEI_DIMS)


def test_save_to_disk_round_trip(tmp_path, converted_unaligned):
    dataset_dict = converted_unaligned.dataset_dict
    saved = save_prepared(dataset_dict, tmp_path / "saved")
    loaded = load_prepared(saved)
    _assert_same_dataset(dataset_dict, loaded)
    assert metadata_from_dataset(loaded) == metadata_from_dataset(dataset_dict)
    assert load_label_names(saved) == list(MOSEI_LABELS.label_names)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_hub_layout_round_trip_and_configs(tmp_path, converted_unaligned):
    hub = tmp_path / "hub"
    aligned_source = write_source(tmp_path / "aligned.pt", "tailor_pt", **SMALL)
    aligned = mosei.convert_mosei(
        aligned_source, "aligned", feature_dims=SMALL_MOSEI_DIMS
    ).dataset_dict
    write_hub_layout(aligned, hub, "aligned", card_description="Aligned test configuration.")
    write_hub_layout(converted_unaligned.dataset_dict, hub, "unaligned")

    assert sorted(p.name for p in (hub / "aligned").iterdir()) == [
        "cleaning_report.json",
        "dataset_metadata.json",
        "test-00000-of-00001.parquet",
        "train-00000-of-00001.parquet",
        "validation-00000-of-00001.parquet",
    ]
    readme = (hub / "README.md").read_text()
    assert "config_name: aligned" in readme and "config_name: unaligned" in readme
    assert "path: unaligned/train-*" in readme
    assert readme.count("default: true") == 1
    assert "Aligned test configuration." in readme

    _assert_same_dataset(aligned, load_prepared(hub))  # the default configuration
    loaded = load_prepared(hub, "unaligned")
    _assert_same_dataset(converted_unaligned.dataset_dict, loaded)
    assert metadata_from_dataset(loaded)["config_name"] == "unaligned"
    assert load_label_names(hub, "unaligned") == list(MOSEI_LABELS.label_names)
    _assert_same_dataset(aligned, datasets.load_dataset(str(hub), "aligned"))
    parquet = datasets.load_dataset(
        "parquet",
        data_files={s: str(hub / "unaligned" / f"{s}-00000-of-00001.parquet") for s in SPLITS},
    )
    _assert_same_dataset(converted_unaligned.dataset_dict, parquet)

    # Rewriting one configuration keeps the other, and needs overwrite.
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_hub_layout(aligned, hub, "aligned")
    write_hub_layout(aligned, hub, "aligned", overwrite=True)
    readme = (hub / "README.md").read_text()
    assert readme.count("config_name:") == 2 and readme.count("## Configuration `aligned`") == 1


def test_hub_layout_shards_large_splits(tmp_path, converted_unaligned):
    write_hub_layout(
        converted_unaligned.dataset_dict, tmp_path / "hub", "unaligned", max_shard_bytes=2000
    )
    shards = sorted(p.name for p in (tmp_path / "hub" / "unaligned").glob("train-*.parquet"))
    assert len(shards) > 1 and shards[0].endswith(f"-of-{len(shards):05d}.parquet")
    _assert_same_dataset(converted_unaligned.dataset_dict, load_prepared(tmp_path / "hub"))


def test_existing_output_is_refused_unless_overwrite(tmp_path, converted_unaligned):
    dataset_dict = converted_unaligned.dataset_dict
    target = tmp_path / "saved"
    save_prepared(dataset_dict, target)
    with pytest.raises(FileExistsError, match="saved exists; pass overwrite=True"):
        save_prepared(dataset_dict, target)
    save_prepared(dataset_dict.filter(lambda row: row["id"].endswith("0")), target, overwrite=True)
    assert load_prepared(target)["train"].num_rows == 2


def test_failed_write_leaves_target_untouched(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "old.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        # The caller declares `out` its own: a folder nobody declares is never replaced.
        with atomic_output_dir(
            target, overwrite=True, manifest=False, recognised=lambda folder: True
        ) as temporary:
            (temporary / "new.txt").write_text("new")
            raise RuntimeError("boom")
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    assert [p.name for p in target.iterdir()] == ["old.txt"]


def test_push_to_hub_uploads_the_layout(tmp_path, converted_unaligned):
    from huggingface_hub import HfApi

    hub = write_hub_layout(converted_unaligned.dataset_dict, tmp_path / "hub", "unaligned")
    with (
        mock.patch.object(HfApi, "create_repo") as create_repo,
        mock.patch.object(HfApi, "upload_folder", return_value="https://hub/commit/1") as upload,
    ):
        url = push_hub_layout(hub, "user/mosei-lddu", "unaligned", private=True)
    assert url == "https://hub/commit/1"
    create_repo.assert_called_once_with(
        "user/mosei-lddu", repo_type="dataset", private=True, exist_ok=True
    )
    kwargs = upload.call_args.kwargs
    assert kwargs["repo_id"] == "user/mosei-lddu" and kwargs["repo_type"] == "dataset"
    assert kwargs["folder_path"] == str(hub)
    assert kwargs["allow_patterns"] == ["unaligned/*", "README.md"]


# --------------------------------------------------------------------------------------------------
# Command lines
# --------------------------------------------------------------------------------------------------


def test_mosei_cli_writes_dataset_and_hub_layout(tmp_path, capsys):
    source = write_source(tmp_path / "aligned.pkl", "mmsa_pkl", **SMALL)
    argv = ["--source", str(source), "--output", str(tmp_path / "out")]
    argv += ["--hub_layout", str(tmp_path / "hub")]
    argv += ["--feature_dims", "audio=7,visual=5", "--log_level", "WARNING"]
    assert mosei.main(argv) == 0
    summary = capsys.readouterr().out
    assert "mosei (aligned)" in summary and "train" in summary
    assert load_prepared(tmp_path / "out")["test"].num_rows == 5
    assert load_prepared(tmp_path / "hub", "aligned")["train"].num_rows == 12

    with pytest.raises(SystemExit) as exit_info:
        mosei.main(argv)
    assert exit_info.value.code == 2
    assert "exists; pass --overwrite to replace it" in capsys.readouterr().err
    assert mosei.main([*argv, "--overwrite"]) == 0


def test_m3ed_cli_push_to_hub_is_mocked(tmp_path):
    source = write_source(tmp_path / "m3ed.pt", "carat_m3ed_pt", **SMALL_M3ED)
    argv = ["--source", str(source), "--output", str(tmp_path / "out"), "--push_to_hub", "me/m3ed"]
    argv += ["--feature_dims", "text=12,audio=10,visual=6", "--log_level", "WARNING"]
    with mock.patch("dataset_scripts.saving.push_hub_layout", return_value="url") as push:
        assert m3ed.main(argv) == 0
    assert push.call_args.args[1:] == ("me/m3ed", "default")


@pytest.mark.parametrize("module", ["mosei", "m3ed"])
def test_cli_help_explains_the_source_format(module, capsys):
    with pytest.raises(SystemExit):
        {"mosei": mosei, "m3ed": m3ed}[module].main(["--help"])
    text = capsys.readouterr().out
    assert "expected source format" in text and "tgt" in text and "weights_only=True" in text


# --------------------------------------------------------------------------------------------------
# Loader
# --------------------------------------------------------------------------------------------------


def test_in_memory_dataset_yields_model_ready_batches(converted_unaligned):
    split = converted_unaligned.dataset_dict["train"]
    dataset = InMemoryMultimodalDataset(split, plain_feature_extractor(split))
    assert len(dataset) == 12 and dataset.label_names == list(MOSEI_LABELS.label_names)
    loader = torch.utils.data.DataLoader(
        dataset,
        batch_size=5,
        shuffle=True,
        collate_fn=MultimodalDataCollator(),
        generator=torch.Generator().manual_seed(0),
    )
    audio_lengths = [len(sample) for sample in split.with_format("numpy")["audio"]]
    seen = 0
    for batch in loader:
        assert list(batch) == [*MODEL_INPUT_NAMES, "labels"]
        assert batch["text_features"].dtype == torch.float32
        assert batch["text_mask"].dtype == torch.int64
        assert batch["text_features"].shape[1:] == (6, 12) and bool(batch["text_mask"].all())
        lengths = batch["audio_mask"].sum(dim=1)
        # Trimmed to the longest audio sequence of the batch.
        assert batch["audio_features"].shape[1] == int(lengths.max())
        assert (batch["audio_features"][batch["audio_mask"] == 0] == 0).all()
        assert batch["labels"].dtype == torch.float32 and batch["labels"].shape[1] == 6
        seen += len(batch["labels"])
    assert seen == 12
    assert sorted(int(dataset[i]["audio_mask"].sum()) for i in range(12)) == sorted(audio_lengths)


def test_collator_list_path_matches_batched_path(converted_unaligned):
    split = converted_unaligned.dataset_dict["validation"]
    dataset = InMemoryMultimodalDataset(split, plain_feature_extractor(split))
    collator = MultimodalDataCollator()
    from_list = collator([dataset[i] for i in (3, 0, 2)])
    batched = collator(dataset.__getitems__([3, 0, 2]))
    assert list(from_list) == list(batched)
    for key in batched:
        torch.testing.assert_close(from_list[key], batched[key])


def test_in_memory_dataset_uses_the_feature_extractor(converted_unaligned):
    from modeling_lddu.feature_extraction_lddu import LDDUFeatureExtractor

    split = converted_unaligned.dataset_dict["train"]
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": 12, "audio": 7, "visual": 5},
        max_lengths={"text": 4, "audio": 5, "visual": 6},
        padding_side="left",
    )
    extractor.fit_normalization(split)
    extractor.do_normalize = True
    dataset = InMemoryMultimodalDataset(split, extractor, padding="max_length")
    batch = dataset.__getitems__([0, 1, 2])
    assert batch["text_features"].shape == (3, 4, 12) and batch["audio_features"].shape == (3, 5, 7)
    audio = split.with_format("numpy")["audio"][1]
    expected = extractor(audio=audio[:5], return_tensors="pt")
    torch.testing.assert_close(batch["audio_features"][1], expected["audio_features"][0])
    torch.testing.assert_close(batch["audio_mask"][1], expected["audio_mask"][0])
    mask = batch["audio_mask"][1]
    assert mask[-1] == 1 and (mask == 1).sum() == min(len(audio), 5)  # left padding


def test_loader_batches_go_straight_into_the_model(tmp_path):
    dataset_dict = make_synthetic_dataset(
        num_train=16,
        num_validation=4,
        num_test=4,
        text_dim=12,
        audio_dim=7,
        visual_dim=5,
        text_length=8,
        audio_length=(3, 8),
        visual_length=8,
    )
    save_prepared(dataset_dict, tmp_path / "saved")
    train_split = load_prepared(tmp_path / "saved")["train"]
    train = InMemoryMultimodalDataset(train_split, plain_feature_extractor(train_split))
    model = LDDUForEmotionRecognition(tiny_config(text_dim=12, audio_dim=7, visual_dim=5))
    loader = torch.utils.data.DataLoader(
        train, batch_size=8, shuffle=True, collate_fn=MultimodalDataCollator()
    )
    batch = next(iter(loader))
    model.train()
    outputs = model(**batch)
    assert outputs.scores.shape == (8, 6)
    assert torch.isfinite(outputs.loss)
    outputs.loss.backward()
    model.eval()
    with torch.no_grad():
        evaluation = model(**{key: value for key, value in batch.items() if key != "labels"})
    assert evaluation.scores.shape == (8, 6) and bool(torch.isfinite(evaluation.scores).all())


def test_loading_benchmark_smoke(tmp_path):
    output = tmp_path / "bench.json"
    command = [sys.executable, str(REPO_ROOT / "benchmarks" / "bench_loading.py")]
    command += "--num_samples 256 --text_dim 16 --epochs 2 --arrow_batches 2".split()
    command += ["--output", str(output)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert completed.returncode == 0, completed.stderr[-2000:]
    assert "median epoch, samples/s" in completed.stdout and "command: " in completed.stdout
    results = json.loads(output.read_text())
    assert results["num_samples"] == 256 and len(results["epoch_samples_per_second"]) == 2


def test_build_dataset_dict_with_a_subset_of_modalities():
    rng = np.random.default_rng(0)

    def split(n, modalities):
        return SplitArrays(
            ids=[f"s{i}" for i in range(n)],
            features={
                m: [rng.standard_normal((3 + i % 2, 4)).astype(np.float32) for i in range(n)]
                for m in modalities
            },
            labels=(rng.random((n, 2)) < 0.5).astype(np.float32),
        )

    dataset_dict = build_dataset_dict(
        {"train": split(5, ["text", "visual"]), "test": split(3, ["text", "visual"])},
        ["a", "b"],
        "toy",
        "default",
    )
    assert dataset_dict["train"].column_names == ["id", "text", "visual", "labels"]
    metadata = metadata_from_dataset(dataset_dict)
    assert metadata["modalities"] == ["text", "visual"]
    assert set(metadata["feature_dims"]) == {"text", "visual"}
    assert np.asarray(dataset_dict["test"][1]["visual"]).shape == (4, 4)

    with pytest.raises(ValueError, match="split 'test' has \\['text'\\]"):
        build_dataset_dict(
            {"train": split(2, ["text", "visual"]), "test": split(2, ["text"])},
            ["a", "b"],
            "toy",
            "default",
        )


def test_single_label_problem_type_is_stored_and_checked():
    from dataset_scripts.building import SINGLE_LABEL
    from dataset_scripts.loading import split_problem_type

    rng = np.random.default_rng(0)
    one_hot = np.eye(3, dtype=np.float32)[[0, 2, 1, 2]]
    arrays = SplitArrays(
        ids=[f"u{index}" for index in range(4)],
        features={"text": rng.standard_normal((4, 5, 8)).astype(np.float32)},
        labels=one_hot,
    )
    built = build_dataset_dict(
        {"train": arrays}, ["a", "b", "c"], "toy", "default", problem_type=SINGLE_LABEL
    )
    assert metadata_from_dataset(built)["problem_type"] == SINGLE_LABEL
    assert split_problem_type(built["train"]) == SINGLE_LABEL

    two_labels = one_hot.copy()
    two_labels[3, 0] = 1.0
    arrays = SplitArrays(ids=arrays.ids, features=arrays.features, labels=two_labels)
    with pytest.raises(ValueError, match="exactly one label per sample.*'u3' has 2"):
        build_dataset_dict(
            {"train": arrays}, ["a", "b", "c"], "toy", "default", problem_type=SINGLE_LABEL
        )
    multi = build_dataset_dict({"train": arrays}, ["a", "b", "c"], "toy", "default")
    assert split_problem_type(multi["train"]) == "multi_label_classification"
    with pytest.raises(ValueError, match="problem_type must be one of"):
        build_dataset_dict(
            {"train": arrays}, ["a", "b", "c"], "toy", "default", problem_type="regression"
        )
