"""The built-in synthetic data: deterministic, MOSEI-like, learnable through every modality."""

from __future__ import annotations

import datasets
import numpy as np
import pytest
import torch

from dataset_scripts import synthetic
from dataset_scripts.building import metadata_from_dataset
from dataset_scripts.labels import MOSEI_LABELS
from dataset_scripts.loading import load_prepared
from dataset_scripts.modalities import MODALITIES
from dataset_scripts.safe_load import load_source_file
from dataset_scripts.synthetic import (
    MOSEI_LABEL_PREVALENCE,
    generate_synthetic_splits,
    make_synthetic_dataset,
    write_source,
)

SMALL = {
    "text_dim": 32,
    "audio_dim": 16,
    "visual_dim": 8,
    "text_length": 10,
    "audio_length": 10,
    "visual_length": 10,
}


@pytest.fixture(autouse=True)
def _quiet_progress_bars():
    datasets.disable_progress_bars()
    yield
    datasets.enable_progress_bars()


def _assert_same_splits(left, right):
    assert list(left) == list(right)
    for split in left:
        np.testing.assert_array_equal(left[split].labels, right[split].labels)
        assert left[split].ids == right[split].ids
        for modality in MODALITIES:
            for a, b in zip(
                left[split].features[modality], right[split].features[modality], strict=True
            ):
                np.testing.assert_array_equal(a, b)


def test_generator_is_deterministic():
    kwargs = {**SMALL, "audio_length": (3, 12), "num_train": 30, "num_validation": 5, "num_test": 5}
    _assert_same_splits(
        generate_synthetic_splits(seed=3, **kwargs), generate_synthetic_splits(seed=3, **kwargs)
    )
    other = generate_synthetic_splits(seed=4, **kwargs)
    assert not np.array_equal(
        other["train"].features["text"],
        generate_synthetic_splits(seed=3, **kwargs)["train"].features["text"],
    )


def test_a_split_does_not_depend_on_the_size_of_the_others():
    small = generate_synthetic_splits(num_train=20, num_validation=5, num_test=5, **SMALL)
    large = generate_synthetic_splits(num_train=20, num_validation=50, num_test=7, **SMALL)
    np.testing.assert_array_equal(
        small["train"].features["audio"], large["train"].features["audio"]
    )
    np.testing.assert_array_equal(small["train"].labels, large["train"].labels)


def test_dataset_has_the_builders_columns_and_features():
    dataset_dict = make_synthetic_dataset(
        num_train=8, num_validation=3, num_test=2, **{**SMALL, "visual_length": (2, 5)}
    )
    assert list(dataset_dict) == ["train", "validation", "test"]
    features = dataset_dict["train"].features
    assert list(features) == ["id", *MODALITIES, "labels"]
    assert features["text"] == datasets.Array2D((10, 32), "float32")
    assert features["visual"] == datasets.Array2D((None, 8), "float32")
    assert features["labels"] == datasets.List(datasets.Value("float32"), length=6)
    lengths = [len(sample) for sample in dataset_dict["train"].with_format("numpy")["visual"]]
    assert min(lengths) >= 2 and max(lengths) <= 5
    metadata = metadata_from_dataset(dataset_dict)
    assert metadata["label_names"] == list(MOSEI_LABELS.label_names)
    seven = make_synthetic_dataset(num_train=4, num_validation=2, num_test=2, num_labels=7, **SMALL)
    assert metadata_from_dataset(seven)["label_names"][1] == "neutral"
    named = make_synthetic_dataset(
        num_train=4, num_validation=2, num_test=2, label_names=["a", "b", "c"], **SMALL
    )
    assert named["train"].features["labels"].length == 3


def test_default_shapes_are_moseis():
    dataset_dict = make_synthetic_dataset(num_train=2, num_validation=1, num_test=1)
    features = dataset_dict["train"].features
    shapes = [features[m].shape for m in MODALITIES]
    assert shapes == [(50, 768), (50, 74), (50, 35)]


def test_label_statistics_follow_mosei():
    tiny = {f"{m}_{kind}": 1 for m in MODALITIES for kind in ("dim", "length")}
    splits = generate_synthetic_splits(num_train=6000, num_validation=1, num_test=1, **tiny)
    labels = splits["train"].labels
    np.testing.assert_allclose(labels.mean(axis=0), MOSEI_LABEL_PREVALENCE, atol=0.02)
    assert labels.sum(axis=1).mean() == pytest.approx(sum(MOSEI_LABEL_PREVALENCE), abs=0.05)


