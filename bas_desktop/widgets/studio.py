"""Break / Gallery / Local edit panels wired together, as docks of any main window with a canvas.

:class:`Studio` is the integration point: ``Studio(runner).install(window, canvas)`` adds the
docks and menu actions; :meth:`Studio.open_project` shows a document and its data folder.
:class:`StudioWindow` is a standalone window (canvas + the docks) used by the tests, the
screenshots and the self-test.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QDockWidget, QMainWindow, QMessageBox, QWidget

from bas_desktop.widgets.break_panel import BreakPanel
from bas_desktop.widgets.error_dialog import show_error
from bas_desktop.widgets.canvas import Canvas
from bas_desktop.widgets.chips import Handle
from bas_desktop.model.document import Document
from bas_desktop.widgets.edit_flow import EditPanel, Proposer
from bas_desktop.widgets.gallery_panel import GalleryPanel
from bas_desktop.widgets.layout import add_dock
from bas_desktop.model.importing import ImportInputs, ImportOutcome, ImportPlan, import_job, inspect_source
from bas_desktop.widgets.job_status import JobsLabel
from bas_desktop.widgets.pack_dialog import ExportDialog, ImportDialog
from bas_desktop.model.project_data import ProjectData
from bas_desktop.workers import JobMessage, JobRunner
from engine.errors import PackError
from engine.formats.manifest import read_manifest
from engine.formats.names import default_model

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from bas_desktop.settings import Settings
    from bas_desktop.widgets.sam_tool import SamController


def pack_handles(data: ProjectData | None) -> list[Handle]:
    """The handles of the project's pack (token, name, colour), or none (no pack, or an unreadable one)."""
    if data is None or not data.has_pack():
        return []
    try:
        manifest = read_manifest(data.pack_dir)
    except PackError:
        return []
    return [Handle(c["token"], c.get("init_word") or c["token"], tuple(c.get("color") or (128, 128, 128)))
            for c in manifest["concepts"]]


