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

from PySide6.QtCore import QObject, QThread, Signal, Slot


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

    ``fraction`` is in [0, 1] (or None when unknown), ``result`` is set on ``done``.
    """

    job: str
    kind: str
    text: str = ""
    fraction: float | None = None
    result: Any = None


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
            traceback.print_exc()
            self.bridge.report(JobMessage(self.name, "error", text=str(e) or type(e).__name__))
            return
        if self.cancel.cancelled:
            self.bridge.report(JobMessage(self.name, "cancelled", text="cancelled"))
        else:
            self.bridge.report(JobMessage(self.name, "done", fraction=1.0, result=result))


class JobRunner(QObject):
    """Runs one job at a time per name on a long-lived worker thread and relays its messages.

    ``message`` carries every :class:`JobMessage`; ``busy`` tells whether a job is running.
    """

    message = Signal(object)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._thread = QThread()
        self._thread.setObjectName("bas-jobs")
        self._thread.start()
        self._bridge = SignalBridge()
        self._bridge.message.connect(self._relay)
        self._running: dict[str, tuple[_Worker, CancelToken]] = {}
        self._queue: list[tuple[str, JobFn, Any, CancelToken]] = []

    def submit(self, name: str, fn: JobFn, inputs: Any) -> CancelToken:
        """Queue ``fn(inputs, report, cancel)`` on the worker thread; returns its cancel token."""
        token = CancelToken()
        self._queue.append((name, fn, inputs, token))
        self._start_next()
        return token

    def _start_next(self) -> None:
        if self._running or not self._queue:
            return
        name, fn, inputs, token = self._queue.pop(0)
        worker = _Worker(name, fn, inputs, self._bridge, token)
        worker.moveToThread(self._thread)
        self._running[name] = (worker, token)
        # a zero-timeout single shot bound to the worker runs ``run`` in the worker thread
        from PySide6.QtCore import QMetaObject, Qt
        QMetaObject.invokeMethod(worker, "run", Qt.ConnectionType.QueuedConnection)

    def busy(self, name: str | None = None) -> bool:
        """True while a job (``name``, or any) is running or queued."""
        if name is None:
            return bool(self._running or self._queue)
        return name in self._running or any(q[0] == name for q in self._queue)

    def cancel(self, name: str) -> None:
        """Cancel job ``name`` if it is running or queued."""
        if name in self._running:
            self._running[name][1].cancel()
        self._queue = [q for q in self._queue if q[0] != name]

    @Slot(object)
    def _relay(self, msg: JobMessage) -> None:
        if msg.kind in ("done", "error", "cancelled"):
            entry = self._running.pop(msg.job, None)
            if entry is not None:
                entry[0].deleteLater()
        self.message.emit(msg)
        self._start_next()

    def shutdown(self, timeout_ms: int = 10000) -> None:
        """Cancel everything and stop the worker thread (call before the app quits)."""
        for _, token in self._running.values():
            token.cancel()
        self._queue.clear()
        self._thread.quit()
        self._thread.wait(timeout_ms)
