"""Progress events and cancel flags shared by download, encoding and mask suggestion (no Qt here)."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable, Union

from engine.sam.errors import Cancelled


@dataclass(frozen=True)
class ProgressEvent:
    """One progress report. ``task`` is "download", "verify", "encode" or "suggest"; ``done``/``total``
    are in ``unit`` ("bytes", "blocks", "batches"); ``total`` is 0 when unknown."""

    task: str
    done: int
    total: int
    unit: str = ""
    message: str = ""

    @property
    def fraction(self) -> float | None:
        """``done / total`` clipped to [0, 1], or None when the total is unknown."""
        if self.total <= 0:
            return None
        return min(1.0, max(0.0, self.done / self.total))


ProgressCallback = Callable[[ProgressEvent], None]
#: A ``threading.Event`` or any zero-argument callable returning True once the work should stop.
CancelFlag = Union[threading.Event, Callable[[], bool], None]


def is_cancelled(flag: CancelFlag) -> bool:
    """True once ``flag`` (Event, callable or None) says stop."""
    if flag is None:
        return False
    if isinstance(flag, threading.Event):
        return flag.is_set()
    return bool(flag())


def check_cancel(flag: CancelFlag, what: str) -> None:
    """Raise ``Cancelled`` naming ``what`` if ``flag`` is set."""
    if is_cancelled(flag):
        raise Cancelled(f"{what} cancelled")


def emit(cb: ProgressCallback | None, event: ProgressEvent) -> None:
    """Call ``cb(event)`` when a callback was given."""
    if cb is not None:
        cb(event)
