"""The raw-media dataset builder: an index of sentences and audio files, through the processor."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from dataset_scripts import raw_media
from dataset_scripts.building import SINGLE_LABEL, metadata_from_dataset
from dataset_scripts.loading import load_prepared
from dataset_scripts.raw_features import PROCESSOR_SETTINGS_FILE, read_processor_settings
from modeling_lddu import LDDUFeatureExtractor, LDDUProcessor

from .test_processor import tone

soundfile = pytest.importorskip("soundfile")

RATE = 16000
ROWS = [
    ("a", "I love this!", "clips/a.wav", "joy", "train"),
    ("b", "This is awful.", "clips/b.wav", "anger;disgust", "train"),
    ("c", "Oh, really?", "clips/c.wav", "surprise", "validation"),
    ("d", "I miss her.", "clips/d.wav", "sadness", "test"),
]


def write_index(folder, rows=ROWS, kind="csv"):
    (folder / "clips").mkdir(parents=True, exist_ok=True)
    for index, (_, _, audio, _, _) in enumerate(ROWS):  # the clips of ROWS, whatever `rows` names
        soundfile.write(folder / audio, tone(0.3 + 0.1 * index, 300.0 * (index + 1)), RATE)
    names = ("id", "text", "audio", "labels", "split")
    if kind == "csv":
        lines = [",".join(names)] + [",".join(f'"{cell}"' for cell in row) for row in rows]
        (folder / "index.csv").write_text("\n".join(lines) + "\n")
        return folder / "index.csv"
    text = "\n".join(json.dumps(dict(zip(names, row))) for row in rows)
    (folder / "index.jsonl").write_text(text + "\n")
    return folder / "index.jsonl"


@pytest.fixture
def settings(minilm_folder):
    return raw_media.make_settings(["text", "audio"], str(minilm_folder), num_mel_bins=16)


def processor_of(settings) -> LDDUProcessor:
    """The model-side processor of these settings (what train.py puts into a model folder)."""
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": 384, "audio": settings.num_mel_bins},
        max_lengths={"text": None, "audio": None},
    )
    return LDDUProcessor(extractor, **settings.to_dict())


@pytest.mark.parametrize("kind", ["csv", "jsonl"])
def test_the_dataset_holds_the_processors_frames_and_the_labels(tmp_path, settings, kind):
    index = write_index(tmp_path, kind=kind)
    result, settings = raw_media.build(index, settings=settings)
    processor = processor_of(settings)
    data = result.dataset_dict
    assert list(data) == ["train", "validation", "test"]
    metadata = metadata_from_dataset(data)
    assert metadata["label_names"] == ["anger", "disgust", "joy", "sadness", "surprise"]
    assert metadata["feature_dims"] == {"text": 384, "audio": 16}
    train = data["train"].with_format("numpy")
    assert train["labels"][1].tolist() == [1, 1, 0, 0, 0]
    # Identical to what the processor gives at inference for the same inputs.
    expected = processor(
        text="This is awful.", audio=str(tmp_path / "clips/b.wav"), padding="longest"
    )
    np.testing.assert_array_equal(train[1]["text"], expected["text_features"][0].numpy())
    np.testing.assert_array_equal(train[1]["audio"], expected["audio_features"][0].numpy())
    # The raw inputs ride along, and the metadata survives the added columns.
    assert data["train"]["raw_text"] == ["I love this!", "This is awful."]
    assert data["test"]["raw_audio"] == ["clips/d.wav"]
    assert result.report["audio_root"] == str(tmp_path.resolve())


def test_save_writes_the_settings_beside_the_dataset(tmp_path, settings):
    index = write_index(tmp_path / "source")
    result, settings = raw_media.build(index, settings=settings)
    output = raw_media.save(result, settings, tmp_path / "out")
    loaded = load_prepared(output)
    assert loaded["test"].num_rows == 1
    again = read_processor_settings(output)
    assert again == settings and (output / PROCESSOR_SETTINGS_FILE).is_file()
    features = processor_of(again)(text="I miss her.", padding="longest")["text_features"][0]
    np.testing.assert_array_equal(loaded["test"].with_format("numpy")[0]["text"], features.numpy())
    with pytest.raises(FileExistsError):
        raw_media.save(result, settings, output)


def test_the_command_line_builds_a_single_label_text_dataset(tmp_path, minilm_folder, monkeypatch):
    # `packaged-minilm` would unpack into the user's Hub cache: the test's copy stands in for it.
    resolved = []
    monkeypatch.setattr(
        raw_media,
        "resolve_text_encoder",
        lambda name, revision=None: resolved.append(name) or (str(minilm_folder), None),
    )
    index = tmp_path / "index.csv"
    lines = ["id,text,labels,split"]
    lines += [f'{key},"{text}",{labels},{split}' for key, text, _, labels, split in ROWS]
    index.write_text("\n".join(lines) + "\n")
    code = raw_media.main(
        ["--index", str(index), "--output", str(tmp_path / "out"), "--single_label"]
    )
    assert code == 1  # "anger;disgust" is two labels
    single = [row for row in lines if "anger;disgust" not in row]
    index.write_text("\n".join(single) + "\n")
    assert (
        raw_media.main(["--index", str(index), "--output", str(tmp_path / "out"), "--single_label"])
        == 0
    )
    loaded = load_prepared(tmp_path / "out")
    assert metadata_from_dataset(loaded)["problem_type"] == SINGLE_LABEL
    assert loaded.column_names["train"] == ["id", "text", "labels", "raw_text"]
    assert resolved[-1] == "packaged-minilm"


@pytest.mark.parametrize(
    ("audio", "message"),
    [
        ("../outside.wav", "leads outside the index's folder"),
        ("/etc/passwd", "is absolute"),
        ("clips/missing.wav", "does not exist"),
        ("", "audio path is empty"),
    ],
)
def test_bad_audio_paths_are_refused(tmp_path, audio, message):
    rows = [*ROWS[:1], ("x", "hi", audio, "joy", "train")]
    index = write_index(tmp_path / "source", rows)
    (tmp_path / "outside.wav").write_bytes(b"")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        raw_media.read_index(index)


def test_index_errors_name_the_row(tmp_path):
    bad_split = write_index(tmp_path / "one", [*ROWS[:1], ("x", "hi", "clips/a.wav", "joy", "dev")])
    with pytest.raises(ValueError, match=r"line 3: split 'dev'"):
        raw_media.read_index(bad_split)
    empty_text = write_index(
        tmp_path / "two", [*ROWS[:1], ("x", " ", "clips/a.wav", "joy", "test")]
    )
    with pytest.raises(ValueError, match=r"line 3: the text is empty"):
        raw_media.read_index(empty_text)
    duplicate = write_index(tmp_path / "three", [*ROWS[:1], ROWS[0]])
    with pytest.raises(ValueError, match="appears twice"):
        raw_media.read_index(duplicate)


def test_labels_outside_the_given_set_are_refused(tmp_path, settings):
    index = write_index(tmp_path)
    with pytest.raises(ValueError, match=r"outside \['joy'\]"):
        raw_media.build(index, settings=settings, label_names=["joy"])
    assert torch.is_tensor(processor_of(settings)(text="ok")["text_features"])
