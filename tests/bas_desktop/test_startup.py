"""The app starts without loading torch/diffusers/SAM (they load in worker jobs when first needed)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO

HEAVY = ("torch", "diffusers", "transformers", "segment_anything", "onnxruntime")


def test_importing_the_app_loads_no_heavy_library() -> None:
    code = ("import sys, bas_desktop.app, bas_desktop.widgets.sam_tool, bas_desktop.widgets.sam_models; "
            "print([m for m in %r if m in sys.modules])" % (HEAVY,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True,
                         env={"QT_QPA_PLATFORM": "offscreen", "PATH": "/usr/bin:/bin"})
    assert out.stdout.strip() == "[]"
