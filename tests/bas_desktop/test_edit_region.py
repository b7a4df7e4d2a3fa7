"""Issue 13.8: the local edit's region shows on the main canvas, is clipped to the photo, and warns
when it covers another concept; the region preview is big enough to judge."""

from __future__ import annotations

from PySide6.QtCore import QPointF

from tests.bas_desktop.studio_helpers import drop_token, shapes_document


def test_dropped_chip_region_on_the_canvas_clipped_with_overlap_warning(harness) -> None:  # type: ignore[no-untyped-def]
    win, qtbot = harness.win, harness.qtbot
    win.resize(1366, 768)
    win.set_document(shapes_document(), None, dirty=True)
    studio = win.studio
    studio.docks["edit"].raise_()
    canvas, panel = win.canvas, studio.edit
    assert panel.view.minimumWidth() >= 300 and panel.view.minimumHeight() >= 300

    # the cube's 20x20 mask dropped at the bottom-right corner: it is cut at the photo's edge
    assert drop_token(canvas, canvas.to_widget(QPointF(62, 62)), "<asset0>")
    region = panel.view.region
    assert region.shape == (64, 64) and 0 < region.sum() < 400
    assert "clipped to the photo" in panel.hint.text()
    assert canvas._edit_region_img is not None  # drawn over the photo on the main canvas
    shown = canvas.grab().toImage()
    centre = canvas.to_widget(QPointF(60.5, 60.5))
    assert shown.pixelColor(int(centre.x()), int(centre.y())).blue() > shown.pixelColor(
        int(centre.x()), int(centre.y())).red()  # tinted cyan over the grey photo
    assert panel.warning.text() == ""  # a corner of the ball at most: below the warning's share

    # dropped on the ball (disk around 44,44 r 12): the region covers it, and the panel says so
    assert drop_token(canvas, canvas.to_widget(QPointF(44, 44)), "<asset0>")
    assert "covers" in panel.warning.text() and "<asset1>" in panel.warning.text()

    # dropped on empty background: no warning; clearing the region clears the canvas too
    assert drop_token(canvas, canvas.to_widget(QPointF(12, 52)), "<asset0>")
    assert panel.warning.text() == ""
    panel.clear_button.click()
    assert not panel.view.region.any()
    panel.set_project(win.doc, studio.data, [], "auto", None)
    assert canvas._edit_region_img is None
