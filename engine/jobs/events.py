"""What jobs report: typed events sent through plain callbacks (no Qt here).

:class:`TrainEvent` is one progress report of a break; :class:`JobMessage` is the one message
type every job sends to whoever runs it (the app's UI, the CLI, a test). Both carry an Enum kind
whose members equal their string values, so ``event.kind == "step"`` reads naturally.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Callable

import numpy as np


class EventKind(str, Enum):
    """What a :class:`TrainEvent` reports."""

    STATUS = "status"  # a line of text (loading, class images ...)
    STEP = "step"  # one optimisation step, with its losses
    PREVIEW = "preview"  # attention maps for the live view
    CHECKPOINT = "checkpoint"  # a checkpoint was written
    DONE = "done"  # training finished

    def __str__(self) -> str:
        return self.value


@dataclass
class TrainEvent:
    """One progress report of a training run.

    ``step``/``total`` count within the current phase; ``global_step``/``global_total`` over both.
    ``attention`` (on ``preview`` events) maps each token to its max-normalised cross-attention
    map at the loss resolution, ``overlap`` to a soft IoU of that map with the token's mask.
    """

    kind: EventKind
    phase: int = 0
    step: int = 0
    total: int = 0
    global_step: int = 0
    global_total: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    elapsed: float = 0.0
    eta: float | None = None
    message: str = ""
    attention: dict[str, np.ndarray] | None = None
    overlap: dict[str, float] | None = None

    def __post_init__(self) -> None:
        self.kind = EventKind(self.kind)


ProgressCallback = Callable[[TrainEvent], None]
StopCheck = Callable[[], bool]
"""Cooperative cancellation: polled between steps; True asks the job to stop."""


class MessageKind(str, Enum):
    """What a :class:`JobMessage` says: progress, or how the job ended."""

    PROGRESS = "progress"
    DONE = "done"
    ERROR = "error"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    @property
    def final(self) -> bool:
        """True for the message that ends a job (done, error, cancelled)."""
        return self is not MessageKind.PROGRESS


@dataclass(frozen=True)
class JobMessage:
    """Everything a job tells its runner's listener.

    ``job`` is the job's name (``train``, ``generate`` ...), ``job_id`` the id of this one run of it
    (set by the runner). ``fraction`` is in [0, 1] or None when unknown; ``result`` is the payload of
    a progress message (a ``TrainEvent``, a gallery entry ...) or the job's return value on ``done``;
    on ``error``, ``text`` is the message for the user and ``details`` the traceback.
    """

    job: str
    kind: MessageKind
    text: str = ""
    fraction: float | None = None
    result: Any = None
    details: str = ""
    job_id: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", MessageKind(self.kind))


Report = Callable[[JobMessage], None]
JobFn = Callable[[Any, Report, StopCheck], Any]
"""A job: ``fn(inputs, report, should_stop) -> result``, ``inputs`` a plain dataclass."""
