"""Progress events: plain dataclasses sent from engine jobs through a callback (no Qt here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

import numpy as np

EventKind = Literal["status", "step", "preview", "checkpoint", "done"]


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


ProgressCallback = Callable[[TrainEvent], None]
StopCheck = Callable[[], bool]
