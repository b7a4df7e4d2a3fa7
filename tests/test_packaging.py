"""The one-folder PyInstaller build starts and runs a break (``bas-desktop --self-test``). Slow."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO


@pytest.mark.slow
def test_packaged_app_self_test(tmp_path: Path) -> None:
    if importlib.util.find_spec("PyInstaller") is None:
        pytest.skip("PyInstaller is not installed (pip install .[packaging])")
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "BAS_CACHE_DIR": str(tmp_path / "cache")}
    dist, work = tmp_path / "dist", tmp_path / "work"
    subprocess.run([sys.executable, "-m", "PyInstaller", "--noconfirm", "--log-level", "WARN", "--distpath",
                    str(dist), "--workpath", str(work), str(REPO / "packaging" / "bas-desktop.spec")],
                   check=True, cwd=REPO, env=env, timeout=3600)
    exe = dist / "bas-desktop" / ("bas-desktop.exe" if sys.platform == "win32" else "bas-desktop")
    assert exe.is_file()
    run = subprocess.run([str(exe), "--self-test"], capture_output=True, text=True, env=env, timeout=900)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    summary = json.loads(run.stdout.strip().splitlines()[-1])
    assert summary["ok"] and summary["frozen"] and summary["generated"] == 1
