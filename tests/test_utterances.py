"""The IEMOCAP/MELD utterance builder on tiny generated sources: index CSV/JSONL + .npy, pickles."""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import pickle

import numpy as np
import pytest

from dataset_scripts import utterances
from dataset_scripts.building import SINGLE_LABEL, metadata_from_dataset
from dataset_scripts.labels import IEMOCAP4_CLASSES, IEMOCAP6_CLASSES, MELD7_CLASSES
from dataset_scripts.loading import load_metadata, load_prepared, split_problem_type
from dataset_scripts.safe_load import UnsafeSourceError

TEXT_DIM, AUDIO_DIM, VISUAL_DIM = 4, 3, 2
#: Label of each turn in every IEMOCAP dialogue: 9 turns, one of each kind the class sets meet.
IEMOCAP_TURNS = ("neu", "hap", "exc", "sad", "ang", "fru", "xxx", "Neu", "exc")
MELD_NAMES = MELD7_CLASSES.label_names


def _save(folder, name, array):
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(array))
    return name


def _text_vector(seed: int) -> np.ndarray:
    return np.arange(TEXT_DIM, dtype=np.float32) + seed


def _write_index(path, rows, fmt):
    if fmt == "csv":
        columns = list(dict.fromkeys(key for row in rows for key in row))
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows)
    else:
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def iemocap_index(folder, fmt="csv", ids="iemocap", dialogues_per_session=3):
    """Sessions 1-5, `dialogues_per_session` dialogues of 9 turns; text a [dim] vector, audio
    [frames, dim] with 1-3 frames. `ids="plain"` gives ids without the IEMOCAP pattern and
    explicit session and dialogue columns."""
    folder.mkdir(parents=True, exist_ok=True)
    rows, count = [], 0
    for session in range(1, 6):
        for dialogue in range(dialogues_per_session):
            name = f"Ses0{session}F_impro0{dialogue + 1}"
            for turn, label in enumerate(IEMOCAP_TURNS):
                count += 1
                if ids == "iemocap":
                    row = {"id": f"{name}_{'FM'[turn % 2]}{turn:03d}", "label": label}
                else:
                    row = {"id": f"u{count}", "label": label, "session": str(session)}
                    row["dialogue"] = name
                row["text"] = _save(folder, f"text/{count}.npy", _text_vector(count))
                audio = np.full((1 + count % 3, AUDIO_DIM), float(count), dtype=np.float64)
                row["audio"] = _save(folder, f"audio/{count}.npy", audio)
                rows.append(row)
    return _write_index(folder / f"index.{fmt}", rows, fmt), rows


def meld_index(folder, fmt="csv"):
    folder.mkdir(parents=True, exist_ok=True)
    rows, count = [], 0
    for split, dialogues in (("train", 4), ("dev", 2), ("test", 2)):
        for dialogue in range(dialogues):
            for turn in range(4):
                count += 1
                rows.append(
                    {
                        "id": f"{split}_dia{dialogue}_utt{turn}",
                        "label": MELD_NAMES[count % 7].upper()
                        if count == 3
                        else MELD_NAMES[count % 7],
                        "split": split,
                        "dialogue": f"{split}{dialogue}",
                        "speaker": "Joey",
                        "text": _save(folder, f"t/{count}.npy", _text_vector(count)),
                        "visual": _save(folder, f"v/{count}.npy", np.ones((2, VISUAL_DIM))),
                    }
                )
    return _write_index(folder / f"meld.{fmt}", rows, fmt), rows


