"""Error types with messages written for users: each names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class BasError(Exception):
    """Base class of every error the engine raises on purpose (bad input, missing weights...)."""


class SceneError(BasError):
    """A photo or mask cannot be used; the message names the file and what is wrong."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class ModelNotFoundError(BasError):
    """Base-model weights are not on this machine; the message says how to get them."""


class ModelLoadError(BasError):
    """Weights exist but cannot be loaded (corrupt file, wrong format, unsupported architecture)."""


class PackError(BasError):
    """A handle pack is unreadable, unsafe or does not fit the base model."""

    def __init__(self, message: str, path: str | Path | None = None) -> None:
        self.path = Path(path) if path is not None else None
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
