"""Crash-safe training checkpoints: written to a temporary file, then renamed over the old one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError, short_reason

CHECKPOINT_NAME = "checkpoint.pt"
CHECKPOINT_FORMAT = 1


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to ``path`` through a temporary file and ``os.replace``.

    A crash or a full disk leaves the previous file intact; the error names the path.
    """
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise CheckpointError(f"{path}: could not write the checkpoint ({e.strerror or e}); "
                              "the previous checkpoint is unchanged") from None


def save_checkpoint(work_dir: Path, state: dict[str, Any]) -> Path:
    """Write the training state (tensors, optimizer, RNG states) to ``work_dir``."""
    path = Path(work_dir) / CHECKPOINT_NAME
    atomic_save({"format": CHECKPOINT_FORMAT, **state}, path)
    return path


def load_checkpoint(work_dir: Path) -> dict[str, Any] | None:
    """Read the checkpoint in ``work_dir`` (``weights_only``: nothing is executed), or ``None``."""
    path = Path(work_dir) / CHECKPOINT_NAME
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise CheckpointError(f"{path}: unreadable checkpoint ({short_reason(e)}); "
                              "delete it to start over") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format; delete it to start over")
    return state
