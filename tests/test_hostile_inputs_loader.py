"""Hostile and careless source files: the loader bounds what a file can cost and says why it refuses.

The malicious pickles are written opcode by opcode (never produced by running an object's
`__reduce__`). Cases that used to hang or allocate gigabytes run in a subprocess with a timeout
(and an address-space limit), so a regression fails instead of stalling the suite.
"""

from __future__ import annotations

import logging
import pickle
import re
import struct
import subprocess
import sys
import textwrap
import zipfile

import numpy as np
import pytest
import torch

from dataset_scripts import m3ed, mosei
from dataset_scripts.labels import MOSEI_LABELS, multi_hot_to_target_tokens
from dataset_scripts.safe_load import (
    MAX_DEPTH,
    CorruptSourceError,
    SourceLimitError,
    load_source_file,
    safe_load_pickle,
)
from dataset_scripts.sources import parse_source
from dataset_scripts.synthetic import generate_synthetic_splits, write_source

from .conftest import REPO_ROOT
from .test_dataset_scripts import SMALL

TIMEOUT_S = 60


# --------------------------------------------------------------------------------------------------
# Opcode-level helpers
# --------------------------------------------------------------------------------------------------


def _global(module: str, name: str) -> bytes:
    return pickle.GLOBAL + f"{module}\n{name}\n".encode()


def _binput(index: int) -> bytes:
    return pickle.BINPUT + bytes([index])


def _binget(index: int) -> bytes:
    return pickle.BINGET + bytes([index])


def _long(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8, "little", signed=True)
    return pickle.LONG1 + bytes([len(data)]) + data


def _unicode(text: str) -> bytes:
    data = text.encode()
    return pickle.BINUNICODE + struct.pack("<I", len(data)) + data


def _bytes(data: bytes) -> bytes:
    if len(data) < 256:  # the short form, which torch's own unpickler also reads
        return pickle.SHORT_BINBYTES + bytes([len(data)]) + data
    return pickle.BINBYTES + struct.pack("<I", len(data)) + data


def _program(body: bytes) -> bytes:
    return pickle.PROTO + b"\x02" + body + pickle.STOP


def _doubling(levels: int, leaf: bytes) -> bytes:
    """`x0 = leaf; x(i) = (x(i-1), x(i-1))` through the memo: a few bytes per level, 2**levels
    leaves when expanded. `tuple_op` TUPLE2 builds tuples; the result is left on the stack."""
    body = leaf + _binput(0) + pickle.POP
    for level in range(1, levels + 1):
        body += _binget(level - 1) + _binget(level - 1) + pickle.TUPLE2 + _binput(level)
        body += pickle.POP
    return body + _binget(levels)


def _doubling_lists(levels: int) -> bytes:
    """Like `_doubling` but with lists: `x(i) = [x(i-1), x(i-1)]`."""
    body = pickle.EMPTY_LIST + _binput(0) + pickle.POP
    for level in range(1, levels + 1):
        body += pickle.MARK + _binget(level - 1) + _binget(level - 1) + pickle.LIST
        body += _binput(level) + pickle.POP
    return body + _binget(levels)


def _run_isolated(script: str, timeout: int = TIMEOUT_S, memory_gb: float = 0) -> str:
    """Runs `script` in a fresh interpreter from this checkout; returns its stdout. A hang fails."""
    preamble = "import resource\n"
    if memory_gb:
        limit = int(memory_gb * 2**30)
        preamble += f"resource.setrlimit(resource.RLIMIT_AS, ({limit}, {limit}))\n"
    try:
        completed = subprocess.run(
            [sys.executable, "-c", preamble + textwrap.dedent(script)],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"did not finish within {timeout} s (the loader hangs on this file)")
    return completed.stdout + completed.stderr


_LOAD_AND_REPORT = """
    from dataset_scripts.safe_load import safe_load_pickle
    try:
        result = safe_load_pickle({path!r})
        print("LOADED", type(result).__name__)
    except Exception as error:
        print("ERROR", type(error).__name__, error)
"""


def _load_isolated(path, **kwargs) -> str:
    return _run_isolated(_LOAD_AND_REPORT.format(path=str(path)), **kwargs)


# --------------------------------------------------------------------------------------------------
# 1. Bounded cost: sharing, depth, arrays, allocations, state
# --------------------------------------------------------------------------------------------------


