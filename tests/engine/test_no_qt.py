"""engine/ must never import Qt or the app package."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

FORBIDDEN = ("PySide6", "PyQt5", "PyQt6", "shiboken6", "bas_desktop")


def test_no_module_under_engine_imports_qt() -> None:
    offenders = []
    files = sorted((REPO / "engine").rglob("*.py"))
    assert files, "engine/ has no modules"
    for path in files:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            offenders += [f"{path.relative_to(REPO)}: {n}" for n in names if n.split(".")[0] in FORBIDDEN]
    assert offenders == []


def test_importing_the_engine_loads_no_qt() -> None:
    code = ("import sys, engine.cli.main, engine.training.trainer, engine.packs.pack, engine.compose.generate, engine.scene; "
            "print([m for m in sys.modules if m.split('.')[0] in %r])" % (FORBIDDEN,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True)
    assert out.stdout.strip() == "[]"
