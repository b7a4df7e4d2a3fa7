"""Projects: one ``.basproj`` file (a zip) holding the photo, the layers and settings; autosave files.

Layout inside the zip (``FORMAT_VERSION`` 2)::

    project.json        format name + version, layers (names, colours, visibility), settings
    photo/original.EXT  the photo exactly as opened (never re-encoded; EXIF kept)
    photo/versions/N.png  accepted local edits at the working resolution, oldest first (version 2);
                        the last one is the photo the project shows and trains on
    masks/N.png         8-bit masks at the working resolution, bottom layer first

Later versions add ``pack/`` and ``gallery/``; readers ignore entries they do not know, and refuse a
newer major version with a message instead of guessing. Writes go to a temporary file that replaces
the target only when complete, so a crash mid-save never destroys the previous file.

Qt-free: the autosave timer lives in ``autosave.py``; this module is plain file I/O.
"""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
import zlib
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from bas_desktop.model.document import Document, Layer, PhotoVersion
from bas_desktop.model.session_lock import is_locked
from engine.errors import SceneError, short_reason
from engine.scene import MAX_HANDLES, load_image

FORMAT_NAME = "bas-desktop-project"
FORMAT_VERSION = 2
MAX_PHOTO_VERSIONS = 200  # each is a full photo: a cap on what a damaged file can make us decode
SUFFIX = ".basproj"
MAX_WORK_SIDE = 4096
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")
# Caps checked against the zip's declared sizes before a member is read (a small file can claim,
# or inflate to, gigabytes).
MAX_META_BYTES = 4 << 20
MAX_PHOTO_BYTES = 512 << 20
MAX_MASK_BYTES = 64 << 20
MAX_RATIO = 200
RATIO_FLOOR = 1 << 20


class ProjectError(SceneError):
    """A project file cannot be read or written; the message names the file and the problem."""


# ----- photos ----------------------------------------------------------------------------------------
def work_image(original: np.ndarray, max_side: int = MAX_WORK_SIDE) -> np.ndarray:
    """The photo at working resolution: unchanged, or downscaled so its longer side is ``max_side``."""
    h, w = original.shape[:2]
    if max(h, w) <= max_side:
        return original
    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(original).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)


def open_photo(path: str | Path, max_side: int = MAX_WORK_SIDE) -> Document:
    """A new document for a photo file (EXIF orientation honoured, huge photos downscaled for work).

    The original file's bytes are kept on the document and saved into the project untouched.
    Raises ``SceneError`` naming the file when it is not a readable photo.
    """
    path = Path(path)
    if path.suffix.lower() not in PHOTO_SUFFIXES:
        raise SceneError(f"unsupported file type {path.suffix or '(none)'}; open a JPEG, PNG or WebP photo", path)
    original = load_image(path)
    doc = Document(work_image(original, max_side), source=path, original_size=(original.shape[1], original.shape[0]))
    doc.original_bytes = path.read_bytes()
    doc.original_name = "original" + path.suffix.lower()
    return doc


# ----- snapshot (what a save writes; built on the UI thread, written anywhere) ----------------------
@dataclass
class ProjectSnapshot:
    """An immutable copy of everything a project file holds."""

    photo_bytes: bytes
    photo_name: str
    original_size: tuple[int, int]
    work_size: tuple[int, int]
    layers: list[dict]
    masks: list[np.ndarray]
    active: int
    show_background: bool
    settings: dict = field(default_factory=dict)
    source: str | None = None
    versions: list[tuple[str, bytes]] = field(default_factory=list)  # (label, PNG) of each photo version


def _png(version: PhotoVersion) -> bytes:
    if version.png is None:
        buf = io.BytesIO()
        Image.fromarray(version.image).save(buf, format="PNG", compress_level=1)
        version.png = buf.getvalue()
    return version.png


def keep_original(doc: Document) -> tuple[bytes, str]:
    """The photo file the project stores as the original; a document built from an array keeps its
    working image losslessly (call before the photo is first replaced by an edit)."""
    if doc.original_bytes is None or doc.original_name is None:
        buf = io.BytesIO()
        Image.fromarray(doc.image).save(buf, format="PNG", compress_level=1)
        doc.original_bytes, doc.original_name = buf.getvalue(), "original.png"
    return doc.original_bytes, doc.original_name


