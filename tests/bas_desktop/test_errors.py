"""Faults in the app: worker exceptions reach the user with "Copy details", the app keeps running,
unexpected exceptions anywhere become the same dialog, and the autosave survives a kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pytestqt")

from PySide6.QtCore import Qt, QTimer  # noqa: E402
from PySide6.QtGui import QGuiApplication  # noqa: E402
from PySide6.QtWidgets import QApplication  # noqa: E402

from bas_desktop.widgets.error_dialog import ErrorDialog, install_exception_hooks  # noqa: E402
from bas_desktop.model.project_data import ProjectData  # noqa: E402
from bas_desktop.widgets.studio import StudioWindow  # noqa: E402
from tests.bas_desktop.studio_helpers import FAST, TINY, shapes_document  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _open_dialogs() -> list[ErrorDialog]:
    return [w for w in QApplication.topLevelWidgets() if isinstance(w, ErrorDialog) and w.isVisible()]


def test_worker_exception_reaches_the_user_with_copy_details_and_the_app_keeps_running(qtbot, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "broken-model"
    bad.mkdir()
    (bad / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"]}')
    (bad / "unet").mkdir()
    (bad / "unet" / "config.json").write_text("{ this is not json")
    win = StudioWindow()
    qtbot.addWidget(win)
    win.show()
    panel = win.studio.break_panel
    panel.set_overrides(**FAST)
    panel.device.setCurrentText("cpu")
    win.open_project(shapes_document(), ProjectData(tmp_path / "p.basproj.data"), str(bad))

    qtbot.mouseClick(panel.break_button, Qt.MouseButton.LeftButton)  # estimates first, in the worker
    qtbot.waitUntil(lambda: bool(_open_dialogs()), timeout=60_000)
    dlg = _open_dialogs()[0]
    assert dlg.windowTitle() == "Estimate failed"
    assert str(bad) in dlg.message
    assert "Traceback" in dlg.details and dlg.toggle_button.isEnabled()
    qtbot.mouseClick(dlg.copy_button, Qt.MouseButton.LeftButton)
    copied = QGuiApplication.clipboard().text()
    assert copied.startswith("Estimate failed: ") and str(bad) in copied and "Traceback" in copied
    assert dlg.isVisible()  # copying does not close the dialog
    qtbot.mouseClick(dlg.toggle_button, Qt.MouseButton.LeftButton)
    assert dlg.details_view.isVisible() and "Traceback" in dlg.details_view.toPlainText()

    # the app keeps running: the panel is usable again and the next job works
    assert panel.state == "idle" and panel.break_button.isEnabled()
    dlg.accept()
    panel.model = TINY
    panel.run_estimate()
    qtbot.waitUntil(lambda: panel.estimate is not None and panel.state == "idle", timeout=60_000)
    assert panel.estimate.total_s > 0 and not _open_dialogs()
    win.close()
    win.studio.runner.shutdown()


@pytest.mark.qt_no_exception_capture
def test_unexpected_exceptions_become_a_dialog_not_a_crash(qtbot, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)  # restored after the test
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    install_exception_hooks(None)

    def broken_slot() -> None:
        raise ZeroDivisionError("a bug in a slot")

    QTimer.singleShot(0, broken_slot)
    qtbot.waitUntil(lambda: any("a bug in a slot" in d.message for d in _open_dialogs()), timeout=10_000)
    ui = next(d for d in _open_dialogs() if "a bug in a slot" in d.message)
    assert ui.message == "ZeroDivisionError: a bug in a slot" and "broken_slot" in ui.details

    t = threading.Thread(target=lambda: [].pop(), name="worker")
    t.start()
    t.join()
    qtbot.waitUntil(lambda: any("IndexError" in d.message for d in _open_dialogs()), timeout=10_000)
    bg = next(d for d in _open_dialogs() if "IndexError" in d.message)
    assert bg.windowTitle() == "Unexpected error in a background task" and "Traceback" in bg.details
    for d in _open_dialogs():
        d.accept()


CHILD = textwrap.dedent("""
    import os, sys, time
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    sys.path.insert(0, sys.argv[1])
    import numpy as np
    from PySide6.QtWidgets import QApplication
    from bas_desktop.app import MainWindow
    app = QApplication([])
    win = MainWindow()
    win.show()
    assert win.open_path(sys.argv[2])
    win.autosaver.quiet_s = 0.1
    values = np.full((40, 60), 255, np.uint8)
    win.doc.apply_region("brush", (10, 20, 70, 60), values, mode="add")
    path = win.autosaver.folder / f"{win.autosaver.session}.basproj"
    deadline = time.time() + 60
    while not path.exists() and time.time() < deadline:
        app.processEvents()
        time.sleep(0.02)
    np.save(sys.argv[3], win.doc.layers[0].mask)
    print("autosaved", flush=True)
    while True:  # painting on, until killed
        win.doc.apply_region("brush", (0, 0, 8, 8), np.full((8, 8), 255, np.uint8), mode="add")
        app.processEvents()
        time.sleep(0.01)
""")


@pytest.mark.parametrize("reaped", [True, False], ids=["reaped", "zombie"])
def test_autosave_survives_a_kill_9_of_the_app(make_window, tmp_path: Path, reaped: bool) -> None:  # type: ignore[no-untyped-def]
    """Recovery is offered at once, also while the killed process is still a zombie (its PID exists)."""
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((96, 128, 3), 90, np.uint8)).save(photo)
    expected = tmp_path / "mask.npy"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), str(photo), str(expected)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        line = proc.stdout.readline()  # type: ignore[union-attr]
        assert line.strip() == "autosaved", proc.stderr.read()  # type: ignore[union-attr]
    finally:
        proc.send_signal(signal.SIGKILL)
        if reaped:
            proc.wait(30)
    if not reaped:  # killed but not reaped: the PID still answers kill(pid, 0)
        stat = Path(f"/proc/{proc.pid}/stat")
        deadline = time.time() + 30
        while stat.exists() and stat.read_text().split(") ")[1][0] != "Z" and time.time() < deadline:
            time.sleep(0.05)
        os.kill(proc.pid, 0)

    h = make_window()  # same settings and data folders as the killed app (the isolated fixture)
    offered = []
    h.win.ask_recover = lambda infos: offered.append(infos) or infos[0]
    assert h.win.check_recovery(), h.errors
    assert offered and offered[0][0].pid == proc.pid
    painted = np.load(expected)
    got = h.doc.layers[0].mask
    # the recovered mask holds at least what was painted when the autosave was reported
    assert got.shape == painted.shape and np.all(got[painted > 0] == 255) and got[20:60, 10:70].min() == 255
    assert h.win.modified
    proc.wait(30)
    assert proc.returncode == -signal.SIGKILL


def test_a_running_sessions_autosave_is_not_offered_even_when_its_pid_is_reused(tmp_path: Path) -> None:
    from bas_desktop.model.project import find_orphans
    from bas_desktop.model.session_lock import SessionLock

    folder = tmp_path / "autosave"
    lock = SessionLock(folder / "live.lock")
    for session, pid in (("live", 999_999), ("dead", os.getpid())):  # PIDs say the opposite of the locks
        (folder / f"{session}.basproj").write_bytes(b"")
        (folder / f"{session}.json").write_text(f'{{"session": "{session}", "pid": {pid}, "saved_at": 1}}')
    (folder / "dead.lock").write_text("12345")  # left by a crashed session: nobody holds it
    assert [i.session for i in find_orphans(folder)] == ["dead"]
    lock.release()
    assert sorted(i.session for i in find_orphans(folder)) == ["dead", "live"]
