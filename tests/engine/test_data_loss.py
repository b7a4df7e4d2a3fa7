"""Commands that write never delete or overwrite a file they did not create (issue 12, section 1).

Each case snapshots every byte under the folder at stake and checks it is identical afterwards,
and that no temporary sibling is left behind.
"""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import SafetensorError
from safetensors.torch import save_file

from engine.training.checkpoint import atomic_save
from engine.cli.main import main
from engine.errors import CheckpointError, OutputError
from engine.example import make_example_scene
from engine.packs.pack import load_pack
from engine.packs.archive import archive_pack, extract_pack_archive
from engine.scene import save_scene

TINY = ["--model", "tiny-random", "--preset", "quick", "--phase1-steps", "2", "--phase2-steps", "2",
        "--checkpoint-every", "0", "--device", "cpu"]


def snapshot(root: Path) -> dict[str, bytes | None]:
    """Every file's bytes and every folder under ``root`` (and ``root``'s siblings' names)."""
    out: dict[str, bytes | None] = {f"sibling:{p.name}": None for p in root.parent.iterdir()}
    for p in sorted(root.rglob("*")):
        out[p.relative_to(root).as_posix()] = p.read_bytes() if p.is_file() else None
    return out


def _error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.fixture()
def user_folder(tmp_path: Path) -> Path:
    """The issue's case: a folder with a scene/ subfolder, notes and a backup photo."""
    dl = tmp_path / "dl"
    save_scene(make_example_scene(size=64), dl / "scene")
    (dl / "scene" / "img.png").rename(dl / "scene" / "img.jpg")  # load_scene takes either name
    (dl / "notes.txt").write_text("my notes")
    (dl / "backup.jpg").write_bytes(b"\xff\xd8 a backup photo")
    (dl / "scene" / "notes.txt").write_text("inside the scene folder too")
    return dl