def snapshot(doc: Document, settings: dict | None = None) -> ProjectSnapshot:
    """Copy the document's state so it can be written from a worker thread."""
    photo, name = keep_original(doc)
    return ProjectSnapshot(
        photo_bytes=photo, photo_name=name, original_size=tuple(doc.original_size),
        work_size=(doc.width, doc.height),
        layers=[{"name": layer.name, "color": list(layer.color), "visible": layer.visible} for layer in doc.layers],
        masks=[layer.mask.copy() for layer in doc.layers], active=doc.active,
        show_background=doc.show_background, settings=dict(settings or {}),
        source=str(doc.source) if doc.source else None,
        versions=[(v.label, _png(v)) for v in doc.photo_versions])


def write_project(snap: ProjectSnapshot, path: str | Path, compress_level: int = 6) -> Path:
    """Write a snapshot as a ``.basproj`` file, atomically (temp file + replace)."""
    path = Path(path)
    versions = [{"file": f"photo/versions/{i + 1}.png", "label": label} for i, (label, _) in enumerate(snap.versions)]
    meta = {
        # A project without photo versions stays version 1 so older apps still open it; one with
        # versions is 2, which older apps refuse rather than silently showing the unedited photo.
        "format": FORMAT_NAME, "version": FORMAT_VERSION if versions else 1,
        "saved": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "photo": {"file": f"photo/{snap.photo_name}", "original_size": list(snap.original_size),
                  "work_size": list(snap.work_size), **({"versions": versions} if versions else {})},
        "layers": [{**layer, "mask": f"masks/{i}.png"} for i, layer in enumerate(snap.layers)],
        "active": snap.active, "show_background": snap.show_background, "settings": snap.settings,
        "source": snap.source,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".saving")
    try:
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as z:
            z.writestr("project.json", json.dumps(meta, indent=2))
            z.writestr(f"photo/{snap.photo_name}", snap.photo_bytes)
            for v, (_, data) in zip(versions, snap.versions):
                z.writestr(v["file"], data)
            for i, mask in enumerate(snap.masks):
                buf = io.BytesIO()
                Image.fromarray(mask, mode="L").save(buf, format="PNG", compress_level=compress_level)
                z.writestr(f"masks/{i}.png", buf.getvalue())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise ProjectError(f"cannot save the project ({e.strerror or e})", path) from None
    return path


def save_project(doc: Document, path: str | Path, settings: dict | None = None) -> Path:
    """Save a document as a project file (see :func:`write_project`)."""
    return write_project(snapshot(doc, settings), path)


def read_project(path: str | Path) -> tuple[Document, dict]:
    """Open a project file: the document and the saved settings.

    Raises ``ProjectError`` naming the file for: not a project, damaged or truncated zip, newer
    format version, missing or malformed sections, missing or mis-sized masks. Nothing else
    escapes: a damaged file never crashes the app.
    """
    path = Path(path)
    if not path.is_file():
        raise ProjectError("file not found", path)
    try:
        z = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        raise ProjectError("not a Break-A-Scene project (not a zip file, or damaged)", path) from None
    with z:
        meta = _read_meta(z, path)
        photo_name, layers_meta = meta["photo"]["file"], meta["layers"]
        photo_bytes = _read_member(z, photo_name, path, MAX_PHOTO_BYTES)
        mask_bytes = [_read_member(z, layer["mask"], path, MAX_MASK_BYTES) for layer in layers_meta]
        version_bytes = [(str(v.get("label", "Local edit")), _read_member(z, v["file"], path, MAX_PHOTO_BYTES))
                         for v in meta["photo"].get("versions", [])]
    original = _decode_photo(photo_bytes, Path(photo_name).suffix, path)
    w, h = meta["photo"].get("work_size", [original.shape[1], original.shape[0]])
    image = work_image(original, max(w, h)) if (original.shape[1], original.shape[0]) != (w, h) else original
    if (image.shape[1], image.shape[0]) != (w, h):
        raise ProjectError(f"the photo is {image.shape[1]}x{image.shape[0]} after loading but the project "
                           f"expects {w}x{h}", path)
    layers = []
    for i, (lm, data) in enumerate(zip(layers_meta, mask_bytes)):
        try:
            with Image.open(io.BytesIO(data)) as im:
                if im.size != (w, h):  # checked before decoding: a mask's pixels can be huge
                    raise ProjectError(f"mask {i} ({lm.get('name')}) is {im.size[0]}x{im.size[1]}, photo {w}x{h}", path)
                mask = np.asarray(im.convert("L"), dtype=np.uint8).copy()
        except ProjectError:
            raise
        except Exception as e:  # noqa: BLE001 - PIL raises many types for damaged data
            raise ProjectError(f"mask {i} ({lm.get('name')}) is damaged ({short_reason(e, 80)})", path) from None
        layers.append(Layer(name=str(lm.get("name", f"concept {i + 1}")), color=tuple(lm.get("color", (230, 159, 0))),
                            mask=mask, visible=bool(lm.get("visible", True))))
    original_size = meta["photo"].get("original_size", (original.shape[1], original.shape[0]))
    doc = Document(np.ascontiguousarray(image), layers, source=Path(meta["source"]) if meta.get("source") else None,
                   original_size=(int(original_size[0]), int(original_size[1])))
    doc.original_bytes = photo_bytes
    doc.original_name = Path(photo_name).name
    for i, (label, data) in enumerate(version_bytes):
        try:
            version = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8).copy()
        except Exception as e:
            raise ProjectError(f"photo version {i + 1} is damaged ({e})", path) from None
        if version.shape != image.shape:
            raise ProjectError(f"photo version {i + 1} is {version.shape[1]}x{version.shape[0]}, photo {w}x{h}", path)
        doc.photo_versions.append(PhotoVersion(version, label, data))
    if doc.photo_versions:
        doc.image = doc.photo_versions[-1].image
    doc.active = max(-1, min(int(meta.get("active", 0)), len(layers) - 1))
    doc.show_background = bool(meta.get("show_background", False))
    return doc, dict(meta.get("settings") or {})


