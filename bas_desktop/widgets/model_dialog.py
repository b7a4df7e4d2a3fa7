"""The first-run model dialog: download SD 2.1 (the default) or SDXL, pick local weights, or use the offline model."""

from __future__ import annotations

from html import escape
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (QDialog, QFileDialog, QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout,
                               QWidget)

from bas_desktop.model import model_setup
from engine.formats import names
from bas_desktop.model.model_info import describe_model
from bas_desktop.workers import JobMessage, JobRunner


def _remote_size(hub_id: str | None, _report: Any, _cancel: Any) -> list[model_setup.RemoteFile] | None:
    """A hub model's files (the default model's without ``hub_id``), or None offline (no traceback
    on stderr: being offline is normal)."""
    try:
        return model_setup.remote_files(hub_id) if hub_id else model_setup.remote_files()
    except Exception:  # noqa: BLE001 - any network or hub failure means "size unknown"
        return None


class ModelDialog(QDialog):
    """Offers the three ways to get a base model. ``modelChosen(str)`` carries the model reference."""

    modelChosen = Signal(str)

    def __init__(self, runner: JobRunner, parent: QWidget | None = None, current: str | None = None,
                 first_run: bool = False) -> None:
        super().__init__(parent)
        self.setWindowTitle("Choose a base model")
        self.runner = runner
        self.chosen: str | None = None
        self.last_error: str | None = None
        lay = QVBoxLayout(self)
        if current and first_run:
            text = ("No Stable Diffusion weights were found on this computer. Until you choose, the app uses "
                    f"<b>{escape(describe_model(current, long=True))}</b>.")
        elif current:
            text = (f"Current base model: <b>{escape(describe_model(current, long=True))}</b>.<br>Keep it (Later), or "
                    "choose another below.")
        else:
            text = "Break-A-Scene needs Stable Diffusion weights. None were found on this computer."
        self.intro = QLabel(text)
        self.intro.setWordWrap(True)
        lay.addWidget(self.intro)

        # One row per offered model (engine/formats/names.py HUB_MODELS): SD 2.1 first (the default).
        self.size_labels: dict[str, QLabel] = {}
        self.download_buttons: dict[str, QPushButton] = {}
        self.downloading: str | None = None
        for m in names.HUB_MODELS:
            default = " (the default)" if m.hub_id == names.DEFAULT_HUB_MODEL else ""
            lay.addWidget(QLabel(f"<b>Download {escape(m.label)}</b>{default}: {escape(m.hub_id)}, {m.resolution} px, "
                                 f"preset {escape(m.recommended_preset)}"))
            row = QHBoxLayout()
            label, button = QLabel("Size: checking ..."), QPushButton("Download")
            button.setAutoDefault(False)  # Enter must not start a 5 GB download
            button.clicked.connect(lambda _=False, hub_id=m.hub_id: self.download(hub_id))
            row.addWidget(label, 1)
            row.addWidget(button)
            lay.addLayout(row)
            self.size_labels[m.hub_id], self.download_buttons[m.hub_id] = label, button
        self.size_label = self.size_labels[names.DEFAULT_HUB_MODEL]
        self.download_button = self.download_buttons[names.DEFAULT_HUB_MODEL]
        self.cancel_button = QPushButton("Cancel download")
        self.cancel_button.setAutoDefault(False)
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.runner.cancel("download"))
        lay.addWidget(self.cancel_button)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress_text = QLabel("An interrupted download resumes where it stopped.")
        lay.addWidget(self.progress)
        lay.addWidget(self.progress_text)

        lay.addWidget(QLabel("<b>Use weights already on disk</b>"))
        row2 = QHBoxLayout()
        self.folder_button = QPushButton("Diffusers folder ...")
        self.file_button = QPushButton("Checkpoint file ...")
        self.folder_button.clicked.connect(self._pick_folder)
        self.file_button.clicked.connect(self._pick_file)
        row2.addWidget(self.folder_button)
        row2.addWidget(self.file_button)
        lay.addLayout(row2)

        lay.addWidget(QLabel("<b>Try everything offline</b>"))
        offline = names.offline_model_available()
        self.offline_button = QPushButton("Use the shipped offline model (ShapesWorld, 64 px)"
                                          if offline else "Offline model not installed: use the tiny test model")
        self.offline_button.setToolTip("A tiny model of coloured shapes that trains in minutes on a CPU")
        self.offline_button.clicked.connect(lambda: self.choose(names.OFFLINE_MODEL if offline
                                                                else names.TINY_MODEL))
        lay.addWidget(self.offline_button)
        self.error_label = QLabel("")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color:#b00")
        lay.addWidget(self.error_label)
        self.later_button = QPushButton("Later" if first_run or not current else "Keep the current model")
        self.later_button.setToolTip("Close; the Base model entry of the Handles menu opens this again")
        self.later_button.setDefault(True)
        self.later_button.clicked.connect(self.reject)
        bottom = QHBoxLayout()
        bottom.addStretch(1)
        bottom.addWidget(self.later_button)
        lay.addLayout(bottom)
        for b in (self.folder_button, self.file_button, self.offline_button):
            b.setAutoDefault(False)
        runner.message.connect(self._on_message)
        runner.submit("model-size", _remote_size, None)
        for m in names.HUB_MODELS:
            if m.hub_id != names.DEFAULT_HUB_MODEL:
                runner.submit(f"model-size:{m.hub_id}", _remote_size, m.hub_id)

    def choose(self, ref: str) -> None:
        """Use ``ref`` and close."""
        self.chosen = ref
        self.modelChosen.emit(ref)
        self.accept()

    def download(self, hub_id: str = names.DEFAULT_HUB_MODEL) -> None:
        """Start (or resume) the download of a hub model in the worker thread (one at a time)."""
        if self.downloading is not None:
            return
        self.downloading = hub_id
        for b in self.download_buttons.values():
            b.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.runner.submit("download", model_setup.download_job, model_setup.DownloadInputs(hub_id))

    def use_local(self, path: str) -> None:
        """Validate a local folder/file in the worker thread, then use it."""
        self.runner.submit("check-model", lambda p, _r, _c: model_setup.check_local_model(p), path)

    def _pick_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Diffusers model folder")
        if path:
            self.use_local(path)

    def _pick_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "Checkpoints (*.safetensors *.ckpt)")
        if path:
            self.use_local(path)

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job.startswith("model-size"):
            hub_id = msg.job.partition(":")[2] or names.DEFAULT_HUB_MODEL
            label = self.size_labels.get(hub_id)
            if label is None:
                return
            if msg.kind == "done" and msg.result:
                total = sum(f.size for f in msg.result)
                label.setText(f"Size: {model_setup.format_size(total)} in {len(msg.result)} files")
            elif msg.kind in ("done", "error"):
                label.setText(f"Size: {names.hub_model_size(hub_id)} (could not reach the hub to check; offline?)")
        elif msg.job == "download":
            if msg.kind == "progress":
                self.progress.setValue(int(1000 * (msg.fraction or 0)))
                self.progress_text.setText(msg.text)
                return
            hub_id, self.downloading = self.downloading or names.DEFAULT_HUB_MODEL, None
            for b in self.download_buttons.values():
                b.setEnabled(True)
            self.cancel_button.setEnabled(False)
            if msg.kind == "done" and msg.result is not None:
                self.choose(hub_id)
            elif msg.kind == "error":
                self._error(f"Download failed: {msg.text}. Press Download again to resume.")
            else:
                self.progress_text.setText("Download paused; press Download to resume")
        elif msg.job == "check-model":
            if msg.kind == "done":
                self.choose(msg.result)
            elif msg.kind == "error":
                self._error(msg.text)

    def _error(self, text: str) -> None:
        self.last_error = text
        self.error_label.setText(text)
