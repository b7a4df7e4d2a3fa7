"""Handle packs as one file (zip or tar) to share, and their safe import.

An archive is a pack folder's files (``pack.json`` at the top, or inside one top-level folder).
Importing never trusts the archive: every member name is checked before anything is written (no
absolute paths, drive letters or ``..``; the resolved path must stay inside the target folder),
links, devices and other special members are refused, only the file types a pack holds
(JSON, safetensors, PNG/JPEG, text) are accepted, and the member count and the total size are
capped (declared sizes first, then the bytes actually written). The result is then opened with
:func:`engine.packs.pack.load_pack`, which reads JSON and safetensors only.
"""

from __future__ import annotations

import lzma
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

from engine.errors import OutputError, PackError, short_reason
from engine.formats.manifest import MANIFEST, MAX_MANIFEST_BYTES, pack_entries, parse_manifest
from engine.packs.pack import HandlePack, load_pack
from engine.safe_output import check_output_files, write_file, write_folder

PACK_SUFFIXES = frozenset({".json", ".safetensors", ".png", ".jpg", ".jpeg", ".txt", ".md"})
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_MEMBERS = 512
MAX_ARCHIVE_BYTES = 16 << 30  # an SD 2.1 full fine-tune is ~4.7 GB; anything far beyond is not a pack
MAX_JSON_BYTES = 1 << 20
MAX_IMAGE_BYTES = 256 << 20
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
MAX_RATIO = 100  # weights and PNGs hardly compress; zeros compress ~1000-fold
RATIO_FLOOR = 1 << 20  # members smaller than this are never ratio-checked
SCENE_MEMBER = re.compile(r"^scene/(img\.(png|jpg|jpeg)|mask\d{1,3}\.png|scene\.json)$")
_CHUNK = 1 << 20


def is_archive(path: str | Path) -> bool:
    """Whether ``path`` names a zip or tar file by its suffix."""
    name = Path(path).name.lower()
    return name.endswith(ARCHIVE_SUFFIXES)


def member_path(root: Path, name: str, archive: Path) -> Path:
    """Where archive member ``name`` goes under ``root``; ``PackError`` if it would escape it."""
    norm = name.replace("\\", "/")
    parts = PurePosixPath(norm).parts
    if not norm or norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in parts:
        raise PackError(f"archive member {name!r} would be written outside the target folder; refused", archive)
    target = (root / Path(*parts)).resolve()
    if not target.is_relative_to(root.resolve()):
        raise PackError(f"archive member {name!r} would be written outside the target folder; refused", archive)
    return target


def _archive_names(pack: HandlePack) -> list[Path]:
    """The files a pack archive holds: the manifest, the files it lists and the stored scene."""
    files = [pack.path / MANIFEST, *(pack.path / v for v in pack.manifest["files"].values())]
    scene = pack.path / "scene"
    if scene.is_dir():
        files += [f for f in sorted(scene.iterdir()) if f.is_file() and not f.is_symlink()
                  and SCENE_MEMBER.match(f"scene/{f.name}")]
    return files


def archive_pack(pack_dir: str | Path, out: str | Path, force: bool = False) -> Path:
    """Write a pack folder as a zip (only what the pack consists of); the pack is validated first.

    An existing ``out`` is replaced only with ``force``; the zip is written to a temporary sibling.
    """
    pack = load_pack(pack_dir)
    out = Path(out)
    check_output_files([out], force)

    def write(tmp: Path) -> None:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for f in _archive_names(pack):
                # safetensors hardly compress; storing them keeps writing fast.
                kind = zipfile.ZIP_STORED if f.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
                zf.write(f, f.relative_to(pack.path).as_posix(), compress_type=kind)

    return write_file(out, write)


