"""Faults: a killed `bas break` resumes to the same pack; full disks leave the last checkpoint intact."""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from engine.training.checkpoint import atomic_save, load_checkpoint, save_checkpoint
from engine.errors import CheckpointError
from engine.example import make_example_scene
from engine.packs.pack import load_pack
from engine.scene import save_scene
from tests.conftest import REPO

ARGS = ["--model", "tiny-random", "--preset", "quick", "--phase1-steps", "3", "--phase2-steps", "24",
        "--checkpoint-every", "2", "--seed", "3", "--device", "cpu"]


def _bas(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, "-m", "engine.cli.main", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_9_mid_phase2_then_resume_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    scene = save_scene(make_example_scene(size=64), tmp_path / "scene")
    ref = _bas("break", str(scene), "-o", str(tmp_path / "ref"), *ARGS)
    assert ref.wait(timeout=600) == 0, ref.stderr.read() if ref.stderr else ""

    out = tmp_path / "killed"
    proc = _bas("break", str(scene), "-o", str(out), *ARGS)
    ck = out / "checkpoints"
    deadline = time.time() + 300
    killed_at = None
    while time.time() < deadline and proc.poll() is None:
        state = load_checkpoint(ck) if (ck / "checkpoint.pt").exists() else None
        if state is not None and state["phase"] == 2 and state["global_step"] >= 6:
            os.kill(proc.pid, signal.SIGKILL)
            killed_at = state["global_step"]
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert killed_at is not None and proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    assert not (out / "pack.json").exists()

    again = _bas("break", str(scene), "-o", str(out), *ARGS)
    assert again.wait(timeout=600) == 2  # refuses to overwrite silently ...
    assert "--resume" in (again.stderr.read() if again.stderr else "")
    resumed = _bas("break", str(scene), "-o", str(out), *ARGS, "--resume")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read() if resumed.stderr else ""

    a, b = load_pack(tmp_path / "ref"), load_pack(out)
    for tok in a.embeddings:
        assert torch.equal(a.embeddings[tok], b.embeddings[tok])
    assert a.extracted is not None and b.extracted is not None  # phase 2 stored as the extracted LoRA
    assert all(torch.equal(b.extracted["unet"][k], v) for k, v in a.extracted["unet"].items())


def test_full_disk_keeps_the_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a complete checkpoint: load_checkpoint checks every field a resume uses
    full = {"phase": 1, "fingerprint": "f", "handles": torch.ones(2, 32), "x": torch.ones(3),
            "torch_rng": torch.Generator().get_state(), "py_rng": random.Random(0).getstate()}
    save_checkpoint(tmp_path, {"global_step": 4, **full})

    def no_space(obj: object, f: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(CheckpointError, match="checkpoint.pt: could not write the checkpoint .No space left"):
        save_checkpoint(tmp_path, {"global_step": 6, **full, "x": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(tmp_path)
    assert state is not None and state["global_step"] == 4 and torch.equal(state["x"], torch.ones(3))
    assert not list(tmp_path.glob("*.tmp"))


def test_unwritable_checkpoint_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the output folder should be")
    with pytest.raises(CheckpointError, match="not-a-folder/checkpoints/checkpoint.pt: could not write"):
        atomic_save({"a": 1}, blocker / "checkpoints" / "checkpoint.pt")


def test_corrupt_checkpoint_is_refused_with_advice(tmp_path: Path) -> None:
    (tmp_path / "checkpoint.pt").write_bytes(b"\x80\x04 truncated pickle")
    with pytest.raises(CheckpointError, match="unreadable checkpoint .* delete it to start over"):
        load_checkpoint(tmp_path)
