"""The main window's dialogs, one small method each so tests (and scripts) can answer them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtWidgets import QFileDialog, QMessageBox

from bas_desktop.widgets.error_dialog import show_error
from bas_desktop.model.project import PHOTO_SUFFIXES, SUFFIX, AutosaveInfo

if TYPE_CHECKING:
    from bas_desktop.settings import Settings

APP_NAME = "Break-A-Scene"
OPENABLE = PHOTO_SUFFIXES + (SUFFIX,)


class DialogsMixin:
    """Dialogs of :class:`~bas_desktop.app.MainWindow` (a ``QMainWindow``)."""

    if TYPE_CHECKING:  # provided by MainWindow
        settings: Settings

        def open_path(self, path: str | Path) -> bool: ...
        def import_scene(self, folder: Path, ask: bool = True) -> bool: ...
        def export_scene(self, folder: Path) -> bool: ...

    def show_error(self, title: str, message: str) -> None:
        """Tell the user what went wrong (a non-blocking dialog with "Copy details"; tests replace it)."""
        show_error(self, title, message)  # type: ignore[arg-type]

    # ----- dialogs (overridable in tests) -------------------------------------------------------------
    def ask_save_changes(self) -> str:
        """``save``, ``discard`` or ``cancel``."""
        b = QMessageBox.question(self, APP_NAME, "Save the changes to this scene?",
                                 QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                                 | QMessageBox.StandardButton.Cancel)
        return {QMessageBox.StandardButton.Save: "save", QMessageBox.StandardButton.Discard: "discard"}.get(b, "cancel")

    def ask_recover(self, infos: list[AutosaveInfo]) -> AutosaveInfo | str | None:
        """The autosave to recover, ``discard`` to delete them, or None (ask again next time)."""
        box = QMessageBox(self)
        box.setWindowTitle(APP_NAME)
        box.setText("Break-A-Scene did not close properly. Recover the unsaved work?")
        box.setInformativeText("\n".join(i.describe() for i in infos[:5]))
        recover = box.addButton("Recover", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Discard", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton("Later", QMessageBox.ButtonRole.RejectRole)
        box.exec()
        if box.clickedButton() is recover:
            return infos[0]
        return "discard" if box.clickedButton() is discard else None

    def ask_save_path(self, title: str, start: str, filters: str) -> str:
        """A file name to save to ('' when cancelled)."""
        return QFileDialog.getSaveFileName(self, title, start, filters)[0]

    def open_dialog(self) -> None:
        """File > Open."""
        path, _ = QFileDialog.getOpenFileName(
            self, "Open photo or project", str(self.settings.value("last_dir", "")),
            f"Photos and projects (*{' *'.join(OPENABLE)});;All files (*)")
        if path:
            self.settings.set_value("last_dir", str(Path(path).parent))
            self.open_path(path)

    def import_dialog(self) -> None:
        """File > Import scene folder."""
        folder = QFileDialog.getExistingDirectory(self, "Scene folder (img.jpg + mask0.png …)")
        if folder:
            self.import_scene(Path(folder))

    def export_dialog(self) -> None:
        """File > Export scene folder."""
        folder = QFileDialog.getExistingDirectory(self, "Export the scene into this folder")
        if folder:
            self.export_scene(Path(folder))
