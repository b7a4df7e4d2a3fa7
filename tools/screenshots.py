"""Screenshots of the editor for the docs, rendered offscreen.

    QT_QPA_PLATFORM=offscreen PYTHONPATH=. python tools/screenshots.py [--scene ../shared/scenes/chicken]
        [--out docs/screenshots] [--sam tiny]

Opens the main window, imports the scene folder (img.jpg + mask0.png ...), names the concepts, shows
a Segment Anything preview (the tiny random SAM by default: no download, so the preview shape is
arbitrary; pass ``--sam vit_b`` when its weights are in the cache) and grabs the window to PNG.
Settings and autosaves go to a temporary folder, never the user's.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scene", type=Path, default=REPO.parent / "shared" / "scenes" / "chicken")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--sam", default="tiny", help="SAM model for the preview (tiny: random weights)")
    parser.add_argument("--size", default="1280x800")
    args = parser.parse_args(argv)

    tmp = Path(tempfile.mkdtemp(prefix="bas-shots-"))
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["BAS_DESKTOP_SETTINGS"] = str(tmp / "settings.ini")
    os.environ["BAS_DESKTOP_DATA"] = str(tmp / "data")
    sys.path.insert(0, str(REPO))

    from PySide6.QtCore import QCoreApplication, QDeadlineTimer, QThread
    from PySide6.QtWidgets import QApplication

    from bas_desktop.app import MainWindow

    app = QApplication.instance() or QApplication([])

    def pump(ms: int = 50) -> None:
        deadline = QDeadlineTimer(ms)
        while not deadline.hasExpired():
            QCoreApplication.processEvents()
            QThread.msleep(5)

    w, h = (int(v) for v in args.size.split("x"))
    win = MainWindow(sam_model=args.sam, sam_cache=None if args.sam != "tiny" else tmp / "sam")
    win.ask_save_changes = lambda: "discard"
    win.resize(w, h)
    win.show()
    pump()
    if not win.import_scene(args.scene, ask=False):
        print("cannot import", args.scene, file=sys.stderr)
        return 1
    doc = win.doc
    for i, word in enumerate(["chicken", "stool", "planter"][: len(doc.layers)]):
        doc.set_layer_prop(i, "name", word)
    doc.set_active(0)
    pump(400)  # warnings are computed after a short pause
    args.out.mkdir(parents=True, exist_ok=True)
    win.grab().save(str(args.out / "editor.png"))
    print("wrote", args.out / "editor.png")

    # SAM: select the tool, wait for the embedding, click the middle of the first concept
    win.set_tool("sam")
    deadline = QDeadlineTimer(180000)
    while not win.sam.image_ready and not deadline.hasExpired():
        pump(50)
    if win.sam.image_ready:
        import numpy as np

        ys, xs = np.nonzero(doc.layers[0].mask >= 128)
        tool = win.tools["sam"]
        tool._canvas = win.canvas
        tool.add_point((float(np.median(xs)), float(np.median(ys))), 1)
        pump(200)
        win.grab().save(str(args.out / "editor-sam.png"))
        print("wrote", args.out / "editor-sam.png")
    else:
        print("SAM was not ready; no SAM screenshot", file=sys.stderr)
    win.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
