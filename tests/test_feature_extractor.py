"""LDDUFeatureExtractor: padding, truncation, masks, cleaning, normalisation, remote code."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import BatchFeature

from modeling_lddu.feature_extraction_lddu import LDDUFeatureExtractor

from .conftest import run_without_the_package

DIMS = {"text": 6, "audio": 4, "visual": 3}
MODEL_INPUT_NAMES = [
    f"{m}_{kind}" for m in ("text", "audio", "visual") for kind in ("features", "mask")
]


def _extractor(**kwargs) -> LDDUFeatureExtractor:
    kwargs.setdefault("feature_dims", DIMS)
    kwargs.setdefault("max_lengths", {"text": 5, "audio": 7, "visual": 4})
    # These tests were written for cutting long sequences, now the "cut" policy (the default,
    # "resample", has its own tests below).
    kwargs.setdefault("truncation", "cut")
    return LDDUFeatureExtractor(**kwargs)


def _samples(lengths, dim, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((length, dim)).astype(np.float32) for length in lengths]


def test_defaults_and_model_input_names():
    extractor = LDDUFeatureExtractor()
    assert extractor.feature_dims == {"text": 768, "audio": 74, "visual": 35}
    assert extractor.max_lengths == {"text": 50, "audio": 50, "visual": 50}
    assert LDDUFeatureExtractor.model_input_names == MODEL_INPUT_NAMES


def test_batch_of_variable_length_samples_is_padded_right_and_masked():
    extractor = _extractor()
    text = _samples([3, 5, 8], 6)
    audio = _samples([7, 2, 4], 4, seed=1)
    visual = np.random.default_rng(2).standard_normal((3, 4, 3)).astype(np.float32)

    output = extractor(text=text, audio=audio, visual=visual)

    assert isinstance(output, BatchFeature)
    assert list(output) == MODEL_INPUT_NAMES
    assert output["text_features"].shape == (3, 5, 6)
    assert output["text_features"].dtype == torch.float32
    assert output["text_mask"].dtype == torch.int64
    assert output["text_mask"].tolist() == [[1, 1, 1, 0, 0], [1] * 5, [1] * 5]
    torch.testing.assert_close(output["text_features"][0, :3], torch.from_numpy(text[0]))
    assert (output["text_features"][0, 3:] == 0).all()
    # Truncated on the right: the first 5 frames are kept.
    torch.testing.assert_close(output["text_features"][2], torch.from_numpy(text[2][:5]))
    assert output["audio_features"].shape == (3, 7, 4)
    assert output["audio_mask"].sum(dim=1).tolist() == [7, 2, 4]
    torch.testing.assert_close(output["visual_features"], torch.from_numpy(visual))
    assert output["visual_mask"].tolist() == [[1] * 4] * 3


def test_absent_modalities_are_absent_from_the_output():
    output = _extractor()(audio=_samples([2], 4))
    assert list(output) == ["audio_features", "audio_mask"]


def test_single_sample_tensor_and_nested_lists():
    extractor = _extractor()
    sample = _samples([3], 6)[0]
    from_numpy = extractor(text=sample)
    from_tensor = extractor(text=torch.from_numpy(sample).double())
    from_lists = extractor(text=sample.tolist())
    from_batch_lists = extractor(text=[sample.tolist()])
    for output in (from_tensor, from_lists, from_batch_lists):
        torch.testing.assert_close(output["text_features"], from_numpy["text_features"])
        assert output["text_mask"].tolist() == [[1, 1, 1, 0, 0]]
    assert from_numpy["text_features"].shape == (1, 5, 6)


def test_padding_longest_left_sides_and_no_truncation():
    text = _samples([3, 9], 6)
    longest = _extractor()(text=text, padding="longest")
    # Truncated to 5 steps, which is then the longest.
    assert longest["text_features"].shape == (2, 5, 6)
    left = _extractor(padding_side="left", truncation_side="left")(text=text)
    assert left["text_mask"].tolist() == [[0, 0, 1, 1, 1], [1] * 5]
    torch.testing.assert_close(left["text_features"][0, 2:], torch.from_numpy(text[0]))
    torch.testing.assert_close(left["text_features"][1], torch.from_numpy(text[1][-5:]))
    untruncated = _extractor()(text=text, truncation=False)
    assert untruncated["text_features"].shape == (2, 9, 6)
    unlimited = _extractor(max_lengths={"text": None})(text=text, padding="max_length")
    assert unlimited["text_features"].shape == (2, 9, 6)


def test_padding_value_and_numpy_outputs():
    output = _extractor(padding_value=-1.0)(audio=_samples([2, 3], 4), return_tensors="np")
    assert isinstance(output["audio_features"], np.ndarray)
    assert output["audio_features"].dtype == np.float32 and output["audio_mask"].dtype == np.int64
    assert (output["audio_features"][0, 2:] == -1).all()
    assert isinstance(
        _extractor()(audio=_samples([2], 4), return_tensors=None)["audio_mask"], np.ndarray
    )


def test_non_finite_values_are_cleaned_without_touching_the_input():
    audio = np.ones((2, 3, 4), np.float32)
    audio[0, 0, 0], audio[1, 2, 3], audio[1, 0, 1] = -np.inf, np.nan, np.inf
    before = audio.copy()
    output = _extractor()(audio=audio)
    features = output["audio_features"]
    assert bool(torch.isfinite(features).all())
    assert features[0, 0, 0] == 0 and features[1, 2, 3] == 0 and features[1, 0, 1] == 0
    assert features[0, 0, 1] == 1
    np.testing.assert_array_equal(audio, before)


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            {"audio": np.zeros((2, 3, 5))},
            r"audio features have dim 5 but this feature extractor expects 4 "
            r"\(feature_dims\['audio'\]\)",
        ),
        (
            {"text": np.zeros((2, 3, 4, 6))},
            r"text features must have rank 2 \(\[length, dim\]\) .* "
            r"got rank 4 \(shape \(2, 3, 4, 6\)\)",
        ),
        (
            {"visual": np.zeros(3)},
            r"visual features must have rank 2 .* got rank 1 \(shape \(3,\)\)",
        ),
        (
            {"text": [np.zeros((2, 6)), np.zeros((2, 3, 6))]},
            r"text features given as a list must hold",
        ),
        (
            {"text": _samples([2, 2], 6), "audio": _samples([2], 4)},
            r"same batch size; got \{'text': 2, 'audio': 1\}",
        ),
        ({}, r"at least one modality"),
    ],
)
def test_clear_errors(inputs, message):
    with pytest.raises(ValueError, match=message):
        _extractor()(**inputs)


@pytest.mark.parametrize("padding", ["max_length", "longest"])
def test_a_sample_with_zero_frames_gets_an_all_zero_mask_row(padding):
    """A modality missing for one sample (zero frames): that sample's mask row is all zero, the
    others are unchanged; a batch where every sample lacks it keeps one padding frame."""
    extractor = _extractor()
    audio = _samples([3, 0, 2], 4)
    batch = extractor(audio=audio, padding=padding, return_tensors="np")
    mask, features = batch["audio_mask"], batch["audio_features"]
    assert mask[1].sum() == 0 and (features[1] == 0).all()
    assert mask[0].sum() == 3 and mask[2].sum() == 2
    np.testing.assert_array_equal(features[0, :3], audio[0])
    empty = extractor(audio=np.zeros((2, 0, 4)), padding=padding, return_tensors="np")
    assert empty["audio_mask"].shape == (2, 1 if padding == "longest" else 7)
    assert empty["audio_mask"].sum() == 0


def test_invalid_configuration_is_rejected():
    with pytest.raises(ValueError, match="unknown modality 'speech'"):
        LDDUFeatureExtractor(feature_dims={"speech": 3})
    with pytest.raises(ValueError, match="padding_side must be 'left' or 'right'"):
        LDDUFeatureExtractor(padding_side="middle")
    with pytest.raises(ValueError, match=r"must hold 4 means and stds; got 2 and 2"):
        _extractor(normalization_stats={"audio": {"mean": [0, 0], "std": [1, 1]}})
    with pytest.raises(ValueError, match="call fit_normalization"):
        _extractor(do_normalize=True)(audio=_samples([2], 4))


def test_fit_normalization_uses_real_frames_only():
    extractor = _extractor()
    audio = _samples([7, 2, 5], 4)
    audio[1][0, 0] = -np.inf  # counted as 0, as in __call__
    padded = extractor(audio=audio, return_tensors="np")
    padded["audio_features"][padded["audio_mask"] == 0] = 1000.0  # padding must not count

    extractor.fit_normalization(padded)

    frames = np.concatenate(audio)
    frames[np.isinf(frames)] = 0
    stats = extractor.normalization_stats["audio"]
    np.testing.assert_allclose(stats["mean"], frames.mean(axis=0), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats["std"], frames.std(axis=0), rtol=1e-5)
    assert list(extractor.normalization_stats) == ["audio"]
    json.dumps(extractor.to_dict())  # plain lists: JSON-serialisable

    # Same statistics from a dict of variable-length arrays.
    other = _extractor().fit_normalization({"audio": audio})
    np.testing.assert_allclose(other.normalization_stats["audio"]["mean"], stats["mean"], rtol=1e-6)

    assert extractor.do_normalize is False  # fitting does not switch normalisation on
    extractor.do_normalize = True
    output = extractor(audio=audio)
    real = output["audio_features"][output["audio_mask"] == 1]
    torch.testing.assert_close(real.mean(dim=0), torch.zeros(4), atol=1e-5, rtol=0)
    assert (output["audio_features"][output["audio_mask"] == 0] == 0).all()


def test_fit_normalization_from_a_dataset_dict():
    from dataset_scripts.synthetic import make_synthetic_dataset

    dataset_dict = make_synthetic_dataset(
        num_train=20,
        num_validation=2,
        num_test=2,
        text_dim=6,
        audio_dim=4,
        visual_dim=3,
        text_length=5,
        audio_length=(2, 6),
        visual_length=4,
    )
    from_dict = _extractor().fit_normalization(dataset_dict)
    train = dataset_dict["train"].with_format("numpy")
    for modality in ("text", "audio", "visual"):
        frames = np.concatenate(list(train[modality]))
        np.testing.assert_allclose(
            from_dict.normalization_stats[modality]["mean"],
            frames.mean(axis=0),
            rtol=1e-5,
            atol=1e-5,
        )
        np.testing.assert_allclose(
            from_dict.normalization_stats[modality]["std"], frames.std(axis=0), rtol=1e-5
        )


def test_constant_dimensions_get_unit_std():
    audio = np.ones((2, 3, 4), np.float32)
    extractor = _extractor().fit_normalization({"audio": audio})
    assert extractor.normalization_stats["audio"]["std"] == [1.0] * 4


def test_save_and_load_in_a_fresh_process(tmp_path):
    extractor = _extractor(max_lengths={"text": 5, "audio": 7, "visual": 4}, padding_side="left")
    rng = np.random.default_rng(0)
    inputs = {
        "text": rng.standard_normal((3, 8, 6)).astype(np.float32),
        "audio": rng.standard_normal((3, 4, 4)).astype(np.float32),
        "visual": rng.standard_normal((3, 4, 3)).astype(np.float32),
    }
    inputs["audio"][0, 0, 0] = -np.inf
    extractor.fit_normalization(inputs)
    extractor.do_normalize = True
    expected = extractor(**inputs, return_tensors="np")

    folder = tmp_path / "lddu-model"
    extractor.save_pretrained(folder)
    assert sorted(p.name for p in folder.iterdir()) == [
        "configuration_lddu.py",  # the one definition of the modalities, imported by the extractor
        "feature_extraction_lddu.py",
        "preprocessor_config.json",
    ]
    saved = json.loads((folder / "preprocessor_config.json").read_text())
    assert saved["auto_map"] == {
        "AutoFeatureExtractor": "feature_extraction_lddu.LDDUFeatureExtractor"
    }
    np.savez(tmp_path / "inputs.npz", **inputs)

    script = f"""
        import numpy as np
        from transformers import AutoFeatureExtractor
        extractor = AutoFeatureExtractor.from_pretrained({str(folder)!r}, trust_remote_code=True)
        inputs = dict(np.load({str(tmp_path / "inputs.npz")!r}))
        outputs = extractor(**inputs, return_tensors="np")
        np.savez({str(tmp_path / "outputs.npz")!r}, **outputs)
        print(type(extractor).__name__, type(extractor).__module__)
        """
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    completed = run_without_the_package(script, tmp_path, cwd=elsewhere, timeout=120)
    assert completed.returncode == 0, completed.stderr[-3000:]
    name, module = completed.stdout.split()
    assert name == "LDDUFeatureExtractor" and module.startswith("transformers_modules.")
    loaded = np.load(tmp_path / "outputs.npz")
    assert sorted(loaded.files) == sorted(expected)
    for key in expected:
        np.testing.assert_array_equal(loaded[key], expected[key])

    reloaded = LDDUFeatureExtractor.from_pretrained(folder)
    assert reloaded.normalization_stats == extractor.normalization_stats
    assert reloaded.max_lengths == extractor.max_lengths and reloaded.padding_side == "left"


def test_remote_code_file_imports_only_numpy_torch_and_transformers():
    import ast
    from pathlib import Path

    import modeling_lddu.feature_extraction_lddu as module

    tree = ast.parse(Path(module.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "collections", "typing", "numpy", "torch", "transformers"}


def test_long_sequences_are_resampled_by_default_and_the_count_is_logged(caplog):
    extractor = LDDUFeatureExtractor(feature_dims={"text": 2}, max_lengths={"text": 5})
    assert extractor.truncation == "resample"
    # A sequence whose frames are linear in time: resampling keeps the line, from first to last.
    long = np.stack([np.arange(9.0), 10.0 * np.arange(9.0)], axis=1).astype(np.float32)
    short = np.ones((3, 2), np.float32)
    expected = np.stack([np.linspace(0, 8, 5), 10 * np.linspace(0, 8, 5)], axis=1)
    with caplog.at_level("WARNING"):
        listed = extractor(text=[long, short], return_tensors="np")
        stacked = extractor(text=np.stack([long, long]), return_tensors="np")
    np.testing.assert_allclose(listed["text_features"][0], expected, rtol=1e-6)
    np.testing.assert_array_equal(listed["text_features"][1, :3], short)
    assert listed["text_mask"].tolist() == [[1] * 5, [1, 1, 1, 0, 0]]
    np.testing.assert_allclose(stacked["text_features"], np.stack([expected] * 2), rtol=1e-6)
    messages = [record.getMessage() for record in caplog.records]
    assert any("1 text sequence(s)" in m and "resampled" in m for m in messages), messages
    assert any("2 text sequence(s)" in m for m in messages), messages


def test_resampling_cleans_non_finite_frames_first():
    extractor = LDDUFeatureExtractor(feature_dims={"audio": 1}, max_lengths={"audio": 3})
    sample = np.array([[1.0], [-np.inf], [2.0], [np.nan], [4.0]], np.float32)
    output = extractor(audio=[sample], return_tensors="np")
    np.testing.assert_array_equal(output["audio_features"][0, :, 0], [1.0, 2.0, 4.0])


def test_truncation_error_policy_refuses_and_a_call_may_choose_its_policy():
    text = _samples([8, 3], 6)
    extractor = _extractor(truncation="error")
    with pytest.raises(ValueError, match=r"1 text sequence\(s\) exceed max_lengths\['text'\] = 5"):
        extractor(text=text)
    cut = extractor(text=text, truncation="cut", return_tensors="np")
    np.testing.assert_array_equal(cut["text_features"][0], text[0][:5])
    whole = extractor(text=text, truncation=False, return_tensors="np")
    assert whole["text_features"].shape == (2, 8, 6)
    with pytest.raises(ValueError, match="truncation must be one of"):
        LDDUFeatureExtractor(truncation="drop")
    with pytest.raises(ValueError, match="truncation must be True, False or one of"):
        extractor(text=text, truncation="drop")


def test_truncation_policy_is_saved(tmp_path):
    _extractor(truncation="error").save_pretrained(tmp_path)
    assert LDDUFeatureExtractor.from_pretrained(tmp_path).truncation == "error"


def test_the_policy_changes_nothing_on_data_within_max_lengths():
    # Training data never exceed max_lengths (the longest training sequences): every policy must
    # give the very same arrays there, so training is unchanged by the policy.
    text, audio = _samples([5, 2, 4], 6), _samples([7, 1, 3], 4, seed=1)
    visual = np.random.default_rng(2).standard_normal((3, 4, 3)).astype(np.float32)
    outputs = [
        _extractor(truncation=policy)(text=text, audio=audio, visual=visual, return_tensors="np")
        for policy in ("resample", "cut", "error")
    ]
    for output in outputs[1:]:
        for key in MODEL_INPUT_NAMES:
            np.testing.assert_array_equal(output[key], outputs[0][key])
