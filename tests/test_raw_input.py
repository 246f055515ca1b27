"""Raw input end to end: a raw-media dataset built from generated sentences and WAV clips, a tiny
LDDU trained on it through train.py, and the model folder that then takes sentences and waveforms
(pipeline in a fresh Python without the package, the endpoint handler, the widget examples)."""

from __future__ import annotations

import json
import shutil
import sys

import numpy as np
import pytest
from transformers import AutoProcessor, pipeline

from dataset_scripts import raw_media
from dataset_scripts.loading import load_prepared
from mmer.export import EXAMPLE_SENTENCES

from .conftest import REPO_ROOT, run_without_the_package
from .test_processor import tone
from .test_train import TINY_MODEL, _load_handler

soundfile = pytest.importorskip("soundfile")
sys.path.insert(0, str(REPO_ROOT))
import train  # noqa: E402

RATE = 16000
SENTENCES = {
    "joy": ["I love this!", "What a wonderful day.", "This makes me so happy.", "Great news!"],
    "anger": ["I hate this.", "This is outrageous!", "Stop doing that.", "How dare you."],
}
SPLITS = ["train", "train", "validation", "test"]  # per sentence position; two labels each
MAX_TOKENS = 8
TEST_SENTENCES = ["Great news!", "How dare you.", "I am furious."]  # the test split's, in order


def _write_index(folder):
    (folder / "clips").mkdir(parents=True)
    lines = ["id,text,audio,labels,split"]
    for label, texts in SENTENCES.items():
        for position, text in enumerate(texts):
            key = f"{label}{position}"
            frequency = 400.0 if label == "joy" else 2500.0
            soundfile.write(folder / "clips" / f"{key}.wav", tone(0.4, frequency), RATE)
            lines.append(f'{key},"{text}",clips/{key}.wav,{label},{SPLITS[position]}')
    # A second train sample per label, so that each split has both labels.
    lines += [
        'joy9,"Lovely, thank you.",clips/joy0.wav,joy,train',
        'anger9,"You ruined everything.",clips/anger0.wav,anger,train',
        'joy8,"So glad to see you.",clips/joy1.wav,joy,validation',
        'anger8,"I am furious.",clips/anger1.wav,anger,test',
    ]
    (folder / "index.csv").write_text("\n".join(lines) + "\n")
    return folder / "index.csv"


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory, minilm_folder):
    root = tmp_path_factory.mktemp("raw")
    index = _write_index(root / "media")
    settings = raw_media.make_settings(
        ["text", "audio"], str(minilm_folder), num_mel_bins=16, text_max_tokens=MAX_TOKENS
    )
    result, settings = raw_media.build(index, settings=settings)
    return raw_media.save(result, settings, root / "data")


def _train(data_dir, output_dir, *options):
    train.main(
        [
            "--output_dir", str(output_dir),
            "--dataset", "raw-media",
            "--data_dir", str(data_dir),
            "--model_type", "lddu",
            "--config_overrides", json.dumps(TINY_MODEL),
            "--num_train_epochs", "1",
            "--per_device_train_batch_size", "4",
            "--per_device_eval_batch_size", "8",
            "--disable_tqdm", "true",
            "--use_cpu", "true",
            *options,
        ]
    )  # fmt: skip
    return json.loads((output_dir / "all_results.json").read_text())


@pytest.fixture(scope="module")
def trained(data_dir):
    """A model folder whose trainer chose to publish the test samples' raw inputs."""
    output_dir = data_dir.parent / "model"
    results = _train(data_dir, output_dir, "--publish_raw_examples", "true")
    return output_dir, data_dir, results


