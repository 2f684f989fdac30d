"""Imports go one way: the CLIs -> harness -> models -> common; nothing imports tests or benchmarks."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# layer of each top-level name of the project; a module may import its own layer or lower ones
LAYERS = {"common": 0, "models": 1, "harness": 2, "evaluate": 3, "train": 3}
NEVER_IMPORTED = {"tests", "benchmarks", "conftest"}
SOURCES = ("common", "models", "harness", "evaluate.py", "train.py")


def _imported(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, top-level name) of every absolute import, inside functions too."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name.split(".")[0]) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def import_violations(root: Path, sources: tuple[str, ...] = SOURCES) -> list[str]:
    """'file:line: a imports b' for every import against the layering."""
    files = []
    for source in sources:
        path = root / source
        files.extend(sorted(path.rglob("*.py")) if path.is_dir() else [path])
    problems = []
    for file in files:
        relative = file.relative_to(root)
        layer = LAYERS[relative.parts[0].removesuffix(".py")]
        for line, name in _imported(ast.parse(file.read_text(encoding="utf-8"), str(file))):
            if name in NEVER_IMPORTED or LAYERS.get(name, -1) > layer:
                problems.append(f"{relative}:{line}: {relative.parts[0]} imports {name}")
    return problems


def test_imports_go_one_way() -> None:
    assert import_violations(ROOT) == []


def test_the_check_finds_arrows_against_the_layering(tmp_path: Path) -> None:
    (tmp_path / "common").mkdir()
    (tmp_path / "models").mkdir()
    (tmp_path / "common" / "files.py").write_text("import json\nfrom models.encoder import x\n")
    body = "from common.files import y\n\ndef f():\n    from harness.datasets import z\n"
    body += "    import tests.conftest\n"
    (tmp_path / "models" / "a.py").write_text(body)
    (tmp_path / "train.py").write_text("import harness.training\nimport models\n")
    assert import_violations(tmp_path, ("common", "models", "train.py")) == [
        "common/files.py:2: common imports models",
        "models/a.py:4: models imports harness",
        "models/a.py:5: models imports tests",
    ]