def _dialogue_tuple(dataset):
    """The dicts of a conversational-ER pickle: IEMOCAP dialogues of sessions 1-5 (test = 5) or
    MELD dialogues 0..7 (test = 6, 7)."""
    ids, speakers, labels, text, audio, visual, sentences = {}, {}, {}, {}, {}, {}, {}
    if dataset == "iemocap":
        names = [f"Ses0{s}{g}_impro0{d}" for s in range(1, 6) for g in "FM" for d in (1, 2)]
        train = [n for n in names if not n.startswith("Ses05")]
        test = [n for n in names if n.startswith("Ses05")]
    else:
        names, train, test = list(range(8)), list(range(6)), [6, 7]
    for index, name in enumerate(names):
        turns = 6
        if dataset == "iemocap":
            ids[name] = [f"{name}_{'FM'[t % 2]}{t:03d}" for t in range(turns)]
        else:
            ids[name] = list(range(turns))
        speakers[name] = ["M", "F"] * (turns // 2)
        labels[name] = [(index + t) % 6 for t in range(turns)]
        text[name] = np.arange(turns * TEXT_DIM, dtype=np.float32).reshape(turns, TEXT_DIM) + index
        audio[name] = [np.full(AUDIO_DIM, float(index)) for _ in range(turns)]
        visual[name] = np.zeros((turns, VISUAL_DIM))
        sentences[name] = ["hello"] * turns
    return ids, speakers, labels, text, audio, visual, sentences, train, test


def iemocap_pickle(path, protocol=4):
    ids, speakers, labels, text, audio, visual, sentences, train, test = _dialogue_tuple("iemocap")
    data = (ids, speakers, labels, text, audio, visual, sentences, train, set(test))
    path.write_bytes(pickle.dumps(data, protocol=protocol))
    return path, data


def meld_pickle(path, layout="meld10"):
    ids, speakers, labels, text, audio, visual, sentences, train, test = _dialogue_tuple("meld")
    sentiments = {name: [0] * len(turns) for name, turns in ids.items()}
    if layout == "meld10":
        data = (ids, speakers, labels, text, audio, visual, sentences, train, test, sentiments)
    else:
        data = (ids, speakers, labels, text, audio, sentences, train, test, sentiments)
    path.write_bytes(pickle.dumps(data, protocol=4))
    return path, data


class _Python2Pickler(pickle._Pickler):
    """Writes `bytes` as Python 2 `str` (BINSTRING), as the pickles made under Python 2 do."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_bytes(self, obj):
        if len(obj) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(obj)]) + obj)
        else:
            self.write(pickle.BINSTRING + len(obj).to_bytes(4, "little") + obj)
        self.memoize(obj)

    dispatch[bytes] = save_bytes


def _one_hot_names(split, label_names):
    labels = np.asarray(split.with_format("numpy", columns=["labels"])["labels"])
    assert (labels.sum(axis=1) == 1).all()
    return [label_names[i] for i in labels.argmax(axis=1)]


# --------------------------------------------------------------------------------------------------
# Class sets
# --------------------------------------------------------------------------------------------------


def test_class_sets_merge_exc_into_happy_and_keep_the_pickle_orders():
    assert IEMOCAP4_CLASSES.label_names == ("neutral", "happy", "sad", "angry")
    assert IEMOCAP4_CLASSES.lookup("exc") == IEMOCAP4_CLASSES.lookup("hap") == 1
    assert IEMOCAP4_CLASSES.lookup(" Excited ") == 1
    assert IEMOCAP4_CLASSES.lookup("fru") == IEMOCAP4_CLASSES.lookup("xxx") == "excluded"
    assert IEMOCAP4_CLASSES.lookup("happpy") == "unknown"
    assert IEMOCAP6_CLASSES.label_names == (
        "happy", "sad", "neutral", "angry", "excited", "frustrated",
    )  # fmt: skip
    assert [IEMOCAP6_CLASSES.lookup(IEMOCAP6_CLASSES.pickle_class_name(i)) for i in range(6)] == [
        0, 1, 2, 3, 4, 5,
    ]  # fmt: skip
    assert MELD7_CLASSES.pickle_classes == MELD7_CLASSES.label_names
    with pytest.raises(ValueError, match="outside 0..5"):
        IEMOCAP4_CLASSES.pickle_class_name(6)


# --------------------------------------------------------------------------------------------------
# Index + .npy: IEMOCAP folds
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt, ids", [("csv", "iemocap"), ("jsonl", "plain")])
def test_iemocap_index_gives_five_leave_one_session_out_folds(tmp_path, fmt, ids):
    index, rows = iemocap_index(tmp_path / "src", fmt=fmt, ids=ids)
    results = utterances.build(index, "iemocap4")
    assert list(results) == [f"fold{k}" for k in range(1, 6)]
    session_of = {}
    for row in rows:
        session = int(row["session"]) if "session" in row else int(row["id"][4])
        session_of[row["id"]] = session
    dialogue_of = {row["id"]: row.get("dialogue", row["id"].rsplit("_", 1)[0]) for row in rows}
    for fold, result in enumerate(results.values(), start=1):
        dataset = result.dataset_dict
        sessions = {split: {session_of[i] for i in dataset[split]["id"]} for split in dataset}
        assert sessions["test"] == {fold}
        assert fold not in sessions["train"] | sessions["validation"]
        assert sessions["train"] == sessions["validation"] == set(range(1, 6)) - {fold}
        # Validation holds whole dialogues: no dialogue is in both train and validation.
        dialogues = {split: {dialogue_of[i] for i in dataset[split]["id"]} for split in dataset}
        assert not dialogues["train"] & dialogues["validation"]
        assert len(dialogues["validation"]) == 4  # one of three dialogues per training session
        # 9 turns per dialogue, of which fru and xxx are left out: 7 kept, 15 dialogues.
        assert sum(dataset.num_rows.values()) == 15 * 7
        assert result.report["dropped_by_label"] == {"fru": 15, "xxx": 15}
        assert result.report["splits"]["test_session"] == fold
        metadata = metadata_from_dataset(dataset)
        assert metadata["problem_type"] == SINGLE_LABEL
        assert metadata["label_names"] == ["neutral", "happy", "sad", "angry"]
        assert metadata["feature_dims"] == {"text": TEXT_DIM, "audio": AUDIO_DIM}
        assert dataset["train"].features["text"].shape == (1, TEXT_DIM)  # a vector: one frame
        assert dataset["train"].features["audio"].shape == (None, AUDIO_DIM)
    # exc is merged into happy; the labels follow the rows.
    label_of = {row["id"]: row["label"].lower() for row in rows}
    test = results["fold1"].dataset_dict["test"]
    names = _one_hot_names(test, IEMOCAP4_CLASSES.label_names)
    expected = {"neu": "neutral", "hap": "happy", "exc": "happy", "sad": "sad", "ang": "angry"}
    assert names == [expected[label_of[i]] for i in test["id"]]
    assert names.count("happy") == 3 * 3  # hap + exc + exc in each of three dialogues


def test_folds_are_seeded_and_the_seed_changes_the_validation_dialogues(tmp_path):
    index, _ = iemocap_index(tmp_path / "src", dialogues_per_session=6)

    def validation(seed):
        result = utterances.build(index, "iemocap4", folds=[2], seed=seed)["fold2"]
        return result.report["splits"]["validation"]["dialogues"]

    assert validation(0) == validation(0)
    assert any(validation(seed) != validation(0) for seed in (1, 2, 3))


def test_iemocap6_keeps_frustrated_and_its_rows(tmp_path):
    index, _ = iemocap_index(tmp_path / "src")
    result = utterances.build(index, "iemocap6", folds=[3])["fold3"]
    assert result.report["dropped_by_label"] == {"xxx": 15}
    counts = result.report["label_counts"]
    assert sum(counts["test"].values()) == 3 * 8
    assert counts["test"]["frustrated"] == 3 and counts["test"]["excited"] == 6


def test_cli_writes_one_folder_per_fold_and_a_hub_layout(tmp_path, caplog, capsys):
    index, _ = iemocap_index(tmp_path / "src", fmt="jsonl")
    output, hub = tmp_path / "out", tmp_path / "hub"
    argv = ["--dataset", "iemocap4", "--source", str(index), "--output", str(output)]
    with caplog.at_level(logging.WARNING, logger="dataset_scripts.utterances"):
        assert utterances.main([*argv, "--hub_layout", str(hub), "--folds", "1,5"]) == 0
    assert "Left out 30 of 135 rows" in caplog.text and "fru 15, xxx 15" in caplog.text
    assert "30 left out" in capsys.readouterr().out
    for fold in ("fold1", "fold5"):
        saved = load_prepared(output / fold)
        from_hub = load_prepared(hub, fold)
        for dataset in (saved, from_hub):
            assert split_problem_type(dataset["train"]) == SINGLE_LABEL
            assert metadata_from_dataset(dataset)["config_name"] == fold
        assert saved["test"]["id"] == from_hub["test"]["id"]
        report = load_metadata(hub, fold)["report"]
        assert report["dropped_by_label"] == {"fru": 15, "xxx": 15}
    assert sorted(p.name for p in output.iterdir() if not p.name.startswith(".")) == [
        "fold1", "fold5",
    ]  # fmt: skip
    assert "single-label" in (hub / "README.md").read_text()
    # An existing output is not replaced without --overwrite, and is with it.
    before = (output / "fold1" / "dataset_dict.json").stat().st_mtime_ns
    with pytest.raises(SystemExit):
        utterances.main(argv)
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert (output / "fold1" / "dataset_dict.json").stat().st_mtime_ns == before
    assert utterances.main([*argv, "--overwrite", "--folds", "1,5"]) == 0


def test_overwrite_never_deletes_folds_the_run_does_not_rebuild(tmp_path, capsys):
    """--overwrite replaces the folds' folder as a whole: building fold 2 alone over folds 1 and 5
    of an earlier run is refused, naming them, and nothing changes; rebuilding them too works."""
    index, _ = iemocap_index(tmp_path / "src", fmt="jsonl")
    output = tmp_path / "out"
    argv = ["--dataset", "iemocap4", "--source", str(index), "--output", str(output)]
    assert utterances.main([*argv, "--folds", "1,5"]) == 0
    capsys.readouterr()

    def folds():
        return sorted(p.name for p in output.iterdir() if not p.name.startswith("."))

    before = (output / "fold1" / "dataset_dict.json").stat().st_mtime_ns
    assert utterances.main([*argv, "--overwrite", "--folds", "2"]) == 1
    error = capsys.readouterr().err
    assert "holds fold1, fold5 from an earlier run" in error
    assert "--folds 1,2,5" in error and "another --output" in error
    assert folds() == ["fold1", "fold5"]
    assert (output / "fold1" / "dataset_dict.json").stat().st_mtime_ns == before
    assert not list(tmp_path.glob(".out.tmp-*"))  # no temporary folder left beside the output
    assert utterances.main([*argv, "--overwrite", "--folds", "1,2,5"]) == 0
    assert folds() == ["fold1", "fold2", "fold5"]
    assert utterances.main([*argv, "--overwrite"]) == 0  # all five: nothing can be lost
    assert folds() == [f"fold{k}" for k in range(1, 6)]


# --------------------------------------------------------------------------------------------------
# Index + .npy: MELD (official split)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_meld_index_keeps_its_official_split(tmp_path, fmt):
    index, rows = meld_index(tmp_path / "src", fmt=fmt)
    output = tmp_path / "out"
    argv = ["--dataset", "meld7", "--source", str(index), "--output", str(output)]
    assert utterances.main(argv) == 0
    dataset = load_prepared(output)
    assert dataset.num_rows == {"train": 16, "validation": 8, "test": 8}
    assert set(dataset["validation"]["id"]) == {r["id"] for r in rows if r["split"] == "dev"}
    assert list(dataset["train"].features) == ["id", "text", "visual", "labels"]
    names = _one_hot_names(dataset["test"], MELD_NAMES)
    label_of = {row["id"]: row["label"].lower() for row in rows}
    assert names == [label_of[i] for i in dataset["test"]["id"]]
    metadata = load_metadata(output)
    assert metadata["problem_type"] == SINGLE_LABEL and metadata["config_name"] == "default"
    assert metadata["report"]["splits"]["validation"] == {"policy": "given by the source"}


def test_modalities_option_keeps_a_subset(tmp_path):
    index, _ = meld_index(tmp_path / "src")
    result = utterances.build(index, "meld7", modalities=["visual"])["default"]
    assert metadata_from_dataset(result.dataset_dict)["modalities"] == ["visual"]
    with pytest.raises(ValueError, match="asked for \\['audio'\\], which it lacks"):
        utterances.build(index, "meld7", modalities=["audio"])


# --------------------------------------------------------------------------------------------------
# Pickles
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("python2", [False, True])
def test_iemocap_pickle_gives_folds_with_the_class_index_order(tmp_path, python2):
    path = tmp_path / "IEMOCAP_features.pkl"
    _, data = iemocap_pickle(path)
    if python2:  # strings as Python 2 str: read with encoding latin1, array data included
        buffer = io.BytesIO()
        _Python2Pickler(buffer, protocol=2).dump(data)
        path.write_bytes(buffer.getvalue())
        assert b"_codecs" not in path.read_bytes()
    results = utterances.build(path, "iemocap6")
    assert list(results) == [f"fold{k}" for k in range(1, 6)]
    report = results["fold5"].report
    assert report["source_format"] == "pickle (iemocap9)"
    assert report["pickle_test_sessions"] == [5]
    fold5 = results["fold5"].dataset_dict
    ids, labels, text = data[0], data[2], data[3]
    assert set(fold5["test"]["id"]) == {u for name in data[8] for u in ids[name]}
    # Class index order hap 0, sad 1, neu 2, ang 3, exc 4, fru 5 = the iemocap6 order.
    expected = {u: lab for name in ids for u, lab in zip(ids[name], labels[name], strict=True)}
    got = _one_hot_names(fold5["train"], IEMOCAP6_CLASSES.label_names)
    assert got == [IEMOCAP6_CLASSES.label_names[expected[i]] for i in fold5["train"]["id"]]
    first = fold5["train"].with_format("numpy")[0]
    name = first["id"].rsplit("_", 1)[0]
    np.testing.assert_array_equal(first["text"][0], text[name][ids[name].index(first["id"])])
    # 4 classes: fru (index 5) is left out and counted.
    four = utterances.build(path, "iemocap4", folds=[1])["fold1"].report
    assert four["dropped_by_label"] == {"fru": sum(row.count(5) for row in labels.values())}


@pytest.mark.parametrize("layout", ["meld10", "meld9"])
def test_meld_pickle_carves_validation_from_train_by_whole_dialogues(tmp_path, layout):
    path, data = meld_pickle(tmp_path / "MELD_features_raw.pkl", layout)
    result = utterances.build(path, "meld7", seed=3)["default"]
    dataset = result.dataset_dict
    validation = result.report["splits"]["validation"]
    assert validation["policy"].startswith("DC") and len(validation["dialogues"]) == 1
    dialogue = lambda i: i.split("/")[0]  # noqa: E731
    splits = {split: {dialogue(i) for i in dataset[split]["id"]} for split in dataset}
    assert splits["validation"] == set(validation["dialogues"])
    assert not splits["train"] & splits["validation"]
    assert splits["test"] == {"6", "7"}
    assert dataset.num_rows == {"train": 30, "validation": 6, "test": 12}
    expected_modalities = ["text", "audio", "visual"] if layout == "meld10" else ["text", "audio"]
    assert metadata_from_dataset(dataset)["modalities"] == expected_modalities
    assert metadata_from_dataset(dataset)["problem_type"] == SINGLE_LABEL
    names = _one_hot_names(dataset["test"], MELD_NAMES)
    ids = dataset["test"]["id"]
    assert names == [MELD_NAMES[data[2][int(d)][int(u)]] for d, u in (i.split("/") for i in ids)]


def test_pickle_with_a_forbidden_global_is_refused(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("echo owned > " + str(tmp_path / "owned"),))

    ids, speakers, labels, text, audio, visual, sentences, train, test = _dialogue_tuple("iemocap")
    speakers[train[0]] = Payload()
    path = tmp_path / "IEMOCAP_features.pkl"
    path.write_bytes(
        pickle.dumps((ids, speakers, labels, text, audio, visual, sentences, train, test))
    )
    with pytest.raises(UnsafeSourceError, match="posix.system|os.system"):
        utterances.build(path, "iemocap4")
    assert not (tmp_path / "owned").exists()


def test_pickle_layout_and_content_errors(tmp_path):
    path, data = iemocap_pickle(tmp_path / "a.pkl")
    path.write_bytes(pickle.dumps(data[:8]))
    with pytest.raises(ValueError, match="tuple of 8 entries.*iemocap9 \\(9 entries\\)"):
        utterances.build(path, "iemocap4")
    labels = dict(data[2])
    first = data[7][0]
    labels[first] = [9] + labels[first][1:]
    path.write_bytes(pickle.dumps((*data[:2], labels, *data[3:])))
    with pytest.raises(ValueError, match=f"dialogue '{first}', utterance 0: class index 9"):
        utterances.build(path, "iemocap4")
    with pytest.raises(utterances.FeatureLimitError, match="total limit"):
        utterances.build(iemocap_pickle(path)[0], "iemocap4", max_total_bytes=100)


# --------------------------------------------------------------------------------------------------
# Hostile and faulty index inputs
# --------------------------------------------------------------------------------------------------


def _edit_first_row(index, rows, fmt="csv", **changes):
    rows = [dict(row) for row in rows]
    rows[0].update(changes)
    _write_index(index, rows, fmt)
    return rows[0]["id"]


@pytest.mark.parametrize(
    "value, message",
    [
        ("../outside.npy", "leads outside the index file's folder"),
        ("text/../../outside.npy", "leads outside the index file's folder"),
        ("/etc/passwd", "is an absolute path"),
        ("link/outside.npy", "leads outside the index file's folder"),
    ],
)
def test_feature_paths_must_stay_inside_the_index_folder(tmp_path, value, message):
    index, rows = meld_index(tmp_path / "src")
    np.save(tmp_path / "outside.npy", _text_vector(0))
    (tmp_path / "src" / "link").symlink_to(tmp_path, target_is_directory=True)
    first = _edit_first_row(index, rows, text=value)
    with pytest.raises(ValueError, match=message) as error:
        utterances.build(index, "meld7")
    assert f"line 2 (id '{first}'), column 'text'" in str(error.value)


def test_a_symlink_inside_the_folder_is_fine(tmp_path):
    index, rows = meld_index(tmp_path / "src")
    (tmp_path / "src" / "alias.npy").symlink_to(tmp_path / "src" / rows[1]["text"])
    _edit_first_row(index, rows, text="alias.npy")
    assert utterances.build(index, "meld7")["default"].dataset_dict.num_rows["train"] == 16


def test_a_missing_file_names_the_row_and_column(tmp_path):
    index, rows = iemocap_index(tmp_path / "src")
    os.remove(tmp_path / "src" / rows[0]["audio"])
    with pytest.raises(
        FileNotFoundError, match=f"line 2 \\(id '{rows[0]['id']}'\\), column 'audio'"
    ):
        utterances.build(index, "iemocap4")


def test_a_wrong_dim_names_both_rows(tmp_path):
    index, rows = meld_index(tmp_path / "src")
    np.save(tmp_path / "src" / rows[5]["visual"], np.ones((2, VISUAL_DIM + 1)))
    with pytest.raises(
        ValueError, match="line 7 .*column 'visual': visual features have dim 3, but .*line 2"
    ):
        utterances.build(index, "meld7")


@pytest.mark.parametrize(
    "array, message",
    [
        (np.array(["a", "b"], dtype=object), "dtype object"),
        (np.zeros((2, 2), dtype=np.complex64), "dtype complex64"),
        (np.zeros((2, 2, 2), dtype=np.float32), "shape \\(2, 2, 2\\)"),
        (np.zeros((0, 4), dtype=np.float32), "no empty axis"),
    ],
)
def test_bad_npy_contents_are_refused_from_the_header(tmp_path, array, message):
    index, rows = meld_index(tmp_path / "src")
    np.save(tmp_path / "src" / rows[0]["text"], array, allow_pickle=True)
    with pytest.raises(ValueError, match=message):
        utterances.build(index, "meld7")


def test_a_truncated_npy_is_refused(tmp_path):
    index, rows = meld_index(tmp_path / "src")
    path = tmp_path / "src" / rows[0]["text"]
    np.save(path, np.zeros((50, TEXT_DIM), dtype=np.float32))
    path.write_bytes(path.read_bytes()[:-8])
    with pytest.raises(ValueError, match="is truncated"):
        utterances.build(index, "meld7")


def test_byte_limits_per_file_and_in_total(tmp_path):
    index, rows = meld_index(tmp_path / "src")
    np.save(tmp_path / "src" / rows[0]["visual"], np.zeros((1000, VISUAL_DIM)))
    with pytest.raises(
        utterances.FeatureLimitError, match="per-file limit of 4,096 bytes.*--max_file_bytes"
    ):
        utterances.build(index, "meld7", max_file_bytes=4096)
    with pytest.raises(utterances.FeatureLimitError, match="total limit of 1,000 bytes"):
        utterances.build(index, "meld7", max_total_bytes=1000)
    assert utterances.build(index, "meld7", max_file_bytes=16_000)["default"]


def test_non_finite_values_are_replaced_and_counted(tmp_path):
    index, rows = meld_index(tmp_path / "src")
    vector = _text_vector(0)
    vector[:3] = [np.nan, np.inf, -np.inf]
    np.save(tmp_path / "src" / rows[0]["text"], vector)
    result = utterances.build(index, "meld7")["default"]
    counts = result.report["non_finite"]["train"]["text"]
    assert counts == {"nan": 1, "posinf": 1, "neginf": 1, "samples_affected": 1}
    first = result.dataset_dict["train"].with_format("numpy")[0]["text"]
    np.testing.assert_array_equal(first[0], [0, 0, 0, 3])


def test_unknown_label_names_are_listed(tmp_path):
    index, rows = iemocap_index(tmp_path / "src")
    rows[0]["label"], rows[4]["label"], rows[9]["label"] = "happpy", "joy", "happpy"
    _write_index(index, rows, "csv")
    with pytest.raises(ValueError) as error:
        utterances.build(index, "iemocap4")
    message = str(error.value)
    assert "'happpy' (2 rows, first at line 2)" in message and "'joy' (1 rows" in message
    assert "Known names:" in message and "exc" in message


def test_index_errors_name_the_problem(tmp_path):
    index, rows = meld_index(tmp_path / "src")
    _write_index(index, [{k: v for k, v in r.items() if k != "label"} for r in rows], "csv")
    with pytest.raises(ValueError, match="lacks the column\\(s\\) \\['label'\\]"):
        utterances.build(index, "meld7")
    _edit_first_row(index, rows, split="holdout")
    with pytest.raises(ValueError, match="split 'holdout' is not one of"):
        utterances.build(index, "meld7")
    _edit_first_row(index, rows, id=rows[1]["id"])
    with pytest.raises(ValueError, match="the id also appears on line 2"):
        utterances.build(index, "meld7")
    plain, iemocap_rows = iemocap_index(tmp_path / "iemocap", ids="plain")
    without_sessions = [{k: v for k, v in r.items() if k != "session"} for r in iemocap_rows]
    _write_index(plain, without_sessions, "csv")  # ids without sessions, no split column
    with pytest.raises(ValueError, match="need every utterance's IEMOCAP session.*'u1'"):
        utterances.build(plain, "iemocap4")
    with pytest.raises(ValueError, match="needs a 'split' column"):
        utterances.build(plain, "iemocap4", protocol="split")
    _write_index(index, rows, "csv")
    with pytest.raises(ValueError, match="unknown to the iemocap4 class set"):
        utterances.build(index, "iemocap4")  # MELD names


def test_cli_reports_source_errors_without_a_traceback(tmp_path, capsys):
    index, rows = meld_index(tmp_path / "src")
    _edit_first_row(index, rows, visual="../../x.npy")
    argv = ["--dataset", "meld7", "--source", str(index), "--output", str(tmp_path / "out")]
    assert utterances.main(argv) == 1
    assert "leads outside" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
