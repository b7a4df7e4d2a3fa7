"""Time from launching ``bas-desktop`` to its main window being visible, and what it had imported.

Each run is a fresh process (interpreter start included) with its own empty settings and data
folders, on the offscreen platform unless ``QT_QPA_PLATFORM`` says otherwise. The figure is the
median of ``--runs`` launches; the target is under 3 s on the project's machines, with torch and
diffusers not yet imported when the window shows (they load lazily, off the UI thread).

    python bench/app_start.py [--runs 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import os, sys, time, json
t_launch = float(sys.argv[1])
sys.path.insert(0, sys.argv[2])
from PySide6.QtCore import QTimer
import bas_desktop.app as app_mod

def report():
    heavy = [m for m in ("torch", "diffusers", "transformers", "onnxruntime", "segment_anything") if m in sys.modules]
    print(json.dumps({"visible_s": time.time() - t_launch, "heavy_imported": heavy}), flush=True)
    os._exit(0)

original_show = app_mod.MainWindow.show
def show(self):
    original_show(self)
    QTimer.singleShot(0, report)  # runs once the first show/paint events are processed
app_mod.MainWindow.show = show
app_mod.main(["bas-desktop"])
"""


def one_run() -> dict:
    with tempfile.TemporaryDirectory() as d:
        env = {**os.environ, "QT_QPA_PLATFORM": os.environ.get("QT_QPA_PLATFORM", "offscreen"),
               "BAS_DESKTOP_SETTINGS": str(Path(d) / "settings.ini"), "BAS_DESKTOP_DATA": str(Path(d) / "data"),
               "BAS_CACHE_DIR": str(Path(d) / "cache")}
        t0 = time.time()
        proc = subprocess.run([sys.executable, "-c", CHILD, repr(t0), str(ROOT)], capture_output=True, text=True,
                              env=env, timeout=120)
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        if not lines:
            raise SystemExit(f"the app did not start (exit {proc.returncode}): {proc.stderr[-800:]}")
        return json.loads(lines[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    one_run()  # warm the OS file cache, as a second launch of an installed app would be
    runs = [one_run() for _ in range(args.runs)]
    times = [r["visible_s"] for r in runs]
    heavy = sorted({m for r in runs for m in r["heavy_imported"]})
    print("launch to visible window: " + ", ".join(f"{t:.2f}" for t in times) + " s")
    print(f"heavy libraries imported before the window showed: {', '.join(heavy) or 'none'}")
    print(f"app start median={statistics.median(times):.2f}s (target < 3 s)")


if __name__ == "__main__":
    main()
