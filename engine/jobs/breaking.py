"""One break, start to finish: the function ``bas break`` and the app both call.

:func:`run_break` checks the output before any training, trains (resuming from the work folder's
checkpoint when asked), writes the pack without ever replacing a folder that is not a pack, and
removes the checkpoint it no longer needs. Front ends only render its events and its result.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from engine.errors import BasError, TrainingCancelled
from engine.formats.manifest import pack_entries
from engine.formats.names import CHECKPOINT_NAME, default_model
from engine.formats.results import PackStorage
from engine.jobs.events import ProgressCallback, StopCheck
from engine.safe_output import OutputPlan, check_output_folder

if TYPE_CHECKING:  # pragma: no cover - type hints only
    from engine.scene import Scene
    from engine.training.config import TrainConfig


@dataclass
class BreakRequest:
    """Everything one break needs.

    ``output`` is the pack folder to write; ``work_dir`` holds the checkpoint (default
    ``output/checkpoints``). ``force`` replaces a pack already in ``output`` (only once the new one
    is complete); ``keep_checkpoint`` leaves the checkpoint after a finished run. ``model`` is any
    reference :func:`engine.models.load_model` takes, or loaded components; ``None`` is the default.
    ``storage`` says how a full fine-tune's phase 2 is stored (default: an extracted LoRA).
    """

    scene: Scene
    config: TrainConfig
    output: Path
    model: Any = None
    work_dir: Path | None = None
    resume: bool = False
    force: bool = False
    keep_checkpoint: bool = False
    storage: PackStorage | None = None

    @property
    def work(self) -> Path:
        """The folder of the run's checkpoint."""
        return Path(self.work_dir) if self.work_dir is not None else Path(self.output) / "checkpoints"


@dataclass
class PackResult:
    """What a break left: the pack (finished) or the checkpoint to resume from (cancelled)."""

    pack_dir: Path | None
    tokens: list[str]
    seconds: float = 0.0
    cancelled_at: int | None = None
    checkpoint: Path | None = None


def check_break(request: BreakRequest) -> OutputPlan:
    """Refuse, before any training, what would fail at the end; returns the output plan.

    Raises ``OutputError`` for an output that is not a pack (or a pack without ``force``) and
    ``BasError`` for an interrupted run's checkpoint when ``resume`` is not set.
    """
    if request.storage is not None:
        request.storage.check()
    plan = check_output_folder(Path(request.output), request.force, pack_entries, "handle pack")
    if (request.work / CHECKPOINT_NAME).exists() and not request.resume:
        raise BasError(f"{request.work}: an interrupted run left a checkpoint here; add --resume to continue "
                       "it, or choose another output folder")
    return plan


def run_break(request: BreakRequest, on_event: ProgressCallback | None = None,
              should_stop: StopCheck | None = None) -> PackResult:
    """Break a scene into a handle pack.

    ``on_event`` receives every :class:`~engine.jobs.events.TrainEvent`; ``should_stop`` is polled
    once per step. A stop writes a checkpoint and returns with ``cancelled_at`` set (resume with
    ``resume=True``); a finished run writes ``request.output`` and deletes the checkpoint (and the
    work folder, when that leaves it empty) unless ``keep_checkpoint``.
    """
    from engine.packs.pack import save_pack
    from engine.training.trainer import BreakTrainer

    check_break(request)
    t0 = time.perf_counter()
    work = request.work
    trainer = BreakTrainer(request.scene, request.config, request.model or default_model(), work,
                           callback=on_event, should_stop=should_stop)
    try:
        result = trainer.run(resume=request.resume)
    except TrainingCancelled as e:
        return PackResult(None, [c.token for c in request.scene.concepts], time.perf_counter() - t0,
                          cancelled_at=e.step, checkpoint=e.checkpoint)
    # A compact pack's LoRA is extracted against the base model, loaded afresh (the trainer's is tuned).
    save_pack(result, request.scene, request.output, force=request.force, storage=request.storage)
    if not request.keep_checkpoint:
        (work / CHECKPOINT_NAME).unlink(missing_ok=True)
        if work.is_dir() and not any(work.iterdir()):
            work.rmdir()
    return PackResult(Path(request.output), list(result.tokens), seconds=result.seconds)
