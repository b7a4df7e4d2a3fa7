"""Issue 13.5: without Segment Anything weights the canvas says so, with the button that gets them."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QApplication, QDialog, QRadioButton

from tests.bas_desktop.studio_helpers import shapes_document


def _close_next_dialog(seen: list[str]) -> None:
    def close() -> None:
        dlg = QApplication.activeModalWidget()
        if not isinstance(dlg, QDialog):
            QTimer.singleShot(20, close)
            return
        seen.append(dlg.windowTitle())
        seen.extend(r.text() for r in dlg.findChildren(QRadioButton))
        dlg.reject()

    QTimer.singleShot(0, close)


def test_missing_sam_model_is_named_on_the_canvas_with_a_button(make_window, tmp_path) -> None:  # type: ignore[no-untyped-def]
    h = make_window(sam_model="vit_b", sam_cache=tmp_path / "empty-sam-cache")
    win, qtbot = h.win, h.qtbot
    win.set_document(shapes_document(), None, dirty=True)
    seen: list[str] = []
    _close_next_dialog(seen)  # the model manager opens once; the user closes it without a download
    h.key(Qt.Key.Key_S)
    qtbot.waitUntil(lambda: win.sam_notice.isVisible(), timeout=5000)
    assert "not on this computer" in win.sam_notice.text.text()
    assert win.sam_notice.button.isVisible() and win.sam_notice.parentWidget() is win.canvas
    assert "Suggest concepts needs Segment Anything" in win.suggestions.info.text()
    assert not any("0 MB" in t for t in seen) and any("ViT-L" in t or "vit_l" in t.lower() for t in seen), seen

    reopened: list[str] = []
    _close_next_dialog(reopened)
    qtbot.mouseClick(win.sam_notice.button, Qt.MouseButton.LeftButton)
    assert reopened  # the button opened the model manager