def test_break_into_a_folder_that_is_not_a_pack_is_refused_before_training(
        user_folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = snapshot(user_folder)
    assert main(["break", str(user_folder / "scene"), "-o", str(user_folder), *TINY]) == 2
    line = _error_line(capsys)
    assert str(user_folder) in line and "is not empty and is not a handle pack" in line
    assert snapshot(user_folder) == before
    # --force does not change that: only a pack is ever replaced
    assert main(["break", str(user_folder / "scene"), "-o", str(user_folder), *TINY, "--force"]) == 2
    assert "is not a handle pack" in _error_line(capsys)
    assert snapshot(user_folder) == before


def test_break_over_an_existing_pack_needs_force_and_keeps_the_old_one_until_done(
        lora_bg_pack_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    scene = save_scene(make_example_scene(size=64), tmp_path / "scene")
    pack = tmp_path / "pack"
    shutil.copytree(lora_bg_pack_dir, pack)
    before = snapshot(pack)
    assert main(["break", str(scene), "-o", str(pack), *TINY]) == 2
    line = _error_line(capsys)
    assert "holds a handle pack; add --force" in line and str(pack) in line
    assert snapshot(pack) == before

    assert main(["break", str(scene), "-o", str(pack), *TINY, "--force"]) == 0
    err = capsys.readouterr().err
    assert sum("--force: the handle pack in" in line for line in err.splitlines()) == 1
    new = load_pack(pack)
    assert new.tokens == ["<asset0>", "<asset1>"] and new.lora is None  # the full fine-tune, not the old LoRA
    assert not (pack / "lora_unet.safetensors").exists()  # nothing of the old pack orphaned inside
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack", "scene"]  # no temporary siblings


def test_a_failed_write_leaves_the_old_pack_byte_identical(lora_bg_pack_dir: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    import engine.packs.pack

    scene = save_scene(make_example_scene(size=64), tmp_path / "scene")
    pack = tmp_path / "pack"
    shutil.copytree(lora_bg_pack_dir, pack)
    before = snapshot(pack)
    calls = {"n": 0}

    def disk_full(tensors: dict, path: str, metadata: object = None) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the first file went through; the disk fills up on the second
            raise SafetensorError("No space left on device (os error 28)")
        save_file(tensors, path)

    monkeypatch.setattr(engine.packs.pack, "save_file", disk_full)
    assert main(["break", str(scene), "-o", str(pack), *TINY, "--force"]) == 2
    line = _error_line(capsys)
    assert f"error: {pack}: could not write the handle pack" in line and "No space left" in line
    after = snapshot(pack)
    assert {k: v for k, v in after.items() if not k.startswith("checkpoints")} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pack", "scene"]


def test_target_that_is_a_file_or_unwritable_is_refused_before_training(tmp_path: Path,
                                                                        capsys: pytest.CaptureFixture[str]) -> None:
    scene = save_scene(make_example_scene(size=64), tmp_path / "scene")
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    assert main(["break", str(scene), "-o", str(blocker), *TINY]) == 2
    assert "a-file: exists and is a file" in _error_line(capsys)
    assert main(["break", str(scene), "-o", str(blocker / "pack"), *TINY]) == 2
    assert "a-file: is a file, not a folder" in _error_line(capsys)
    assert blocker.read_text() == "not a folder"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if not _writable(locked):  # root ignores permissions: the case cannot be made there
            assert main(["break", str(scene), "-o", str(locked / "pack"), *TINY]) == 2
            assert "locked: cannot write here" in _error_line(capsys)
    finally:
        locked.chmod(0o700)
    assert not list((tmp_path / "scene").glob("checkpoints"))


def _writable(folder: Path) -> bool:
    try:
        (folder / ".probe").write_text("x")
    except OSError:
        return False
    (folder / ".probe").unlink()
    return True


def test_pack_import_never_writes_into_an_existing_pack_or_folder(
        lora_bg_pack_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    emb = tmp_path / "cat.safetensors"
    save_file({"<cat>": torch.randn(32)}, str(emb))
    pack = tmp_path / "pack"
    shutil.copytree(lora_bg_pack_dir, pack)
    other = tmp_path / "photos"
    other.mkdir()
    (other / "holiday.jpg").write_bytes(b"\xff\xd8 holiday")
    zipped = archive_pack(lora_bg_pack_dir, tmp_path / "p.zip")
    for target in (pack, other):
        before = snapshot(target)
        for source in ([str(emb), "--model", "tiny-random"], [str(zipped)], [str(lora_bg_pack_dir)]):
            assert main(["pack", "import", *source, "-o", str(target)]) == 2
            assert str(target) in _error_line(capsys)
            assert snapshot(target) == before, source
    # --force replaces a pack as a whole: no LoRA/UNet file of the old one stays orphaned
    assert main(["pack", "import", str(emb), "--model", "tiny-random", "-o", str(pack), "--force"]) == 0
    assert "replaced the earlier pack" in capsys.readouterr().out
    assert sorted(p.name for p in pack.iterdir()) == ["embeddings.safetensors", "pack.json"]
    assert load_pack(pack).tokens == ["<cat>"]
    # ... but never into a folder that is not a pack
    assert main(["pack", "import", str(emb), "--model", "tiny-random", "-o", str(other), "--force"]) == 2
    assert "is not a handle pack" in _error_line(capsys)
    assert (other / "holiday.jpg").read_bytes() == b"\xff\xd8 holiday"


def test_other_writers_refuse_to_overwrite(lora_bg_pack_dir: Path, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    image = tmp_path / "out.png"
    image.write_bytes(b"an earlier picture")
    assert main(["generate", str(lora_bg_pack_dir), "a photo of <asset0>", "-o", str(image), "--steps", "1"]) == 2
    assert "out.png: exists; add --force" in _error_line(capsys)
    assert image.read_bytes() == b"an earlier picture"
    zipped = tmp_path / "p.zip"
    zipped.write_bytes(b"someone's zip")
    assert main(["pack", "archive", str(lora_bg_pack_dir), "-o", str(zipped)]) == 2
    assert "p.zip: exists; add --force" in _error_line(capsys)
    assert zipped.read_bytes() == b"someone's zip"
    scene_dir = tmp_path / "work"
    scene_dir.mkdir()
    (scene_dir / "mask0.png").write_bytes(b"my own mask")
    assert main(["example", str(scene_dir)]) == 2
    assert "is not empty and is not a scene" in _error_line(capsys)
    assert (scene_dir / "mask0.png").read_bytes() == b"my own mask"
    exp = tmp_path / "exp"
    exp.mkdir()
    (exp / "README.txt").write_text("my readme")
    assert main(["pack", "export", str(lora_bg_pack_dir), "--format", "a1111", "-o", str(exp), "--force"]) == 2
    assert "not written by a pack export" in _error_line(capsys)
    assert (exp / "README.txt").read_text() == "my readme" and sorted(p.name for p in exp.iterdir()) == ["README.txt"]
    assert main(["pack", "export", str(lora_bg_pack_dir), "--format", "a1111", "-o", str(tmp_path / "e2")]) == 0
    assert main(["pack", "export", str(lora_bg_pack_dir), "--format", "a1111", "-o", str(tmp_path / "e2")]) == 2
    assert "holds an earlier export" in _error_line(capsys)
    assert main(["pack", "export", str(lora_bg_pack_dir), "--format", "a1111", "-o", str(tmp_path / "e2"),
                 "--force"]) == 0


def test_archive_import_cleans_up_and_names_the_archive(lora_bg_pack_dir: Path, tmp_path: Path) -> None:
    z = archive_pack(lora_bg_pack_dir, tmp_path / "p.zip")
    (tmp_path / "out").mkdir()
    extract_pack_archive(z, tmp_path / "out" / "a")
    before = snapshot(tmp_path / "out" / "a")
    with pytest.raises(OutputError, match="add --force"):
        extract_pack_archive(z, tmp_path / "out" / "a")
    assert snapshot(tmp_path / "out" / "a") == before
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a"]
    assert extract_pack_archive(z, tmp_path / "out" / "a", force=True) == tmp_path / "out" / "a"
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a"]


def test_atomic_save_cleans_its_temporary_file_on_any_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    atomic_save({"a": torch.ones(2)}, tmp_path / "checkpoint.pt")
    before = (tmp_path / "checkpoint.pt").read_bytes()

    def torch_disk_full(obj: object, f: object) -> None:
        raise RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 64 vs 0: file write failed")

    monkeypatch.setattr(torch, "save", torch_disk_full)
    with pytest.raises(CheckpointError, match="checkpoint.pt: could not write the checkpoint .RuntimeError"):
        atomic_save({"a": torch.zeros(2)}, tmp_path / "checkpoint.pt")

    def interrupted(obj: object, f: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"a": torch.zeros(2)}, tmp_path / "checkpoint.pt")

    def no_space(obj: object, f: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(CheckpointError, match="No space left on device"):
        atomic_save({"a": torch.zeros(2)}, tmp_path / "checkpoint.pt")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]
    assert (tmp_path / "checkpoint.pt").read_bytes() == before