def test_nested_tuple_key_is_refused_quickly(tmp_path):
    # {x40: None} where x40 is a 2**40-leaf tuple DAG: hashing it as a key never ends.
    body = pickle.EMPTY_DICT + _doubling(40, pickle.EMPTY_TUPLE) + pickle.NONE + pickle.SETITEM
    source = tmp_path / "tuple_key.pkl"
    source.write_bytes(_program(body))
    assert source.stat().st_size < 400
    output = _load_isolated(source)
    assert "ERROR SourceLimitError" in output, output
    assert str(source) in output and "BINGET" in output and "second reference" in output


def test_nested_tgt_list_is_refused_by_the_loader(tmp_path):
    # {'train': {'tgt': [x40]}}: a 40-level shared list whose repr never ends.
    body = (
        pickle.EMPTY_DICT
        + _unicode("train")
        + pickle.EMPTY_DICT
        + _unicode("tgt")
        + pickle.MARK
        + _doubling_lists(40)
        + pickle.LIST
        + pickle.SETITEM
        + pickle.SETITEM
    )
    source = tmp_path / "tgt.pkl"
    source.write_bytes(_program(body))
    output = _load_isolated(source)
    assert "ERROR SourceLimitError" in output, output


def test_nested_tgt_list_error_message_is_bounded():
    # The same structure in memory (built in the subprocess) through the label conversion.
    output = _run_isolated(
        """
        from dataset_scripts.labels import MOSEI_LABELS, target_tokens_to_multi_hot
        nested = [2, 4, 3]
        for _ in range(40):
            nested = [nested, nested]
        try:
            target_tokens_to_multi_hot([nested], MOSEI_LABELS, split="train")
        except ValueError as error:
            print("ERROR", len(str(error)), error)
        """
    )
    assert output.startswith("ERROR"), output
    assert int(output.split()[1]) < 1000
    assert "split 'train', sample 0" in output


def test_nesting_deeper_than_the_limit_is_refused(tmp_path):
    body = pickle.EMPTY_LIST * 1
    for _ in range(MAX_DEPTH + 5):
        body = pickle.MARK + body + pickle.LIST
    source = tmp_path / "deep.pkl"
    source.write_bytes(_program(body))
    with pytest.raises(SourceLimitError, match=rf"nesting deeper than {MAX_DEPTH} levels"):
        safe_load_pickle(source)


def _latin1(text: str) -> bytes:
    """Bytes as protocol 2 spells them: `_codecs.encode(text, 'latin1')`."""
    return (
        _global("_codecs", "encode") + _unicode(text) + _unicode("latin1") + pickle.TUPLE2
    ) + pickle.REDUCE


def _reconstruct(shape: tuple[int, ...], protocol_2: bool = False) -> bytes:
    shape_ops = b"".join(_long(n) for n in shape)
    return (
        _global("numpy.core.multiarray", "_reconstruct")
        + _global("numpy", "ndarray")
        + pickle.MARK
        + shape_ops
        + pickle.TUPLE
        + (_latin1("b") if protocol_2 else _bytes(b"b"))
        + pickle.TUPLE3
        + pickle.REDUCE
    )


def _array_state(shape: tuple[int, ...], dtype: str, data: bytes) -> bytes:
    return (
        pickle.MARK
        + _long(1)
        + pickle.MARK
        + b"".join(_long(n) for n in shape)
        + pickle.TUPLE
        + _global("numpy", "dtype")
        + _unicode(dtype)
        + pickle.NEWFALSE
        + pickle.NEWTRUE
        + pickle.TUPLE3
        + pickle.REDUCE
        + pickle.NEWFALSE
        + _bytes(data)
        + pickle.TUPLE
        + pickle.BUILD
    )


def test_array_without_data_never_exposes_uninitialised_memory(tmp_path):
    source = tmp_path / "empty_array.pkl"
    source.write_bytes(_program(_reconstruct((64,))))
    with pytest.raises(SourceLimitError, match="only empty arrays, filled by BUILD") as error:
        safe_load_pickle(source)
    assert str(source) in str(error.value) and "REDUCE" in str(error.value)


def test_array_declaring_more_bytes_than_the_file_holds_is_refused(tmp_path):
    # 2**29 float64 = 4 GiB declared, 8 bytes supplied.
    source = tmp_path / "big_array.pkl"
    source.write_bytes(_program(_reconstruct((0,)) + _array_state((2**29,), "f8", b"\0" * 8)))
    with pytest.raises(SourceLimitError, match="declares 4294967296 bytes but the file supplies 8"):
        safe_load_pickle(source)


def test_array_with_exactly_its_bytes_loads(tmp_path):
    data = np.arange(6, dtype="<f8").tobytes()
    source = tmp_path / "array.pkl"
    source.write_bytes(_program(_reconstruct((0,)) + _array_state((2, 3), "f8", data)))
    np.testing.assert_array_equal(safe_load_pickle(source), np.arange(6.0).reshape(2, 3))


