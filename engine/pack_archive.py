"""Handle packs as one file (zip or tar) to share, and their safe import.

An archive is a pack folder's files (``pack.json`` at the top, or inside one top-level folder).
Importing never trusts the archive: every member name is checked before anything is written (no
absolute paths, drive letters or ``..``; the resolved path must stay inside the target folder),
links, devices and other special members are refused, only the file types a pack holds
(JSON, safetensors, PNG/JPEG, text) are accepted, and the member count and the total size are
capped (declared sizes first, then the bytes actually written). The result is then opened with
:func:`engine.pack.load_pack`, which reads JSON and safetensors only.
"""

from __future__ import annotations

import os
import shutil
import stat
import tarfile
import tempfile
import zipfile
from pathlib import Path, PurePosixPath
from typing import IO, Callable, Iterator

from engine.errors import PackError
from engine.pack import MANIFEST, load_pack

PACK_SUFFIXES = frozenset({".json", ".safetensors", ".png", ".jpg", ".jpeg", ".txt", ".md"})
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
MAX_MEMBERS = 512
MAX_ARCHIVE_BYTES = 16 << 30  # an SD 2.1 full fine-tune is ~4.7 GB; anything far beyond is not a pack
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


def archive_pack(pack_dir: str | Path, out: str | Path) -> Path:
    """Write a pack folder as a zip (``checkpoints/`` left out); the pack is validated first."""
    pack = load_pack(pack_dir)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for f in sorted(pack.path.rglob("*")):
            rel = f.relative_to(pack.path)
            if rel.parts[0] == "checkpoints" or not f.is_file() or f.is_symlink():
                continue
            if f.suffix.lower() not in PACK_SUFFIXES:
                continue
            # safetensors hardly compress; storing them keeps writing fast.
            kind = zipfile.ZIP_STORED if f.suffix == ".safetensors" else zipfile.ZIP_DEFLATED
            zf.write(f, rel.as_posix(), compress_type=kind)
    os.replace(tmp, out)
    return out


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> Iterator[tuple[str, bool, int, Callable[[], IO[bytes]]]]:
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)  # 0 when the writer recorded no Unix type
        if kind and kind not in (stat.S_IFREG, stat.S_IFDIR):
            raise PackError(f"archive member {info.filename!r} is a link or special file; refused", archive)
        yield info.filename, info.is_dir(), info.file_size, (lambda i=info: zf.open(i))


def _tar_members(tf: tarfile.TarFile, archive: Path) -> Iterator[tuple[str, bool, int, Callable[[], IO[bytes]]]]:
    for info in tf:
        if not (info.isfile() or info.isdir()):
            raise PackError(f"archive member {info.name!r} is a link or special file; refused", archive)

        def opener(i: tarfile.TarInfo = info) -> IO[bytes]:
            f = tf.extractfile(i)
            if f is None:
                raise PackError(f"archive member {i.name!r} cannot be read", archive)
            return f

        yield info.name, info.isdir(), info.size, opener


def _extract(members: Iterator[tuple[str, bool, int, Callable[[], IO[bytes]]]], root: Path, archive: Path,
             max_bytes: int, max_members: int) -> None:
    written = 0
    for count, (name, is_dir, declared, opener) in enumerate(members, 1):
        if count > max_members:
            raise PackError(f"more than {max_members} members: not a handle pack", archive)
        target = member_path(root, name, archive)
        if is_dir:
            target.mkdir(parents=True, exist_ok=True)
            continue
        if target.suffix.lower() not in PACK_SUFFIXES:
            raise PackError(f"archive member {name!r} is not a file a pack holds (allowed: "
                            f"{', '.join(sorted(PACK_SUFFIXES))}); refused", archive)
        if written + declared > max_bytes:
            raise PackError(f"unpacks to more than {max_bytes / 2**30:.1f} GiB: not a handle pack", archive)
        target.parent.mkdir(parents=True, exist_ok=True)
        with opener() as src, open(target, "xb") as dst:
            while chunk := src.read(_CHUNK):
                written += len(chunk)
                if written > max_bytes:  # do not rely on the declared size alone
                    raise PackError(f"unpacks to more than {max_bytes / 2**30:.1f} GiB: not a handle pack", archive)
                dst.write(chunk)


def extract_pack_archive(archive: str | Path, dest: str | Path, max_bytes: int = MAX_ARCHIVE_BYTES,
                         max_members: int = MAX_MEMBERS) -> Path:
    """Unpack a pack archive (zip or tar, optionally gzipped) into the new folder ``dest``.

    Everything is unpacked into a temporary folder beside ``dest`` and moved into place only once
    the pack loads; on any error nothing is left behind. Raises ``PackError`` naming the archive.
    """
    archive, dest = Path(archive), Path(dest)
    if not archive.is_file():
        raise PackError("archive not found", archive)
    if dest.exists() and any(dest.iterdir()):
        raise PackError("the target folder exists and is not empty", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=dest.parent))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _extract(_zip_members(zf, archive), tmp, archive, max_bytes, max_members)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive, "r:*") as tf:
                _extract(_tar_members(tf, archive), tmp, archive, max_bytes, max_members)
        else:
            raise PackError("not a zip or tar archive", archive)
        root = tmp
        if not (tmp / MANIFEST).is_file():
            subdirs = [p for p in tmp.iterdir()]
            if len(subdirs) == 1 and (subdirs[0] / MANIFEST).is_file():
                root = subdirs[0]
            else:
                raise PackError(f"no {MANIFEST} at the top of the archive (or in one top-level folder)", archive)
        load_pack(root)
        if dest.exists():
            dest.rmdir()
        os.replace(root, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def import_pack_folder(src: str | Path, dest: str | Path) -> Path:
    """Copy a pack folder (validated first) to ``dest``: plain files of pack types only, no links."""
    src, dest = Path(src), Path(dest)
    load_pack(src)
    if dest.exists() and any(dest.iterdir()):
        raise PackError("the target folder exists and is not empty", dest)
    for f in sorted(src.rglob("*")):
        rel = f.relative_to(src)
        if rel.parts[0] == "checkpoints" or f.is_dir():
            continue
        if f.is_symlink():
            raise PackError("the pack holds a symbolic link; refused", f)
        if f.suffix.lower() in PACK_SUFFIXES:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, dest / rel)
    return dest
