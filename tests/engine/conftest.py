"""Handle packs built once per session on the tiny model (a few seconds each on the CPU)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.training.config import preset
from engine.example import make_example_scene
from engine.formats.results import PackStorage
from engine.packs.pack import save_pack
from engine.training.trainer import BreakTrainer


def _train(root: Path, background: bool = False, **overrides: object) -> tuple[Any, Any]:
    scene = make_example_scene(size=64)
    if background:
        scene = scene.with_background()
    cfg = preset("quick", phase1_steps=2, phase2_steps=2, checkpoint_every=0, preview_every=0, **overrides)
    return BreakTrainer(scene, cfg, "tiny-random", root / "work").run(), scene


def _build(root: Path, background: bool = False, **overrides: object) -> Path:
    result, scene = _train(root, background, **overrides)
    return save_pack(result, scene, root / "pack")


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    """(TrainResult, Scene) of full phase-2 fine-tuning (UNet and text encoder), lr raised so the
    weights visibly move."""
    return _train(tmp_path_factory.mktemp("full-run"), phase2_lr=1e-4)


@pytest.fixture(scope="session")
def full_pack_dir(full_run: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """That run stored with full weights in float32 (``--full-weights --weights-dtype float32``)."""
    return save_pack(*full_run, tmp_path_factory.mktemp("full-pack") / "pack",
                     storage=PackStorage(full_weights=True, dtype="float32"))


@pytest.fixture(scope="session")
def compact_pack_dir(full_run: tuple[Any, Any], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same run stored the default way: its phase 2 as an extracted LoRA."""
    return save_pack(*full_run, tmp_path_factory.mktemp("compact-pack") / "pack")


@pytest.fixture(scope="session")
def lora_bg_pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Phase 2 as a rank-4 LoRA (UNet and text encoder), with a background handle <bg>."""
    return _build(tmp_path_factory.mktemp("lora-pack"), background=True, lora_rank=4)
