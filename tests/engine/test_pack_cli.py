"""Handle packs on disk and the `bas` command line (break -> pack -> generate)."""

from __future__ import annotations

import json
from typing import Any
import shutil
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
import torch
from PIL import Image

from engine.cli.main import main
from engine.errors import PackError
from engine.example import make_example_scene
from engine.compose.generate import generate, load_pack_model
from engine.packs.pack import load_pack, save_pack
from engine.scene import save_scene
from engine.training.trainer import BreakTrainer
from tests.engine.test_trainer import _cfg


@pytest.fixture(scope="module")
def pack_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pack")
    scene = make_example_scene(size=64)
    result = BreakTrainer(scene, _cfg(phase2_lr=1e-4), "tiny-random", root / "work").run()
    return save_pack(result, scene, root / "pack")


def test_pack_round_trip(pack_dir: Path) -> None:
    pack = load_pack(pack_dir)
    assert pack.tokens == ["<asset0>", "<asset1>"]
    assert pack.base_model == "tiny-random" and pack.resolution == 64
    # A full fine-tune is stored compactly by default: its phase 2 as an extracted LoRA (schema 2).
    assert pack.manifest["schema_version"] == 2 and pack.manifest["phase2"]["mode"] == "full"
    assert pack.storage == "extracted_lora" and pack.unet_state is None and pack.text_encoder_state is None
    assert pack.extracted is not None and set(pack.extracted) == {"unet", "text_encoder"}
    assert all(v.shape == (32,) for v in pack.embeddings.values())
    scene = pack.scene()
    assert scene is not None and scene.tokens == pack.tokens
    comps = load_pack_model(pack)
    ids = comps.tokenizer("a photo of <asset1>", add_special_tokens=False).input_ids
    row = comps.text_encoder.get_input_embeddings().weight[ids[-1]]
    torch.testing.assert_close(row, pack.embeddings["<asset1>"])
    imgs = generate(comps, "a photo of <asset0> and <asset1>", n=2, seed=3, steps=2)
    assert [g.seed for g in imgs] == [3, 4] and imgs[0].image.size == (64, 64)


