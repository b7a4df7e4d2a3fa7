"""The main window and the ``bas-desktop [PHOTO_OR_PROJECT]`` entry point.

Layout: the canvas in the centre, dock panels around it (concepts, tool options, suggested regions,
and the studio's Break, Gallery and Local edit docks). Dialogs go through small ``ask_*`` methods
so tests can answer them.
"""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QAction, QActionGroup, QCloseEvent, QDragEnterEvent, QDropEvent, QKeySequence
from PySide6.QtWidgets import QApplication, QLabel, QMainWindow, QMenu, QProgressBar

from bas_desktop.autosave import Autosaver
from bas_desktop.widgets.canvas import Canvas
from bas_desktop.widgets.dialogs import APP_NAME, OPENABLE, DialogsMixin
from bas_desktop.model.document import Change, Document, Layer
from bas_desktop.widgets.error_dialog import install_exception_hooks
from bas_desktop.widgets.layers_panel import LayersPanel
from bas_desktop.widgets.layout import LAYOUT_VERSION, add_dock, fit_to_screen, list_docks
from bas_desktop.widgets.panels import SuggestionsPanel, ToolOptions
from bas_desktop.model.project import SUFFIX, AutosaveInfo, find_orphans, open_photo, read_project
from bas_desktop.model.project import remove_autosave, save_project
from bas_desktop.widgets.sam_tool import SamController, SamNotice, SamTool
from bas_desktop.settings import Settings, data_dir
from bas_desktop.widgets.tools import BrushTool, EraserTool, FillTool, PolygonTool, Tool
from bas_desktop.workers import JobRunner
from engine.errors import BasError
from engine.scene import load_scene, save_scene, validate_scene

