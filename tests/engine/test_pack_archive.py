"""Pack archives: a zip round trip, and archives whose members try to escape or are not pack files."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch

from engine.cli.main import main
from engine.errors import OutputError, PackError
from engine.packs.pack import load_pack
from engine.packs.archive import archive_pack, extract_pack_archive, import_pack_folder


def _zip(path: Path, members: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # S_IFLNK | 0777, as zip -y writes links
            zf.writestr(info, target)
    return path


def _tar(path: Path, members: list[tarfile.TarInfo], data: dict[str, bytes] | None = None) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for info in members:
            payload = (data or {}).get(info.name)
            if payload is not None:
                info.size = len(payload)
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def test_zip_round_trip_and_folder_import(lora_bg_pack_dir: Path, tmp_path: Path) -> None:
    z = archive_pack(lora_bg_pack_dir, tmp_path / "pack.zip")
    with zipfile.ZipFile(z) as zf:
        names = zf.namelist()
    assert "pack.json" in names and "embeddings.safetensors" in names and "scene/img.png" in names
    assert not any(n.startswith("checkpoints/") for n in names)
    original = load_pack(lora_bg_pack_dir)
    for pack_dir in (extract_pack_archive(z, tmp_path / "from-zip"),
                     import_pack_folder(lora_bg_pack_dir, tmp_path / "from-folder")):
        pack = load_pack(pack_dir)
        assert pack.tokens == original.tokens and pack.manifest == original.manifest
        for k, v in original.embeddings.items():
            assert torch.equal(pack.embeddings[k], v)
        for k, v in original.lora["unet"].items():
            assert torch.equal(pack.lora["unet"][k], v)
    # A tar.gz with the pack inside one top-level folder ("./" names, as tar -C writes them) also imports.
    t = tmp_path / "pack.tgz"
    with tarfile.open(t, "w:gz") as tf:
        tf.add(lora_bg_pack_dir, arcname="./mypack")
    assert load_pack(extract_pack_archive(t, tmp_path / "from-tar")).tokens == original.tokens
    with pytest.raises(OutputError, match="target folder exists and is not empty: it holds a handle pack; add --force"):
        extract_pack_archive(z, tmp_path / "from-zip")


ESCAPES = ["../evil.json", "/tmp/evil.json", "scene/../../evil.json", "C:/evil.json", "..\\evil.json",
           "a/b/../../../evil.json"]


@pytest.mark.parametrize("name", ESCAPES)
def test_members_cannot_escape_the_target(lora_bg_pack_dir: Path, tmp_path: Path, name: str) -> None:
    good = {f"{p.relative_to(lora_bg_pack_dir).as_posix()}": p.read_bytes()
            for p in lora_bg_pack_dir.rglob("*") if p.is_file()}
    (tmp_path / "in").mkdir()
    (tmp_path / "out").mkdir()
    archive = _zip(tmp_path / "in" / "evil.zip", {**good, name: b"{}"})
    dest = tmp_path / "out" / "pack"
    with pytest.raises(PackError, match="evil.zip: archive member .* would be written outside the target"):
        extract_pack_archive(archive, dest)
    assert not dest.exists() and list((tmp_path / "out").iterdir()) == []  # nothing left behind
    assert sorted(p.name for p in tmp_path.rglob("evil.json")) == []
    assert not Path("/tmp/evil.json").exists()


def test_a_member_without_a_name_is_refused(tmp_path: Path) -> None:
    """A damaged central directory can hold an empty name (zipfile's own is_dir() fails on it)."""
    archive = tmp_path / "damaged.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr(zipfile.ZipInfo(""), b"x")
        zf.writestr("pack.json", b"{}")
    with pytest.raises(PackError, match="damaged.zip: archive member '' would be written outside"):
        extract_pack_archive(archive, tmp_path / "pack")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged.zip"]


def test_links_special_files_and_foreign_types_are_refused(tmp_path: Path) -> None:
    link = _zip(tmp_path / "link.zip", {"pack.json": b"{}"}, symlinks={"embeddings.safetensors": "/etc/passwd"})
    with pytest.raises(PackError, match="link.zip: archive member 'embeddings.safetensors' is a link"):
        extract_pack_archive(link, tmp_path / "a")
    sym = tarfile.TarInfo("scene/img.png")
    sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
    with pytest.raises(PackError, match="sym.tgz: archive member 'scene/img.png' is a link or special file"):
        extract_pack_archive(_tar(tmp_path / "sym.tgz", [sym]), tmp_path / "b")
    hard = tarfile.TarInfo("pack.json")
    hard.type, hard.linkname = tarfile.LNKTYPE, "../../etc/passwd"
    with pytest.raises(PackError, match="is a link or special file"):
        extract_pack_archive(_tar(tmp_path / "hard.tgz", [hard]), tmp_path / "c")
    dev = tarfile.TarInfo("dev.json")
    dev.type = tarfile.CHRTYPE
    with pytest.raises(PackError, match="is a link or special file"):
        extract_pack_archive(_tar(tmp_path / "dev.tgz", [dev]), tmp_path / "d")
    pickle = _zip(tmp_path / "pickle.zip", {"pack.json": b"{}", "embeddings.pt": b"\x80\x04"})
    with pytest.raises(PackError, match="pickle.zip: archive member 'embeddings.pt' is not a file a pack holds"):
        extract_pack_archive(pickle, tmp_path / "e")
    (tmp_path / "not.zip").write_bytes(b"hello")
    with pytest.raises(PackError, match="not.zip: not a zip or tar archive"):
        extract_pack_archive(tmp_path / "not.zip", tmp_path / "f")
    nopack = _zip(tmp_path / "nopack.zip", {"readme.txt": b"hi"})
    with pytest.raises(PackError, match="nopack.zip: no pack.json at the top"):
        extract_pack_archive(nopack, tmp_path / "g")
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []  # no partial imports


def test_absurd_sizes_and_counts_are_refused(tmp_path: Path) -> None:
    # Real archives against a small cap (the default cap is 16 GiB), for zip and tar.
    big = _zip(tmp_path / "big.zip", {"pack.json": b"{}", "unet.safetensors": b"\0" * 300_000})
    with pytest.raises(PackError, match="big.zip: unpacks to more than"):
        extract_pack_archive(big, tmp_path / "a", max_bytes=100_000)
    many = _zip(tmp_path / "many.zip", {f"scene/mask{i}.png": b"" for i in range(20)})
    with pytest.raises(PackError, match="many.zip: more than 10 members"):
        extract_pack_archive(many, tmp_path / "b", max_members=10)
    info = tarfile.TarInfo("unet.safetensors")
    big_tar = _tar(tmp_path / "big.tgz", [info], {"unet.safetensors": b"\0" * 300_000})
    with pytest.raises(PackError, match="big.tgz: unpacks to more than"):
        extract_pack_archive(big_tar, tmp_path / "c", max_bytes=100_000)


def test_cli_archive_and_import(lora_bg_pack_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["pack", "archive", str(lora_bg_pack_dir), "-o", str(tmp_path / "p.zip")]) == 0
    assert main(["pack", "import", str(tmp_path / "p.zip"), "-o", str(tmp_path / "p")]) == 0
    assert "wrote handle pack" in capsys.readouterr().out
    assert load_pack(tmp_path / "p").tokens == ["<asset0>", "<asset1>", "<bg>"]
    evil = _zip(tmp_path / "evil.zip", {"pack.json": b"{}", "../x.json": b"{}"})
    assert main(["pack", "import", str(evil), "-o", str(tmp_path / "q")]) == 2
    assert "would be written outside the target folder" in capsys.readouterr().err
