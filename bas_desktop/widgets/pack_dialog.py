"""Export the project's handle pack (our format and interop formats); import a pack or embeddings."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QCheckBox, QDialog, QFileDialog, QHBoxLayout, QLabel, QLineEdit, QPlainTextEdit,
                               QPushButton, QRadioButton, QVBoxLayout, QWidget)

from bas_desktop.model import jobs
from bas_desktop.model.importing import ImportPlan, inspect_source
from bas_desktop.widgets.job_status import job_state_text
from bas_desktop.model.project_data import ProjectData
from bas_desktop.workers import JobMessage, JobRunner

FORMAT_LABELS = {"pack": "Handle pack (Break-A-Scene format: handles, phase-2 weights, scene)",
                 "diffusers": "diffusers: textual inversion per handle + LoRA",
                 "a1111": "AUTOMATIC1111 / ComfyUI embeddings",
                 "kohya": "kohya LoRA (A1111/ComfyUI loras/)"}


class ExportDialog(QDialog):
    """Pick formats and a folder; export is a queued job and the dialog never blocks the window.

    ``exported(list[Path])`` when done; ``state`` shows waiting / running / done.
    """

    exported = Signal(object)

    def __init__(self, runner: JobRunner, data: ProjectData, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModal(False)
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
        self.state = QLabel("")
        self.state.setWordWrap(True)
        lay.addWidget(self.state)
        self.log = QPlainTextEdit()
        self.log.setReadOnly(True)
        self.log.setPlaceholderText("Written files appear here")
        lay.addWidget(self.log)
        runner.message.connect(self._on_message)
        runner.changed.connect(self._show_state)

    def _show_state(self) -> None:
        text = job_state_text(self.runner, "export")
        if text:
            self.state.setText(f"Export: {text}. You can close this window; the status bar keeps showing it.")

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
        self._show_state()

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
            self.state.setText(f"Export: done, {len(self.written)} files written.")
            self.exported.emit(self.written)
        elif msg.kind == "error":
            self.state.setText("Export: failed.")
            self._error(msg.text)
        else:
            self.state.setText("Export: cancelled.")

    def _error(self, text: str) -> None:
        self.last_error = text
        self.log.setPlainText(f"Error: {text}")


class ImportDialog(QDialog):
    """One place to import from: a pack folder, a pack archive, an exported folder or embedding files.

    When the project already has handles, the user chooses to replace them or add the new ones.
    ``importRequested(ImportPlan, mode)`` asks the studio to queue the import; the dialog stays open
    (non-modal) and shows the job's state and what was imported.
    """

    importRequested = Signal(object, str)

    def __init__(self, runner: JobRunner, existing: list[str], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setModal(False)
        self.setWindowTitle("Import handles")
        self.runner = runner
        self.plan: ImportPlan | None = None
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Import handles from:"))
        row = QHBoxLayout()
        self.folder_button = QPushButton("Pack or exported folder ...")
        self.archive_button = QPushButton("Pack archive ...")
        self.files_button = QPushButton("Embedding files ...")
        self.folder_button.clicked.connect(self._pick_folder)
        self.archive_button.clicked.connect(self._pick_archive)
        self.files_button.clicked.connect(self._pick_files)
        for b in (self.folder_button, self.archive_button, self.files_button):
            b.setAutoDefault(False)
            row.addWidget(b)
        lay.addLayout(row)
        self.summary = QLabel("Nothing chosen yet.")
        self.summary.setWordWrap(True)
        lay.addWidget(self.summary)
        self.add_radio = QRadioButton("Add them as new handles (keeps this project's handles)")
        self.replace_radio = QRadioButton(f"Replace this project's {len(existing)} handles ({', '.join(existing)})")
        self.add_radio.setChecked(True)
        for r in (self.add_radio, self.replace_radio):
            r.setVisible(bool(existing))
            lay.addWidget(r)
        buttons = QHBoxLayout()
        self.import_button = QPushButton("Import")
        self.import_button.setEnabled(False)
        self.import_button.clicked.connect(self._import)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons.addStretch(1)
        buttons.addWidget(self.import_button)
        buttons.addWidget(close)
        lay.addLayout(buttons)
        self.state = QLabel("")
        self.state.setWordWrap(True)
        lay.addWidget(self.state)
        runner.changed.connect(self._show_state)
        runner.message.connect(self._on_message)

    def mode(self) -> str:
        """``replace`` or ``add``."""
        return "replace" if self.replace_radio.isVisible() and self.replace_radio.isChecked() else "add"

    def set_paths(self, paths: list[Path]) -> bool:
        """Use these paths (the pickers call this; so can a test); shows what they hold."""
        try:
            self.plan = inspect_source(paths)
        except ValueError as e:
            self.plan = None
            self.summary.setText(f"<span style='color:#b00'>{e}</span>")
        else:
            notes = "".join(f"<br><i>Note: {n}</i>" for n in self.plan.notes)
            self.summary.setText(f"To import: {self.plan.summary}{notes}")
        self.import_button.setEnabled(self.plan is not None)
        return self.plan is not None

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "A handle pack folder or an exported folder")
        if folder:
            self.set_paths([Path(folder)])

    def _pick_archive(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "A handle pack archive", "", "Pack archives (*.zip *.tar *.tar.gz *.tgz)")
        if path:
            self.set_paths([Path(path)])

    def _pick_files(self) -> None:
        files, _ = QFileDialog.getOpenFileNames(self, "Textual-inversion embeddings", "",
                                                "Embeddings (*.safetensors *.pt *.bin)")
        if files:
            self.set_paths([Path(f) for f in files])

    def _import(self) -> None:
        if self.plan is not None:
            self.import_button.setEnabled(False)
            self.importRequested.emit(self.plan, self.mode())
            self._show_state()

    def _show_state(self) -> None:
        text = job_state_text(self.runner, "import")
        if text:
            self.state.setText(f"Import: {text}.")

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job != "import" or msg.kind == "progress":
            return
        self.import_button.setEnabled(self.plan is not None)
        if msg.kind == "done":
            self.state.setText(msg.result.describe())
        elif msg.kind == "error":
            self.state.setText(f"<span style='color:#b00'>Import failed: {msg.text}</span>")
