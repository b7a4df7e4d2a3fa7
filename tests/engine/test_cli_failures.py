"""Every kind of failure from issue 12 through ``engine.cli.main.main``: exit status 2, one ``error:`` line
naming the file or the option, never a traceback, never a temporary path."""

from __future__ import annotations

import json
import shutil
import tarfile
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.training.checkpoint import save_checkpoint
from engine.cli.main import main
from engine.example import make_example_scene
from engine.packs.archive import archive_pack
from engine.scene import save_scene

Setup = Callable[[Path, Path, Path], list[str]]
TINY = ["--model", "tiny-random", "--preset", "quick", "--phase1-steps", "1", "--phase2-steps", "1",
        "--checkpoint-every", "0", "--device", "cpu"]


def _copy(tmp: Path, pack: Path, edit: Callable[[dict], None] | None = None) -> Path:
    d = tmp / "broken"
    shutil.copytree(pack, d)
    if edit is not None:
        m = json.loads((d / "pack.json").read_text())
        edit(m)
        (d / "pack.json").write_text(json.dumps(m))
    return d


def _gen(d: Path, tmp: Path, *extra: str, prompt: str = "a photo of <asset0>") -> list[str]:
    return ["generate", str(d), prompt, "-o", str(tmp / "o.png"), "--steps", "1", *extra]


def _manifest(edit: Callable[[dict], None]) -> Setup:
    return lambda tmp, pack, scene: _gen(_copy(tmp, pack, edit), tmp)


def _tensor_file(name: str, change: Callable[[dict[str, torch.Tensor]], None]) -> Setup:
    def setup(tmp: Path, pack: Path, scene: Path) -> list[str]:
        d = _copy(tmp, pack)
        tensors = load_file(str(d / name))
        change(tensors)
        save_file(tensors, str(d / name))
        return _gen(d, tmp)
    return setup


def _first(tensors: dict[str, torch.Tensor], value: float) -> None:
    k = sorted(tensors)[0]
    tensors[k] = tensors[k].clone()
    tensors[k].view(-1)[0] = value


def _archive(make: Callable[[Path, Path], Path]) -> Setup:
    return lambda tmp, pack, scene: ["pack", "import", str(make(tmp, pack)), "-o", str(tmp / "imported")]


def _bad_crc(tmp: Path, pack: Path) -> Path:
    z = archive_pack(pack, tmp / "crc.zip")
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("embeddings.safetensors")  # stored: its bytes are checked only by the CRC
    raw[info.header_offset + 30 + len(info.filename) + len(info.extra) + info.compress_size - 3] ^= 0xFF
    z.write_bytes(bytes(raw))
    return z


def _bad_deflate(tmp: Path, pack: Path) -> Path:
    z = archive_pack(pack, tmp / "zlib.zip")
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        info = zf.getinfo("scene/img.png")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for i in range(start + 2, start + min(info.compress_size, 40)):
        raw[i] = 0xFF
    z.write_bytes(bytes(raw))
    return z


