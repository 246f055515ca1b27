"""The `# Copied from` machinery: every copy in the repository matches its source, and the checker
itself finds drift, repairs it with --fix and names a source that does not exist."""

from __future__ import annotations

import importlib.util
import re
import sys
import textwrap

import pytest

from .conftest import REPO_ROOT


def _load_checker():
    spec = importlib.util.spec_from_file_location(
        "check_copies", REPO_ROOT / "utils" / "check_copies.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


check_copies = _load_checker()


def test_every_copy_in_the_repository_matches_its_source():
    drifts = check_copies.check_copies(REPO_ROOT)
    assert drifts == [], "\n".join(map(str, drifts))


def test_the_repository_has_copies_to_check():
    """Guards the test above against passing because the markers stopped being recognised."""
    text = (REPO_ROOT / "modeling_lsgmer" / "modeling_lsgmer.py").read_text()
    assert text.count("# Copied from modeling_lddu.modeling_lddu.") >= 4
    first = (REPO_ROOT / "modeling_lsgmer" / "pipeline_lsgmer.py").read_text().splitlines()[0]
    assert check_copies.MARKER.match(first)


SOURCE = '''\
"""A source module."""


class SourceBlock:
    """A SourceBlock."""

    def forward(self, value):
        return source_helper(value) + 1


def source_helper(value):
    return value * 2
'''

COPY_HEADER = '''\
"""A copying module."""


# Copied from modeling_src.source_src.SourceBlock with Source->Target, source->target
class TargetBlock:
    """A TargetBlock."""

    def forward(self, value):
        return target_helper(value) + 1


class Own:
    # Copied from modeling_src.source_src.source_helper with source->target
    def target_helper(value):
        return value * 2
'''


@pytest.fixture
def tree(tmp_path):
    """A repository with one source folder, one block-copying file and one whole-file copy."""
    (tmp_path / "modeling_src").mkdir()
    (tmp_path / "modeling_dst").mkdir()
    (tmp_path / "modeling_src" / "source_src.py").write_text(SOURCE)
    (tmp_path / "modeling_dst" / "blocks_dst.py").write_text(COPY_HEADER)
    whole = "# Copied from modeling_src.source_src with Source->Target\n" + SOURCE.replace(
        "Source", "Target"
    )
    (tmp_path / "modeling_dst" / "whole_dst.py").write_text(whole)
    return tmp_path


def test_matching_copies_pass(tree):
    assert check_copies.check_copies(tree) == []
    assert check_copies.main(["--root", str(tree)]) == 0


def test_an_edited_block_copy_is_found_and_fixed(tree):
    path = tree / "modeling_dst" / "blocks_dst.py"
    path.write_text(COPY_HEADER.replace("return target_helper(value) + 1", "return 0"))
    drifts = check_copies.check_copies(tree)
    assert [(d.path.name, d.line, d.source) for d in drifts] == [
        ("blocks_dst.py", 4, "modeling_src.source_src.SourceBlock")
    ]
    assert check_copies.main(["--root", str(tree)]) == 1
    assert check_copies.main(["--root", str(tree), "--fix"]) == 0
    assert path.read_text() == COPY_HEADER
    assert check_copies.check_copies(tree) == []


def test_a_changed_source_makes_every_copy_drift_and_fix_follows_it(tree):
    source = tree / "modeling_src" / "source_src.py"
    source.write_text(SOURCE.replace("value * 2", "value * 3"))
    drifts = check_copies.check_copies(tree)
    assert {(d.path.name, d.line) for d in drifts} == {("blocks_dst.py", 13), ("whole_dst.py", 1)}
    check_copies.check_copies(tree, fix=True)
    assert check_copies.check_copies(tree) == []
    copied = (tree / "modeling_dst" / "blocks_dst.py").read_text()
    assert "    def target_helper(value):\n        return value * 3\n" in copied  # re-indented
    assert "value * 3" in (tree / "modeling_dst" / "whole_dst.py").read_text()


def test_an_edited_whole_file_copy_is_found_and_fixed(tree):
    path = tree / "modeling_dst" / "whole_dst.py"
    expected = path.read_text()
    path.write_text(expected + "\nEXTRA = 1\n")
    assert [d.path.name for d in check_copies.check_copies(tree)] == ["whole_dst.py"]
    check_copies.check_copies(tree, fix=True)
    assert path.read_text() == expected


@pytest.mark.parametrize(
    "marker, named",
    [
        ("modeling_src.source_src.NoSuchBlock", "NoSuchBlock"),
        ("modeling_nowhere.module.Block", "modeling_nowhere.module.Block"),
    ],
)
def test_an_unknown_source_is_named(tree, marker, named, capsys):
    path = tree / "modeling_dst" / "blocks_dst.py"
    path.write_text(COPY_HEADER.replace("modeling_src.source_src.SourceBlock", marker))
    with pytest.raises(check_copies.CopySourceError, match=named):
        check_copies.check_copies(tree)
    assert check_copies.main(["--root", str(tree)]) == 2
    assert named in capsys.readouterr().err


def test_a_marker_not_above_a_definition_is_refused(tree):
    path = tree / "modeling_dst" / "blocks_dst.py"
    text = textwrap.dedent(
        """\
        # Copied from modeling_src.source_src.SourceBlock
        VALUE = 1
        """
    )
    path.write_text('"""Doc."""\n' + text)
    with pytest.raises(check_copies.CopySourceError, match="directly above a class or def"):
        check_copies.check_copies(tree)


def test_constants_and_decorated_definitions_are_copies_too(tree):
    """A module constant copied from a module constant, and a decorated method (the marker
    above its first decorator) drift, are found and fixed like any block."""
    source = tree / "modeling_src" / "more_src.py"  # its own module: whole_dst copies source_src
    source.write_text(
        '"""More sources."""\n'
        + textwrap.dedent(
            """
            SOURCE_KEYS = frozenset(
                {"a", "b"}
            )


            class Holder:
                @property
                def source_value(self):
                    return 1
            """
        )
    )
    copy = tree / "modeling_dst" / "more_dst.py"
    expected = (
        "# A module (a marker on its first line would copy the whole file).\n"
        "\n"
        "# Copied from modeling_src.more_src.SOURCE_KEYS with SOURCE->TARGET\n"
        "TARGET_KEYS = frozenset(\n"
        '    {"a", "b"}\n'
        ")\n"
        "\n"
        "\n"
        "class Own:\n"
        "    # Copied from modeling_src.more_src.Holder.source_value with source->target\n"
        "    @property\n"
        "    def target_value(self):\n"
        "        return 1\n"
    )
    copy.write_text(expected)
    assert check_copies.check_copies(tree) == []
    copy.write_text(expected.replace('{"a", "b"}', '{"a"}').replace("return 1", "return 2"))
    assert [d.line for d in check_copies.check_copies(tree)] == [3, 10]
    check_copies.check_copies(tree, fix=True)
    assert copy.read_text() == expected


def test_the_processors_are_copies_of_the_raw_feature_functions():
    """The processor of every family holds copies of dataset_scripts/raw_features.py's functions
    (what the dataset builders run), and the other families copy LDDU's processor whole."""
    text = (REPO_ROOT / "modeling_lddu" / "processing_lddu.py").read_text()
    sources = re.findall(r"^# Copied from dataset_scripts\.raw_features\.(\w+)$", text, re.M)
    assert {"encode_texts", "load_text_encoder", "read_audio_file", "log_mel_frames"} <= set(
        sources
    )
    for family, name in (("lsgmer", "Lsgmer"), ("mcur", "Mcur")):
        first = (REPO_ROOT / f"modeling_{family}" / f"processing_{family}.py").read_text()
        assert first.startswith(
            f"# Copied from modeling_lddu.processing_lddu with LDDU->{name}, lddu->{family}\n"
        )


def test_a_source_outside_the_model_folders_is_checked_and_fixed(tree):
    (tree / "shared_code").mkdir()
    (tree / "shared_code" / "functions.py").write_text(SOURCE)
    path = tree / "modeling_dst" / "from_shared_dst.py"
    marker = '"""Doc."""\n\n\n# Copied from shared_code.functions.source_helper\n'
    path.write_text(marker + "def source_helper(value):\n    return value * 2\n")
    assert check_copies.check_copies(tree) == []
    (tree / "shared_code" / "functions.py").write_text(SOURCE.replace("value * 2", "value * 5"))
    assert [d.source for d in check_copies.check_copies(tree)] == [
        "shared_code.functions.source_helper"
    ]
    check_copies.check_copies(tree, fix=True)
    assert "return value * 5" in path.read_text()


def test_the_processors_constants_are_those_of_the_raw_features():
    """The copied functions read module constants, which the checker does not compare."""
    import inspect
    import re

    from dataset_scripts import raw_features
    from modeling_lddu import processing_lddu
    from modeling_lsgmer import processing_lsgmer
    from modeling_mcur import processing_mcur

    # Every constant of raw_features that the processor's code names (found, not listed by hand).
    source = inspect.getsource(processing_lddu)
    names = [
        name
        for name, value in vars(raw_features).items()
        if re.fullmatch(r"[A-Z][A-Z0-9_]+", name)
        and isinstance(value, (int, float, str))
        and re.search(rf"\b{name}\b", source)
    ]
    assert "MAX_WAVEFORM_PEAK" in names and "MEL_FLOOR" in names
    for module in (processing_lddu, processing_lsgmer, processing_mcur):
        assert {n: getattr(module, n) for n in names} == {
            n: getattr(raw_features, n) for n in names
        }