@dataclass
class _Member:
    name: str
    is_dir: bool
    size: int
    packed: int  # compressed size (zip); the declared size for tar members
    open: Callable[[], IO[bytes]]


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> Iterator[_Member]:
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer recorded no Unix type
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise PackError(f"archive member {info.filename!r} is a link or special file; refused", archive)

        def opener(i: zipfile.ZipInfo = info) -> IO[bytes]:
            return zf.open(i)

        # not info.is_dir(): it indexes the name's last character, and a damaged directory can hold an empty name
        yield _Member(info.filename, info.filename.endswith("/"), info.file_size, info.compress_size, opener)


def _tar_members(tf: tarfile.TarFile, archive: Path) -> Iterator[_Member]:
    for info in tf:
        if not (info.isfile() or info.isdir()):
            raise PackError(f"archive member {info.name!r} is a link or special file; refused", archive)

        def opener(i: tarfile.TarInfo = info) -> IO[bytes]:
            f = tf.extractfile(i)
            if f is None:
                raise PackError(f"archive member {i.name!r} cannot be read", archive)
            return f

        yield _Member(info.name, info.isdir(), info.size, info.size, opener)


def _member_cap(name: str, max_bytes: int) -> int:
    suffix = PurePosixPath(name).suffix.lower()
    return MAX_JSON_BYTES if suffix == ".json" else MAX_IMAGE_BYTES if suffix in IMAGE_SUFFIXES else max_bytes


def _survey(members: Iterator[_Member], archive: Path, max_bytes: int, max_members: int,
            archive_bytes: int) -> list[_Member]:
    """Every member's name, type and declared size checked before a single byte is unpacked."""
    root = Path(tempfile.gettempdir()) / "bas-member-check"
    out, total, seen = [], 0, set()
    for count, m in enumerate(members, 1):
        if count > max_members:
            raise PackError(f"more than {max_members} members: not a handle pack", archive)
        member_path(root, m.name, archive)
        if m.is_dir:
            continue
        key = m.name.replace("\\", "/").removeprefix("./")
        if key in seen:
            raise PackError(f"archive member {m.name!r} appears twice; refused", archive)
        seen.add(key)
        if PurePosixPath(m.name).suffix.lower() not in PACK_SUFFIXES:
            raise PackError(f"archive member {m.name!r} is not a file a pack holds (allowed: "
                            f"{', '.join(sorted(PACK_SUFFIXES))}); refused", archive)
        total += m.size
        if total > max_bytes:
            raise PackError(f"unpacks to more than {max_bytes / 2**30:.1f} GiB: not a handle pack", archive)
        cap = _member_cap(m.name, max_bytes)
        if m.size > cap:
            raise PackError(f"archive member {m.name!r} is {m.size:,} bytes, more than such a file may be "
                            f"({cap:,}); refused", archive)
        if m.size > RATIO_FLOOR and m.size > MAX_RATIO * max(m.packed, 1):
            raise PackError(f"archive member {m.name!r} expands {m.size / max(m.packed, 1):.0f}-fold "
                            "(a compression bomb?); refused", archive)
        out.append(m)
    if total > RATIO_FLOOR and total > MAX_RATIO * max(archive_bytes, 1):
        raise PackError(f"expands {total / max(archive_bytes, 1):.0f}-fold (a compression bomb?); refused", archive)
    return out


def _listed(members: list[_Member], archive: Path) -> tuple[str, set[str]]:
    """The folder prefix of the pack inside the archive and the member names its manifest lists."""
    names = {m.name.replace("\\", "/").removeprefix("./"): m for m in members}
    tops = [n for n in names if n == MANIFEST or (n.count("/") == 1 and n.endswith("/" + MANIFEST))]
    if len(tops) != 1:
        raise PackError(f"no {MANIFEST} at the top of the archive (or in one top-level folder)"
                        if not tops else f"holds {len(tops)} {MANIFEST} files; one pack per archive", archive)
    prefix = tops[0][: -len(MANIFEST)]
    with names[tops[0]].open() as f:
        raw = f.read(MAX_MANIFEST_BYTES + 1)
    manifest = parse_manifest(raw, archive, Path(tempfile.gettempdir()))
    allowed = {prefix + MANIFEST, *(prefix + PurePosixPath(v).as_posix() for v in manifest["files"].values())}
    allowed |= {n for n in names if n.startswith(prefix) and SCENE_MEMBER.match(n[len(prefix):])}
    return prefix, allowed


