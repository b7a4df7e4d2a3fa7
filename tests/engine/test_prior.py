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