def test_calling_ndarray_directly_is_refused(tmp_path):
    source = tmp_path / "ndarray_call.pkl"
    body = _global("numpy", "ndarray") + pickle.MARK + _long(10**6) + pickle.TUPLE + pickle.TUPLE1
    source.write_bytes(_program(body + pickle.REDUCE))
    with pytest.raises(SourceLimitError, match="calling the global numpy.ndarray"):
        safe_load_pickle(source)


def test_bytearray_of_a_count_is_refused_without_allocating(tmp_path):
    body = (
        pickle.EMPTY_DICT
        + _unicode("ignored")
        + _global("builtins", "bytearray")
        + _long(3 * 10**9)
        + pickle.TUPLE1
        + pickle.REDUCE
        + pickle.SETITEM
    )
    source = tmp_path / "bytearray.pkl"
    source.write_bytes(_program(body))
    # With 2 GiB of address space, a 3 GB allocation can only fail; the loader must refuse first.
    output = _load_isolated(source, memory_gb=2)
    assert "ERROR SourceLimitError" in output, output
    assert "bytearray(3000000000)" in output and str(source) in output


def test_state_on_an_allowed_class_is_refused_and_argparse_keeps_working(tmp_path):
    # BUILD with (None, {'__init__': 1}) on the class argparse.Namespace: setattr on the class.
    body = (
        _global("argparse", "Namespace")
        + pickle.NONE
        + pickle.EMPTY_DICT
        + _unicode("__init__")
        + _long(1)
        + pickle.SETITEM
        + pickle.TUPLE2
        + pickle.BUILD
    )
    source = tmp_path / "namespace.pkl"
    source.write_bytes(_program(body))
    output = _run_isolated(
        textwrap.dedent(_LOAD_AND_REPORT.format(path=str(source)))
        + "import argparse\nprint('NAMESPACE', argparse.Namespace(a=1).a)\n"
    )
    assert "ERROR SourceLimitError" in output, output
    assert "setting state (attributes) on the global argparse.Namespace" in output
    assert "NAMESPACE 1" in output


def test_namespace_instances_only_take_plain_names(tmp_path):
    body = (
        _global("argparse", "Namespace")
        + pickle.EMPTY_TUPLE
        + pickle.NEWOBJ
        + pickle.EMPTY_DICT
        + _unicode("__class__")
        + _long(1)
        + pickle.SETITEM
        + pickle.BUILD
    )
    source = tmp_path / "namespace_instance.pkl"
    source.write_bytes(_program(body))
    with pytest.raises(SourceLimitError, match="not a dict of plain names"):
        safe_load_pickle(source)


def test_small_shared_tuples_and_dtypes_still_load(tmp_path):
    # numpy's own pickles share the `(0,)` tuple and the dtype between arrays.
    content = {"a": [np.zeros((2, 3), np.float32) for _ in range(5)], "ids": ("x", "y")}
    content["again"] = content["ids"]
    for protocol in range(6):
        source = tmp_path / f"shared{protocol}.pkl"
        source.write_bytes(pickle.dumps(content, protocol=protocol))
        loaded = safe_load_pickle(source)
        assert loaded["again"] == ("x", "y") and len(loaded["a"]) == 5


# --------------------------------------------------------------------------------------------------
# 2. Clear errors for empty, truncated, corrupt and misnamed files
# --------------------------------------------------------------------------------------------------


def test_empty_file_is_a_clear_error(tmp_path):
    source = tmp_path / "empty.pkl"
    source.write_bytes(b"")
    with pytest.raises(CorruptSourceError, match=rf"{re.escape(str(source))} is empty"):
        load_source_file(source)


def test_truncated_pickle_is_a_clear_error(tmp_path):
    data = pickle.dumps({"train": np.zeros((4, 4))}, protocol=4)
    source = tmp_path / "truncated.pkl"
    source.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptSourceError, match=r"truncated\.pkl .*truncated"):
        load_source_file(source)


