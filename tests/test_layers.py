"""Packages import only downstream of themselves: media <- speech/vision/text/internvideo2/llm <- memory <- qa <- app.

Every import in model/ and app/ is read with `ast` (imports inside functions and TYPE_CHECKING blocks count too)
and checked against the layer table below; tools/ and tests/ may import anything, the library never imports them.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Lower layers know nothing of higher ones; packages in one layer do not import each other.
LAYERS: dict[str, int] = {
    "model.errors": 0,
    "model.timecode": 0,
    "model.protocols": 0,
    "model.profiles": 0,
    "model.sources": 0,
    "model.assets": 0,
    "model.offline": 0,
    "model.media": 1,
    "model.speech": 2,
    "model.vision": 2,
    "model.text": 2,
    "model.internvideo2": 2,
    "model.llm": 2,
    "model.memory": 3,
    "model.qa": 4,
    "model.runtime": 5,
    "model.cli": 6,
    "app": 7,
}
BASE = 0  # the base modules are leaves shared by everyone; they may use each other


def unit_of(module: str) -> str | None:
    """The layer-table entry a dotted module name belongs to (its package, or the module itself)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in LAYERS:
            return name
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    out: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
            out += [(node.lineno, f"{node.module}.{a.name}") for a in node.names]
    return out


def violations() -> list[str]:
    bad: list[str] = []
    for path in sorted([*ROOT.glob("model/**/*.py"), *ROOT.glob("app/**/*.py")]):
        name = module_name(path)
        if name == "model":  # the namespace's own __init__ (docstring only)
            assert not imports_of(path), "model/__init__.py stays empty"
            continue
        me = unit_of(name)
        if me is None:
            bad.append(f"{path.relative_to(ROOT)}: not in the layer table")
            continue
        for line, target in imports_of(path):
            if target.split(".")[0] in ("tools", "tests"):
                bad.append(
                    f"{path.relative_to(ROOT)}:{line} imports {target} (the library never imports {target.split('.')[0]}/)"
                )
                continue
            other = unit_of(target)
            if other is None or other == me:
                continue
            if LAYERS[other] < LAYERS[me] or LAYERS[other] == LAYERS[me] == BASE:
                continue
            bad.append(
                f"{path.relative_to(ROOT)}:{line} ({me}, layer {LAYERS[me]}) imports {target} (layer {LAYERS[other]})"
            )
    return sorted(set(bad))


def test_every_import_points_downstream() -> None:
    assert violations() == []


@pytest.mark.parametrize(
    ("importer", "target", "allowed"),
    [
        ("model.qa", "model.memory.records", True),
        ("model.memory", "model.qa", False),
        ("model.llm", "model.internvideo2", False),
    ],
)
def test_the_rule_itself(importer: str, target: str, allowed: bool) -> None:
    me, other = unit_of(importer), unit_of(target)
    assert me is not None and other is not None
    assert (LAYERS[other] < LAYERS[me]) is allowed