def test_the_folder_ships_the_processor_and_raw_widget_examples(trained, minilm_folder):
    folder, _, results = trained
    for name in ("processor_config.json", "processing_lddu.py", "preprocessor_config.json"):
        assert (folder / name).is_file(), name
    saved = json.loads((folder / "processor_config.json").read_text())
    assert saved["auto_map"]["AutoProcessor"] == "processing_lddu.LDDUProcessor"
    # The encoder was a local folder: the model folder ships it and names no path of this machine.
    assert saved["text_encoder_subfolder"] == "text_encoder"
    assert saved["text_encoder_name_or_path"] is None
    assert (folder / "text_encoder" / "model.safetensors").is_file()
    for name in ("processor_config.json", "README.md", "config.json"):
        assert str(minilm_folder) not in (folder / name).read_text(), name
    assert saved["text_max_tokens"] == MAX_TOKENS and saved["num_mel_bins"] == 16
    # The fitted feature extractor (lengths, normalisation) is the one the pipeline uses.
    extractor = json.loads((folder / "preprocessor_config.json").read_text())
    for key in ("max_lengths", "normalization_stats", "do_normalize"):
        assert saved["feature_extractor"][key] == extractor[key], key
    examples = results["widget_examples"]
    assert [example["text"] for example in examples] == TEST_SENTENCES
    for example in examples:
        assert example["src"].startswith("examples/") and example["src"].endswith(".wav")
        assert (folder / example["src"]).is_file()
    card = (folder / "README.md").read_text()
    assert "Input is raw text and audio" in card
    assert "text encoder in this repository's `text_encoder/`" in card
    assert 'classifier("I can\'t believe you did that")' in card
    assert "the first samples of the test split as they were recorded" in card
    assert "published at the trainer's request" in card


def test_without_the_opt_in_no_raw_input_of_the_data_is_published(data_dir, tmp_path):
    """The default: the widget shows the package's example sentences, with the model's outputs
    on them; no test sentence or clip (the trainer's data) is in the folder or its card."""
    folder = tmp_path / "model"
    results = _train(data_dir, folder)
    examples = results["widget_examples"]
    assert [example["text"] for example in examples] == list(EXAMPLE_SENTENCES)
    assert all("src" not in example for example in examples)
    assert not (folder / "examples").exists()
    texts = [
        path.read_text()
        for path in folder.rglob("*")
        if path.suffix in (".json", ".md", ".txt") and "text_encoder" not in path.parts
    ]
    for sentence in TEST_SENTENCES:
        assert not any(sentence in text for text in texts), sentence
    card = (folder / "README.md").read_text()
    assert "sentences written by the package that trained this model" in card
    recognizer = pipeline(
        "multimodal-emotion-recognition", model=str(folder), trust_remote_code=True
    )
    for example in examples:
        output = recognizer(example["text"])
        recorded = [[entry["label"], entry["score"]] for entry in example["output"]]
        assert [[entry["label"], round(entry["score"], 4)] for entry in output] == recorded


