"""Crash-safe training checkpoints: written to a temporary file, then renamed over the old one."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import torch

from engine.errors import CheckpointError, short_reason
from engine.formats.names import CHECKPOINT_NAME

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
    except BaseException as e:  # torch.save reports a full disk as RuntimeError; Ctrl-C too must not leave .tmp
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        if not isinstance(e, (OSError, RuntimeError)):
            raise
        reason = e.strerror if isinstance(e, OSError) and e.strerror else short_reason(e, 100)
        raise CheckpointError(f"{path}: could not write the checkpoint ({reason}); "
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
    if not isinstance(state, dict) or not _is_int(state.get("format")) or state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path}: unknown checkpoint format; delete it to start over")
    problem = _problem(state)
    if problem:
        raise CheckpointError(f"{path}: damaged checkpoint ({problem}); delete it to start over")
    return state


_CPU_RNG_SHAPE = torch.Generator().get_state().shape


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _problem(state: dict[str, Any]) -> str | None:
    """What is wrong with a checkpoint's fields (presence, type, range), or ``None``."""
    if not _is_int(state.get("global_step")) or state["global_step"] < 0:
        return "no valid step number"
    if not _is_int(state.get("phase")) or state["phase"] not in (1, 2):
        return "no valid phase"
    if not isinstance(state.get("fingerprint"), str):
        return "no fingerprint"
    handles = state.get("handles")
    if not isinstance(handles, torch.Tensor) or not handles.is_floating_point() or handles.dim() != 2:
        return "no handle embeddings"
    if not bool(torch.isfinite(handles).all()):
        return "the handle embeddings hold NaN or infinite values"
    rng = state.get("torch_rng")
    if not isinstance(rng, torch.Tensor) or rng.dtype != torch.uint8 or rng.shape != _CPU_RNG_SHAPE:
        return "no random-generator state"
    py = state.get("py_rng")
    if not (isinstance(py, (list, tuple)) and len(py) == 3 and py[0] == 3 and _is_int(py[0])
            and isinstance(py[1], (list, tuple)) and len(py[1]) == 625
            and all(_is_int(x) and 0 <= x < 2**32 for x in py[1]) and py[1][-1] <= 624
            and (py[2] is None or isinstance(py[2], float))):
        return "no Python random state"
    for key in ("trainable", "optimizer", "scaler"):
        if not isinstance(state.get(key, {}), dict):
            return f"'{key}' is not a mapping"
    trainable = state.get("trainable", {})
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in trainable.items()):
        return "the trained weights are not named tensors"
    history = state.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return "the loss history is not a list of records"
    return None