class Studio(QObject):
    """Owns the three panels and keeps them in step with the project."""

    handlesChanged = Signal(object)
    notice = Signal(str)  # a one-line outcome for the status bar (what was imported ...)

    def __init__(self, runner: JobRunner, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.break_panel = BreakPanel(runner)
        self.gallery = GalleryPanel(runner)
        self.edit = EditPanel(runner)
        self.doc: Document | None = None
        self.data: ProjectData | None = None
        self.model = "tiny-random"
        self.proposer: Proposer | None = None
        self.docks: dict[str, QDockWidget] = {}
        self.last_error: str | None = None
        self.last_import: ImportOutcome | None = None
        self.break_panel.finished.connect(lambda _p: self.refresh_handles())
        self.break_panel.modelRequested.connect(self.model_dialog)
        self.break_panel.set_model(self.model)
        self.edit.accepted.connect(lambda: None)
        runner.message.connect(self._on_message)

    def install(self, window: QMainWindow, canvas: Canvas,
                area: Qt.DockWidgetArea = Qt.DockWidgetArea.RightDockWidgetArea) -> None:
        """Add the panels as tabbed docks of ``window`` and accept chip drops on ``canvas``."""
        for name, title, widget in (("break", "Break scene", self.break_panel), ("gallery", "Gallery", self.gallery),
                                    ("edit", "Local edit", self.edit)):
            self.docks[name] = add_dock(window, title, f"{name}-dock", widget, area)
        window.tabifyDockWidget(self.docks["break"], self.docks["gallery"])
        window.tabifyDockWidget(self.docks["gallery"], self.docks["edit"])
        self.docks["break"].raise_()
        self.edit.attach_canvas(canvas)

    def open_project(self, doc: Document | None, data: ProjectData | None, model: str,
                     device: str = "auto") -> None:
        """Show a project in all panels (the Break panel offers to resume an unfinished run)."""
        self.doc, self.data, self.model = doc, data, model
        if data is not None:
            data.ensure()
        self.break_panel.set_project(doc, data, model)
        handles = pack_handles(data)
        self.gallery.set_project(data, handles, device)
        self.edit.set_project(doc, data, handles, device, self.proposer)

    def refresh_handles(self) -> None:
        """Re-read the pack's handles (after a break or an import)."""
        handles = pack_handles(self.data)
        self.gallery.set_handles(handles)
        self.edit.chips.set_handles(handles)
        self.edit._update_buttons()
        self.handlesChanged.emit(handles)

    def export_dialog(self, parent: QWidget | None = None) -> ExportDialog | None:
        """Open the export dialog (non-modal: the window stays usable while the export waits or runs)."""
        if self.data is None:
            return None
        dlg = ExportDialog(self.runner, self.data, parent)
        dlg.show()
        return dlg

    def import_dialog(self, parent: QWidget | None = None) -> ImportDialog | None:
        """Open the one Import dialog (pack folder, archive, exported folder or embedding files)."""
        if self.data is None:
            return None
        dlg = ImportDialog(self.runner, [h.token for h in pack_handles(self.data)], parent or self.gallery.window())
        dlg.importRequested.connect(self._queue_import)
        dlg.show()
        self.last_import_dialog = dlg
        return dlg

    def import_pack(self, paths: list[Path] | None = None, mode: str | None = None,
                    parent: QWidget | None = None) -> bool:
        """Import ``paths`` (or open the Import dialog); asks replace / add / cancel over existing handles."""
        if self.data is None:
            return False
        if paths is None:
            return self.import_dialog(parent) is not None
        try:
            plan = inspect_source(paths)
        except ValueError as e:
            self._import_failed(str(e))
            return False
        existing = [h.token for h in pack_handles(self.data)]
        if mode is None and existing:
            mode = self.ask_import_mode(existing)
            if mode is None:
                self.notice.emit("Import cancelled: the project's handles are unchanged")
                return False
        self._queue_import(plan, mode or "replace")
        return True

    def ask_import_mode(self, existing: list[str]) -> str | None:
        """Replace the project's handles, add the imported ones, or cancel (None)."""
        box = QMessageBox(QMessageBox.Icon.Question, "Import handles",
                          f"This project already has {len(existing)} handles ({', '.join(existing)}). "
                          "Replace them with the imported ones, or add the imported ones as new handles?",
                          parent=self.gallery.window())
        replace = box.addButton("Replace them", QMessageBox.ButtonRole.DestructiveRole)
        add = box.addButton("Add as new handles", QMessageBox.ButtonRole.AcceptRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(add)
        box.exec()
        return {id(replace): "replace", id(add): "add"}.get(id(box.clickedButton()))

    def _queue_import(self, plan: ImportPlan, mode: str) -> None:
        if self.data is None:
            return
        self.runner.submit("import", import_job, ImportInputs(plan, self.data.pack_dir, self.model, mode))

    def _import_failed(self, text: str, details: str = "") -> None:
        self.last_error = text
        self.notice.emit(f"Import failed: {text}")
        show_error(self.gallery, "Import failed", text, details)

    def model_dialog(self, first_run: bool = False) -> None:
        """Choose the base model (non-blocking); the dialog names the current one."""
        from bas_desktop.widgets.model_dialog import ModelDialog

        parent = self.break_panel.window()
        dlg = ModelDialog(self.runner, parent, current=self.model, first_run=first_run)
        dlg.modelChosen.connect(self._set_model)
        dlg.open()
        self.last_model_dialog = dlg

    def _set_model(self, ref: str) -> None:
        self.model = ref
        self.open_project(self.doc, self.data, ref)

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job == "import" and msg.kind == "done":
            self.last_import = msg.result
            self.refresh_handles()
            self.notice.emit(msg.result.describe())
        elif msg.job == "import" and msg.kind == "error":
            self._import_failed(msg.text, msg.details)


class StudioWindow(QMainWindow):
    """A canvas with the Break / Gallery / Local edit docks (standalone host)."""

    def __init__(self, runner: JobRunner | None = None) -> None:
        super().__init__()
        self.setWindowTitle("Break-A-Scene Desktop")
        self.runner = runner or JobRunner(self)
        self.canvas = Canvas()
        self.setCentralWidget(self.canvas)
        self.studio = Studio(self.runner, self)
        self.studio.install(self, self.canvas)
        menu = self.menuBar().addMenu("&Handles")
        menu.addAction("Export handles ...", lambda: self.studio.export_dialog(self))
        menu.addAction("Import handles ...", lambda: self.studio.import_dialog(self))
        self.statusBar().addPermanentWidget(JobsLabel(self.runner))
        self.studio.notice.connect(lambda m: self.statusBar().showMessage(m, 10000))
        self.resize(1280, 820)

    def open_project(self, doc: Document, data: ProjectData, model: str) -> None:
        """Show ``doc`` on the canvas and in the panels."""
        self.canvas.set_document(doc)
        self.studio.open_project(doc, data, model)

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt override
        self.runner.shutdown()
        super().closeEvent(event)


def run_standalone() -> int:
    """Open an empty studio window (the packaged app's fallback when the editor window is absent)."""
    import sys

    from PySide6.QtWidgets import QApplication

    app = QApplication.instance() or QApplication(sys.argv)
    win = StudioWindow()
    win.show()
    return int(app.exec())


# ------------------------------------------------------------------------------ the editor window
class StudioHost(Protocol):
    """What :class:`EditorStudio` needs of the editor window that hosts it (``MainWindow`` has it)."""

    jobs: JobRunner
    settings: Settings
    canvas: Canvas
    sam: SamController


class EditorStudio(Studio):
    """The studio inside the scene editor's ``MainWindow``: project data follows the project file.

    ``win`` receives the docks, menu and status bar; ``host`` (the same window) lends its runner,
    settings, canvas and SAM controller.
    """

    def __init__(self, win: QMainWindow, host: StudioHost) -> None:
        super().__init__(host.jobs, win)
        import uuid

        from bas_desktop.settings import data_dir

        self.win = win
        self.settings = host.settings
        self.model = str(self.settings.value("studio/model", "") or default_model())
        self.break_panel.set_model(self.model)
        self.break_panel.set_cluster(str(self.settings.value("cluster/use", "false")) == "true",
                                     str(self.settings.value("cluster/address", "") or ""))
        self.break_panel.run_on.currentIndexChanged.connect(
            lambda i: self.settings.set_value("cluster/use", "true" if i == 1 else "false"))
        self.break_panel.address.editingFinished.connect(
            lambda: self.settings.set_value("cluster/address", self.break_panel.address.text().strip()))
        self._unsaved = ProjectData(data_dir() / "unsaved" / uuid.uuid4().hex[:12])
        self.install(win, host.canvas, Qt.DockWidgetArea.LeftDockWidgetArea)
        sam = host.sam
        self.proposer = lambda image, x, y: (sam.session.predict([(x, y)], [1]).mask if sam.image_ready else None)
        menu = win.menuBar().addMenu("&Handles")
        menu.addAction("Export handles ...", lambda: self.export_dialog(win))
        menu.addAction("Import handles (pack, archive, exported folder, embeddings) ...",
                       lambda: self.import_dialog(win))
        win.statusBar().addPermanentWidget(JobsLabel(self.runner))
        self.notice.connect(lambda m: win.statusBar().showMessage(m, 10000))
        menu.addAction("Base model ...", lambda: self.model_dialog())

    def project_changed(self, doc: Document | None, project: Path | None) -> None:
        """The editor shows another document; an unfinished break is offered for resuming."""
        data = ProjectData.for_project(project) if project is not None else (self._unsaved if doc else None)
        self.open_project(doc, data, self.model)
        if self.break_panel.can_resume():
            self.docks["break"].raise_()
            self.win.statusBar().showMessage("This project has an unfinished break: Resume is in the Break panel", 8000)

    def project_saved(self, path: Path) -> None:
        """Saved under a new name: an unsaved project's data moves next to the file (never overwrites)."""
        import shutil

        target = ProjectData.for_project(path)
        if self.data == self._unsaved and self._unsaved.root.exists() and not target.root.exists():
            shutil.move(str(self._unsaved.root), str(target.root))
        if self.data != target:
            self.open_project(self.doc, target, self.model)

    def offer_model_setup(self) -> None:
        """First run without weights: open the model dialog."""
        from bas_desktop.model.model_setup import model_status

        if not self.settings.value("studio/model", "") and model_status().needs_setup:
            self.model_dialog(first_run=True)

    def _set_model(self, ref: str) -> None:
        self.settings.set_value("studio/model", ref)
        super()._set_model(ref)