class MainWindow(DialogsMixin, QMainWindow):
    """The scene editor window."""

    def __init__(self, sam_model: str | None = None, sam_cache: Path | None = None) -> None:
        super().__init__()
        self.setAcceptDrops(True)
        self.setDockNestingEnabled(True)
        self.settings = Settings()
        self.jobs = JobRunner(self)
        self.tool_settings = self.settings.tool_settings()
        self.doc: Document | None = None
        self.project_path: Path | None = None
        self._saved_revision = 0
        self.autosaver = Autosaver(self.jobs, data_dir() / "autosave", parent=self)

        self.canvas = Canvas()
        self.setCentralWidget(self.canvas)
        self.sam_notice = SamNotice(self.canvas)
        self.layers_panel = LayersPanel()
        self.options = ToolOptions(self.tool_settings)
        self.suggestions = SuggestionsPanel()
        right = Qt.DockWidgetArea.RightDockWidgetArea
        self.layers_dock = add_dock(self, "Concepts", "concepts", self.layers_panel, right)
        self.options_dock = add_dock(self, "Tool options", "tool-options", self.options, right)
        self.suggest_dock = add_dock(self, "Suggested regions", "suggestions", self.suggestions, right)
        self.tabifyDockWidget(self.options_dock, self.suggest_dock)
        self.options_dock.raise_()

        self.sam = SamController(self.jobs, sam_model or str(self.settings.value("sam/model", "vit_b")),
                                 sam_cache, parent=self)
        self.tools: dict[str, Tool] = {
            "brush": BrushTool(self.tool_settings), "eraser": EraserTool(self.tool_settings),
            "fill": FillTool(self.tool_settings), "polygon": PolygonTool(self.tool_settings),
            "sam": SamTool(self.tool_settings, self.sam),
        }
        self._build_status()
        self._build_actions()
        from bas_desktop.widgets.studio import EditorStudio  # Break / Gallery / Local edit docks (issue 6)

        self.studio = EditorStudio(self, self)
        list_docks(self.view_menu, self, (self.layers_dock, self.options_dock, self.suggest_dock,
                                          *self.studio.docks.values()))
        self._connect()
        self.set_tool("brush")
        self.update_title()
        fit_to_screen(self)
        self.resizeDocks([self.studio.docks["break"], self.layers_dock], [380, 290], Qt.Orientation.Horizontal)
        self.resizeDocks([self.layers_dock, self.options_dock], [260, 300], Qt.Orientation.Vertical)
        geometry, state = self.settings.window_state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        if state is not None:
            self.restoreState(state, LAYOUT_VERSION)  # a layout saved by an older version is ignored

    # ----- construction -----------------------------------------------------------------------------
    def _build_status(self) -> None:
        sb = self.statusBar()
        self.pos_label = QLabel()
        self.zoom_label = QLabel()
        self.progress = QProgressBar()
        self.progress.setMaximumWidth(180)
        self.progress.setVisible(False)
        sb.addPermanentWidget(self.progress)
        sb.addPermanentWidget(self.pos_label)
        sb.addPermanentWidget(self.zoom_label)

    def _action(self, menu: QMenu, text: str, slot: Callable[..., object],
                shortcut: str | QKeySequence | list[QKeySequence] | None = None, checkable: bool = False) -> QAction:
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcuts(shortcut if isinstance(shortcut, list) else [QKeySequence(shortcut)])
        act.setCheckable(checkable)
        act.triggered.connect(slot)
        menu.addAction(act)
        return act

    def _build_actions(self) -> None:
        mb = self.menuBar()
        f = mb.addMenu("&File")
        self._action(f, "&Open photo or project…", self.open_dialog, QKeySequence.StandardKey.Open)
        self.recent_menu = f.addMenu("Open &recent")
        self._action(f, "&Import scene folder (img.jpg + mask0.png …)…", self.import_dialog, "Ctrl+I")
        f.addSeparator()
        self.save_act = self._action(f, "&Save project", self.save, QKeySequence.StandardKey.Save)
        self._action(f, "Save project &as…", self.save_as, QKeySequence.StandardKey.SaveAs)
        self._action(f, "&Export scene folder (reference layout)…", self.export_dialog, "Ctrl+E")
        f.addSeparator()
        self._action(f, "&Quit", self.close, QKeySequence.StandardKey.Quit)

        e = mb.addMenu("&Edit")
        self.undo_act = self._action(e, "&Undo", self.undo, QKeySequence.StandardKey.Undo)
        self.redo_act = self._action(e, "&Redo", self.redo, [QKeySequence("Ctrl+Shift+Z"), QKeySequence("Ctrl+Y")])
        e.addSeparator()
        self._action(e, "&New concept", lambda: self.layers_panel.add_layer(), "Ctrl+Shift+N")
        self._action(e, "&Delete concept", lambda: self.layers_panel.delete_layer(), "Ctrl+Shift+Delete")

        v = self.view_menu = mb.addMenu("&View")
        self._action(v, "Zoom to &fit", self.canvas.fit, "Ctrl+0")
        self._action(v, "&Actual size (100%)", self.canvas.actual_size, "Ctrl+1")
        self._action(v, "Zoom &in", lambda: self.canvas.zoom_by(1.25), [QKeySequence("Ctrl++"), QKeySequence("Ctrl+=")])
        self._action(v, "Zoom &out", lambda: self.canvas.zoom_by(0.8), "Ctrl+-")
        v.addSeparator()

        t = mb.addMenu("&Tools")
        self.tool_actions: dict[str, QAction] = {}
        group = QActionGroup(self)
        toolbar = self.addToolBar("Tools")
        toolbar.setObjectName("tools-toolbar")
        for name, tool in self.tools.items():
            act = self._action(t, f"{tool.label}\t{tool.shortcut}", lambda _=False, n=name: self.set_tool(n),
                               tool.shortcut, checkable=True)
            act.setIconText(tool.label)
            act.setToolTip(f"{tool.label} ({tool.shortcut}) — {tool.hint}")
            group.addAction(act)
            toolbar.addAction(act)
            self.tool_actions[name] = act
        t.addSeparator()
        self._action(t, "Smaller brush", lambda: self.resize_brush(False), "[")
        self._action(t, "Bigger brush", lambda: self.resize_brush(True), "]")
        self._action(t, "Suggest concepts (SAM)", self.suggest, "Ctrl+Shift+S")
        self._action(t, "Segment Anything models…", self.models_dialog)
        toolbar.addSeparator()
        toolbar.addAction(self.undo_act)
        toolbar.addAction(self.redo_act)
        self._update_recent()

    def _connect(self) -> None:
        self.canvas.zoomChanged.connect(lambda z: self.zoom_label.setText(f"{z * 100:.0f}%"))
        self.canvas.cursorMoved.connect(self._cursor_moved)
        self.layers_panel.message.connect(lambda m: self.statusBar().showMessage(m, 5000))
        self.options.changed.connect(self.canvas.update)
        self.options.samAccept.connect(self.sam_accept)
        self.options.samClear.connect(lambda: self.tools["sam"].clear())
        self.options.samSuggest.connect(self.suggest)
        self.options.samModels.connect(self.models_dialog)
        self.sam.status.connect(self._sam_status)
        self.sam.failed.connect(self._sam_failed)
        self.sam.ready.connect(self.sam_notice.hide)
        self.sam_notice.getModel.connect(self.models_dialog)
        self.sam.suggestions.connect(lambda s: (self.suggestions.set_suggestions(self.doc, s), self.suggest_dock.raise_()))
        self.suggestions.assign.connect(self.assign_suggestion)
        self.suggestions.preview.connect(self.preview_suggestion)
        self.autosaver.settings_fn = self.project_settings
        self.autosaver.saved.connect(lambda p: self.statusBar().showMessage("Autosaved", 2000))

    # ----- documents ----------------------------------------------------------------------------------
    def set_document(self, doc: Document | None, project: Path | None = None, dirty: bool = False) -> None:
        """Show ``doc``; ``project`` is where Save writes."""
        if self.doc is not None:
            self.doc.unsubscribe(self._on_change)
        self.doc = doc
        self.project_path = project
        if doc is not None:
            doc.subscribe(self._on_change)
        self._saved_revision = -1 if dirty or doc is None else doc.revision
        self.canvas.set_document(doc)
        self.layers_panel.set_document(doc)
        self.sam.set_document(doc)
        self.suggestions.set_suggestions(doc, [])
        self.autosaver.set_document(doc, str(project) if project else None)
        self.studio.project_changed(doc, project)
        if self.current_tool() == "sam":
            self.tools["sam"].activate(self.canvas)
        self.update_title()
        self._update_actions()

    def _on_change(self, change: Change) -> None:
        if change.kind in ("history", "layers", "props"):
            self.update_title()
            self._update_actions()

    @property
    def modified(self) -> bool:
        """True when there are unsaved changes."""
        return self.doc is not None and self.doc.revision != self._saved_revision

    def update_title(self) -> None:
        """Window title: file name, a star when modified."""
        if self.doc is None:
            name = "no photo"
        else:
            name = (self.project_path or self.doc.source or Path("untitled")).name
        self.setWindowTitle(f"{name}{'*' if self.modified else ''} — {APP_NAME}")

    def _update_actions(self) -> None:
        self.undo_act.setEnabled(bool(self.doc and self.doc.can_undo()))
        self.redo_act.setEnabled(bool(self.doc and self.doc.can_redo()))

    def open_path(self, path: str | Path) -> bool:
        """Open a photo, a project or a scene folder; errors are shown, never raised."""
        path = Path(path)
        if not self.maybe_save():
            return False
        try:
            if path.is_dir():
                return self.import_scene(path, ask=False)
            if path.suffix.lower() == SUFFIX:
                doc, settings = read_project(path)
                self.set_document(doc, path)
                self.apply_project_settings(settings)
                self._offer_newer_autosave(path)
            else:
                doc = open_photo(path)
                doc.layers.append(Layer("", doc.next_color(), _zeros(doc)))
                doc.active = 0
                self.set_document(doc)
                if doc.original_size != (doc.width, doc.height):
                    self.statusBar().showMessage(
                        f"Large photo {doc.original_size[0]}x{doc.original_size[1]}: working at "
                        f"{doc.width}x{doc.height} (the original is kept in the project)", 8000)
        except BasError as e:
            self.show_error("Cannot open", str(e))
            return False
        self.settings.add_recent(path)
        self._update_recent()
        return True

    def import_scene(self, folder: Path, ask: bool = True) -> bool:
        """Open a scene folder in the reference layout (``img.jpg`` + ``mask0.png`` …)."""
        if ask and not self.maybe_save():
            return False
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                scene = load_scene(folder)
        except BasError as e:
            self.show_error("Cannot import scene", str(e))
            return False
        doc = Document.from_scene(scene)
        img = next((folder / n for n in ("img.jpg", "img.jpeg", "img.png", "img.webp") if (folder / n).exists()), None)
        if img is not None and not scene.warnings:
            doc.original_bytes, doc.original_name = img.read_bytes(), "original" + img.suffix.lower()
        self.set_document(doc)
        if scene.warnings:
            self.statusBar().showMessage(" | ".join(scene.warnings), 10000)
        return True

    def export_scene(self, folder: Path) -> bool:
        """Write the reference layout (``img.png`` + ``mask0.png`` … + ``scene.json``) for the CLI."""
        if self.doc is None:
            return False
        try:
            scene = self.doc.to_scene()
            validate_scene(scene)
            save_scene(scene, folder)
        except BasError as e:
            self.show_error("Cannot export", str(e))
            return False
        self.statusBar().showMessage(f"Exported {len(scene.object_concepts())} masks to {folder}", 5000)
        return True

    def save(self) -> bool:
        """Save to the current project file (asks for one the first time)."""
        if self.doc is None:
            return False
        if self.project_path is None:
            return self.save_as()
        return self.save_to(self.project_path)

    def save_as(self) -> bool:
        """Save under a new name."""
        if self.doc is None:
            return False
        start = str(self.project_path or (self.doc.source.with_suffix(SUFFIX) if self.doc.source else "scene" + SUFFIX))
        path = self.ask_save_path("Save project", start, f"Break-A-Scene project (*{SUFFIX})")
        if not path:
            return False
        path = Path(path)
        if path.suffix.lower() != SUFFIX:
            path = path.with_suffix(SUFFIX)
        return self.save_to(path)

    def save_to(self, path: Path) -> bool:
        """Write the project file and forget the autosave."""
        try:
            save_project(self.doc, path, self.project_settings())
        except BasError as e:
            self.show_error("Cannot save", str(e))
            return False
        self.project_path = path
        self._saved_revision = self.doc.revision
        self.autosaver.mark_saved(str(path))
        self.studio.project_saved(path)
        self.settings.add_recent(path)
        self._update_recent()
        self.update_title()
        self.statusBar().showMessage(f"Saved {path}", 4000)
        return True

    def project_settings(self) -> dict:
        """Per-project settings stored in the project file."""
        t = self.tool_settings
        return {"brush_size": t.brush_size, "hardness": t.hardness, "sam_model": self.sam.model,
                "zoom": self.canvas.zoom}

    def apply_project_settings(self, settings: dict) -> None:
        """Restore per-project settings."""
        if "brush_size" in settings:
            self.tool_settings.brush_size = float(settings["brush_size"])
            self.tool_settings.hardness = float(settings.get("hardness", self.tool_settings.hardness))
            self.options.sync_from_settings()

    def maybe_save(self) -> bool:
        """Before replacing the document: ask to save changes; False when the user cancels."""
        if not self.modified:
            return True
        answer = self.ask_save_changes()
        if answer == "save":
            return self.save()
        if answer == "discard":
            self.autosaver.discard()
            return True
        return False

    # ----- recovery ------------------------------------------------------------------------------------
    def check_recovery(self) -> bool:
        """Offer autosaves left by a crashed session; True when one was recovered."""
        orphans = find_orphans(self.autosaver.folder, Autosaver.live_sessions)
        if not orphans:
            return False
        choice = self.ask_recover(orphans)
        if choice is None:
            return False
        if choice == "discard":
            for info in orphans:
                remove_autosave(self.autosaver.folder, info.session)
            return False
        return self.recover(choice)

    def recover(self, info: AutosaveInfo) -> bool:
        """Load an autosave as unsaved work (Save writes to its original project, if any)."""
        try:
            doc, settings = read_project(info.path)
        except BasError as e:
            self.show_error("Cannot recover", str(e))
            return False
        self.set_document(doc, Path(info.project) if info.project else None, dirty=True)
        self.apply_project_settings(settings)
        remove_autosave(self.autosaver.folder, info.session)
        self.autosaver.save_now()  # the recovered work is protected again at once
        self.statusBar().showMessage(f"Recovered {info.describe()}", 8000)
        return True

    def _offer_newer_autosave(self, project: Path) -> None:
        for info in find_orphans(self.autosaver.folder, Autosaver.live_sessions):
            if info.project and Path(info.project) == project and info.saved_at > project.stat().st_mtime:
                if self.ask_recover([info]) == info:
                    self.recover(info)
                return

    # ----- editing ------------------------------------------------------------------------------------
    def current_tool(self) -> str:
        """Name of the selected tool."""
        return next((n for n, t in self.tools.items() if t is self.canvas.tool), "")

    def set_tool(self, name: str) -> None:
        """Select a tool (B, E, F, P, S)."""
        tool = self.tools[name]
        if self.canvas.tool is not None and self.canvas.tool is not tool:
            self.canvas.tool.cancel(self.canvas)
        self.canvas.tool = tool
        self.tool_actions[name].setChecked(True)
        self.options.hint.setText(tool.hint)
        self.canvas.setCursor(Qt.CursorShape.CrossCursor)
        if name == "sam" and self.doc is not None:
            if not self._sam_model_ready():
                return
            self.tools["sam"].activate(self.canvas)
        self.canvas.update()

    def _sam_model_ready(self) -> bool:
        try:
            if self.sam.model_available():
                return True
        except BasError as e:
            self.show_error("Segment Anything", str(e))
            return False
        self.statusBar().showMessage("Segment Anything needs its model: download it or pick the file", 8000)
        self.models_dialog()
        if self.sam.model_available():
            return True
        self._sam_missing(f"its model ({self.sam.model}) is not on this computer yet")
        return False

    def _sam_failed(self, message: str) -> None:
        self.show_error("Segment Anything", message)
        if self.sam.problem is not None:
            self._sam_missing(self.sam.problem)

    def _sam_missing(self, why: str) -> None:
        self.sam_notice.show_problem(why)
        self.suggestions.info.setText(f"Suggest concepts needs Segment Anything, which cannot run: {why}.")

    def models_dialog(self) -> None:
        """Open the SAM model manager."""
        from bas_desktop.widgets.sam_models import ModelsDialog

        dlg = ModelsDialog(self.jobs, self.sam.model, self.sam.cache_dir, self)
        accepted = dlg.exec()
        dlg.deleteLater()  # it listens to the job runner; a closed one must not outlive its use
        if accepted:
            self.sam.set_model(dlg.chosen)
            self.settings.set_value("sam/model", dlg.chosen)
            self.sam_notice.hide()

    def resize_brush(self, bigger: bool) -> None:
        """[ and ]."""
        self.tool_settings.grow() if bigger else self.tool_settings.shrink()
        self.options.sync_from_settings()
        self.canvas.update()
        self.statusBar().showMessage(f"Brush {self.tool_settings.brush_size:.0f} px", 1500)

    def undo(self) -> None:
        """Undo one stroke / fill / SAM acceptance / layer change."""
        if self.doc is not None:
            label = self.doc.undo()
            if label:
                self.statusBar().showMessage(f"Undo: {label}", 2000)

    def redo(self) -> None:
        """Redo one step."""
        if self.doc is not None:
            label = self.doc.redo()
            if label:
                self.statusBar().showMessage(f"Redo: {label}", 2000)

    def sam_accept(self) -> None:
        """Accept the SAM preview into the active concept."""
        if self.doc is not None:
            self.tools["sam"].accept(self.doc)

    def suggest(self) -> None:
        """Start "Suggest concepts"."""
        if self.doc is not None and self._sam_model_ready():
            self.suggest_dock.raise_()
            self.suggestions.info.setText("Segment Anything is looking for objects…")
            self.sam.suggest()

    def assign_suggestion(self, index: int, new_concept: bool) -> None:
        """Put suggested region ``index`` into the active concept, or into a new one (one undo step)."""
        doc = self.doc
        if doc is None or not 0 <= index < len(self.suggestions.items):
            return
        mask = self.suggestions.items[index].mask.astype("uint8") * 255
        if new_concept or doc.active_layer is None:
            try:
                doc.add_layer(None, mask=mask)
            except ValueError as e:
                self.show_error("Too many concepts", str(e))
        else:
            doc.apply_region("Suggested region", (0, 0, doc.width, doc.height), mask, "add")
        self.tools["sam"].set_preview(None)
        self.canvas.update()

    def preview_suggestion(self, index: int) -> None:
        """Show a suggested region on the canvas (through the SAM tool's preview)."""
        items = self.suggestions.items
        if self.current_tool() != "sam":
            self.set_tool("sam")
        self.tools["sam"].set_preview(items[index].mask if 0 <= index < len(items) else None)
        self.canvas.update()

    # ----- status -------------------------------------------------------------------------------------
    def _cursor_moved(self, x: int, y: int) -> None:
        if self.doc is not None and 0 <= x < self.doc.width and 0 <= y < self.doc.height:
            self.pos_label.setText(f"{x}, {y}")
        else:
            self.pos_label.setText("")

    def _sam_status(self, text: str, fraction: float | None) -> None:
        self.options.sam_status.setText(text or "Press S and click an object.")
        busy = bool(text) and text.endswith("…")
        self.progress.setVisible(busy)
        if busy:
            if fraction is None:
                self.progress.setRange(0, 0)
            else:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(fraction * 1000))
            self.progress.setToolTip(text)
        elif text:
            self.statusBar().showMessage(text, 4000)

    def _update_recent(self) -> None:
        self.recent_menu.clear()
        for p in self.settings.recent_files():
            self.recent_menu.addAction(Path(p).name, lambda p=p: self.open_path(p)).setToolTip(p)
        self.recent_menu.setEnabled(bool(self.recent_menu.actions()))

    # ----- drag and drop, close ----------------------------------------------------------------------
    @staticmethod
    def _dropped_path(event: QDragEnterEvent | QDropEvent) -> Path | None:
        for url in event.mimeData().urls():
            if url.isLocalFile():
                p = Path(url.toLocalFile())
                if p.is_dir() or p.suffix.lower() in OPENABLE:
                    return p
        return None

    def dragEnterEvent(self, event: QDragEnterEvent) -> None:  # noqa: N802
        if self._dropped_path(event) is not None:
            event.acceptProposedAction()

    def dropEvent(self, event: QDropEvent) -> None:  # noqa: N802
        path = self._dropped_path(event)
        if path is not None:
            event.acceptProposedAction()
            QTimer.singleShot(0, lambda: self.open_path(path))  # don't run dialogs inside the drop

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not self.maybe_save():
            event.ignore()
            return
        self.settings.save_window_state(self.saveGeometry(), self.saveState(LAYOUT_VERSION))
        self.settings.save_tool_settings(self.tool_settings)
        self.settings.sync()
        self.shutdown()
        event.accept()

    def shutdown(self) -> None:
        """Stop background work and remove the autosave (a clean exit)."""
        self.autosaver.close()
        self.jobs.shutdown()


def _zeros(doc: Document) -> np.ndarray:
    return np.zeros((doc.height, doc.width), np.uint8)


def main(argv: list[str] | None = None) -> int:
    """``bas-desktop [PHOTO_OR_PROJECT]``."""
    argv = list(sys.argv if argv is None else argv)
    if "--self-test" in argv:
        from bas_desktop.selftest import main as self_test

        return self_test([a for a in argv[1:] if a != "--self-test"])
    app = QApplication.instance() or QApplication(argv)
    app.setOrganizationName("BreakAScene")
    app.setApplicationName("bas-desktop")
    win = MainWindow()
    install_exception_hooks(win)
    win.show()
    args = [a for a in argv[1:] if not a.startswith("-")]
    if args:
        QTimer.singleShot(0, lambda: win.open_path(args[0]))
    else:
        QTimer.singleShot(0, win.check_recovery)
    QTimer.singleShot(0, win.studio.offer_model_setup)
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
