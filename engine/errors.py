"""Error types with messages written for users: each names the file and the problem."""

from __future__ import annotations

import sys
from pathlib import Path


def short_reason(e: BaseException, limit: int = 160) -> str:
    """``Type: first line`` of an exception, for a one-line message.

    torch's unpickling errors go on to advise ``weights_only=False``, which would execute the
    file: that advice is never passed on to users.
    """
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if "weights_only" in first or "Weights only load failed" in first:
        first = "the file holds objects that are not plain tensors, or is damaged"
    return f"{type(e).__name__}: {first[:limit]}" if first else type(e).__name__


class BasError(Exception):
    """Base class of every error the engine raises on purpose (bad input, missing weights...)."""


class SceneError(BasError):
    """A photo or mask cannot be used; the message names the file and what is wrong."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class ModelNotFoundError(BasError):
    """Base-model weights are not on this machine; the message says how to get them."""


class ModelLoadError(BasError):
    """Weights exist but cannot be loaded (corrupt file, wrong format, unsupported architecture)."""


class PackError(BasError):
    """A handle pack is unreadable, unsafe or does not fit the base model."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class OutputError(BasError):
    """An output path cannot be written without losing a file the program did not create."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.reason = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class CheckpointError(BasError):
    """A training checkpoint cannot be written or read."""


class TrainingCancelled(BasError):
    """Training stopped at the user's request; a resumable checkpoint was written first."""

    def __init__(self, step: int, checkpoint: Path | None) -> None:
        self.step = step
        self.checkpoint = checkpoint
        where = f"; checkpoint at {checkpoint}" if checkpoint else ""
        super().__init__(f"training cancelled at step {step}{where}")


class OutOfMemory(BasError):
    """A training or generation step ran out of device or host memory."""

    def __init__(self, device: str, what: str, checkpoint: Path | None = None) -> None:
        self.device, self.checkpoint = device, checkpoint
        advice = ("choose the Low VRAM preset (LoRA phase 2, 8-bit Adam, checkpointing), lower the "
                  "resolution, or close other programs using the GPU" if device != "cpu" else
                  "choose the Low VRAM preset, lower the resolution, or close other programs")
        kept = f"; the last checkpoint ({checkpoint}) is kept, resume with --resume" if checkpoint else ""
        super().__init__(f"out of {'GPU' if device != 'cpu' else 'RAM'} memory during {what}: {advice}{kept}")


def is_out_of_memory(e: BaseException) -> bool:
    """True for CUDA/MPS out-of-memory errors and the CPU allocator's failure."""
    torch = sys.modules.get("torch")  # a torch error means torch is loaded; errors.py never imports it
    if torch is not None and isinstance(e, torch.OutOfMemoryError):
        return True
    text = str(e)
    return isinstance(e, (RuntimeError, MemoryError)) and (
        "out of memory" in text or "can't allocate memory" in text or isinstance(e, MemoryError))
