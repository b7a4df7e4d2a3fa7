"""Drive a short session offscreen and save a screenshot of each panel under docs/screenshots/.

    QT_QPA_PLATFORM=offscreen python tools/app_screenshots.py [--scene ../shared/scenes/toys]

Uses the tiny random model (64 px) so it runs in about a minute on a CPU: the generated images
are noise by design; the screenshots show the panels, not image quality.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scene", default=str(ROOT.parent / "shared" / "scenes" / "toys"))
    ap.add_argument("--out", default=str(ROOT / "docs" / "screenshots"))
    args = ap.parse_args()
    from PySide6.QtCore import QEventLoop, QPointF, QTimer
    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication([])
    from bas_desktop.model.document import Document
    from bas_desktop.widgets.model_dialog import ModelDialog
    from bas_desktop.model.project_data import ProjectData
    from bas_desktop.widgets.studio import StudioWindow
    from engine.scene import load_scene
    from tests.bas_desktop.studio_helpers import drop_token

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def wait(cond, timeout_s: float = 120.0) -> None:  # type: ignore[no-untyped-def]
        loop_timer = QTimer()
        loop = QEventLoop()
        left = [timeout_s * 20]

        def tick() -> None:
            left[0] -= 1
            if cond() or left[0] <= 0:
                loop.quit()

        loop_timer.timeout.connect(tick)
        loop_timer.start(50)
        loop.exec()
        loop_timer.stop()
        if not cond():
            raise TimeoutError("the session did not reach the expected state")

    def shot(widget, name: str) -> None:  # type: ignore[no-untyped-def]
        app.processEvents()
        widget.grab().save(str(out / name))
        print("wrote", out / name)

    doc = Document.from_scene(load_scene(args.scene))
    tmp = tempfile.mkdtemp(prefix="bas-shots-")
    data = ProjectData(Path(tmp) / "toys.basproj.data")
    win = StudioWindow()
    win.resize(1500, 900)
    win.show()
    panel = win.studio.break_panel
    panel.set_overrides(phase1_steps=30, phase2_steps=30, checkpoint_every=10, prior_preservation=False)
    panel.device.setCurrentText("cpu")
    panel.every.setValue(5)
    panel.preview_steps = 10
    win.open_project(doc, data, "tiny-random")
    panel.run_estimate()
    wait(lambda: panel.estimate is not None and panel.state == "idle")
    wait(lambda: "CPU" in panel.device_note.text())

    # a run cancelled half way, then reopened: the resume banner
    panel.event.connect(lambda e: panel.cancel() if e.kind == "step" and e.global_step == 25 else None)
    panel.start()
    wait(lambda: panel.state == "idle")
    win.open_project(doc, data, "tiny-random")
    shot(win.studio.docks["break"], "break-resume.png")
    panel.start(resume=True)
    wait(lambda: panel.state == "idle" and data.has_pack())
    wait(lambda: all(t.preview_label.pixmap() is not None and not t.preview_label.pixmap().isNull()
                     for t in panel.tiles.values()))
    shot(win.studio.docks["break"], "break-training.png")

    gal = win.studio.gallery
    win.studio.docks["gallery"].raise_()
    gal.prompt.setText("a photo of <asset0> and <asset2> at the beach")
    gal.batch.setValue(4)
    gal.steps.setValue(8)
    gal.generate()
    wait(lambda: not gal.busy)
    gal.steps.setValue(4)
    gal.submit("variations")
    wait(lambda: not gal.busy)
    shot(win.studio.docks["gallery"], "gallery.png")

    win.studio.docks["edit"].raise_()
    edit = win.studio.edit
    c = win.canvas
    drop_token(c, c.to_widget(QPointF(doc.width * 0.75, doc.height * 0.3)), "<asset1>")
    app.processEvents()
    shot(win.studio.docks["edit"], "edit-region.png")
    edit.count.setValue(3)
    edit.steps.setValue(8)
    edit.run()
    wait(lambda: not edit.busy)
    shot(win.studio.docks["edit"], "edit-candidates.png")
    shot(win, "window.png")

    dlg = win.studio.export_dialog(win)
    dlg.folder.setText(str(Path(tmp) / "export"))
    dlg.export()
    wait(lambda: bool(dlg.written) or dlg.last_error is not None)
    shot(dlg, "export.png")
    dlg.close()
    md = ModelDialog(win.runner, win)
    md.show()
    wait(lambda: "checking" not in md.size_label.text(), 30)
    shot(md, "model-dialog.png")
    md.close()
    win.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
