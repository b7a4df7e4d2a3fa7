"""The status bar's job line: what runs, what waits for what, and how the last pack job ended."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QWidget

from bas_desktop.workers import JobMessage, JobRunner

JOB_LABELS = {"train": "Break", "estimate": "Estimate", "generate": "Generate", "edit": "Local edit",
              "export": "Export", "import": "Import", "download": "Model download",
              "sam-download": "SAM download"}


def job_label(name: str) -> str:
    """The user's word for a job."""
    return JOB_LABELS.get(name, name)


def job_state_text(runner: JobRunner, name: str) -> str:
    """``waiting for Generate`` / ``running`` / empty when the job is neither queued nor running."""
    if name in runner.running():
        return "running"
    ahead = runner.waiting_for(name)
    if ahead is not None:
        return f"waiting for {job_label(ahead)} to finish"
    return "queued" if name in runner.queued() else ""


class JobsLabel(QLabel):
    """``Running: Generate · Waiting: Export (for Generate)``; the last export/import outcome otherwise."""

    def __init__(self, runner: JobRunner, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.runner = runner
        self.last_outcome = ""
        runner.changed.connect(self.refresh)
        runner.message.connect(self._on_message)
        self.refresh()

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job in ("export", "import") and msg.kind in ("done", "error", "cancelled"):
            word = {"done": "done", "error": "failed", "cancelled": "cancelled"}[msg.kind]
            self.last_outcome = f"{job_label(msg.job)} {word}"
            self.refresh()

    def refresh(self) -> None:
        """Re-read the runner's queues."""
        running = [job_label(n) for n in self.runner.running() if n in JOB_LABELS]
        waiting = [f"{job_label(n)} (for {job_label(self.runner.waiting_for(n) or '')})"
                   for n in self.runner.queued() if n in JOB_LABELS]
        parts = ([f"Running: {', '.join(running)}"] if running else []) + (
            [f"Waiting: {', '.join(waiting)}"] if waiting else [])
        self.setText(" · ".join(parts) or self.last_outcome)
        self.setVisible(bool(self.text()))
