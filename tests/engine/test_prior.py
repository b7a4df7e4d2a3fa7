"""The class-image cache belongs to one model's weights, not to its name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from engine.models import build_tiny_sd
from engine.training.prior import _model_key, ensure_class_images


def test_retrained_weights_under_the_same_name_get_their_own_class_images(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BAS_CACHE_DIR", str(tmp_path))
    old, new = build_tiny_sd(seed=0), build_tiny_sd(seed=0)
    assert old.ref == new.ref and _model_key(old) == _model_key(new)  # the same weights share a cache
    with torch.no_grad():
        for p in new.unet.parameters():
            p.add_(0.01)  # "retrained", shipped under the same name
    assert _model_key(old) != _model_key(new)
    first = ensure_class_images(old, "a photo at the beach", 1, 32, seed=0, steps=2)
    second = ensure_class_images(new, "a photo at the beach", 1, 32, seed=0, steps=2)
    assert first[0].parent != second[0].parent
    assert ensure_class_images(old, "a photo at the beach", 1, 32, seed=0, steps=2) == first


def test_batched_class_images_are_the_ones_made_one_by_one_and_complete_an_interrupted_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import numpy as np

    from engine.training.prior import load_rgb

    comps = build_tiny_sd(seed=0)
    monkeypatch.setenv("BAS_CACHE_DIR", str(tmp_path / "batched"))
    batched = ensure_class_images(comps, "a photo at the beach", 5, 32, seed=3, steps=2, batch=4)
    monkeypatch.setenv("BAS_CACHE_DIR", str(tmp_path / "resumed"))
    seen: list[tuple[int, int]] = []
    first = ensure_class_images(comps, "a photo at the beach", 2, 32, seed=3, steps=2, batch=1)
    resumed = ensure_class_images(comps, "a photo at the beach", 5, 32, seed=3, steps=2, batch=4,
                                  progress=lambda i, n: seen.append((i, n)))
    assert resumed[:2] == first and len(batched) == len(resumed) == 5
    assert seen == [(3, 3)]  # only the three missing images, in one batch
    a = np.stack([load_rgb(p, 32) for p in batched]).astype(int)
    b = np.stack([load_rgb(p, 32) for p in resumed]).astype(int)
    assert np.abs(a - b).max() <= 2  # the same images, up to float rounding
    assert len({im.tobytes() for im in a}) == 5  # each seed its own image
