"""Handle packs built once per session on the tiny model (a few seconds each on the CPU)."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.training.config import preset
from engine.example import make_example_scene
from engine.packs.pack import save_pack
from engine.training.trainer import BreakTrainer


def _build(root: Path, background: bool = False, **overrides: object) -> Path:
    scene = make_example_scene(size=64)
    if background:
        scene = scene.with_background()
    cfg = preset("quick", phase1_steps=2, phase2_steps=2, checkpoint_every=0, preview_every=0, **overrides)
    result = BreakTrainer(scene, cfg, "tiny-random", root / "work").run()
    return save_pack(result, scene, root / "pack")


@pytest.fixture(scope="session")
def full_pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Full phase-2 fine-tuning (UNet and text encoder), lr raised so the weights visibly move."""
    return _build(tmp_path_factory.mktemp("full-pack"), phase2_lr=1e-4)


@pytest.fixture(scope="session")
def lora_bg_pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phase 2 as a rank-4 LoRA (UNet and text encoder), with a background handle <bg>."""
    return _build(tmp_path_factory.mktemp("lora-pack"), background=True, lora_rank=4)
