"""The Segment Anything model manager dialog: download (progress, cancel, resume, checksum) or pick a file.

The engine's ``ModelManager`` does the work (resumable ``.part`` downloads, SHA-256 checks); this
dialog runs it on the ``download`` job lane and shows its progress.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QHBoxLayout, QLabel, QMessageBox,
                               QProgressBar, QPushButton, QRadioButton, QVBoxLayout, QWidget)

from bas_desktop.workers import JobRunner
from engine.jobs.events import JobMessage, MessageKind, Report, StopCheck

if TYPE_CHECKING:  # the engine loads torch: imported inside jobs only
    from engine.sam.models import ModelManager
    from engine.sam.progress import ProgressEvent

CHOICES = ("vit_b", "vit_l", "vit_h")


@dataclass(frozen=True)
class DownloadJob:
    """Download one model's weights into the cache."""

    model: str
    cache_dir: Path | None = None


@dataclass(frozen=True)
class RegisterJob:
    """Check and remember a weights file the user already has."""

    model: str
    path: Path
    cache_dir: Path | None = None


def _manager(cache_dir: Path | None) -> ModelManager:
    from engine.sam.models import ModelManager

    return ModelManager(cache_dir) if cache_dir else ModelManager()


def _report(report: Report, job: str) -> Callable[[ProgressEvent], None]:
    def cb(ev: ProgressEvent) -> None:
        mb = f"{ev.done / 1e6:.0f} / {ev.total / 1e6:.0f} MB" if ev.unit == "bytes" and ev.total else ""
        report(JobMessage(job, MessageKind.PROGRESS, text=f"{ev.task} {mb}".strip(), fraction=ev.fraction))
    return cb


def download_job(inputs: DownloadJob, report: Report, should_stop: StopCheck) -> Path:
    """Download (or resume) and verify the weights (worker thread)."""
    from engine.sam.specs import get_spec

    return _manager(inputs.cache_dir).download(get_spec(inputs.model), _report(report, "sam-download"),
                                               cancel_flag=should_stop)


def register_job(inputs: RegisterJob, report: Report, should_stop: StopCheck) -> Path:
    """Verify a picked file (checksum, keys) and remember it (worker thread)."""
    from engine.sam.specs import get_spec

    return _manager(inputs.cache_dir).register(get_spec(inputs.model), inputs.path, _report(report, "sam-download"))


class ModelsDialog(QDialog):
    """Choose the SAM model; download it or pick its file. ``chosen`` holds the model name on accept."""

    def __init__(self, jobs: JobRunner, current: str, cache_dir: Path | None = None,
                 parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Segment Anything models")
        self.jobs, self.cache_dir, self.chosen = jobs, cache_dir, current
        from engine.sam.specs import get_spec

        manager = _manager(cache_dir)
        lay = QVBoxLayout(self)
        lay.addWidget(QLabel("Segment Anything turns clicks into masks. The weights are downloaded once "
                             "(or pick a file you already have); they stay on this computer."))
        self.radios: dict[str, QRadioButton] = {}
        for name in CHOICES:
            spec = get_spec(name)
            size = f"{spec.size_bytes / 1e6:.0f} MB" if spec.size_bytes else "size unknown"
            state = "ready" if manager.is_available(spec) else f"to download ({size})"
            r = QRadioButton(f"{spec.description} — {state}")
            r.setChecked(name == current)
            self.radios[name] = r
            lay.addWidget(r)
        self.progress = QProgressBar()
        self.progress.setVisible(False)
        self.status = QLabel()
        self.status.setWordWrap(True)
        row = QHBoxLayout()
        self.download_btn = QPushButton("Download")
        self.pick_btn = QPushButton("Pick file…")
        self.cancel_btn = QPushButton("Cancel download")
        self.cancel_btn.setEnabled(False)
        for b in (self.download_btn, self.pick_btn, self.cancel_btn):
            row.addWidget(b)
        lay.addLayout(row)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Close)
        buttons.accepted.connect(self._use)
        buttons.rejected.connect(self.reject)
        lay.addWidget(buttons)
        self.download_btn.clicked.connect(self.download)
        self.pick_btn.clicked.connect(self.pick)
        self.cancel_btn.clicked.connect(lambda: self.jobs.cancel("sam-download"))
        jobs.message.connect(self._on_message)

    def model(self) -> str:
        """The selected model name."""
        return next(n for n, r in self.radios.items() if r.isChecked()) if any(
            r.isChecked() for r in self.radios.values()) else "vit_b"

    def download(self) -> None:
        """Start (or resume) the download of the selected model."""
        self._busy(True)
        self.status.setText("Downloading… (cancel keeps the part; downloading again resumes)")
        self.jobs.submit("sam-download", download_job, DownloadJob(self.model(), self.cache_dir), lane="download")

    def pick(self) -> None:
        """Use a weights file from disk (checked against the published checksum)."""
        path, _ = QFileDialog.getOpenFileName(self, "SAM weights", "", "SAM checkpoint (*.pth);;All files (*)")
        if path:
            self._busy(True)
            self.status.setText("Checking the file…")
            self.jobs.submit("sam-download", register_job, RegisterJob(self.model(), Path(path), self.cache_dir),
                             lane="download")

    def _busy(self, on: bool) -> None:
        self.progress.setVisible(on)
        self.download_btn.setEnabled(not on)
        self.pick_btn.setEnabled(not on)
        self.cancel_btn.setEnabled(on)

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job != "sam-download":
            return
        if msg.kind == "progress":
            if msg.fraction is None:
                self.progress.setRange(0, 0)
            else:
                self.progress.setRange(0, 1000)
                self.progress.setValue(int(msg.fraction * 1000))
            self.status.setText(msg.text)
            return
        self._busy(False)
        if msg.kind == "done":
            self.status.setText(f"Ready: {msg.result}")
        elif msg.kind == "cancelled":
            self.status.setText("Cancelled. Download again to resume where it stopped.")
        else:
            self.status.setText("")
            QMessageBox.warning(self, "Segment Anything", msg.text)

    def _use(self) -> None:
        self.chosen = self.model()
        self.accept()