def test_non_finite_injection_is_cleaned_and_reported():
    dataset_dict = make_synthetic_dataset(
        num_train=10, num_validation=2, num_test=2, non_finite_fraction=0.1, **SMALL
    )
    report = metadata_from_dataset(dataset_dict)["report"]["non_finite"]
    assert report["train"]["audio"]["neginf"] > 0 and report["train"]["text"]["neginf"] == 0
    assert np.isfinite(dataset_dict["train"].with_format("numpy")["audio"]).all()


def _mean_pooled(arrays, modalities):
    return np.concatenate(
        [np.stack([sample.mean(axis=0) for sample in arrays.features[m]]) for m in modalities],
        axis=1,
    )


def _macro_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Mean over labels of P(score of a positive > score of a negative)."""
    values = []
    for column in range(labels.shape[1]):
        positive, negative = (
            scores[labels[:, column] == 1, column],
            scores[labels[:, column] == 0, column],
        )
        values.append((positive[:, None] > negative[None, :]).mean())
    return float(np.mean(values))


def _logistic_regression_auc(splits, modalities) -> float:
    train_x, test_x = (
        _mean_pooled(splits["train"], modalities),
        _mean_pooled(splits["test"], modalities),
    )
    mean, std = train_x.mean(axis=0), train_x.std(axis=0) + 1e-6
    train_x = torch.tensor((train_x - mean) / std, dtype=torch.float32)
    test_x = torch.tensor((test_x - mean) / std, dtype=torch.float32)
    train_y = torch.tensor(splits["train"].labels)
    torch.manual_seed(0)
    linear = torch.nn.Linear(train_x.shape[1], train_y.shape[1])
    optimizer = torch.optim.LBFGS(linear.parameters(), max_iter=100)

    def closure():
        optimizer.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(train_x), train_y)
        loss = loss + 1e-3 * linear.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    with torch.no_grad():
        return _macro_auc(linear(test_x).numpy(), splits["test"].labels)


def test_data_is_learnable_through_each_modality():
    splits = generate_synthetic_splits(num_train=1000, num_validation=1, num_test=500, **SMALL)
    all_modalities = _logistic_regression_auc(splits, MODALITIES)
    assert all_modalities > 0.8  # chance is 0.5
    for modality in MODALITIES:
        alone = _logistic_regression_auc(splits, (modality,))
        assert 0.62 < alone < all_modalities, modality

    noise_only = generate_synthetic_splits(
        num_train=1000, num_validation=1, num_test=500, signal_strength=0.0, **SMALL
    )
    assert abs(_logistic_regression_auc(noise_only, MODALITIES) - 0.5) < 0.06


@pytest.mark.parametrize(
    ("source_format", "expected_keys"),
    [
        ("mmsa_pkl", {"id", "raw_text", "text", "audio", "vision", "regression_labels", "tgt"}),
        ("tailor_pt", {"src-text", "src-audio", "src-visual", "tgt"}),
        ("carat_m3ed_pt", {"src-text", "src-audio", "src-visual", "len_list", "tgt"}),
    ],
)
def test_write_source_formats(tmp_path, source_format, expected_keys):
    suffix = ".pkl" if source_format == "mmsa_pkl" else ".pt"
    kwargs = {
        "num_train": 4,
        "num_validation": 2,
        "num_test": 2,
        "text_dim": 6,
        "audio_dim": 5,
        "visual_dim": 3,
    }
    path = write_source(tmp_path / f"source{suffix}", source_format, **kwargs)
    raw = load_source_file(path)
    assert {"train", "valid", "test"} <= set(raw)
    assert set(raw["train"]) == expected_keys
    assert raw["train"]["tgt"][0][0] == 2 and raw["train"]["tgt"][0][-1] == 3
    if source_format == "carat_m3ed_pt":
        assert raw["dict"]["tgt"]["Surprise"] == 10 and raw["settings"].source == "synthetic"
        # Audio (dim 5) under the visual key, as in CARAT's file.
        assert raw["train"]["src-visual"][0].shape[1] == 5


def test_synthetic_cli(tmp_path):
    sizes = "--num_train 6 --num_validation 2 --num_test 2".split()
    shapes = "--text_dim 8 --audio_dim 4 --visual_dim 3 --audio_length 2-6".split()
    assert synthetic.main(["--output", str(tmp_path / "out"), *sizes, *shapes]) == 0
    loaded = load_prepared(tmp_path / "out")
    assert loaded["train"].num_rows == 6 and loaded["train"].features["audio"].shape == (None, 4)

    source_options = "--source_format tailor_pt --num_train 3 --text_dim 4".split()
    assert synthetic.main(["--output", str(tmp_path / "source.pt"), *source_options]) == 0
    assert load_source_file(tmp_path / "source.pt")["train"]["src-text"].shape == (3, 50, 4)


TINY = {
    "text_dim": 4,
    "audio_dim": 3,
    "visual_dim": 2,
    "text_length": 3,
    "audio_length": (1, 4),
    "visual_length": 3,
}


def _combinations(splits, split="train"):
    """Per sample the available-modality id (text = 1, audio = 2, visual = 4)."""
    features = splits[split].features
    return [
        sum(2**bit for bit, m in enumerate(MODALITIES) if m in features and len(features[m][i]))
        for i in range(len(splits[split]))
    ]


def test_the_default_missing_modality_data_is_unchanged():
    """The data of the three modalities as before the `modalities` argument, bit for bit: the
    availability pattern and a digest of every label, shape and value."""
    import hashlib

    splits = generate_synthetic_splits(24, 6, 6, seed=7, missing_rate=0.5, **TINY)
    assert _combinations(splits) == [
        7, 1, 3, 6, 6, 7, 6, 7, 6, 3, 1, 6, 5, 5, 2, 5, 4, 2, 2, 1, 7, 7, 5, 1
    ]  # fmt: skip
    digest = hashlib.sha256()
    for split in splits.values():
        digest.update(split.labels.tobytes())
        for modality in MODALITIES:
            for sample in split.features[modality]:
                digest.update(np.ascontiguousarray(sample).tobytes())
                digest.update(str(sample.shape).encode())
    expected = "7189c662536f8f360cc038cebfbdde173eec8278cd1f614b140e46abf908bfe8"
    assert digest.hexdigest() == expected
    explicit = generate_synthetic_splits(
        24, 6, 6, seed=7, missing_rate=0.5, modalities=MODALITIES, **TINY
    )
    _assert_same_splits(splits, explicit)


@pytest.mark.parametrize("kept", [("text", "audio"), ("audio", "visual"), ("visual",)])
def test_every_sample_keeps_one_of_the_kept_modalities(kept):
    """Dropping a modality must not leave a sample without any (with all three drawn and one
    dropped afterwards, 45 of 300 samples had neither text nor audio at rate 0.5)."""
    dataset = make_synthetic_dataset(300, 0, 0, modalities=kept, missing_rate=0.5, **TINY)["train"]
    assert [m for m in MODALITIES if m in dataset.column_names] == list(kept)
    lengths = np.array([[len(row[m]) for m in kept] for row in dataset])
    assert (lengths > 0).any(axis=1).all()
    if len(kept) > 1:
        assert (lengths == 0).any()  # modalities do go missing

    # The values of a kept modality are those of the three-modality data; its availability
    # differs only for samples that lost every kept modality there.
    everything = generate_synthetic_splits(300, 0, 0, missing_rate=0.5, **TINY)["train"]
    complete = generate_synthetic_splits(300, 0, 0, **TINY)["train"]
    chosen = generate_synthetic_splits(300, 0, 0, missing_rate=0.5, modalities=kept, **TINY)
    chosen = chosen["train"]
    lost_all = np.all([[len(s) == 0 for s in everything.features[m]] for m in kept], axis=0)
    for modality in kept:
        for index, sample in enumerate(chosen.features[modality]):
            if len(sample):
                np.testing.assert_array_equal(sample, complete.features[modality][index])
            if not lost_all[index]:
                assert len(sample) == len(everything.features[modality][index])
    for modality in set(MODALITIES) - set(kept):  # returned complete
        assert all(len(sample) for sample in chosen.features[modality])
    with pytest.raises(ValueError, match="modalities must be a non-empty subset"):
        generate_synthetic_splits(4, 0, 0, modalities=("text", "speech"), **TINY)
