"""The app's job runner: an engine :class:`~engine.jobs.runner.Runner` whose messages arrive as Qt signals.

Jobs are plain functions ``fn(inputs, report, should_stop)`` (``bas_desktop/model/jobs.py`` and the
engine); they never see Qt. :class:`JobRunner` submits them to an engine runner (the local thread
runner by default) and re-emits each :class:`JobMessage` on the UI thread through
:class:`SignalBridge`, as Dangerzone's core reports through a callback that a thin QObject turns
into signals.
"""

from __future__ import annotations

from typing import Any, Callable

from PySide6.QtCore import QObject, QThread, Signal, Slot

from engine.jobs.events import JobFn, JobMessage, MessageKind, Report
from engine.jobs.runner import CancelToken, LocalThreadRunner, Runner

__all__ = ["CancelToken", "JobMessage", "JobRunner", "MessageKind", "SignalBridge"]


class SignalBridge(QObject):
    """Turns the plain ``report`` callback, called from any thread, into the ``message`` signal."""

    message = Signal(object)

    def report(self, msg: JobMessage) -> None:
        """Emit ``msg`` (queued to the receivers' threads)."""
        self.message.emit(msg)


class JobRunner(QObject):
    """Runs jobs one at a time per *lane* on an engine runner, and relays their messages to the UI thread.

    ``message`` carries every :class:`JobMessage` of every job; ``changed`` fires when a job is
    queued, cancelled or finished (for status displays). A job counts as busy until its final
    message has been relayed, so a slot that receives ``done`` already sees it finished.
    """

    message = Signal(object)
    changed = Signal()

    def __init__(self, parent: QObject | None = None,
                 runner: Callable[[Report], Runner] = LocalThreadRunner) -> None:
        super().__init__(parent)
        self._bridge = SignalBridge()
        self._bridge.message.connect(self._relay)
        self._core = runner(self._bridge.report)
        # job id -> (name, lane), in submit order, from submit until its final message is relayed. The
        # first open job of a lane is the one running there (the lane thread may not have started it
        # yet, but nothing else can run before it), the others wait behind it.
        self._open: dict[str, tuple[str, str]] = {}

    def submit(self, name: str, fn: JobFn, inputs: Any, lane: str = "default") -> str:
        """Queue ``fn(inputs, report, should_stop)`` on ``lane``; returns the job id."""
        job_id = self._core.submit(name, fn, inputs, lane)
        self._open[job_id] = (name, lane)
        self.changed.emit()
        return job_id

    def busy(self, name: str | None = None) -> bool:
        """True while a job (``name``, or any) is running or queued."""
        return bool(self._open) if name is None else any(n == name for n, _ in self._open.values())

    def _heads(self) -> dict[str, str]:
        heads: dict[str, str] = {}
        for job_id, (_, lane) in self._open.items():
            heads.setdefault(lane, job_id)
        return heads

    def running(self) -> list[str]:
        """Names of the running jobs (one per lane)."""
        return [self._open[job_id][0] for job_id in self._heads().values()]

    def queued(self) -> list[str]:
        """Names of the jobs waiting for their lane."""
        heads = set(self._heads().values())
        return [name for job_id, (name, _) in self._open.items() if job_id not in heads]

    def waiting_for(self, name: str) -> str | None:
        """When job ``name`` is queued behind another: the name of the job running in its lane."""
        heads = self._heads()
        for job_id, (n, lane) in self._open.items():
            if n == name and heads[lane] != job_id:
                return self._open[heads[lane]][0]
        return None

    def cancel(self, name: str) -> None:
        """Cancel job ``name`` if it is running, and drop it from the queues."""
        for job_id in self._core.cancel(name):
            self._open.pop(job_id, None)
        self.changed.emit()

    @Slot(object)
    def _relay(self, msg: JobMessage) -> None:
        final = msg.kind.final and self._open.pop(msg.job_id, None) is not None
        self.message.emit(msg)
        if final:
            self.changed.emit()

    def wait_idle(self, timeout_ms: int = 10000) -> bool:
        """Process events until no job runs (for shutdown and tests); False on timeout."""
        from PySide6.QtCore import QCoreApplication, QDeadlineTimer

        deadline = QDeadlineTimer(timeout_ms)
        while self.busy() and not deadline.hasExpired():
            QCoreApplication.processEvents()
            QThread.msleep(5)
        return not self.busy()

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel everything and stop the worker threads (call before the app quits)."""
        for job_id in self._core.shutdown(timeout_ms / 1000):
            self._open.pop(job_id, None)
