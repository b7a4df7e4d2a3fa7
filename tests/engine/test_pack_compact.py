"""Compact packs: a full fine-tune's phase 2 stored as a LoRA extracted at save time.

Round trip full -> compact -> generate against diffusers' own loaders, sizes, the rank cap and
the energy kept, old full-weight packs, ``--full-weights`` and what ``bas pack inspect`` reports.
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from engine.cli.main import main
from engine.compose.generate import generate, load_pack_model
from engine.formats.results import PackStorage
from engine.models import load_model
from engine.packs.interop import LORA_FILE, export_pack, lora_from_pack
from engine.packs.lora_extract import extract_lora, fuse_lora
from engine.packs.pack import load_pack, save_pack
from engine.scene import save_scene
from tests.engine.test_compose import PROMPT, _engine_image, _plain_pipeline_image

FAST = ["--model", "tiny-random", "--preset", "quick", "--phase1-steps", "2", "--phase2-steps", "2",
        "--checkpoint-every", "0", "--device", "cpu"]


@pytest.fixture(scope="module")
def base() -> Any:
    return load_model("tiny-random")


def _bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.iterdir() if f.is_file())


def test_compact_round_trip_generates_as_diffusers_does_with_the_same_lora(compact_pack_dir: Path, base: Any,
                                                                          tmp_path: Path) -> None:
    pack = load_pack(compact_pack_dir)
    assert pack.storage == "extracted_lora" and pack.extracted is not None
    report = export_pack(pack, tmp_path, "all")
    # The exports carry the stored LoRA itself (no second extraction): same tensors, same dtype.
    diffusers_file = load_file(str(tmp_path / "diffusers" / LORA_FILE))
    for k, v in pack.extracted["unet"].items():
        assert torch.equal(diffusers_file[f"unet.{k}"], v)
    assert report["lora"].exact and report["lora"].per_layer_rank
    ours = _engine_image(base, pack)
    without = _plain_pipeline_image(base, tmp_path, pack.tokens, "embeddings-only")
    for fmt in ("diffusers", "kohya", "a1111"):
        theirs = _plain_pipeline_image(base, tmp_path, pack.tokens, fmt)
        err = float(np.abs(ours - theirs).max())
        print(f"{fmt}: max |engine - diffusers| = {err:.2e}; without the LoRA {np.abs(ours - without).max():.2e}")
        assert err < 1e-4, fmt  # kohya's lora_up is rescaled once in fp16 (measured 4.6e-6)
    assert np.abs(ours - without).max() > 1e-2  # the LoRA matters, so the agreement above means something
    png = generate(load_pack_model(pack), PROMPT, seeds=[5], steps=3)[0].image  # what bas generate saves
    assert np.abs(np.asarray(png).astype(int) - (np.clip(ours, 0, 1) * 255).round().astype(int)).max() <= 1


def test_the_lora_is_fused_once_at_load(compact_pack_dir: Path, lora_bg_pack_dir: Path, base: Any) -> None:
    """Generation from a LoRA pack runs the plain architecture: no adapter layers stay behind."""
    n_base = sum(p.numel() for p in base.unet.parameters())
    for folder in (compact_pack_dir, lora_bg_pack_dir):
        comps = load_pack_model(load_pack(folder))
        for module in (comps.unet, comps.text_encoder):
            assert not any("lora" in n for n, _ in module.named_modules()), folder
        assert sum(p.numel() for p in comps.unet.parameters()) == n_base


def test_compact_pack_is_much_smaller_and_keeps_what_the_manifest_says(full_run: tuple[Any, Any], base: Any,
                                                                     full_pack_dir: Path, tmp_path: Path) -> None:
    result, scene = full_run
    small = save_pack(result, scene, tmp_path / "cap4", storage=PackStorage(lora_rank_cap=4), base=base)
    half = save_pack(result, scene, tmp_path / "fp16", storage=PackStorage(full_weights=True), base=base)
    sizes = {"full fp32": _bytes(full_pack_dir), "full fp16": _bytes(half), "LoRA cap 4": _bytes(small)}
    print("pack sizes (tiny model):", sizes)
    assert sizes["LoRA cap 4"] < 0.2 * sizes["full fp16"] and sizes["full fp16"] < 0.55 * sizes["full fp32"]
    pack = load_pack(small)
    assert pack.extracted is not None
    ranks = [v.shape[0] for p in pack.extracted.values() for k, v in p.items() if k.endswith("lora_A.weight")]
    assert max(ranks) == 4 and all(v.dtype == torch.float16 for p in pack.extracted.values() for v in p.values())
    ex = pack.manifest["phase2"]["extracted"]
    assert ex["rank_cap"] == 4 and ex["energy"] == 0.9 and ex["rank_max"] == 4
    assert ex["bytes"] == sum(v.numel() * 2 for p in pack.extracted.values() for v in p.values())


def test_each_layer_keeps_the_energy_asked_for_at_the_smallest_rank(full_run: tuple[Any, Any], base: Any) -> None:
    result, _ = full_run
    energy = 0.6
    lora = extract_lora(base, result.unet_state, result.text_encoder_state, energy=energy, rank_cap=64,
                        dtype="float32")
    base_sd = {**{f"unet.{k}": v for k, v in base.unet.state_dict().items()},
               **{f"text_encoder.{k}": v for k, v in base.text_encoder.state_dict().items()}}
    tuned = {**{f"unet.{k}": v for k, v in result.unet_state.items()},
             **{f"text_encoder.{k}": v for k, v in result.text_encoder_state.items()}}
    checked = 0
    for layer, err in lora.layer_errors.items():
        part, module = layer.split(".", 1)
        a = lora.part(part)[f"{module}.lora_A.weight"]
        s = torch.linalg.svdvals((tuned[f"{layer}.weight"].double() - base_sd[f"{layer}.weight"].double()).flatten(1))
        kept = torch.cumsum(s ** 2, 0) / (s ** 2).sum()
        r = a.shape[0]
        assert r <= 64
        if r < 64:
            assert err ** 2 <= 1 - energy + 1e-6, layer  # at least the energy asked for ...
            assert r == 1 or kept[r - 2] < energy, layer  # ... at the smallest rank that keeps it
        checked += 1
    assert checked == len(lora.layer_errors) > 100
    # The extracted factors give the tuned weights up to each layer's reported error, computed exactly
    # (float64), and fuse_lora's float32 result is that exact sum up to float32 rounding, elementwise.
    unet = copy.deepcopy(base.unet)
    assert fuse_lora(unet, lora.unet) == sum(k.endswith("lora_A.weight") for k in lora.unet)
    fused = unet.state_dict()
    for layer, err in lora.layer_errors.items():
        if layer.startswith("unet."):
            module = layer[len("unet."):]
            key = module + ".weight"
            w = base.unet.state_dict()[key].double()
            a, b = (lora.unet[f"{module}.lora_{x}.weight"].double().flatten(1) for x in "AB")
            exact = w + (b @ a).reshape(w.shape)
            delta = result.unet_state[key].double() - w
            got = float((exact - result.unet_state[key].double()).norm() / delta.norm())
            assert abs(got - err) < 1e-5 * max(1.0, err), (layer, got, err)
            # float32: the product's rounding (k terms, each within 2^-24) plus the sum's (half an ulp).
            bound = 2.0 ** -23 * exact.abs() + a.shape[0] * 2.0 ** -23 * (b.abs() @ a.abs()).reshape(w.shape)
            assert bool(((fused[key].double() - exact).abs() <= bound).all()), layer


def test_old_full_weight_packs_still_load(full_pack_dir: Path, full_run: tuple[Any, Any], tmp_path: Path) -> None:
    """A pack in the layout written before compact storage: schema 1, fp32 unet/text_encoder files,
    no 'storage' or 'extracted' in phase2."""
    old = tmp_path / "old"
    shutil.copytree(full_pack_dir, old)
    manifest = json.loads((old / "pack.json").read_text())
    manifest["schema_version"] = 1
    manifest["phase2"].pop("storage")
    assert set(manifest["files"]) == {"embeddings", "unet", "text_encoder"}
    (old / "pack.json").write_text(json.dumps(manifest, indent=2))
    pack = load_pack(old)
    assert pack.storage == "full" and pack.extracted is None and pack.unet_state is not None
    comps = load_pack_model(pack)
    result, _ = full_run
    for k, v in result.unet_state.items():
        assert torch.equal(comps.unet.state_dict()[k], v), k
    assert generate(comps, PROMPT, seeds=[1], steps=2)[0].image.size == (64, 64)
    assert main(["pack", "export", str(old), "--format", "diffusers", "--rank", "4", "-o", str(tmp_path / "x")]) == 0


def test_cli_full_weights_and_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from engine.example import make_example_scene

    scene = save_scene(make_example_scene(size=64), tmp_path / "scene")
    assert main(["break", str(scene), "-o", str(tmp_path / "full"), *FAST, "--full-weights"]) == 0
    full = load_pack(tmp_path / "full")
    assert full.storage == "full" and full.manifest["schema_version"] == 1
    assert full.unet_state is not None and full.text_encoder_state is not None
    assert all(v.dtype == torch.float16 for v in full.unet_state.values())  # fp16 unless asked otherwise
    assert main(["break", str(scene), "-o", str(tmp_path / "compact"), *FAST, "--lora-energy", "0.8",
                 "--lora-rank-cap", "8"]) == 0
    capsys.readouterr()
    assert main(["pack", "inspect", str(tmp_path / "compact")]) == 0
    out = capsys.readouterr().out
    assert "stored as   LoRA extracted at save time: energy 0.8, rank cap 8, float16" in out
    for group in ("unet.down", "unet.mid", "unet.up", "text_encoder", "total"):
        assert f"{group} 0." in out, group
    assert main(["pack", "inspect", str(tmp_path / "compact"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    errors = info["phase2"]["extracted"]["relative_error"]
    assert info["phase2"]["storage"] == "extracted_lora" and 0 < errors["total"] < 1
    compact = load_pack(tmp_path / "compact")
    # The same training (seeded): the stored LoRA approximates the stored full weights' difference.
    assert lora_from_pack(compact).extraction == compact.manifest["phase2"]["extracted"]
    assert _bytes(tmp_path / "compact") < 0.5 * _bytes(tmp_path / "full")
    for bad, msg in ((["--lora-energy", "1.5"], "--lora-energy 1.5"),
                     (["--full-weights", "--lora-rank-cap", "4"], "with --full-weights there is none")):
        assert main(["break", str(scene), "-o", str(tmp_path / "bad"), *FAST, *bad]) == 2
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "bad").exists()
