"""Background jobs: a plain job function runs in a QThread and talks to the UI with one message type.

A job function has the signature ``fn(inputs, report, cancel) -> result`` where ``inputs`` is a plain
dataclass, ``report(JobMessage)`` is a plain callback and ``cancel`` a :class:`CancelToken`. It never
sees Qt: :class:`SignalBridge` turns the callback into a queued signal, so the same function runs
from the CLI, a test or the app (training and generation will reuse this later).
"""

from __future__ import annotations

import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from PySide6.QtCore import QMetaObject, QObject, Qt, QThread, Signal, Slot


class CancelToken:
    """Cooperative cancellation: the job checks :attr:`cancelled` between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()


@dataclass(frozen=True)
class JobMessage:
    """Everything a job tells the UI: ``kind`` is ``progress``, ``done``, ``error`` or ``cancelled``.

    ``fraction`` is in [0, 1] (or None when unknown), ``result`` is set on ``done``; on ``error``,
    ``text`` is the message for the user and ``details`` the traceback (the dialog's "Copy details").
    """

    job: str
    kind: str
    text: str = ""
    fraction: float | None = None
    result: Any = None
    details: str = ""


JobFn = Callable[[Any, Callable[[JobMessage], None], CancelToken], Any]


class SignalBridge(QObject):
    """Turns the plain ``report`` callback, called from any thread, into the ``message`` signal."""

    message = Signal(object)

    def report(self, msg: JobMessage) -> None:
        """Emit ``msg`` (queued to the receivers' threads)."""
        self.message.emit(msg)


class _Worker(QObject):
    def __init__(self, name: str, fn: JobFn, inputs: Any, bridge: SignalBridge, cancel: CancelToken) -> None:
        super().__init__()
        self.name, self.fn, self.inputs, self.bridge, self.cancel = name, fn, inputs, bridge, cancel

    @Slot()
    def run(self) -> None:
        def report(msg: JobMessage) -> None:
            self.bridge.report(msg)

        try:
            result = self.fn(self.inputs, report, self.cancel)
        except Exception as e:  # the UI shows the message; the traceback goes to stderr for bug reports
            if self.cancel.cancelled:
                self.bridge.report(JobMessage(self.name, "cancelled", text="cancelled"))
                return
            details = traceback.format_exc()
            traceback.print_exc()
            self.bridge.report(JobMessage(self.name, "error", text=str(e) or type(e).__name__, details=details))
            return
        if self.cancel.cancelled:
            self.bridge.report(JobMessage(self.name, "cancelled", text="cancelled"))
        else:
            self.bridge.report(JobMessage(self.name, "done", fraction=1.0, result=result))


class JobRunner(QObject):
    """Runs jobs on long-lived worker threads, one job at a time per *lane*, and relays their messages.

    Lanes keep slow work from blocking unrelated work (a 30 s SAM encoding must not delay an
    autosave). ``message`` carries every :class:`JobMessage` of every job.
    """

    message = Signal(object)
    changed = Signal()  # a job was queued, started or finished (for status displays)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._bridge = SignalBridge()
        self._bridge.message.connect(self._relay)
        self._threads: dict[str, QThread] = {}
        self._running: dict[str, tuple[str, _Worker, CancelToken]] = {}  # lane -> job
        self._queues: dict[str, list[tuple[str, JobFn, Any, CancelToken]]] = {}

    def submit(self, name: str, fn: JobFn, inputs: Any, lane: str = "default") -> CancelToken:
        """Queue ``fn(inputs, report, cancel)`` on ``lane``'s thread; returns its cancel token."""
        token = CancelToken()
        self._queues.setdefault(lane, []).append((name, fn, inputs, token))
        self._start_next(lane)
        self.changed.emit()
        return token

    def _thread(self, lane: str) -> QThread:
        if lane not in self._threads:
            thread = QThread()
            thread.setObjectName(f"bas-{lane}")
            thread.start()
            self._threads[lane] = thread
        return self._threads[lane]

    def _start_next(self, lane: str) -> None:
        queue = self._queues.get(lane)
        if lane in self._running or not queue:
            return
        name, fn, inputs, token = queue.pop(0)
        worker = _Worker(name, fn, inputs, self._bridge, token)
        worker.moveToThread(self._thread(lane))
        self._running[lane] = (name, worker, token)
        QMetaObject.invokeMethod(worker, "run", Qt.ConnectionType.QueuedConnection)

    def busy(self, name: str | None = None) -> bool:
        """True while a job (``name``, or any) is running or queued."""
        jobs = [r[0] for r in self._running.values()] + [q[0] for qs in self._queues.values() for q in qs]
        return bool(jobs) if name is None else name in jobs

    def running(self) -> list[str]:
        """Names of the running jobs."""
        return [r[0] for r in self._running.values()]

    def queued(self) -> list[str]:
        """Names of the jobs waiting for their lane."""
        return [q[0] for qs in self._queues.values() for q in qs]

    def waiting_for(self, name: str) -> str | None:
        """When job ``name`` is queued behind another: the name of the job running in its lane."""
        for lane, queue in self._queues.items():
            if any(q[0] == name for q in queue) and lane in self._running:
                return self._running[lane][0]
        return None

    def cancel(self, name: str) -> None:
        """Cancel job ``name`` if it is running, and drop it from the queues."""
        for job, _, token in self._running.values():
            if job == name:
                token.cancel()
        for lane, queue in self._queues.items():
            self._queues[lane] = [q for q in queue if q[0] != name]
        self.changed.emit()

    @Slot(object)
    def _relay(self, msg: JobMessage) -> None:
        lane = None
        if msg.kind in ("done", "error", "cancelled"):
            for ln, (job, worker, _) in list(self._running.items()):
                if job == msg.job:
                    del self._running[ln]
                    worker.deleteLater()
                    lane = ln
                    break
        self.message.emit(msg)
        if lane is not None:
            self._start_next(lane)
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
        for _, _, token in self._running.values():
            token.cancel()
        self._queues.clear()
        for thread in self._threads.values():
            thread.quit()
            thread.wait(timeout_ms)
        self._threads.clear()
