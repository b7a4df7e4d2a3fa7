"""Job runners: where jobs run, behind one protocol.

A job is a plain function ``fn(inputs, report, should_stop) -> result`` (:data:`~engine.jobs.events.JobFn`).
A :class:`Runner` queues jobs on named *lanes* (one job at a time per lane, so a slow SAM
encoding never delays an autosave), hands each one a ``report`` callback and a stop check, and
sends every :class:`~engine.jobs.events.JobMessage` to the listener it was built with, ending each
job with exactly one final message (done, error or cancelled).

:class:`LocalThreadRunner` runs lanes on threads of this process; the app wraps it in a QObject
that turns its listener calls into Qt signals (``bas_desktop/workers.py``). Another executor (a
Ray cluster, a GPU server) is another implementation of :class:`Runner`; nothing that submits
jobs changes.
"""

from __future__ import annotations

import threading
import traceback
import uuid
from dataclasses import dataclass, replace
from typing import Any, Protocol

from engine.jobs.events import JobFn, JobMessage, MessageKind, Report


class CancelToken:
    """Cooperative cancellation of one job; calling it answers "should the job stop?"."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Ask the job to stop."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._event.is_set()

    def __call__(self) -> bool:
        return self._event.is_set()


class Runner(Protocol):
    """What the app and the CLI need of an executor."""

    def submit(self, name: str, fn: JobFn, inputs: Any, lane: str = "default") -> str:
        """Queue ``fn(inputs, report, should_stop)`` on ``lane``; returns the new job's id."""
        ...

    def cancel(self, name: str) -> list[str]:
        """Ask the running job(s) called ``name`` to stop and drop queued ones; returns the dropped ids."""
        ...

    def running(self) -> list[tuple[str, str]]:
        """``(id, name)`` of the jobs running now."""
        ...

    def queued(self) -> list[tuple[str, str]]:
        """``(id, name)`` of the jobs waiting for their lane, in order."""
        ...

    def waiting_for(self, name: str) -> str | None:
        """When a job called ``name`` is queued behind another: the name of the one running in its lane."""
        ...

    def shutdown(self, timeout_s: float = 10.0) -> list[str]:
        """Cancel everything and stop; returns the ids of the queued jobs that never ran."""
        ...


@dataclass(frozen=True)
class _Job:
    id: str
    name: str
    fn: JobFn
    inputs: Any
    token: CancelToken


def run_job(job_id: str, name: str, fn: JobFn, inputs: Any, should_stop: CancelToken, send: Report) -> None:
    """Run one job in the calling thread and send its messages, ending with exactly one final message.

    A job that raises after it was cancelled counts as cancelled; any other exception becomes an
    ``error`` message whose ``text`` is for the user and whose ``details`` hold the traceback.
    """
    def report(msg: JobMessage) -> None:
        send(replace(msg, job_id=msg.job_id or job_id))

    try:
        result = fn(inputs, report, should_stop)
    except Exception as e:  # the UI shows the message; the traceback goes to stderr for bug reports
        if should_stop.cancelled:
            send(JobMessage(name, MessageKind.CANCELLED, text="cancelled", job_id=job_id))
            return
        details = traceback.format_exc()
        traceback.print_exc()
        send(JobMessage(name, MessageKind.ERROR, text=str(e) or type(e).__name__, details=details, job_id=job_id))
        return
    if should_stop.cancelled:
        send(JobMessage(name, MessageKind.CANCELLED, text="cancelled", job_id=job_id))
    else:
        send(JobMessage(name, MessageKind.DONE, fraction=1.0, result=result, job_id=job_id))


class LocalThreadRunner:
    """A :class:`Runner` with one long-lived daemon thread per lane in this process.

    ``on_message`` is called from the lane threads; it must be thread-safe (the app's wrapper
    queues each message to the UI thread). A job's state is updated before its final message is
    sent, so a listener that looks at :meth:`running` sees it finished.
    """

    def __init__(self, on_message: Report) -> None:
        self._send = on_message
        self._lock = threading.Condition()
        self._queues: dict[str, list[_Job]] = {}
        self._running: dict[str, _Job] = {}  # lane -> job
        self._threads: dict[str, threading.Thread] = {}
        self._generation = 0  # bumped by shutdown: lane threads of an older generation exit

    def submit(self, name: str, fn: JobFn, inputs: Any, lane: str = "default") -> str:
        """Queue ``fn(inputs, report, should_stop)`` on ``lane``'s thread; returns the job id."""
        job = _Job(uuid.uuid4().hex[:12], name, fn, inputs, CancelToken())
        with self._lock:
            self._queues.setdefault(lane, []).append(job)
            if lane not in self._threads:
                thread = threading.Thread(target=self._lane, args=(lane, self._generation), name=f"bas-{lane}",
                                          daemon=True)
                self._threads[lane] = thread
                thread.start()
            self._lock.notify_all()
        return job.id

    def _lane(self, lane: str, generation: int) -> None:
        while True:
            with self._lock:
                while not self._queues.get(lane) and generation == self._generation:
                    self._lock.wait()
                if generation != self._generation:
                    return
                job = self._queues[lane].pop(0)
                self._running[lane] = job

            def send(msg: JobMessage, job: _Job = job) -> None:
                if msg.kind.final:
                    with self._lock:
                        if self._running.get(lane) is job:
                            del self._running[lane]
                self._send(msg)

            run_job(job.id, job.name, job.fn, job.inputs, job.token, send)

    def cancel(self, name: str) -> list[str]:
        """Cancel job ``name`` if it is running, and drop it from the queues; returns the dropped ids."""
        with self._lock:
            for job in self._running.values():
                if job.name == name:
                    job.token.cancel()
            dropped = [j.id for q in self._queues.values() for j in q if j.name == name]
            for lane, queue in self._queues.items():
                self._queues[lane] = [j for j in queue if j.name != name]
        return dropped

    def running(self) -> list[tuple[str, str]]:
        """``(id, name)`` of the running jobs."""
        with self._lock:
            return [(j.id, j.name) for j in self._running.values()]

    def queued(self) -> list[tuple[str, str]]:
        """``(id, name)`` of the jobs waiting for their lane."""
        with self._lock:
            return [(j.id, j.name) for q in self._queues.values() for j in q]

    def waiting_for(self, name: str) -> str | None:
        """When job ``name`` is queued behind another: the name of the job running in its lane."""
        with self._lock:
            for lane, queue in self._queues.items():
                if any(j.name == name for j in queue) and lane in self._running:
                    return self._running[lane].name
        return None

    def shutdown(self, timeout_s: float = 10.0) -> list[str]:
        """Cancel the running jobs, drop the queued ones and stop the lane threads (a later submit starts new ones)."""
        with self._lock:
            self._generation += 1
            dropped = [j.id for q in self._queues.values() for j in q]
            self._queues.clear()
            for job in self._running.values():
                job.token.cancel()
            self._lock.notify_all()
            threads = list(self._threads.values())
            self._threads.clear()
        for thread in threads:
            thread.join(timeout_s)
        return dropped