def _read_member(z: zipfile.ZipFile, name: str, path: Path, cap: int) -> bytes:
    """A member's bytes, refused before reading when it is (or inflates to) more than ``cap``."""
    try:
        info = z.getinfo(name)
    except KeyError:
        raise ProjectError(f"the project is incomplete ({name!r} is missing)", path) from None
    if info.file_size > cap:
        raise ProjectError(f"{name} is {info.file_size:,} bytes, more than such a part may be ({cap:,})", path)
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * max(info.compress_size, 1):
        raise ProjectError(f"{name} expands {info.file_size / max(info.compress_size, 1):.0f}-fold "
                           "(a compression bomb?); refused", path)
    try:
        with z.open(info) as f:
            data = f.read(cap + 1)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, zlib.error, RuntimeError,
            NotImplementedError) as e:
        raise ProjectError(f"the project is damaged or truncated ({name}: {short_reason(e, 80)})", path) from None
    if len(data) > cap:
        raise ProjectError(f"{name} holds more than it declares; refused", path)
    return data


def _is_size(v: object) -> bool:
    return isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, int) and x > 0 for x in v)


def _read_meta(z: zipfile.ZipFile, path: Path) -> dict:
    """project.json, checked section by section (types included) before anything uses it."""
    if "project.json" not in z.namelist():
        raise ProjectError("not a Break-A-Scene project (project.json is missing)", path)
    raw = _read_member(z, "project.json", path, MAX_META_BYTES)
    try:
        meta = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise ProjectError(f"project.json is damaged ({short_reason(e, 80)})", path) from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise ProjectError("not a Break-A-Scene project (unknown format)", path)
    version = meta.get("version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ProjectError(f"made by a newer version of the app (format {version}; this one reads "
                           f"up to {FORMAT_VERSION}); update Break-A-Scene Desktop", path)
    for key in ("photo", "layers"):
        if key not in meta:
            raise ProjectError(f"the project is incomplete (project.json has no {key!r} section)", path)

    def bad(what: str) -> ProjectError:
        return ProjectError(f"project.json is malformed ({what})", path)

    photo = meta["photo"]
    if not isinstance(photo, dict) or not isinstance(photo.get("file"), str):
        raise bad("'photo' must name the photo file")
    for key in ("work_size", "original_size"):
        if key in photo and not _is_size(photo[key]):
            raise bad(f"photo {key} must be [width, height]")
    versions = photo.get("versions", [])
    if not isinstance(versions, list) or not all(isinstance(v, dict) and isinstance(v.get("file"), str)
                                                 for v in versions):
        raise bad("photo 'versions' must be a list of objects naming their files")
    if len(versions) > MAX_PHOTO_VERSIONS:
        raise bad(f"{len(versions)} photo versions, but at most {MAX_PHOTO_VERSIONS} are kept")
    layers = meta["layers"]
    if not isinstance(layers, list):
        raise bad("'layers' must be a list")
    if len(layers) > MAX_HANDLES:
        raise bad(f"{len(layers)} layers, but at most {MAX_HANDLES} concepts are supported")
    for i, layer in enumerate(layers):
        if not isinstance(layer, dict) or not isinstance(layer.get("mask"), str):
            raise bad(f"layer {i} must be an object naming its mask")
        if not isinstance(layer.get("name", ""), str) or len(layer.get("name", "")) > 200:
            raise bad(f"layer {i} name must be text")
        if not isinstance(layer.get("visible", True), bool):
            raise bad(f"layer {i} 'visible' must be true or false")
        color = layer.get("color", (0, 0, 0))
        if not (isinstance(color, (list, tuple)) and len(color) == 3
                and all(isinstance(c, int) and 0 <= c <= 255 for c in color)):
            raise bad(f"layer {i} colour must be three numbers 0-255")
    if not isinstance(meta.get("active", 0), int) or isinstance(meta.get("active", 0), bool):
        raise bad("'active' must be a layer number")
    if not isinstance(meta.get("settings") or {}, dict):
        raise bad("'settings' must be an object")
    if meta.get("source") is not None and not isinstance(meta["source"], str):
        raise bad("'source' must be a path")
    return meta


def _decode_photo(data: bytes, suffix: str, project: Path) -> np.ndarray:
    # Decoded through the same engine function as an opened photo, so EXIF and colour modes match.
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d) / f"photo{suffix}"
        tmp.write_bytes(data)
        try:
            return load_image(tmp)
        except SceneError as e:
            raise ProjectError(f"the photo inside the project is unusable ({e})", project) from None