def _broken_copy(pack_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "broken"
    shutil.copytree(pack_dir, dst)
    return dst


@pytest.mark.parametrize("case, match", [
    ("schema", "schema version 99 is not supported"),
    ("format", "not a Break-A-Scene pack manifest"),
    ("json", "pack.json is not valid JSON"),
    ("missing_file", "extracted_lora_unet.safetensors: a file the manifest lists is missing"),
    ("no_record", "has an extracted LoRA but no valid 'phase2.extracted' record"),
    ("energy", "phase2 'extracted.energy' must be a number in"),
    ("escape", "unsafe file '../../etc/passwd'"),
    ("bad_tensor", "embeddings.safetensors: not a valid safetensors file"),
    ("no_manifest", "no pack.json"),
])
def test_bad_packs_get_clear_errors(pack_dir: Path, tmp_path: Path, case: str, match: str) -> None:
    d = _broken_copy(pack_dir, tmp_path)
    manifest = json.loads((d / "pack.json").read_text())
    if case == "schema":
        manifest["schema_version"] = 99
    elif case == "format":
        manifest["format"] = "something-else"
    elif case == "missing_file":
        (d / "extracted_lora_unet.safetensors").unlink()
    elif case == "no_record":
        manifest["phase2"].pop("extracted")
    elif case == "energy":
        manifest["phase2"]["extracted"]["energy"] = 1.5
    elif case == "escape":
        manifest["files"]["extracted_unet"] = "../../etc/passwd"
    elif case == "bad_tensor":
        (d / "embeddings.safetensors").write_bytes(b"not safetensors at all")
    if case == "json":
        (d / "pack.json").write_text("{ truncated")
    elif case == "no_manifest":
        (d / "pack.json").unlink()
    else:
        (d / "pack.json").write_text(json.dumps(manifest))
    with pytest.raises(PackError, match=match):
        load_pack(d)


def test_embedding_width_mismatch_is_refused(pack_dir: Path, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    d = _broken_copy(pack_dir, tmp_path)
    save_file({"<asset0>": torch.zeros(768), "<asset1>": torch.zeros(768)}, str(d / "embeddings.safetensors"))
    with pytest.raises(PackError, match="width"):
        load_pack_model(load_pack(d))


def test_cli_break_then_generate(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene_dir = save_scene(make_example_scene(size=64), tmp_path / "scene")
    pack = tmp_path / "pack"
    code = main(["break", str(scene_dir), "-o", str(pack), "--model", "tiny-random", "--preset", "quick",
                 "--phase1-steps", "2", "--phase2-steps", "2", "--seed", "1", "--device", "cpu"])
    assert code == 0 and (pack / "pack.json").exists()
    assert not (pack / "checkpoints" / "checkpoint.pt").exists()
    out = tmp_path / "img.png"
    assert main(["generate", str(pack), "a photo of <asset0> at the beach", "-o", str(out),
                 "--steps", "2", "--n", "2", "--seed", "7"]) == 0
    for i in (1, 2):
        img = Image.open(tmp_path / f"img-{i}.png")
        assert img.size == (64, 64) and np.asarray(img).std() > 0
    assert "seed 8" in capsys.readouterr().out


def test_cli_errors_are_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["break", str(tmp_path / "nope"), "-o", str(tmp_path / "p"), "--model", "tiny-random"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "nope: not a folder" in err and "Traceback" not in err
    assert main(["generate", str(tmp_path), "x", "-o", str(tmp_path / "x.png")]) == 2
    assert "no pack.json" in capsys.readouterr().err


def test_cli_estimate_measures_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene_dir = save_scene(make_example_scene(size=64), tmp_path / "scene")
    assert main(["break", str(scene_dir), "--estimate", "--model", "tiny-random", "--preset", "quick",
                 "--phase1-steps", "10", "--phase2-steps", "30", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    m = re.search(r"phase 1 ([\d.]+) s/step x 10, phase 2 ([\d.]+) s/step x 30", out)
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, out
    assert re.search(r"estimated total [\d.]+ min, peak memory [\d.]+ GiB", out)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene"]
    assert main(["break", str(scene_dir), "--model", "tiny-random"]) == 2
    assert "needs -o/--output" in capsys.readouterr().err


_JSON = st.recursive(st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
                     lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=8), kids, max_size=3),
                     max_leaves=8)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_any_manifest_or_tensor_damage_is_a_pack_error_or_a_valid_pack(pack_dir: Path, tmp_path: Path,
                                                                       data: st.DataObject) -> None:
    """Property: whatever a damaged pack holds, loading either works or raises PackError naming a file."""
    d = tmp_path / "p"
    if d.exists():
        shutil.rmtree(d)
    shutil.copytree(pack_dir, d)
    manifest = json.loads((d / "pack.json").read_text())
    for _ in range(data.draw(st.integers(1, 3))):
        # replace a value at a random depth-1 or depth-2 key by arbitrary JSON
        key = data.draw(st.sampled_from(sorted(manifest)))
        if isinstance(manifest[key], dict) and manifest[key] and data.draw(st.booleans()):
            sub = data.draw(st.sampled_from(sorted(manifest[key])))
            manifest[key][sub] = data.draw(_JSON)
        else:
            manifest[key] = data.draw(_JSON)
    (d / "pack.json").write_text(json.dumps(manifest))
    if data.draw(st.booleans()):  # and damage the embeddings file's bytes
        raw = bytearray((d / "embeddings.safetensors").read_bytes())
        for _ in range(data.draw(st.integers(1, 6))):
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
        (d / "embeddings.safetensors").write_bytes(bytes(raw[:data.draw(st.integers(0, len(raw)))]))
    try:
        pack = load_pack(d)
    except PackError as e:
        assert str(d) in str(e)
    else:
        assert pack.tokens and all(v.ndim == 1 for v in pack.embeddings.values())
        assert isinstance(pack.base_model, str) and pack.resolution >= 8


def test_break_memory_flags_reach_the_config() -> None:
    from engine.cli.main import break_config, build_parser

    plain = break_config(build_parser().parse_args(["break", "s", "-o", "p", "--model", "tiny-random"]))
    assert (plain.precision, plain.gradient_checkpointing, plain.use_8bit_adam, plain.step_in_backward) == (
        "auto", False, False, None)
    cfg = break_config(build_parser().parse_args(
        ["break", "s", "-o", "p", "--model", "tiny-random", "--precision", "bf16", "--gradient-checkpointing", "--8bit-adam", "--no-prior",
         "--step-in-backward", "on"]))
    assert (cfg.precision, cfg.gradient_checkpointing, cfg.use_8bit_adam, cfg.prior_preservation,
            cfg.step_in_backward) == ("bf16", True, True, False, True)
    off = break_config(build_parser().parse_args(["break", "s", "-o", "p", "--model", "tiny-random", "--step-in-backward", "off"]))
    assert off.step_in_backward is False
    assert plain.attention_resolution is None  # latent/4, chosen by the trainer
    side = break_config(build_parser().parse_args(["break", "s", "-o", "p", "--model", "tiny-random",
                                                   "--attention-side", "16"]))
    assert side.attention_resolution == 16
    assert plain.views_per_step == 1  # the paper's one view per step
    views = break_config(build_parser().parse_args(["break", "s", "-o", "p", "--model", "tiny-random", "--views", "4"]))
    assert views.views_per_step == 4 and views.class_images_per_step is None  # one class image per view
    fewer = break_config(build_parser().parse_args(["break", "s", "-o", "p", "--model", "tiny-random", "--views", "4",
                                                    "--class-per-step", "1"]))
    assert (fewer.views_per_step, fewer.class_images_per_step) == (4, 1)
    assert cfg.phase1_steps == 400 and cfg.phase2_lr == 2e-6  # still the paper preset underneath


def test_break_uses_the_preset_the_model_recommends(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from engine.cli.main import break_config, build_parser
    from engine.training.config import PRESETS, recommended_preset

    monkeypatch.delenv("BAS_MODEL", raising=False)

    def cfg(*extra: str) -> Any:
        return break_config(build_parser().parse_args(["break", "s", "-o", "p", *extra]))

    # The shipped offline model (the default --model) declares the shapesworld preset.
    sw = PRESETS["shapesworld"]
    assert recommended_preset(None) == recommended_preset("shapesworld") == "shapesworld"
    assert (cfg().phase1_steps, cfg().phase2_lr) == (sw["phase1_steps"], sw["phase2_lr"])
    # A model folder of the user's declares one; an explicit --preset wins over it.
    folder = tmp_path / "my-model"
    folder.mkdir()
    (folder / "model_index.json").write_text("{}")
    (folder / "bas_preset.json").write_text('{"preset": "quick"}')
    assert cfg("--model", str(folder)).phase1_steps == PRESETS["quick"]["phase1_steps"]
    assert cfg("--model", str(folder), "--preset", "paper").phase1_steps == 400
    # Nothing declared, an unknown name or a damaged file: the paper's recipe.
    for text in (None, '{"preset": "nonsense"}', "{not json", '["quick"]'):
        (folder / "bas_preset.json").unlink(missing_ok=True)
        if text is not None:
            (folder / "bas_preset.json").write_text(text)
        assert recommended_preset(str(folder)) is None
        assert cfg("--model", str(folder)).phase2_lr == 2e-6
    assert cfg("--model", "tiny-random").phase1_steps == 400
