"""The multimodal-emotion-recognition pipeline on a tiny model: mixed modality sets in batches, what
it says about long inputs, and the folders `save_pretrained` writes (loaded in a fresh process)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModelForSequenceClassification, pipeline

from modeling_lddu import LDDUFeatureExtractor, LDDUForEmotionRecognition
from modeling_lddu.pipeline_lddu import TASK

from .conftest import run_without_the_package, tiny_config

MAX_LENGTHS = {"text": 8, "audio": 6, "visual": 5}


@pytest.fixture(scope="module")
def model_and_extractor():
    torch.manual_seed(0)
    config = tiny_config()
    model = LDDUForEmotionRecognition(config).eval()
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": config.text_dim, "audio": config.audio_dim, "visual": 7},
        max_lengths=MAX_LENGTHS,
    )
    return model, extractor


def _sample(modalities, seed=0, lengths=None):
    rng = np.random.default_rng(seed)
    dims = {"text": 12, "audio": 5, "visual": 7}
    lengths = lengths or {"text": 7, "audio": 4, "visual": 5}
    return {m: rng.standard_normal((lengths[m], dims[m])).astype(np.float32) for m in modalities}


def test_a_batch_may_mix_modality_sets_and_runs_as_batched_forwards(model_and_extractor):
    model, extractor = model_and_extractor
    recognizer = pipeline(TASK, model=model, feature_extractor=extractor)
    samples = [
        _sample(["text"], seed=1),
        _sample(["text", "audio"], seed=2, lengths={"text": 3, "audio": 6}),
        _sample(["audio", "visual"], seed=3),
        _sample(["text", "audio", "visual"], seed=4, lengths={"text": 2, "audio": 1, "visual": 2}),
    ]
    one_by_one = [recognizer(sample) for sample in samples]

    calls = []
    handle = model.register_forward_pre_hook(lambda module, args: calls.append(1))
    try:
        batched = recognizer(samples, batch_size=2)
    finally:
        handle.remove()

    assert len(calls) == 2  # two batched forwards for four samples
    assert len(batched) == len(samples)
    for alone, in_batch in zip(one_by_one, batched, strict=True):
        assert [entry["label"] for entry in in_batch] == [entry["label"] for entry in alone]
        for entry_alone, entry_batch in zip(alone, in_batch, strict=True):
            assert sorted(entry_batch) == sorted(entry_alone)
            assert entry_batch["score"] == pytest.approx(entry_alone["score"], abs=1e-5)
            assert entry_batch["uncertainty"] == pytest.approx(entry_alone["uncertainty"], abs=1e-5)


def test_long_inputs_are_resampled_and_the_output_says_so(model_and_extractor):
    model, extractor = model_and_extractor
    recognizer = pipeline(TASK, model=model, feature_extractor=extractor)
    long_audio = _sample(["text", "audio"], lengths={"text": 5, "audio": 500})
    output = recognizer(long_audio)
    assert {"label", "score", "predicted", "uncertainty"} <= set(output[0])
    note = output[0]["preprocessing"]
    assert note == [
        {"modality": "text", "input_frames": 5, "model_frames": 5, "truncation": "resample"},
        {"modality": "audio", "input_frames": 500, "model_frames": 6, "truncation": "resample"},
    ]
    assert all(entry["preprocessing"] == note for entry in output)
    # The model saw the whole utterance resampled to 6 frames: the same as giving it resampled.
    positions = np.linspace(0, 499, MAX_LENGTHS["audio"])
    resampled = np.stack(
        [np.interp(positions, np.arange(500), column) for column in long_audio["audio"].T], axis=1
    ).astype(np.float32)
    direct = recognizer({"text": long_audio["text"], "audio": resampled})
    assert [e["label"] for e in direct] == [e["label"] for e in output]
    assert [e["score"] for e in direct] == pytest.approx([e["score"] for e in output], abs=1e-5)
    assert "preprocessing" not in direct[0]  # nothing was changed
    asked = recognizer({"text": long_audio["text"], "audio": resampled}, return_preprocessing=True)
    assert asked[0]["preprocessing"][1] == {
        "modality": "audio",
        "input_frames": 6,
        "model_frames": 6,
        "truncation": "resample",
    }


def test_the_error_policy_refuses_long_inputs_in_the_pipeline(model_and_extractor):
    model, _ = model_and_extractor
    extractor = LDDUFeatureExtractor(
        feature_dims={"text": 12, "audio": 5, "visual": 7},
        max_lengths=MAX_LENGTHS,
        truncation="error",
    )
    recognizer = pipeline(TASK, model=model, feature_extractor=extractor)
    with pytest.raises(ValueError, match=r"audio sequence\(s\) exceed max_lengths\['audio'\]"):
        recognizer(_sample(["audio"], lengths={"audio": 20}))


def _code_files_named(folder) -> set[str]:
    config = json.loads((folder / "config.json").read_text())
    named = {reference for reference in (config.get("auto_map") or {}).values()}
    named |= {info["impl"] for info in (config.get("custom_pipelines") or {}).values()}
    return {f"{reference.rsplit('.', 1)[0]}.py" for reference in named}


def test_saved_folders_name_only_files_they_hold_and_serve_the_pipeline(
    model_and_extractor, tmp_path
):
    model, extractor = model_and_extractor
    exported = tmp_path / "exported"
    pipeline(TASK, model=model, feature_extractor=extractor).save_pretrained(exported)
    # A model loaded from an exported folder carries `custom_pipelines` in its config.
    reloaded = AutoModelForSequenceClassification.from_pretrained(exported)
    with_extractor, model_only = tmp_path / "with_extractor", tmp_path / "model_only"
    reloaded.save_pretrained(with_extractor)
    extractor.save_pretrained(with_extractor)
    reloaded.save_pretrained(model_only)
    for folder in (exported, with_extractor, model_only):
        missing = {name for name in _code_files_named(folder) if not (folder / name).is_file()}
        assert not missing, f"{folder.name} names files it lacks: {missing}"
    sample = _sample(["text", "audio"])
    expected = [
        e["score"] for e in pipeline(TASK, model=model, feature_extractor=extractor)(sample)
    ]
    np.savez(tmp_path / "sample.npz", **sample)

    script = f"""
        import json
        from transformers import AutoFeatureExtractor, AutoModelForSequenceClassification, pipeline
        root = {str(tmp_path)!r}
        # A model loaded as remote code and saved again (the code then comes from the module cache).
        model = AutoModelForSequenceClassification.from_pretrained(
            root + "/exported", trust_remote_code=True
        )
        model.save_pretrained(root + "/resaved")
        AutoFeatureExtractor.from_pretrained(root + "/exported", trust_remote_code=True).save_pretrained(
            root + "/resaved"
        )
        for name in ("with_extractor", "resaved"):
            recognizer = pipeline(model=root + "/" + name, trust_remote_code=True)
            output = recognizer(root + "/sample.npz")
            print("SCORES", name, json.dumps([entry["score"] for entry in output]))
        try:
            pipeline(model=root + "/model_only", trust_remote_code=True)
        except OSError as error:
            print("ERROR", json.dumps(str(error)))
        """
    completed = run_without_the_package(script, tmp_path, timeout=240)
    assert completed.returncode == 0, completed.stderr[-3000:]
    lines = [line.split(" ", 1) for line in completed.stdout.splitlines()]
    scores = {
        rest.split(" ", 1)[0]: json.loads(rest.split(" ", 1)[1])
        for key, rest in lines
        if key == "SCORES"
    }
    assert set(scores) == {"with_extractor", "resaved"}
    for name, values in scores.items():
        assert values == pytest.approx(expected, abs=1e-5), name
    errors = [json.loads(rest) for key, rest in lines if key == "ERROR"]
    assert len(errors) == 1, completed.stdout
    assert "preprocessor_config.json" in errors[0]
    assert "feature_extractor.save_pretrained(folder)" in errors[0]
    assert "normalisation statistics" in errors[0]
