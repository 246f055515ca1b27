"""Check (or repair) the ``# Copied from`` copies in the remote-code folders ``modeling_*/``.

Remote-code folders may not import each other, so a block two families share is copied, and the
copy carries a marker naming its source and the renames applied to it:

* a block: the comment line ``# Copied from modeling_lddu.modeling_lddu.LDDUEncoderLayer with
  LDDU->Lsgmer`` directly above a ``class`` / ``def`` (above its first decorator, if it has any)
  or a module-level constant (``NAME = ...``); the copy (from that line to the end of the block
  or statement) equals the source object's code after the replacements;
* a whole file: a file whose first line is ``# Copied from modeling_lddu.pipeline_lddu with
  LDDU->Lsgmer, lddu->lsgmer``; everything after that line equals the source file after the
  replacements.

Replacements are comma-separated ``A->B`` pairs applied in order as plain text substitutions.

A source is any module of the repository named by its dotted path, inside a model folder or not:
``# Copied from dataset_scripts.raw_features.encode_texts`` marks a processor's copy of the
function the dataset builders run. Copies are looked for in ``modeling_*/*.py`` only.

    python utils/check_copies.py          # report drifted copies, exit 1 if any
    python utils/check_copies.py --fix    # rewrite drifted copies from their sources
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]

MARKER = re.compile(
    r"^(?P<indent>[ \t]*)# Copied from (?P<source>[\w.]+)(?: with (?P<renames>.+))?$"
)


class CopySourceError(ValueError):
    """A marker names a source that does not exist or cannot be parsed."""


@dataclass(frozen=True)
class Drift:
    """A copy that differs from what its source gives."""

    path: Path
    line: int  # 1-based line of the marker
    source: str

    def __str__(self) -> str:
        return (
            f"{self.path}:{self.line}: differs from {self.source} (run utils/check_copies.py --fix)"
        )


def parse_renames(text: str | None, where: str) -> list[tuple[str, str]]:
    """``"LDDU->Lsgmer, lddu->lsgmer"`` -> ``[("LDDU", "Lsgmer"), ("lddu", "lsgmer")]``."""
    if not text:
        return []
    renames = []
    for item in text.split(","):
        old, arrow, new = item.strip().partition("->")
        if not arrow or not old:
            raise CopySourceError(f"{where}: malformed replacement {item.strip()!r} (want A->B)")
        renames.append((old, new))
    return renames


def apply_renames(text: str, renames: list[tuple[str, str]]) -> str:
    for old, new in renames:
        text = text.replace(old, new)
    return text


def _module_file(root: Path, dotted: str) -> Path | None:
    path = root.joinpath(*dotted.split(".")).with_suffix(".py")
    return path if path.is_file() else None


_DEFINITIONS = (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def _assigned_name(node: ast.AST) -> str | None:
    """The name a one-target assignment statement binds (``NAME = ...``, ``NAME: T = ...``)."""
    if isinstance(node, ast.Assign) and len(node.targets) == 1:
        target = node.targets[0]
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        target = node.target
    else:
        return None
    return target.id if isinstance(target, ast.Name) else None


def _first_line(node: ast.AST) -> int:
    """The 1-based first line of a definition, its decorators included."""
    decorators = getattr(node, "decorator_list", None) or []
    return min([node.lineno, *(decorator.lineno for decorator in decorators)])


def _object_lines(path: Path, qualified_name: str) -> list[str] | None:
    """The lines of the class / function ``qualified_name`` (``Outer.inner`` allowed), decorators
    included, or of the module-level constant of that name, in ``path``, dedented to column 0."""
    lines = path.read_text().splitlines(keepends=True)
    body = ast.parse("".join(lines), filename=str(path)).body
    parts = qualified_name.split(".")
    node = None
    if len(parts) == 1:
        node = next((item for item in body if _assigned_name(item) == parts[0]), None)
    for part in parts if node is None else ():
        node = next(
            (item for item in body if isinstance(item, _DEFINITIONS) and item.name == part),
            None,
        )
        if node is None:
            return None
        body = node.body
    block = lines[_first_line(node) - 1 : node.end_lineno]
    return _reindent(block, "")


def _reindent(block: list[str], indent: str) -> list[str]:
    first = block[0]
    current = first[: len(first) - len(first.lstrip())]
    result = []
    for line in block:
        if line.strip() and line.startswith(current):
            result.append(indent + line[len(current) :])
        else:
            result.append(line if line.strip() else line.lstrip(" \t"))
    return result


def _source_object(root: Path, dotted: str, where: str) -> list[str]:
    """Split ``package.module.Object[.method]`` at the longest prefix that is a file."""
    parts = dotted.split(".")
    for split in range(len(parts) - 1, 0, -1):
        module = _module_file(root, ".".join(parts[:split]))
        if module is not None:
            found = _object_lines(module, ".".join(parts[split:]))
            if found is None:
                raise CopySourceError(
                    f"{where}: the source {dotted!r} names {'.'.join(parts[split:])!r}, which "
                    f"{module.relative_to(root)} does not define"
                )
            return found
    raise CopySourceError(f"{where}: the source {dotted!r} names no module under {root}")


def _copied_blocks(path: Path, lines: list[str]):
    """Yield (marker index, start, end, match) for each block marker; start/end index the copy's
    lines [start, end)."""
    tree = ast.parse("".join(lines), filename=str(path))
    blocks = {_first_line(node): node for node in ast.walk(tree) if isinstance(node, _DEFINITIONS)}
    blocks.update({node.lineno: node for node in tree.body if _assigned_name(node) is not None})
    for index, line in enumerate(lines):
        match = MARKER.match(line.rstrip("\n"))
        if match is None:
            continue
        node = blocks.get(index + 2)  # the next line, 1-based
        # A constant copies a constant: the source names one (no dot after its module) only when
        # the copy is one too, which _source_object checks by finding it.
        if node is None or (_assigned_name(node) is not None) != _names_constant(match["source"]):
            raise CopySourceError(
                f"{path}:{index + 1}: a '# Copied from' marker must stand directly above a class "
                "or def (or above a module constant copied from a module constant)"
            )
        yield index, index + 1, node.end_lineno, match


def _names_constant(dotted: str) -> bool:
    """Whether a marker's source names a module-level constant (an UPPER_CASE last part)."""
    return re.fullmatch(r"[A-Z][A-Z0-9_]*", dotted.rsplit(".", 1)[-1]) is not None


