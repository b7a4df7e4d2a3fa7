"""The main window as a new user first sees it, with the project's own example scene, grabbed to PNG.

    PYTHONPATH=. python tools/window_screenshot.py [--size 1366x768] [--out docs/screenshots/window-1366x768.png]

Fresh settings (a temporary folder), the example scene of ``bas example`` (rendered by
engine.shapesworld, no download). Under a real X server (``Xvfb :99 -screen 0 1366x768x24`` plus a
window manager) the window is maximized and the whole screen is what a user sees; offscreen, the
window is resized to ``--size``. ``--panel gallery|edit`` raises that dock first (``edit`` also drops the first handle's chip on the
second object, so the region and its overlap warning show).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="1366x768")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--panel", default="break", choices=("break", "gallery", "edit"))
    ap.add_argument("--maximize", action="store_true", help="maximize instead of resizing (real X server)")
    ap.add_argument("--hold", type=float, default=0.0, help="stay open this many seconds (for an external grab)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bas-window-"))
    os.environ["BAS_DESKTOP_SETTINGS"] = str(tmp / "settings.ini")
    os.environ["BAS_DESKTOP_DATA"] = str(tmp / "data")
    os.environ.setdefault("BAS_MODEL", "shapesworld")
    sys.path.insert(0, str(REPO))

    from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QThread
    from PySide6.QtWidgets import QApplication

    from bas_desktop.app import MainWindow
    from bas_desktop.model.document import Document
    from engine.example import make_example_scene

    app = QApplication.instance() or QApplication([])

    def pump(ms: int) -> None:
        deadline = QDeadlineTimer(ms)
        while not deadline.hasExpired():
            QCoreApplication.processEvents()
            QThread.msleep(5)

    w, h = (int(v) for v in args.size.split("x"))
    win = MainWindow()
    win.ask_save_changes = lambda: "discard"
    if args.maximize:
        win.showMaximized()
    else:
        win.resize(w, h)
        win.show()
    pump(300)
    win.set_document(Document.from_scene(make_example_scene(512)), None, dirty=True)
    win.studio.docks[args.panel].raise_()
    if args.panel == "edit":  # a chip dropped on the circle: the region shows on the canvas, with its warning
        win.studio.edit.drop("<asset0>", 330, 250)
    pump(1500)  # device check, warnings
    win.canvas.fit()
    pump(300)
    out = args.out or REPO / "docs" / "screenshots" / f"window-{args.size}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(out))
    print("wrote", out, "window", win.width(), "x", win.height(), "minimum", win.minimumSizeHint().toTuple())
    if args.hold:
        pump(int(args.hold * 1000))
    win.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