def _copy(m: _Member, target: Path, archive: Path, written: int, max_bytes: int) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    got = 0
    with m.open() as src, open(target, "xb") as dst:
        while chunk := src.read(_CHUNK):
            got += len(chunk)
            written += len(chunk)
            if got > m.size or written > max_bytes:  # do not rely on the declared size alone
                raise PackError(f"archive member {m.name!r} holds more than it declares; refused", archive)
            dst.write(chunk)
    return written


def _extract(members: Iterator[_Member], root: Path, archive: Path, max_bytes: int, max_members: int) -> Path:
    """Unpack the members the manifest lists into ``root``; returns the pack folder inside it."""
    surveyed = _survey(members, archive, max_bytes, max_members, archive.stat().st_size)
    prefix, allowed = _listed(surveyed, archive)
    written = 0
    for m in surveyed:
        name = m.name.replace("\\", "/").removeprefix("./")
        if name not in allowed:
            raise PackError(f"archive member {m.name!r} is not listed in {MANIFEST}; refused", archive)
        written = _copy(m, member_path(root, m.name, archive), archive, written, max_bytes)
    return root / prefix if prefix else root


def extract_pack_archive(archive: str | Path, dest: str | Path, max_bytes: int = MAX_ARCHIVE_BYTES,
                         max_members: int = MAX_MEMBERS, force: bool = False) -> Path:
    """Unpack a pack archive (zip or tar, optionally gzipped) into the new folder ``dest``.

    Names, types and sizes of all members are checked before anything is unpacked; only the files
    the manifest lists (and the stored scene) are accepted. Everything goes into a temporary
    folder beside ``dest``, moved into place only once the pack loads; an existing pack at
    ``dest`` is replaced only with ``force``. Raises ``PackError`` naming the archive.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise PackError("archive not found", archive)

    def write(tmp: Path) -> Path:
        try:
            if zipfile.is_zipfile(archive):
                with zipfile.ZipFile(archive) as zf:
                    root = _extract(_zip_members(zf, archive), tmp, archive, max_bytes, max_members)
            elif tarfile.is_tarfile(archive):
                with tarfile.open(archive, "r:*") as tf:
                    root = _extract(_tar_members(tf, archive), tmp, archive, max_bytes, max_members)
            else:
                raise PackError("not a zip or tar archive", archive)
        except (zipfile.BadZipFile, zlib.error, lzma.LZMAError, tarfile.TarError, EOFError, ValueError,
                RuntimeError, NotImplementedError, KeyError) as e:
            raise PackError(f"the archive is damaged or truncated ({short_reason(e, 80)})", archive) from None
        except OSError as e:
            raise PackError(f"the archive cannot be read ({short_reason(e, 80)})", archive) from None
        try:
            load_pack(root)
        except PackError as e:
            rel = e.path.relative_to(root).as_posix() if e.path and e.path.is_relative_to(root) else "."
            where = "the pack" if rel == "." else rel
            raise PackError(f"{where} inside the archive: {e.reason}", archive) from None
        return root

    write_folder(dest, write, force, pack_entries, "handle pack")
    return dest


def import_pack_folder(src: str | Path, dest: str | Path, force: bool = False) -> Path:
    """Copy a pack folder (validated first) to ``dest``: the files the pack consists of, no links."""
    src, dest = Path(src), Path(dest)
    pack = load_pack(src)
    if dest.resolve() == src.resolve():
        raise OutputError("is the pack being imported; choose another folder", dest)

    def write(tmp: Path) -> None:
        for f in _archive_names(pack):
            if f.is_symlink():
                raise PackError("the pack holds a symbolic link; refused", f)
            rel = f.relative_to(src)
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, tmp / rel)

    write_folder(dest, write, force, pack_entries, "handle pack")
    return dest