def test_a_fresh_python_answers_a_sentence_and_a_waveform(trained, tmp_path):
    folder, _, results = trained
    example = results["widget_examples"][0]
    np.save(tmp_path / "wave.npy", tone(0.5, 400.0))
    script = f"""
        import json
        import numpy as np
        from transformers import pipeline
        recognizer = pipeline(
            "multimodal-emotion-recognition", model={str(folder)!r}, trust_remote_code=True
        )
        print("PROCESSOR", type(recognizer.processor).__name__)
        text = recognizer("I love this!")
        print("TEXT", json.dumps(sorted(entry["label"] for entry in text)))
        wave = np.load({str(tmp_path / "wave.npy")!r}).tolist()
        audio = recognizer({{"audio": wave}}, sampling_rate=16000)
        print("AUDIO", json.dumps([round(entry["score"], 6) for entry in audio]))
        both = recognizer({{"text": {example["text"]!r}, "audio": {str(folder / example["src"])!r}}})
        print("EXAMPLE", json.dumps([[e["label"], round(e["score"], 4)] for e in both]))
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["PROCESSOR"] == "LDDUProcessor"
    assert json.loads(lines["TEXT"]) == ["anger", "joy"]
    scores = json.loads(lines["AUDIO"])
    assert len(scores) == 2 and all(0.0 < score < 1.0 for score in scores)
    recorded = [[entry["label"], entry["score"]] for entry in example["output"]]
    assert json.loads(lines["EXAMPLE"]) == recorded


def test_the_processor_round_trip_gives_the_training_frames(trained):
    folder, data_dir, _ = trained
    processor = AutoProcessor.from_pretrained(folder, trust_remote_code=True)
    test = load_prepared(data_dir)["test"].with_format("numpy")
    text_frames = processor.encode_text(list(test["raw_text"]))
    audio_frames = processor.encode_audio(
        [str(data_dir.parent / "media" / p) for p in test["raw_audio"]]
    )
    for row in range(test.num_rows):
        np.testing.assert_allclose(text_frames[row], test[row]["text"], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(audio_frames[row], test[row]["audio"])


def test_a_cut_text_is_reported_and_raw_input_needs_a_processor(trained, tmp_path):
    folder, _, _ = trained
    recognizer = pipeline(
        "multimodal-emotion-recognition", model=str(folder), trust_remote_code=True
    )
    long_text = "this sentence has many more words than the processor keeps"
    entries = recognizer(long_text)
    record = entries[0]["preprocessing"][0]
    assert record["input"] == "text" and record["encoded_tokens"] == MAX_TOKENS
    assert record["input_tokens"] > MAX_TOKENS
    assert "preprocessing" not in recognizer("Great news!")[0]
    with pytest.raises(ValueError, match="sampling_rate must be a positive integer"):
        recognizer({"audio": tone().tolist()}, sampling_rate=0)
    with pytest.raises(ValueError, match="dtype int"):
        recognizer({"audio": [0, 1, 2] * 400})

    bare = tmp_path / "bare"
    shutil.copytree(folder, bare)
    (bare / "processor_config.json").unlink()
    plain = pipeline("multimodal-emotion-recognition", model=str(bare), trust_remote_code=True)
    assert plain.processor is None
    with pytest.raises(
        ValueError, match=r"Raw text was given, but this model folder has no processor"
    ):
        plain("I love this!")


def test_the_handler_takes_raw_requests_within_its_limits(trained):
    folder, _, results = trained
    handler = _load_handler(folder)
    request = {"text": "I love this!", "audio": tone(0.5, 400.0).tolist()}
    response = handler({"inputs": request, "parameters": {"sampling_rate": 16000, "top_k": 1}})
    assert isinstance(response, list) and len(response) == 1, response
    clip = results["widget_examples"][0]["src"]
    assert isinstance(handler({"inputs": {"audio": clip}}), list)
    long_audio = handler(
        {"inputs": {"audio": [0.0] * (61 * RATE)}, "parameters": {"sampling_rate": RATE}}
    )
    assert long_audio["status"] == 413 and "61.0 s" in long_audio["error"]
    # A waveform without its rate is refused: the server never assumes one.
    no_rate = handler({"inputs": {"audio": tone(0.5, 400.0).tolist()}})
    assert no_rate["status"] == 400 and "parameters.sampling_rate" in no_rate["error"]
    long_text = handler({"inputs": {"text": "a" * 10001}})
    assert long_text["status"] == 413
    outside = handler({"inputs": {"audio": "../data/processor_settings.json"}})
    assert outside["status"] == 400 and "not inside the model folder" in outside["error"]
    assert handler({"inputs": {"audio": "/etc/hostname"}})["status"] == 400
    empty = handler({"inputs": {"text": " "}})
    assert empty["status"] == 400 and "empty" in empty["error"]


def test_a_model_without_raw_text_shows_no_examples_unless_they_are_published(tmp_path):
    """Audio only: no package sentence fits, and the recordings (or their features) are the
    trainer's, so the default folder shows none and its card says so."""
    from types import SimpleNamespace

    from mmer.export import _widget_examples

    processor = SimpleNamespace(text_encoder_name_or_path=None, text_encoder_subfolder=None)
    recognizer = SimpleNamespace(
        processor=processor, feature_extractor=SimpleNamespace(feature_dims={"audio": 16})
    )
    assert _widget_examples(tmp_path, recognizer, [{}], ["joy"], None) == ([], "withheld")
    assert not (tmp_path / "examples").exists()


def test_publishing_raw_examples_of_data_without_raw_inputs_is_reported(caplog):
    arguments = train.DataArguments(dataset="synthetic", publish_raw_examples=True)
    with caplog.at_level("WARNING", logger="train"):
        assert train._raw_input_data(arguments, None) == (None, None)
    assert "--publish_raw_examples: the data keeps no raw inputs" in caplog.text


def test_the_export_refuses_a_shipped_encoder_that_computes_other_frames(tmp_path):
    from mmer.export import _check_shipped_text_encoder
    from mmer.family import ModelFamily

    from .conftest import write_tiny_bert
    from .test_processor import tiny_bert_processor

    processor = tiny_bert_processor(str(write_tiny_bert(tmp_path / "enc")))
    processor.save_pretrained(tmp_path / "folder")
    family = ModelFamily.from_model_type("lddu")
    assert _check_shipped_text_encoder(tmp_path / "folder", family, processor) == "text_encoder"
    write_tiny_bert(tmp_path / "folder" / "text_encoder", seed=1)  # not the encoder's weights
    with pytest.raises(RuntimeError, match="computes other frames than the original"):
        _check_shipped_text_encoder(tmp_path / "folder", family, processor)