# ----- autosave files ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class AutosaveInfo:
    """One autosave on disk: the project snapshot and who wrote it."""

    path: Path
    session: str
    pid: int
    project: str | None
    photo: str | None
    saved_at: float

    @property
    def info_path(self) -> Path:
        """The small JSON file describing the autosave."""
        return self.path.with_suffix(".json")

    def describe(self) -> str:
        """One line for the recovery dialog."""
        what = Path(self.project).name if self.project else (Path(self.photo).name if self.photo else "untitled")
        return f"{what}, autosaved {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(self.saved_at))}"


def write_autosave(snap: ProjectSnapshot, folder: Path, session: str, project: str | None) -> AutosaveInfo:
    """Write ``snap`` as the autosave of ``session`` (fast compression; replaces the previous one)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = write_project(snap, folder / f"{session}{SUFFIX}", compress_level=1)
    info = AutosaveInfo(path, session, os.getpid(), project, snap.source, time.time())
    tmp = info.info_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"session": session, "pid": info.pid, "project": project, "photo": snap.source,
                               "saved_at": info.saved_at}), encoding="utf-8")
    os.replace(tmp, info.info_path)
    return info


def remove_autosave(folder: Path, session: str) -> None:
    """Delete a session's autosave (after a save, a discard or a clean exit); a dead session's lock too."""
    for suffix in (SUFFIX, ".json"):
        (folder / f"{session}{suffix}").unlink(missing_ok=True)
    lock = folder / f"{session}.lock"
    if lock.exists() and not is_locked(lock):
        lock.unlink(missing_ok=True)


def _pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    if os.name == "nt":
        return False  # cannot probe cheaply; an autosave left behind on Windows is offered
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def find_orphans(folder: Path, live_sessions: AbstractSet[str] = frozenset()) -> list[AutosaveInfo]:
    """Autosaves whose writer is gone (crashed): not a live session of this process and its session
    lock (``SESSION.lock``) not held. Autosaves from versions without the lock fall back to the PID."""
    out: list[AutosaveInfo] = []
    if not folder.is_dir():
        return out
    for info_path in folder.glob("*.json"):
        try:
            data = json.loads(info_path.read_text(encoding="utf-8"))
            info = AutosaveInfo(info_path.with_suffix(SUFFIX), str(data["session"]), int(data["pid"]),
                                data.get("project"), data.get("photo"), float(data["saved_at"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if not info.path.is_file() or info.session in live_sessions:
            continue
        lock = folder / f"{info.session}.lock"
        if lock.exists():
            if is_locked(lock):
                continue  # another running instance owns it
        elif info.pid != os.getpid() and _pid_alive(info.pid):
            continue
        out.append(info)
    return sorted(out, key=lambda i: -i.saved_at)
