"""The processor: raw text (through the packaged all-MiniLM-L6-v2), waveforms, audio files and
pre-extracted frames into model inputs; its errors; save/load; a fresh-process AutoProcessor load
that names the encoder by Hub id with a local cache standing in for the Hub."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoProcessor, AutoTokenizer

from dataset_scripts.text_encoders import MINILM_HUB_ID, MINILM_REVISION
from modeling_lddu import LDDUFeatureExtractor, LDDUForEmotionRecognition, LDDUProcessor
from modeling_lddu.processing_lddu import AUDIO_HOP_SECONDS, AUDIO_WINDOW_SECONDS

from .conftest import (
    TINY_BERT_DIM,
    run_without_the_package,
    tiny_config,
    write_tiny_bert,
)

soundfile = pytest.importorskip("soundfile")

RATE = 16000
MEL_BINS = 16
MINILM_DIM = 384
TEXTS = ["I love this!", "What a terrible, terrible day."]


def make_processor(encoder=None, revision=None, **overrides) -> LDDUProcessor:
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": MINILM_DIM, "audio": MEL_BINS, "visual": 7},
        max_lengths={"text": None, "audio": None, "visual": None},
    )
    options = {"num_mel_bins": MEL_BINS, **overrides}
    return LDDUProcessor(
        extractor, text_encoder_name_or_path=encoder, text_encoder_revision=revision, **options
    )


def tone(seconds: float = 0.5, frequency: float = 1000.0, rate: int = RATE) -> np.ndarray:
    time = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * frequency * time)).astype(np.float32)


# --------------------------------------------------------------------------------------------------
# Text
# --------------------------------------------------------------------------------------------------


def test_text_frames_are_the_encoders_last_layer_states_of_the_real_tokens(minilm_folder):
    processor = make_processor(str(minilm_folder))
    output = processor(text=TEXTS, padding="longest")
    tokenizer = AutoTokenizer.from_pretrained(minilm_folder)
    encoder = AutoModel.from_pretrained(minilm_folder).eval()
    for row, text in enumerate(TEXTS):
        ids = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            states = encoder(**ids).last_hidden_state[0, 1:-1]  # without [CLS] and [SEP]
        length = int(output["text_mask"][row].sum())
        assert length == states.shape[0] == len(tokenizer.tokenize(text))
        torch.testing.assert_close(output["text_features"][row, :length], states)
    # Padding frames are zeros and masked out.
    assert output["text_mask"][0, -1] == 0 and output["text_features"][0, -1].abs().sum() == 0


def test_text_layer_and_special_tokens_options(minilm_folder):
    last = make_processor(str(minilm_folder))(text=TEXTS[0])
    embeddings = make_processor(str(minilm_folder), text_encoder_layer=0)(text=TEXTS[0])
    special = make_processor(str(minilm_folder), text_special_tokens=True)(text=TEXTS[0])
    assert embeddings["text_features"].shape == last["text_features"].shape
    assert not torch.allclose(embeddings["text_features"], last["text_features"])
    assert int(special["text_mask"].sum()) == int(last["text_mask"].sum()) + 2
    with pytest.raises(ValueError, match="text_encoder_layer 7 is out of range"):
        make_processor(str(minilm_folder), text_encoder_layer=7)(text=TEXTS[0])


def test_long_texts_are_cut_to_text_max_tokens(minilm_folder):
    output = make_processor(str(minilm_folder), text_max_tokens=6)(text="one two three four five")
    assert int(output["text_mask"].sum()) == 4  # 6 tokens less [CLS] and [SEP]


@pytest.mark.parametrize("empty", ["", "   \n"])
def test_an_empty_text_is_refused_and_none_means_no_text(minilm_folder, empty):
    processor = make_processor(str(minilm_folder))
    with pytest.raises(ValueError, match=r"text 1 is empty .*text=None"):
        processor(text=["fine", empty])
    output = processor(text=None, visual=np.ones((3, 7), np.float32))
    assert "text_features" not in output and output["visual_features"].shape == (1, 3, 7)


def test_text_errors_name_the_problem(minilm_folder):
    with pytest.raises(ValueError, match="no text encoder"):
        make_processor(None)(text="hello")
    with pytest.raises(ValueError, match="text_features="):
        make_processor(str(minilm_folder))(text=np.zeros((3, MINILM_DIM), np.float32))
    extractor = LDDUFeatureExtractor(feature_dims={"text": 300})
    wrong_dim = LDDUProcessor(extractor, text_encoder_name_or_path=str(minilm_folder))
    with pytest.raises(ValueError, match=r"384-d token states .* dim 300"):
        wrong_dim(text="hello")


# --------------------------------------------------------------------------------------------------
# Audio
# --------------------------------------------------------------------------------------------------


def test_audio_frames_rate_dim_and_content():
    processor = make_processor()
    output = processor(audio=[tone(1.0, 1000.0), tone(0.5, 3000.0)], sampling_rate=RATE)
    window, hop = int(AUDIO_WINDOW_SECONDS * RATE), int(AUDIO_HOP_SECONDS * RATE)
    lengths = output["audio_mask"].sum(1).tolist()
    assert lengths == [1 + (RATE - window) // hop, 1 + (RATE // 2 - window) // hop]  # 98, 48
    assert output["audio_features"].shape == (2, 98, MEL_BINS)
    # The loudest mel band follows the tone's frequency.
    loudest = output["audio_features"][:, :40].mean(1).argmax(-1)
    assert loudest[1] > loudest[0]
    assert torch.isfinite(output["audio_features"]).all()


def test_an_audio_file_gives_the_frames_of_its_samples(tmp_path):
    processor = make_processor()
    clip = tone(0.5, 440.0)
    mono, stereo = tmp_path / "mono.wav", tmp_path / "stereo.flac"
    soundfile.write(mono, clip, RATE, subtype="FLOAT")
    soundfile.write(stereo, np.stack([clip, clip], axis=1), RATE, subtype="PCM_24")
    from_array = processor(audio=clip, sampling_rate=RATE)["audio_features"]
    torch.testing.assert_close(processor(audio=str(mono))["audio_features"], from_array)
    # The two channels are averaged (of the 24-bit samples the file holds).
    channels, _ = soundfile.read(stereo, dtype="float32")
    assert not np.array_equal(channels[:, 0], clip)  # quantised
    torch.testing.assert_close(
        processor(audio=[stereo])["audio_features"],
        processor(audio=channels.mean(axis=1), sampling_rate=RATE)["audio_features"],
    )


def test_another_sampling_rate_is_an_error_unless_resampling_is_asked(tmp_path):
    processor = make_processor()
    slow = tone(0.5, 440.0, rate=8000)
    with pytest.raises(ValueError, match="sampled at 8000 Hz .* resample=True"):
        processor(audio=slow, sampling_rate=8000)
    path = tmp_path / "slow.wav"
    soundfile.write(path, slow, 8000)
    with pytest.raises(ValueError, match="sampled at 8000 Hz"):
        processor(audio=path)
    resampled = processor(audio=slow, sampling_rate=8000, resample=True)
    native = processor(audio=tone(0.5, 440.0), sampling_rate=RATE)
    assert resampled["audio_mask"].sum() == native["audio_mask"].sum()
    # Same tone: the same loudest band.
    assert (
        resampled["audio_features"][0, 5:-5].mean(0).argmax()
        == native["audio_features"][0, 5:-5].mean(0).argmax()
    )


def test_audio_errors_name_the_problem(tmp_path):
    processor = make_processor(max_audio_seconds=1.0)
    not_audio = tmp_path / "notes.wav"
    not_audio.write_text("this is not a recording")
    with pytest.raises(ValueError, match="not an audio file soundfile can decode"):
        processor(audio=not_audio)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        processor(audio=tmp_path / "missing.wav")
    with pytest.raises(ValueError, match=r"lasts 2\.0 s, more than max_audio_seconds"):
        processor(audio=tone(2.0), sampling_rate=RATE)
    long_file = tmp_path / "long.wav"
    soundfile.write(long_file, tone(2.0), RATE)
    with pytest.raises(ValueError, match="more than max_audio_seconds"):
        processor(audio=long_file)
    with pytest.raises(ValueError, match="more than max_audio_file_bytes"):
        make_processor(max_audio_file_bytes=100)(audio=long_file)
    with pytest.raises(ValueError, match="dtype int16"):
        processor(audio=(tone() * 32767).astype(np.int16), sampling_rate=RATE)
    with pytest.raises(ValueError, match="audio_features="):
        processor(audio=np.zeros((2, 8000), np.float32), sampling_rate=RATE)
    with pytest.raises(ValueError, match="fewer than one 25 ms"):
        processor(audio=np.zeros(100, np.float32), sampling_rate=RATE)
    with pytest.raises(ValueError, match="non-finite"):
        processor(audio=np.full(1000, np.nan, np.float32), sampling_rate=RATE)
    with pytest.raises(
        ValueError, match=r"peaks at 9830; float waveforms lie in \[-1, 1\] \(int16 PCM divided"
    ):
        processor(audio=(tone() * 32767).astype(np.float32), sampling_rate=RATE)
    many_channels = tmp_path / "many.wav"
    soundfile.write(many_channels, np.zeros((800, 33), np.float32), RATE)
    with pytest.raises(ValueError, match="33 channels; at most 32"):
        processor(audio=many_channels)
    with pytest.raises(ValueError, match=r"80-d log-mel frames .* dim 16"):
        make_processor(num_mel_bins=80)(audio=tone(), sampling_rate=RATE)


def test_a_missing_audio_library_says_how_to_install(monkeypatch, tmp_path):
    path = tmp_path / "clip.wav"
    soundfile.write(path, tone(), RATE)
    monkeypatch.setitem(sys.modules, "soundfile", None)  # makes the import fail
    with pytest.raises(ImportError, match="pip install soundfile"):
        make_processor()(audio=path)


# --------------------------------------------------------------------------------------------------
# Everything together, save/load, the model
# --------------------------------------------------------------------------------------------------


def test_raw_and_pre_extracted_modalities_mix(minilm_folder):
    processor = make_processor(str(minilm_folder))
    visual = [np.ones((3, 7), np.float32), np.ones((2, 7), np.float32)]
    output = processor(text=TEXTS, audio=[tone(), tone(0.3)], sampling_rate=RATE, visual=visual)
    assert output["visual_mask"].sum(1).tolist() == [3, 2]
    frames = np.zeros((2, 5, MEL_BINS), np.float32)
    mixed = processor(text=TEXTS, audio_features=frames)
    assert mixed["audio_features"].shape == (2, 5, MEL_BINS)
    torch.testing.assert_close(mixed["text_features"], output["text_features"])
    with pytest.raises(ValueError, match="not both"):
        processor(audio=tone(), audio_features=frames[:1], sampling_rate=RATE)
    with pytest.raises(TypeError, match="unexpected argument 'audio_frames'"):
        processor(audio_frames=frames)
    with pytest.raises(ValueError, match="same batch size"):
        processor(text=TEXTS, audio=tone(), sampling_rate=RATE)


def test_save_and_load_give_identical_features(minilm_folder, tmp_path):
    processor = make_processor(str(minilm_folder), text_encoder_layer=-2)
    inputs = dict(text=TEXTS, audio=[tone(), tone(0.3)], sampling_rate=RATE)
    expected = processor(**inputs)
    processor.save_pretrained(tmp_path / "saved")
    for loaded in (
        LDDUProcessor.from_pretrained(tmp_path / "saved"),
        AutoProcessor.from_pretrained(tmp_path / "saved", trust_remote_code=True),
    ):
        assert loaded.text_encoder_layer == -2 and loaded.num_mel_bins == MEL_BINS
        output = loaded(**inputs)
        assert output.keys() == expected.keys()
        for key in expected:
            assert torch.equal(output[key], expected[key]), key


def tiny_bert_processor(encoder, **options) -> LDDUProcessor:
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": TINY_BERT_DIM}, max_lengths={"text": None}
    )
    return LDDUProcessor(extractor, text_encoder_name_or_path=encoder, **options)


def test_a_local_encoder_is_saved_with_the_processor_and_loaded_from_its_folder(tmp_path):
    """A path means nothing on another machine: the saved folder holds a copy of the encoder in
    `text_encoder/` and names that subfolder; moved elsewhere, it computes the same frames."""
    import json
    import shutil

    encoder = write_tiny_bert(tmp_path / "home" / "me" / "enc")
    processor = tiny_bert_processor(str(encoder), text_encoder_layer=-2)
    expected = processor.encode_text(TEXTS)
    processor.save_pretrained(tmp_path / "saved")
    config_text = (tmp_path / "saved" / "processor_config.json").read_text()
    assert str(tmp_path) not in config_text  # no local path in the published file
    config = json.loads(config_text)
    assert config["text_encoder_subfolder"] == "text_encoder"
    assert config["text_encoder_name_or_path"] is None and config["text_encoder_revision"] is None
    shipped = {path.name for path in (tmp_path / "saved" / "text_encoder").iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= shipped
    # Another machine: the original encoder is gone and the folder lives elsewhere.
    shutil.rmtree(encoder)
    moved = shutil.move(tmp_path / "saved", tmp_path / "elsewhere" / "model")
    for loaded in (
        LDDUProcessor.from_pretrained(moved),
        AutoProcessor.from_pretrained(moved, trust_remote_code=True),
    ):
        assert loaded.text_encoder_layer == -2 and loaded.text_feature_dim == TINY_BERT_DIM
        for frames, wanted in zip(loaded.encode_text(TEXTS), expected):
            np.testing.assert_array_equal(frames, wanted)
    # Saved again, elsewhere, it ships its encoder again; into its own folder, it keeps it.
    loaded.save_pretrained(tmp_path / "again")
    again = LDDUProcessor.from_pretrained(tmp_path / "again")
    np.testing.assert_array_equal(again.encode_text(TEXTS[0])[0], expected[0])
    loaded.save_pretrained(moved)
    np.testing.assert_array_equal(
        LDDUProcessor.from_pretrained(moved).encode_text(TEXTS[0])[0], expected[0]
    )


def test_a_shipped_encoder_loads_from_a_hub_repository(tmp_path, monkeypatch):
    """A model repository with the processor's encoder in `text_encoder/`, from the Hub cache (a
    local folder standing in for the Hub): the encoder comes from the same snapshot."""
    import shutil

    import huggingface_hub

    processor = tiny_bert_processor(str(write_tiny_bert(tmp_path / "enc", seed=3)))
    expected = processor.encode_text(TEXTS)
    processor.save_pretrained(tmp_path / "saved")
    cache = tmp_path / "hub"
    repo = cache / "models--me--emotions"
    commit = "d" * 40
    shutil.copytree(tmp_path / "saved", repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    shutil.rmtree(tmp_path / "enc")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    loaded = LDDUProcessor.from_pretrained("me/emotions")
    for frames, wanted in zip(loaded.encode_text(TEXTS), expected):
        np.testing.assert_array_equal(frames, wanted)


def test_a_shipped_encoder_needs_the_processors_folder(tmp_path):
    extractor = LDDUFeatureExtractor(feature_dims={"text": TINY_BERT_DIM})
    bare = LDDUProcessor(extractor, text_encoder_subfolder="text_encoder")
    with pytest.raises(
        ValueError, match=r"subfolder 'text_encoder' of its folder.*from_pretrained"
    ):
        bare(text="hello")
    for wrong in ("../elsewhere", "/abs/path", "a/../../b", ""):
        with pytest.raises(ValueError, match="relative folder inside the processor's folder"):
            LDDUProcessor(extractor, text_encoder_subfolder=wrong)
    with pytest.raises(ValueError, match="not both"):
        LDDUProcessor(extractor, text_encoder_name_or_path="x/y", text_encoder_subfolder="enc")
    local = tiny_bert_processor(str(write_tiny_bert(tmp_path / "enc")))
    with pytest.raises(ValueError, match="save it, then upload the whole folder"):
        local.save_pretrained(tmp_path / "saved", push_to_hub=True)


def test_a_fresh_process_loads_it_by_hub_id_from_the_cache_without_the_package(
    hub_cache, minilm_folder, tmp_path
):
    folder = tmp_path / "processor"
    make_processor(MINILM_HUB_ID, revision=MINILM_REVISION).save_pretrained(folder)
    inputs = {"text": TEXTS, "audio": [tone(), tone(0.3)]}
    # Here the same files, named by their folder (this process does not use `hub_cache`).
    expected = make_processor(str(minilm_folder))(**inputs, sampling_rate=RATE)
    torch.save(
        {"audio": [torch.from_numpy(clip) for clip in inputs["audio"]], **dict(expected)},
        tmp_path / "case.pt",
    )
    script = f"""
        import os
        os.environ["HF_HUB_CACHE"] = {str(hub_cache)!r}  # the local cache stands in for the Hub
        import torch
        from transformers import AutoProcessor
        case = torch.load({str(tmp_path / "case.pt")!r}, weights_only=True)
        processor = AutoProcessor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        print("CLASS", type(processor).__name__, processor.text_encoder_name_or_path)
        audio = [clip.numpy() for clip in case["audio"]]
        output = processor(text={TEXTS!r}, audio=audio, sampling_rate={RATE})
        same = all(torch.equal(output[key], case[key]) for key in output)
        print("SAME", same and sorted(output) == sorted(k for k in case if k != "audio"))
        """
    result = run_without_the_package(script, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)
    assert lines["CLASS"] == f"LDDUProcessor {MINILM_HUB_ID}"
    assert lines["SAME"] == "True"


@pytest.mark.parametrize(
    ("name", "key", "value"),
    [
        ("tokenizer_config.json", "do_lower_case", False),
        ("special_tokens_map.json", "unk_token", "?"),
    ],
)
def test_the_packaged_minilm_is_refused_when_its_tokenizer_settings_differ(
    monkeypatch, tmp_path, name, key, value
):
    """The files that decide lower-casing, the token limit and the special tokens are hashed
    too: a zip whose `name` differs from the Hub revision's is not installed."""
    import json
    import zipfile

    from dataset_scripts import text_encoders

    try:
        archive = text_encoders.packaged_minilm_zip()
    except ImportError as error:
        pytest.skip(str(error))
    altered = tmp_path / "model.zip"
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(altered, "w") as target:
        for member in source.infolist():
            content = source.read(member)
            if member.filename == name:
                content = json.dumps({**json.loads(content), key: value}).encode()
            target.writestr(member.filename, content)  # stored: quick to write
    monkeypatch.setattr(text_encoders, "packaged_minilm_zip", lambda: altered)
    cache = tmp_path / "hub"
    with pytest.raises(ValueError, match=rf"{name} in .* has SHA-256 .*{MINILM_REVISION}"):
        text_encoders.install_packaged_minilm(cache)
    snapshots = cache / f"models--{MINILM_HUB_ID.replace('/', '--')}" / "snapshots"
    assert list(snapshots.iterdir()) == []  # nothing installed, no staging folder left


def test_a_tiny_lddu_model_takes_the_processor_output(minilm_folder):
    processor = make_processor(str(minilm_folder))
    processor.feature_extractor.max_lengths = {"text": 12, "audio": 20, "visual": 4}
    output = processor(
        text=TEXTS,
        audio=[tone(), tone(0.3)],
        sampling_rate=RATE,
        visual=np.ones((2, 3, 7), np.float32),
    )
    config = tiny_config(
        text_dim=processor.text_feature_dim,
        audio_dim=processor.num_mel_bins,
        visual_dim=7,
        max_position_embeddings=20,
    )
    model = LDDUForEmotionRecognition(config).eval()
    with torch.no_grad():
        scores = model(**output).scores
    assert scores.shape == (2, config.num_labels) and torch.isfinite(scores).all()