def check_file(path: Path, root: Path, fix: bool) -> list[Drift]:
    """The drifted copies of one file (rewritten from their sources when ``fix``)."""
    text = path.read_text()
    lines = text.splitlines(keepends=True)
    if not lines:
        return []
    first = MARKER.match(lines[0].rstrip("\n"))
    if first is not None and not lines[0].startswith((" ", "\t")):
        where = f"{path}:1"
        source_file = _module_file(root, first["source"])
        if source_file is None:
            raise CopySourceError(
                f"{where}: the source {first['source']!r} is no file under {root}"
            )
        renames = parse_renames(first["renames"], where)
        expected = lines[0] + apply_renames(source_file.read_text(), renames)
        if expected == text:
            return []
        if fix:
            _write_atomic(path, expected)
        return [Drift(path, 1, first["source"])]

    drifts, replacements = [], []
    for marker, start, end, match in _copied_blocks(path, lines):
        where = f"{path}:{marker + 1}"
        renames = parse_renames(match["renames"], where)
        source = _source_object(root, match["source"], where)
        expected = _reindent([apply_renames(line, renames) for line in source], match["indent"])
        if lines[start:end] != expected:
            drifts.append(Drift(path, marker + 1, match["source"]))
            replacements.append((start, end, expected))
    if fix and replacements:
        for start, end, expected in sorted(replacements, reverse=True):
            lines[start:end] = expected
        _write_atomic(path, "".join(lines))
    return drifts


def _write_atomic(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w") as stream:
            stream.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def check_copies(root: Path = REPO_ROOT, fix: bool = False) -> list[Drift]:
    """Check every ``modeling_*/*.py`` under ``root``; with ``fix``, rewrite drifted copies."""
    drifts = []
    for path in sorted(root.glob("modeling_*/*.py")):
        drifts.extend(check_file(path, root, fix))
    return drifts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fix", action="store_true", help="rewrite drifted copies")
    parser.add_argument("--root", type=Path, default=REPO_ROOT, help="repository root")
    arguments = parser.parse_args(argv)
    try:
        drifts = check_copies(arguments.root.resolve(), fix=arguments.fix)
    except CopySourceError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for drift in drifts:
        print(("fixed: " if arguments.fix else "") + str(drift), file=sys.stderr)
    return 0 if arguments.fix or not drifts else 1


if __name__ == "__main__":
    sys.exit(main())