def _truncated_tgz(tmp: Path, pack: Path) -> Path:
    t = tmp / "cut.tgz"
    with tarfile.open(t, "w:gz") as tf:
        tf.add(pack, arcname="p")
    t.write_bytes(t.read_bytes()[: t.stat().st_size // 2])
    return t


def _members(extra: dict[str, bytes], deflate: bool = False) -> Callable[[Path, Path], Path]:
    def make(tmp: Path, pack: Path) -> Path:
        z = tmp / "extra.zip"
        shutil.copy(archive_pack(pack, tmp / "base.zip"), z)
        with zipfile.ZipFile(z, "a") as zf:
            for name, data in extra.items():
                zf.writestr(name, data, compress_type=zipfile.ZIP_DEFLATED if deflate else zipfile.ZIP_STORED)
        return z
    return make


def _bomb(tmp: Path, pack: Path) -> Path:
    z = tmp / "bomb.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in (pack / "pack.json", pack / "embeddings.safetensors"):
            zf.write(f, f.name)
        zf.writestr("unet.safetensors", b"\0" * (32 << 20), compress_type=zipfile.ZIP_DEFLATED)
    return z


def _scene_meta(tokens: list[str]) -> Setup:
    def setup(tmp: Path, pack: Path, scene: Path) -> list[str]:
        d = tmp / "s"
        shutil.copytree(scene, d)
        meta = json.loads((d / "scene.json").read_text())
        meta["tokens"] = tokens
        (d / "scene.json").write_text(json.dumps(meta))
        return ["break", str(d), "-o", str(tmp / "out"), *TINY]
    return setup


def _no_fingerprint(tmp: Path, pack: Path, scene: Path) -> list[str]:
    save_checkpoint(tmp / "out" / "checkpoints", {"global_step": 1, "phase": 1, "handles": torch.zeros(2, 32),
                                                  "torch_rng": torch.Generator().get_state(), "py_rng": [3, [0] * 625, None]})
    return ["break", str(scene), "-o", str(tmp / "out"), *TINY, "--resume"]


def _file(path: Path) -> Path:
    path.write_text("hello")
    return path


def _break(*extra: str) -> Setup:
    return lambda tmp, pack, scene: ["break", str(scene), "-o", str(tmp / "out"), *TINY, *extra]


def _nested(tmp: Path, pack: Path, scene: Path) -> list[str]:
    d = _copy(tmp, pack)
    m = (d / "pack.json").read_text()
    (d / "pack.json").write_text(m[:-1] + ', "deep": ' + "[" * 50_000 + "]" * 50_000 + "}")
    return _gen(d, tmp)


CASES: list[tuple[str, Setup, str]] = [
    # fields of the wrong type in pack.json
    ("resolution a string", _manifest(lambda m: m["base_model"].update(resolution="64")), "base_model resolution '64'"),
    ("resolution missing", _manifest(lambda m: m["base_model"].pop("resolution")), "base_model resolution None"),
    ("concepts a list of lists", _manifest(lambda m: m.update(concepts=[[1, 2]])), "concept 0 must be an object"),
    ("phase2 a list", _manifest(lambda m: m.update(phase2=[])), "'phase2' must be an object"),
    ("lora rank a string", _manifest(lambda m: m["phase2"]["lora"].update(rank="4")), "no valid LoRA rank"),
    ("colour out of range", _manifest(lambda m: m["concepts"][0].update(color=[0, 0, 999])), "'color' must be three"),
    ("training a list", _manifest(lambda m: m.update(training=[1])), "'training' must be an object"),
    ("handle with spaces", _manifest(lambda m: m["concepts"][0].update(token="a photo of")), "concept 0 must be"),
    ("deeply nested JSON", _nested, "pack.json is not valid JSON (RecursionError"),
    # bad tensors
    ("NaN embedding", _tensor_file("embeddings.safetensors", lambda t: _first(t, float("nan"))), "NaN or infinite"),
    ("Inf in the LoRA", _tensor_file("lora_unet.safetensors", lambda t: _first(t, float("inf"))), "NaN or infinite"),
    ("integer embeddings", _tensor_file("embeddings.safetensors",
                                        lambda t: t.update({k: v.to(torch.int32) for k, v in t.items()})),
     "holds int32 values, not floating point"),
    # prompts and option values
    ("prompt names a missing handle", lambda tmp, pack, scene: _gen(pack, tmp, prompt="a photo of <asset9>"),
     "the prompt names <asset9>, which this pack does not have"),
    ("--size -64", lambda tmp, pack, scene: _gen(pack, tmp, "--size", "-64"), "argument --size: -64 is out of range"),
    ("--size 0", lambda tmp, pack, scene: _gen(pack, tmp, "--size", "0"), "argument --size: 0 is out of range"),
    ("--size 70", lambda tmp, pack, scene: _gen(pack, tmp, "--size", "70"), "argument --size: 70 is not a multiple"),
    ("--guidance nan", lambda tmp, pack, scene: _gen(pack, tmp, "--guidance", "nan"), "argument --guidance: nan is not a finite"),
    ("--guidance inf", lambda tmp, pack, scene: _gen(pack, tmp, "--guidance", "inf"), "argument --guidance: inf is not a finite"),
    ("--seed 2**70", lambda tmp, pack, scene: _gen(pack, tmp, "--seed", str(2**70)), "argument --seed: 1180591620717411303424 is out of range"),
    ("--n 0", lambda tmp, pack, scene: _gen(pack, tmp, "--n", "0"), "argument --n"),
    ("--resolution -64", _break("--resolution", "-64"), "argument --resolution: -64 is out of range"),
    ("--resolution 0", _break("--resolution", "0"), "argument --resolution: 0 is out of range"),
    ("--phase1-steps -5", _break("--phase1-steps", "-5"), "argument --phase1-steps: -5 is out of range"),
    ("--lora-rank 0", _break("--lora-rank", "0"), "argument --lora-rank: 0 is out of range"),
    ("--lora-rank -1", _break("--lora-rank", "-1"), "argument --lora-rank: -1 is out of range"),
    ("--preset nonsense", _break("--preset", "nonsense"), "argument --preset: invalid choice"),
    ("--views 0", _break("--views", "0"), "argument --views: 0 is out of range"),
    ("--views 65", _break("--views", "65"), "argument --views: 65 is out of range"),
    ("--class-per-step 0", _break("--class-per-step", "0"), "argument --class-per-step: 0 is out of range"),
    ("--attention-side 0", _break("--attention-side", "0"), "argument --attention-side: 0 is out of range"),
    ("--attention-side the model lacks", _break("--attention-side", "12"),
     "attention_resolution = 12: this model has cross-attention at "),
    ("--init-words empty", _break("--init-words", "", "x"), "--init-words: each word must be non-empty"),
    ("--dilate -5", lambda tmp, pack, scene: ["edit", str(pack), "a photo of <asset0>", "-o", str(tmp / "e.png"),
                                              "--concept", "0", "--dilate", "-5"], "argument --dilate: -5 is out of range"),
    ("--strength nan", lambda tmp, pack, scene: ["edit", str(pack), "x", "-o", str(tmp / "e.png"), "--strength", "nan"],
     "argument --strength"),
    ("--rank 0", lambda tmp, pack, scene: ["pack", "export", str(pack), "-o", str(tmp / "x"), "--rank", "0"], "argument --rank"),
    ("variations of a missing handle", lambda tmp, pack, scene: ["variations", str(pack), "-o", str(tmp / "v.png"),
                                                                 "--tokens", "<asset9>", "--steps", "1"],
     "--tokens: this pack has no <asset9>"),
    ("template without {}", lambda tmp, pack, scene: ["variations", str(pack), "-o", str(tmp / "v.png"),
                                                      "--templates", "a photo", "--steps", "1"], "--templates: templates need a {}"),
    # scene.json and checkpoints
    ("scene.json token 'a photo of'", _scene_meta(["a photo of", "<asset1>"]), "handle 'a photo of' is not one word"),
    ("scene.json token ''", _scene_meta(["", "<asset1>"]), "handle '' is not one word"),
    ("scene.json tokens a string", _scene_meta("<asset0>"), "'tokens' must be a list"),  # type: ignore[arg-type]
    ("checkpoint without fingerprint", _no_fingerprint, "damaged checkpoint (no fingerprint)"),
    # damaged or hostile archives
    ("bad CRC", _archive(_bad_crc), "crc.zip: the archive is damaged or truncated (BadZipFile"),
    ("corrupt deflate stream", _archive(_bad_deflate), "zlib.zip: the archive is damaged or truncated"),
    ("truncated tar.gz", _archive(_truncated_tgz), "cut.tgz: "),
    ("not an archive", _archive(lambda tmp, pack: _file(tmp / "x.zip")),
     "x.zip: not a zip or tar archive"),
    ("member not in the manifest", _archive(_members({"junk.json": b"{}"})), "'junk.json' is not listed in pack.json"),
    ("compression bomb", _archive(_bomb), "'unet.safetensors' expands"),
    # outputs
    ("output is a file", lambda tmp, pack, scene: ["break", str(scene), "-o", str(_file(tmp / "f")), *TINY],
     "f: exists and is a file"),
    ("not a pack", lambda tmp, pack, scene: _gen(tmp, tmp), "no pack.json"),
]


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_scene(make_example_scene(size=64), tmp_path_factory.mktemp("scene") / "scene")


@pytest.mark.parametrize("case,setup,expected", CASES, ids=[c[0] for c in CASES])
def test_every_failure_is_one_error_line_and_exit_2(lora_bg_pack_dir: Path, scene_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture[str], case: str, setup: Setup,
                                                    expected: str) -> None:
    argv = setup(tmp_path, lora_bg_pack_dir, scene_dir)
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scene overlap notices are not what this checks
        code = main(argv)
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2, (case, err)
    assert len(errors) == 1 and err.strip().splitlines()[-1] == errors[0], err
    assert "Traceback" not in err and ".partial-" not in err and ".import-" not in err, err
    assert expected in errors[0], errors[0]


def test_an_unexpected_exception_is_one_line_and_debug_shows_the_traceback(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    def boom(**kw: object) -> None:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr("engine.example.make_example_scene", boom)
    assert main(["example", str(tmp_path / "ex")]) == 2
    err = capsys.readouterr().err
    assert err == "error: unexpected ZeroDivisionError: division by zero; run with --debug for the traceback\n"
    assert main(["--debug", "example", str(tmp_path / "ex")]) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_library_warnings_become_one_line_each(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    import engine.example

    real = engine.example.make_example_scene

    def noisy(**kw: object) -> object:
        warnings.warn("You are using `torch.load` with `weights_only=False`\nsecond line", FutureWarning)
        warnings.warn("You are using `torch.load` with `weights_only=False`\nsecond line", FutureWarning)
        open(__file__).close()
        return real(**kw)  # type: ignore[arg-type]

    monkeypatch.setattr(engine.example, "make_example_scene", noisy)
    assert main(["example", str(tmp_path / "ex")]) == 0
    err = capsys.readouterr().err
    assert err == "warning: You are using `torch.load` with `weights_only=False` second line\n"


def test_long_prompt_warns_once_and_odd_templates_are_literal(lora_bg_pack_dir: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    prompt = "a photo of <asset0> " + "very " * 80 + "END"
    assert main(["generate", str(lora_bg_pack_dir), prompt, "-o", str(tmp_path / "long.png"), "--steps", "1"]) == 0
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1 and "the text encoder reads 77, so the end is ignored" in lines[0] and "end" in lines[0].lower()
    assert main(["variations", str(lora_bg_pack_dir), "-o", str(tmp_path / "v.png"), "--tokens", "<asset0>",
                 "--templates", "a {} with {x}", "--steps", "1"]) == 0
    assert "1 handle sets x 1 templates" in capsys.readouterr().out


def test_usage_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["generate"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: bas generate: the following arguments are required")
    assert main(["--help"]) == 0


def test_batch_without_ray_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    save_scene(make_example_scene(size=64), tmp_path / "scene")
    assert main(["batch", str(tmp_path / "scene"), "-o", str(tmp_path / "packs"), *TINY]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: Ray is not installed: pip install 'break-a-scene-desktop[cluster]' (or pip install ray)"]
    assert not (tmp_path / "packs").exists()
