"""Export the project's handle pack (our format and interop formats); import a pack or embeddings."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QDialog, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                               QPushButton, QVBoxLayout, QWidget)

from bas_desktop import jobs
from bas_desktop.project_data import ProjectData
from bas_desktop.workers import JobMessage, JobRunner

FORMAT_LABELS = {"pack": "Handle pack (Break-A-Scene format: handles, phase-2 weights, scene)",
                 "diffusers": "diffusers: textual inversion per handle + LoRA",
                 "a1111": "AUTOMATIC1111 / ComfyUI embeddings",
                 "kohya": "kohya LoRA (A1111/ComfyUI loras/)"}


class ExportDialog(QDialog):
    """Pick formats and a folder; export runs in the worker thread. ``exported(list[Path])`` when done."""

    exported = Signal(object)

    def __init__(self, runner: JobRunner, data: ProjectData, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Export handles")
        self.runner, self.data = runner, data
        self.written: list[Path] = []
        self.last_error: str | None = None
        lay = QVBoxLayout(self)
        self.checks: dict[str, QCheckBox] = {}
        for fmt, label in FORMAT_LABELS.items():
            box = QCheckBox(label)
            box.setChecked(fmt in ("pack", "diffusers"))
            self.checks[fmt] = box
            lay.addWidget(box)
        row = QHBoxLayout()
        self.folder = QLineEdit(str(data.exports_dir))
        browse = QPushButton("Browse ...")
        browse.clicked.connect(self._browse)
        row.addWidget(QLabel("Folder"))
        row.addWidget(self.folder, 1)
        row.addWidget(browse)
        lay.addLayout(row)
        self.export_button = QPushButton("Export")
        self.export_button.clicked.connect(self.export)
        lay.addWidget(self.export_button)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("Written files appear here")
        lay.addWidget(self.log)
        runner.message.connect(self._on_message)

    def formats(self) -> list[str]:
        """The ticked formats."""
        return [f for f, box in self.checks.items() if box.isChecked()]

    def _browse(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Export to", self.folder.text())
        if path:
            self.folder.setText(path)

    def export(self) -> None:
        """Start the export."""
        if not self.data.has_pack():
            self._error(f"{self.data.pack_dir}: there is no handle pack yet; break the scene first")
            return
        self.export_button.setEnabled(False)
        self.log.setPlainText("Exporting ...")
        self.runner.submit("export", jobs.export_job,
                           jobs.ExportInputs(self.data.pack_dir, Path(self.folder.text()), self.formats()))

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job != "export":
            return
        if msg.kind == "progress":
            self.log.appendPlainText(msg.text)
            return
        self.export_button.setEnabled(True)
        if msg.kind == "done":
            self.written = list(msg.result)
            self.log.setPlainText("\n".join(str(p) for p in self.written))
            self.exported.emit(self.written)
        elif msg.kind == "error":
            self._error(msg.text)

    def _error(self, text: str) -> None:
        self.last_error = text
        self.log.setPlainText(f"Error: {text}")


def import_dialog_paths(parent: QWidget) -> list[Path]:
    """Ask for a pack folder (or, when cancelled, embedding files); empty when the user cancels both."""
    folder = QFileDialog.getExistingDirectory(parent, "Import a handle pack folder")
    if folder:
        return [Path(folder)]
    files, _ = QFileDialog.getOpenFileNames(parent, "Import textual-inversion embeddings", "",
                                            "Embeddings (*.safetensors *.pt *.bin)")
    return [Path(f) for f in files]
