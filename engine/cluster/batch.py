"""Many breaks at once as Ray tasks: on this machine by default, on a Ray cluster by address.

Each scene is one task running :func:`engine.jobs.breaking.run_break` on a worker. Nothing needs
a shared filesystem: the scene travels with the task (a pickled :class:`~engine.scene.Scene`),
the finished pack comes back through Ray's object store as a zip (``engine/packs/archive.py``),
and a small coordinator actor on the driver's node carries the progress events, the stop flag
and each break's latest checkpoint. A worker killed mid-break is retried by Ray (``max_retries``);
the retry fetches the checkpoint from the coordinator and resumes from it. An error of one scene
(a bad mask, a model that will not load) ends that scene only.

Ray is an optional dependency (``pip install '.[cluster]'``); it is imported only here.
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from engine.errors import BasError, short_reason
from engine.formats.manifest import MANIFEST
from engine.formats.names import CHECKPOINT_NAME
from engine.formats.results import PackStorage
from engine.jobs.breaking import BreakRequest, PackResult, check_break
from engine.jobs.events import EventKind, ProgressCallback, StopCheck, TrainEvent
from engine.safe_output import write_file

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from engine.scene import Scene
    from engine.training.config import TrainConfig

INSTALL_HINT = "Ray is not installed: pip install 'break-a-scene-desktop[cluster]' (or pip install ray)"
STOP_POLL_S = 0.5  # how often a worker asks the coordinator whether to stop


def import_ray() -> Any:
    """The ``ray`` module, or a ``BasError`` that says how to install it."""
    try:
        import ray
    except ImportError:
        raise BasError(INSTALL_HINT) from None
    return ray


@dataclass
class BatchItem:
    """One scene of a batch: its name (the pack's folder under the output) and the loaded scene."""

    name: str
    scene: Scene


@dataclass
class SceneProgress:
    """One event of one scene, as the driver sees it."""

    name: str
    attempt: int
    event: TrainEvent


@dataclass
class BatchOutcome:
    """How one scene ended: ``done``, ``failed``, ``skipped`` (its pack was already there) or ``cancelled``."""

    name: str
    status: str
    seconds: float = 0.0
    pack: Path | None = None
    error: str = ""
    attempts: int = 0
    resumed_from: list[int] = field(default_factory=list)
    stopped_at: int | None = None  # the step of the checkpoint a stopped break left


@dataclass
class BatchSettings:
    """Where and how a batch runs.

    ``address``: None for a Ray started in this process, ``auto`` or ``ray://HOST:10001`` for a
    cluster. ``num_gpus`` per break defaults to 1 where the cluster has GPUs, else 0.
    ``keep_attention`` sends the attention maps along with the progress (the app draws them).
    ``replace`` replaces a pack already in ``OUTDIR/NAME`` instead of skipping the scene.
    ``checkpoint_path(name)``, when set, is where a stopped break's checkpoint is written and where a
    later batch resumes it from. ``storage``: how each pack stores a full fine-tune (default: an
    extracted LoRA).
    """

    address: str | None = None
    num_gpus: float | None = None
    max_retries: int = 2
    keep_attention: bool = False
    replace: bool = False
    checkpoint_path: Callable[[str], Path] | None = None
    ray_init: dict[str, Any] = field(default_factory=dict)
    storage: PackStorage | None = None


def _light(e: TrainEvent) -> TrainEvent:
    """The event without its attention maps (the batch view does not draw them)."""
    return TrainEvent(e.kind, e.phase, e.step, e.total, e.global_step, e.global_total, dict(e.losses), e.elapsed,
                      e.eta, e.message, None, dict(e.overlap) if e.overlap else None)


class Coordinator:
    """Progress, stop flag and checkpoints of a batch (runs as a Ray actor on the driver's node)."""

    def __init__(self) -> None:
        self._events: list[tuple[str, int, TrainEvent]] = []
        self._checkpoints: dict[str, tuple[int, bytes]] = {}
        self._attempts: dict[str, int] = {}
        self._pids: dict[str, int] = {}
        self._stop = False

    def started(self, name: str, pid: int) -> int:
        """A worker starts ``name``; returns the attempt number (1 for the first)."""
        self._attempts[name] = self._attempts.get(name, 0) + 1
        self._pids[name] = pid
        return self._attempts[name]

    def attempts(self, name: str) -> int:
        """How many workers started ``name`` (more than one: Ray retried it)."""
        return self._attempts.get(name, 0)

    def pid(self, name: str) -> int | None:
        """The process id of the worker running ``name`` (tests kill it)."""
        return self._pids.get(name)

    def report(self, name: str, attempt: int, event: TrainEvent) -> None:
        """Keep one event for the driver."""
        self._events.append((name, attempt, event))

    def drain(self) -> list[tuple[str, int, TrainEvent]]:
        """The events since the last call."""
        out, self._events = self._events, []
        return out

    def put_checkpoint(self, name: str, step: int, data: bytes) -> None:
        """Keep the latest checkpoint of ``name``."""
        self._checkpoints[name] = (step, data)

    def checkpoint(self, name: str) -> tuple[int, bytes] | None:
        """The latest checkpoint of ``name``, with its step."""
        return self._checkpoints.get(name)

    def forget(self, name: str) -> None:
        """Drop what is kept for a finished scene."""
        self._checkpoints.pop(name, None)

    def request_stop(self) -> None:
        """Ask every break to stop at its next step (each writes a checkpoint first)."""
        self._stop = True

    def stopping(self) -> bool:
        """True once :meth:`request_stop` was called."""
        return self._stop


def break_task(name: str, scene: Scene, config: TrainConfig, model: str | None, coordinator: Any,
               keep_attention: bool = False, storage: PackStorage | None = None) -> bytes | None:
    """The body of one Ray task: break ``scene`` in a temporary folder and return the pack as zip bytes.

    Resumes from the coordinator's checkpoint when there is one (a retry after a lost worker, or a
    saved checkpoint); returns None when the batch was stopped (the checkpoint stays with the
    coordinator).
    """
    ray = import_ray()
    from engine.jobs.breaking import run_break
    from engine.packs.archive import archive_pack

    attempt = ray.get(coordinator.started.remote(name, os.getpid()))
    with tempfile.TemporaryDirectory(prefix="bas-batch-") as tmp:
        out, work = Path(tmp) / "pack", Path(tmp) / "work"
        saved = ray.get(coordinator.checkpoint.remote(name))
        if saved is not None:
            work.mkdir()
            (work / CHECKPOINT_NAME).write_bytes(saved[1])
            coordinator.report.remote(name, attempt, TrainEvent(EventKind.STATUS, global_step=saved[0],
                                                                 message=f"resuming from step {saved[0]}"
                                                                 if saved[0] >= 0 else "resuming from the saved "
                                                                 "checkpoint"))
        last_poll, stop = [0.0], [False]

        def should_stop() -> bool:
            if time.monotonic() - last_poll[0] > STOP_POLL_S:
                last_poll[0], stop[0] = time.monotonic(), bool(ray.get(coordinator.stopping.remote()))
            return stop[0]

        def on_event(e: TrainEvent) -> None:
            light = _light(e) if not keep_attention else replace(e)
            if e.kind == EventKind.CHECKPOINT:  # stored before training goes on: a kill right after loses nothing
                ray.get(coordinator.put_checkpoint.remote(name, e.global_step,
                                                          (work / CHECKPOINT_NAME).read_bytes()))
                light.message = f"checkpoint at step {e.global_step}, kept by the driver's coordinator"
            coordinator.report.remote(name, attempt, light)

        result = run_break(BreakRequest(scene, config, out, model=model, work_dir=work, resume=saved is not None,
                                        storage=storage),
                           on_event, should_stop)
        if result.cancelled_at is not None:
            if result.checkpoint is not None:
                ray.get(coordinator.put_checkpoint.remote(name, result.cancelled_at, result.checkpoint.read_bytes()))
            return None
        return archive_pack(out, Path(tmp) / "pack.zip").read_bytes()


def _error_text(e: BaseException) -> str:
    """The user's message of a task's failure (Ray wraps the worker's exception)."""
    cause = getattr(e, "cause", None)
    if isinstance(cause, BaseException):
        e = cause
    if isinstance(e, (BasError, ValueError, OSError)):
        return " ".join(str(e).split())
    name = type(e).__name__
    if name in ("WorkerCrashedError", "OutOfMemoryError", "NodeDiedError"):
        return f"the worker was lost and the retries ran out ({name})"
    return f"unexpected {short_reason(e)}"


def _write_bytes(path: Path, data: bytes) -> None:
    def write(tmp: Path) -> None:
        tmp.write_bytes(data)

    write_file(path, write)


def finished_pack(out_dir: Path, name: str) -> bool:
    """True when ``out_dir/name`` already holds a pack (a rerun skips that scene)."""
    return (Path(out_dir) / name / MANIFEST).is_file()


def run_batch(items: list[BatchItem], config: TrainConfig, out_dir: Path, model: str | None = None,
              settings: BatchSettings | None = None,
              on_progress: Callable[[SceneProgress], None] | None = None,
              on_outcome: Callable[[BatchOutcome], None] | None = None,
              should_stop: StopCheck | None = None,
              coordinator_ready: Callable[[Any], None] | None = None) -> list[BatchOutcome]:
    """Break every scene as a Ray task and write each pack to ``out_dir/NAME``.

    Scenes whose pack is already there are skipped (unless ``settings.replace``). ``should_stop``
    is polled by the driver; a stop reaches every running break within a step or two, and each
    leaves its checkpoint (written to ``settings.checkpoint_path(name)`` when that is set, else
    lost with the batch). Returns one outcome per item, in order.
    """
    ray = import_ray()
    from engine.packs.archive import extract_pack_archive

    settings = settings or BatchSettings()
    out_dir = Path(out_dir)
    outcomes: dict[str, BatchOutcome] = {}
    todo = []
    for item in items:
        if finished_pack(out_dir, item.name) and not settings.replace:
            outcomes[item.name] = BatchOutcome(item.name, "skipped", pack=out_dir / item.name)
            if on_outcome:
                on_outcome(outcomes[item.name])
        else:
            todo.append(item)
    if todo:
        started_here = not ray.is_initialized()
        if started_here:
            ray.init(address=settings.address, include_dashboard=False, log_to_driver=False,
                     logging_level=logging.WARNING, **settings.ray_init)
        try:
            _run(ray, todo, config, out_dir, model, settings, on_progress, on_outcome, should_stop,
                 coordinator_ready, outcomes, extract_pack_archive)
        finally:
            if started_here:
                ray.shutdown()
    return [outcomes[item.name] for item in items]


def _run(ray: Any, todo: list[BatchItem], config: TrainConfig, out_dir: Path, model: str | None,
         settings: BatchSettings, on_progress: Callable[[SceneProgress], None] | None,
         on_outcome: Callable[[BatchOutcome], None] | None, should_stop: StopCheck | None,
         coordinator_ready: Callable[[Any], None] | None, outcomes: dict[str, BatchOutcome],
         extract: Callable[..., Path]) -> None:
    num_gpus = settings.num_gpus
    if num_gpus is None:
        num_gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
    coordinator = ray.remote(num_cpus=0)(Coordinator).remote()
    if coordinator_ready:
        coordinator_ready(coordinator)
    saved = settings.checkpoint_path
    for item in todo:  # a checkpoint a stopped batch left: the break resumes from it
        if saved is not None and saved(item.name).is_file():
            ray.get(coordinator.put_checkpoint.remote(item.name, -1, saved(item.name).read_bytes()))
    task = ray.remote(break_task).options(num_gpus=num_gpus, max_retries=settings.max_retries,
                                          retry_exceptions=False)
    t0 = {item.name: time.perf_counter() for item in todo}
    refs = {task.remote(item.name, item.scene, config, model, coordinator, settings.keep_attention,
                        settings.storage): item.name
            for item in todo}
    resumed: dict[str, list[int]] = {}
    stop_sent = False

    def deliver() -> None:
        for name, attempt, event in ray.get(coordinator.drain.remote()):
            if event.kind == EventKind.STATUS and event.message.startswith("resuming from step"):
                resumed.setdefault(name, []).append(event.global_step)
            if on_progress:
                on_progress(SceneProgress(name, attempt, event))

    while refs:
        done, _ = ray.wait(list(refs), num_returns=1, timeout=0.5)
        deliver()
        if should_stop is not None and not stop_sent and should_stop():
            ray.get(coordinator.request_stop.remote())
            stop_sent = True
        for ref in done:
            name = refs.pop(ref)
            outcome = BatchOutcome(name, "done", attempts=int(ray.get(coordinator.attempts.remote(name))),
                                   resumed_from=resumed.get(name, []))
            try:
                data = ray.get(ref)
                if data is None:
                    outcome.status = "cancelled"
                    kept = ray.get(coordinator.checkpoint.remote(name))
                    if kept is not None:
                        outcome.stopped_at = kept[0]
                        if saved is not None:
                            _write_bytes(saved(name), kept[1])
                else:
                    with tempfile.TemporaryDirectory(prefix="bas-batch-") as tmp:
                        archive = Path(tmp) / f"{name}.zip"
                        archive.write_bytes(data)
                        outcome.pack = extract(archive, out_dir / name, force=settings.replace)
                    if saved is not None:
                        saved(name).unlink(missing_ok=True)  # the checkpoint this batch resumed from
            except Exception as e:  # noqa: BLE001 - one scene's failure ends that scene only
                outcome.status, outcome.error = "failed", _error_text(e)
            outcome.seconds = time.perf_counter() - t0[name]
            coordinator.forget.remote(name)
            outcomes[name] = outcome
            if on_outcome:
                on_outcome(outcome)
    deliver()


def run_break_on_cluster(request: BreakRequest, address: str | None = None,
                         on_event: ProgressCallback | None = None, should_stop: StopCheck | None = None,
                         num_gpus: float | None = None) -> PackResult:
    """:func:`engine.jobs.breaking.run_break`, but the break runs as a Ray task (the app's "Run on").

    The same request, events (attention maps included), stop and result: a stop brings the
    checkpoint back to ``request.work`` so a later resume (here or on the cluster) continues it;
    a finished break's pack is unpacked into ``request.output``. ``address`` as in
    :class:`BatchSettings`. A failure on the worker raises ``BasError`` with the worker's message.
    """
    check_break(request)
    output, work = Path(request.output), request.work
    settings = BatchSettings(address=address, num_gpus=num_gpus, keep_attention=True, replace=request.force,
                             checkpoint_path=lambda name: work / CHECKPOINT_NAME, storage=request.storage)
    (o,) = run_batch([BatchItem(output.name, request.scene)], request.config, output.parent, request.model,
                     settings, on_progress=(lambda p: on_event(p.event)) if on_event else None,
                     should_stop=should_stop)
    tokens = [c.token for c in request.scene.concepts]
    if o.status == "failed":
        raise BasError(f"the break on the cluster failed: {o.error}")
    if o.status == "cancelled":
        ck = work / CHECKPOINT_NAME
        return PackResult(None, tokens, o.seconds, cancelled_at=o.stopped_at if o.stopped_at is not None else 0,
                          checkpoint=ck if ck.is_file() else None)
    return PackResult(output, tokens, o.seconds)
