"""``bas batch`` on a local Ray cluster started by the test (2 CPUs, the tiny model).

Three scenes of which one is bad; a rerun that skips the finished packs; a worker killed
mid-break and Ray's retry resuming from the checkpoint the coordinator kept.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from engine.cli.main import main
from engine.example import make_example_scene
from engine.packs.pack import load_pack
from engine.scene import save_scene
from engine.training.config import preset

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[cluster]')")

TINY = ["--model", "tiny-random", "--preset", "quick", "--no-prior", "--checkpoint-every", "0"]


def _scenes(root: Path) -> list[Path]:
    good_a, good_b, bad = root / "star-a", root / "star-b", root / "broken"
    save_scene(make_example_scene(size=64), good_a)
    save_scene(make_example_scene(size=64, seed=1), good_b)
    save_scene(make_example_scene(size=64), bad)
    (bad / "mask1.png").write_bytes(b"")  # the bad one: an empty mask file
    return [good_a, bad, good_b]


def test_batch_breaks_the_good_scenes_fails_the_bad_one_alone_and_a_rerun_skips(
        local_ray: None, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scenes = _scenes(tmp_path / "scenes")
    out = tmp_path / "packs"
    args = ["batch", *map(str, scenes), "-o", str(out), *TINY, "--phase1-steps", "2", "--phase2-steps", "2"]
    assert main(args) == 2  # one scene failed
    printed = capsys.readouterr()
    table = printed.out.splitlines()
    assert table[0].split()[:3] == ["scene", "status", "time"]
    rows = {line.split()[0]: line for line in table[1:]}
    assert rows["star-a"].split()[1] == "done" and rows["star-b"].split()[1] == "done"
    assert "failed" in rows["broken"] and "mask1.png" in rows["broken"] and "empty" in rows["broken"]
    for name in ("star-a", "star-b"):
        assert load_pack(out / name).tokens == ["<asset0>", "<asset1>"]
    assert not (out / "broken").exists()
    assert "done" in (out / "logs" / "star-a.log").read_text(encoding="utf-8")
    assert "mask1.png" in (out / "logs" / "broken.log").read_text(encoding="utf-8")

    before = (out / "star-a" / "embeddings.safetensors").stat().st_mtime_ns
    assert main(args) == 2
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines()[1:]}
    assert rows["star-a"].split()[1] == "skipped" and rows["star-b"].split()[1] == "skipped"
    assert (out / "star-a" / "embeddings.safetensors").stat().st_mtime_ns == before


def test_a_worker_killed_mid_break_is_retried_and_resumes_from_its_checkpoint(local_ray: None,
                                                                              tmp_path: Path) -> None:
    from engine.cluster.batch import BatchItem, SceneProgress, run_batch

    cfg = preset("quick", phase1_steps=20, phase2_steps=20, checkpoint_every=5, preview_every=0,
                 prior_preservation=False)
    coordinator: dict[str, Any] = {}
    killed: list[int] = []

    def on_progress(p: SceneProgress) -> None:
        if p.event.kind == "checkpoint" and p.attempt == 1 and not killed:
            pid = ray.get(coordinator["actor"].pid.remote("star"))
            os.kill(pid, signal.SIGKILL)
            killed.append(p.event.global_step)

    outcomes = run_batch([BatchItem("star", make_example_scene(size=64))], cfg, tmp_path / "packs",
                         model="tiny-random", on_progress=on_progress,
                         coordinator_ready=lambda actor: coordinator.update(actor=actor))
    (o,) = outcomes
    assert killed, "the break finished before its first checkpoint was seen"
    assert o.status == "done" and o.attempts == 2, o
    assert o.resumed_from and o.resumed_from[0] >= killed[0] > 0  # the retry did not start from step 0
    assert load_pack(tmp_path / "packs" / "star").tokens == ["<asset0>", "<asset1>"]