@pytest.mark.parametrize("damage", ["truncate", "overwrite"])
def test_corrupt_torch_file_names_the_file(tmp_path, damage):
    source = tmp_path / "corrupt.pt"
    torch.save({"train": torch.arange(1000.0)}, source)
    data = bytearray(source.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:  # keep the zip directory, destroy the pickle and the tensor data
        data[40:-200] = b"\xff" * (len(data) - 240)
    source.write_bytes(bytes(data))
    with pytest.raises(CorruptSourceError, match=re.escape(str(source))):
        load_source_file(source)


def test_plain_pickle_named_pt_loads_with_a_warning(tmp_path, caplog):
    source = tmp_path / "plain.pt"
    source.write_bytes(pickle.dumps({"train": np.ones(3)}, protocol=4))
    with caplog.at_level(logging.WARNING, logger="dataset_scripts.safe_load"):
        loaded = load_source_file(source)
    np.testing.assert_array_equal(loaded["train"], np.ones(3))
    assert "is a plain pickle, not a torch zip archive" in caplog.text


# --------------------------------------------------------------------------------------------------
# 3. Builders: label set, repeated ids, identical splits
# --------------------------------------------------------------------------------------------------


def test_mosei_file_through_the_m3ed_builder_is_refused(tmp_path):
    source = write_source(tmp_path / "mosei.pkl", "mmsa_pkl", **SMALL)
    with pytest.raises(ValueError, match="--feature_dims") as error:
        m3ed.convert_m3ed(source)
    suggested = re.search(r"--feature_dims (\S+)", str(error.value)).group(1)
    dims = {m: int(d) for m, d in (item.split("=") for item in suggested.split(","))}
    with pytest.raises(ValueError, match=r"carries no tgt vocabulary.*label set has 7"):
        m3ed.convert_m3ed(source, feature_dims=dims)


def test_vocabulary_with_fewer_emotions_than_the_label_set_is_refused(tmp_path):
    source = write_source(
        tmp_path / "m3ed.pt", "carat_m3ed_pt", **{**SMALL, "text_dim": 12, "audio_dim": 10}
    )
    raw = load_source_file(source)
    del raw["dict"]["tgt"]["Surprise"]
    dims = {"text": 12, "audio": 10, "visual": 5}
    with pytest.raises(ValueError, match=r"names 6 emotion\(s\).*has 7; missing: surprise"):
        parse_source(raw, m3ed.M3ED_SPEC, "m3ed.pt", feature_dims=dims)


def _raw_mosei(num_per_split: int = 4) -> dict:
    splits = generate_synthetic_splits(
        **{**SMALL, "num_train": num_per_split, "num_validation": 3, "num_test": 3}
    )
    raw = {}
    for split, name in zip(
        ("train", "validation", "test"), ("train", "valid", "test"), strict=True
    ):
        arrays = splits[split]
        entry = {f"src-{m}": arrays.features[m] for m in ("text", "audio", "visual")}
        entry["tgt"] = multi_hot_to_target_tokens(arrays.labels, MOSEI_LABELS)
        raw[name] = entry
    return raw


def test_test_split_identical_to_train_is_refused():
    raw = _raw_mosei(num_per_split=3)
    raw["test"] = raw["train"]
    with pytest.raises(ValueError, match="split 'test' is identical to split 'train'"):
        parse_source(
            raw, mosei.MOSEI_SPECS["aligned"], "s.pt", feature_dims={"audio": 7, "visual": 5}
        )


def test_repeated_ids_are_warned_about_and_reported(caplog):
    raw = _raw_mosei()
    raw["train"]["id"] = np.array(["a", "a", "b", "c"], dtype=object)
    raw["test"]["id"] = np.array(["c", "d", "e"], dtype=object)
    with caplog.at_level(logging.WARNING, logger="dataset_scripts.sources"):
        _, report = parse_source(
            raw, mosei.MOSEI_SPECS["aligned"], "s.pt", feature_dims={"audio": 7, "visual": 5}
        )
    assert report["duplicate_ids"] == {"within_split": {"train": 1}, "across_splits": 1}
    assert "split 'train' repeats 1 sample id(s)" in caplog.text
    assert "1 sample id(s) of split 'test' also occur in an earlier split" in caplog.text


def test_torch_archive_pickle_gets_the_same_limits(tmp_path):
    # A real torch zip whose data.pkl is replaced by an array without data.
    saved = tmp_path / "saved.pt"
    torch.save({"x": torch.zeros(2)}, saved)
    source = tmp_path / "crafted.pt"
    with zipfile.ZipFile(saved) as original, zipfile.ZipFile(source, "w") as crafted:
        for info in original.infolist():
            data = original.read(info)
            if info.filename.endswith("/data.pkl"):
                data = _program(
                    pickle.EMPTY_DICT + _unicode("x") + _reconstruct((64,), protocol_2=True)
                )
                data = data[:-1] + pickle.SETITEM + pickle.STOP
            crafted.writestr(info, data)
    with pytest.raises(SourceLimitError, match=r"crafted\.pt \(.*data\.pkl\).*only empty arrays"):
        load_source_file(source)
