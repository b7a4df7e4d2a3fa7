"""Autosave: a few seconds after the document stops changing, a snapshot is written in the background.

The snapshot is copied on the UI thread (a memcpy) and compressed/written on the ``io`` job lane, so
typing and painting never wait for the disk.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PySide6.QtCore import QObject, QTimer, Signal

from bas_desktop.model.document import Document
from bas_desktop.model.project import AutosaveInfo, ProjectSnapshot, remove_autosave, snapshot, write_autosave
from bas_desktop.model.session_lock import SessionLock
from bas_desktop.workers import JobRunner
from engine.jobs.events import JobMessage, Report, StopCheck

QUIET_S = 3.0  # write after this long without changes...
MAX_WAIT_S = 15.0  # ...or at the latest this long after the first unsaved change


@dataclass(frozen=True)
class AutosaveJob:
    """Inputs of one autosave write."""

    snap: ProjectSnapshot
    folder: Path
    session: str
    project: str | None


def autosave_job(inputs: AutosaveJob, report: Report, should_stop: StopCheck) -> AutosaveInfo:
    """Write the snapshot (worker thread)."""
    return write_autosave(inputs.snap, inputs.folder, inputs.session, inputs.project)


class Autosaver(QObject):
    """Watches one document's revision and autosaves it; ``saved(str)`` reports each write."""

    saved = Signal(str)
    live_sessions: set[str] = set()

    def __init__(self, jobs: JobRunner, folder: Path, quiet_s: float = QUIET_S, max_wait_s: float = MAX_WAIT_S,
                 parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.jobs, self.folder = jobs, folder
        self.quiet_s, self.max_wait_s = quiet_s, max_wait_s
        self.session = uuid.uuid4().hex[:12]
        Autosaver.live_sessions.add(self.session)
        self._lock = SessionLock(folder / f"{self.session}.lock")  # released by the OS if the app dies
        self.doc: Document | None = None
        self.project: str | None = None
        self.settings_fn: Callable[[], dict] = dict
        self._saved_rev = 0
        self._seen_rev = 0
        self._last_change = 0.0
        self._first_change: float | None = None
        self._timer = QTimer(self)
        self._timer.setInterval(500)
        self._timer.timeout.connect(self.tick)
        self._timer.start()
        jobs.message.connect(self._on_message)

    def set_document(self, doc: Document | None, project: str | None = None) -> None:
        """Watch a new document (its current state counts as saved)."""
        self.discard()
        self.doc, self.project = doc, project
        self._saved_rev = self._seen_rev = doc.revision if doc else 0
        self._first_change = None

    def mark_saved(self, project: str | None) -> None:
        """The user saved: nothing to recover any more."""
        self.project = project
        if self.doc is not None:
            self._saved_rev = self._seen_rev = self.doc.revision
        self._first_change = None
        remove_autosave(self.folder, self.session)

    def tick(self) -> None:
        """Timer callback: write when the document has been quiet long enough (or waited too long)."""
        doc = self.doc
        if doc is None or doc.stroke is not None:
            return
        now = time.monotonic()
        if doc.revision != self._seen_rev:
            self._seen_rev = doc.revision
            self._last_change = now
            if self._first_change is None:
                self._first_change = now
        if self._first_change is None or doc.revision == self._saved_rev:
            return
        if now - self._last_change >= self.quiet_s or now - self._first_change >= self.max_wait_s:
            self.save_now()

    def save_now(self) -> None:
        """Write an autosave of the current state in the background."""
        if self.doc is None or self.jobs.busy("autosave"):
            return
        self._saved_rev = self.doc.revision
        self._first_change = None
        job = AutosaveJob(snapshot(self.doc, self.settings_fn()), self.folder, self.session, self.project)
        self.jobs.submit("autosave", autosave_job, job, lane="io")

    def _on_message(self, msg: JobMessage) -> None:
        if msg.job != "autosave":
            return
        if msg.kind == "done":
            self.saved.emit(str(msg.result.path))
        elif msg.kind == "error":
            self._saved_rev = -1  # try again on the next tick

    def discard(self) -> None:
        """Delete this session's autosave (clean exit, save, or the user threw the work away)."""
        remove_autosave(self.folder, self.session)

    def close(self) -> None:
        """Clean shutdown: stop the timer and delete the autosave."""
        self._timer.stop()
        self.jobs.wait_idle(5000)
        self.discard()
        self._lock.release()
        Autosaver.live_sessions.discard(self.session)
