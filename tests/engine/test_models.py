"""Model loading: the real tokenizer, the tiny model through the user's loader, offline errors."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from diffusers import UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel

from engine.errors import ModelLoadError, ModelNotFoundError
from engine.models import (DEFAULT_HUB_MODEL, clip_tokenizer, ensure_tiny_model, load_model, resolve_model)
from engine.paths import resources_dir


def test_real_clip_tokenizer_gives_sd_ids() -> None:
    tok = clip_tokenizer()
    assert len(tok) == 49408
    assert tok("a photo of an astronaut riding a horse on mars").input_ids == [
        49406, 320, 1125, 539, 550, 18376, 6765, 320, 4558, 525, 7496, 49407]
    assert tok.model_max_length == 77


def test_tiny_model_saved_to_disk_loads_through_the_folder_path(tmp_path: Path) -> None:
    folder = ensure_tiny_model(tmp_path / "tiny")
    assert (folder / "model_index.json").exists() and (folder / "unet" / "config.json").exists()
    assert resolve_model(str(folder)) == ("folder", str(folder))
    comps = load_model(str(folder))
    ref = load_model("tiny-random")
    assert comps.resolution == 64 and comps.vae_scale == 2
    for k, v in ref.unet.state_dict().items():
        assert torch.equal(comps.unet.state_dict()[k], v)  # deterministic build, same weights
    out = comps.pipeline()("a photo of a cat", num_inference_steps=2, height=64, width=64,
                           generator=torch.Generator().manual_seed(0), output_type="np").images
    assert out.shape == (1, 64, 64, 3)


def test_missing_hub_model_says_how_to_get_it() -> None:
    with pytest.raises(ModelNotFoundError, match="bas models download"):
        load_model(DEFAULT_HUB_MODEL)


@pytest.mark.parametrize("ref, match", [
    ("/no/such/model.safetensors", "checkpoint file not found"),
    ("/no/such/folder/", "not a diffusers folder"),
])
def test_missing_paths(ref: str, match: str) -> None:
    with pytest.raises(ModelNotFoundError, match=match):
        load_model(ref)


def test_corrupt_single_file_is_a_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "model.safetensors"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ModelLoadError, match="model.safetensors: not a readable checkpoint"):
        load_model(str(bad))


class _Evil:
    def __reduce__(self) -> tuple:
        return (print, ("this must never run",))


def test_pickled_ckpt_is_never_executed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ckpt = tmp_path / "evil.ckpt"
    with open(ckpt, "wb") as f:
        pickle.dump({"state_dict": {"x": _Evil()}}, f)
    with pytest.raises(ModelLoadError, match="evil.ckpt"):
        load_model(str(ckpt))
    assert "this must never run" not in capsys.readouterr().out


@pytest.mark.parametrize("name, unet_params, te_params", [
    ("sd15", 859_520_964, 123_060_480),
    ("sd21-base", 865_910_724, 340_387_840),
])
def test_shipped_single_file_configs_build_the_published_architectures(name: str, unet_params: int,
                                                                         te_params: int) -> None:
    cfg = json.loads((resources_dir() / "configs" / f"{name}.json").read_text())
    with torch.device("meta"):
        unet = UNet2DConditionModel.from_config(cfg["unet"])
        te = CLIPTextModel(CLIPTextConfig(**{k: v for k, v in cfg["text_encoder"].items()
                                             if k not in ("architectures", "torch_dtype")}))
    assert sum(p.numel() for p in unet.parameters()) == unet_params
    assert sum(p.numel() for p in te.parameters()) == te_params
