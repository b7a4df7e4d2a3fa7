"""Where SAM weights live, resumable verified downloads, and registering a file the user picked.

Layout under the cache folder (``$BAS_CACHE_DIR`` or the platform cache, see ``default_cache_dir``)::

    sam/weights/sam_vit_b_01ec64.pth      downloaded weights (``.part`` while downloading)
    sam/onnx/<model id>.decoder.onnx       decoder exported from those weights
    sam/embeddings/<model id>/<sha>.npy    image embeddings
    sam/models.json                        picked files and known SHA-256 of weight files
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import re
import threading
import urllib.error
import urllib.request
from pathlib import Path

from engine.paths import cache_dir
from engine.sam.errors import Cancelled, ChecksumError, DownloadError, SamError, SamWeightsMissing
from engine.sam.progress import CancelFlag, ProgressCallback, ProgressEvent, emit, is_cancelled
from engine.sam.specs import ModelSpec, check_state_dict, read_state_dict, sha256_file

_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """The app's cache folder (``engine.paths.cache_dir``: ``$BAS_CACHE_DIR`` or the platform cache)."""
    return cache_dir()


class ModelManager:
    """Finds, downloads, verifies and registers SAM weight files under one cache folder.

    Thread-safe within one process: a lock guards the registry and downloads of one spec are serialised.
    """

    def __init__(self, cache_dir: str | Path | None = None) -> None:
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.root = self.cache_dir / "sam"
        self.weights_dir = self.root / "weights"
        self.onnx_dir = self.root / "onnx"
        self.embeddings_dir = self.root / "embeddings"
        self._registry_path = self.root / "models.json"
        self._lock = threading.Lock()
        self._download_locks: dict[str, threading.Lock] = {}

    # ----------------------------------------------------------------- registry
    def _read_registry(self) -> dict:
        try:
            data = json.loads(self._registry_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"picked": {}, "hashes": {}}
        except (OSError, ValueError):
            # A damaged registry only loses remembered hashes/picks; it is rebuilt, never fatal.
            return {"picked": {}, "hashes": {}}
        data.setdefault("picked", {})
        data.setdefault("hashes", {})
        return data

    def _write_registry(self, data: dict) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self._registry_path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        os.replace(tmp, self._registry_path)

    @staticmethod
    def _stat_key(path: Path) -> str:
        st = path.stat()
        return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"

    def _remember_hash(self, path: Path, digest: str) -> None:
        with self._lock:
            data = self._read_registry()
            data["hashes"][self._stat_key(path)] = digest
            self._write_registry(data)

    def file_sha256(self, path: str | Path, progress_cb: ProgressCallback | None = None) -> str:
        """SHA-256 of ``path``, remembered by (path, size, mtime) so a 2.5 GB file is hashed once."""
        path = Path(path)
        if not path.is_file():
            raise SamWeightsMissing("weights file not found", path)
        key = self._stat_key(path)
        with self._lock:
            known = self._read_registry()["hashes"].get(key)
        if known:
            return known
        digest = sha256_file(path, None if progress_cb is None else
                             lambda d, t: progress_cb(ProgressEvent("verify", d, t, "bytes", path.name)))
        self._remember_hash(path, digest)
        return digest

    # ----------------------------------------------------------------- lookup
    def default_path(self, spec: ModelSpec) -> Path:
        """Where ``download(spec)`` puts the file."""
        if not spec.filename:
            raise SamError(f"SAM model {spec.name!r} has no weights file to download")
        return self.weights_dir / spec.filename

    def weights_path(self, spec: ModelSpec) -> Path | None:
        """The weights file to use for ``spec``: a picked file if still there, else the downloaded one, else None."""
        with self._lock:
            picked = self._read_registry()["picked"].get(spec.name)
        if picked and Path(picked).is_file():
            return Path(picked)
        if spec.filename and (self.weights_dir / spec.filename).is_file():
            return self.weights_dir / spec.filename
        return None

    def is_available(self, spec: ModelSpec) -> bool:
        """True when ``weights_path(spec)`` finds a file."""
        return self.weights_path(spec) is not None

    # ----------------------------------------------------------------- pick from disk
    def register(self, spec: ModelSpec, path: str | Path, progress_cb: ProgressCallback | None = None,
                 allow_unverified: bool = False) -> Path:
        """Use a weights file the user already has (no copy) for ``spec``.

        The file must load with ``weights_only=True`` and have exactly ``spec``'s keys and shapes. If its
        SHA-256 differs from the published one, SamError unless ``allow_unverified`` (e.g. fine-tuned SAM).
        """
        path = Path(path).expanduser().resolve()
        digest = self.file_sha256(path, progress_cb)
        if spec.sha256 and digest != spec.sha256 and not allow_unverified:
            raise ChecksumError(
                f"SHA-256 {digest[:12]}… is not the published {spec.name} checksum {spec.sha256[:12]}…; "
                "pick the official file or allow unverified weights", path)
        check_state_dict(read_state_dict(path), spec, path)
        with self._lock:
            data = self._read_registry()
            data["picked"][spec.name] = str(path)
            self._write_registry(data)
        return path

    # ----------------------------------------------------------------- download
    def download(self, spec: ModelSpec, progress_cb: ProgressCallback | None = None,
                 cancel_flag: CancelFlag = None, timeout_s: float = 30.0) -> Path:
        """Download ``spec``'s weights into the cache, resuming a previous ``.part`` with an HTTP Range request.

        Reports ``ProgressEvent("download", bytes_done, bytes_total, "bytes")``. The SHA-256 is computed while
        the bytes arrive (a resumed part is hashed first), then compared with ``spec.sha256``.

        Raises ``Cancelled`` (``.part`` kept: calling again resumes), ``DownloadError`` (network/HTTP;
        ``.part`` kept) or ``ChecksumError`` (``.part`` deleted: the bytes are wrong, resuming cannot help).
        """
        if not spec.downloadable:
            raise SamError(f"SAM model {spec.name!r} has no download URL/checksum")
        with self._lock:
            lock = self._download_locks.setdefault(spec.name, threading.Lock())
        with lock:  # a second caller waits, then finds the verified file
            return self._download_locked(spec, progress_cb, cancel_flag, timeout_s)

    def _download_locked(self, spec: ModelSpec, progress_cb: ProgressCallback | None, cancel_flag: CancelFlag,
                         timeout_s: float) -> Path:
        dest = self.default_path(spec)
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_file():
            if self.file_sha256(dest, progress_cb) == spec.sha256:
                emit(progress_cb, ProgressEvent("download", dest.stat().st_size, dest.stat().st_size, "bytes",
                                                "already downloaded"))
                return dest
            dest.unlink()  # our own cache file and wrong: fetch it again
        part = dest.with_name(dest.name + ".part")
        for attempt in range(2):
            try:
                return self._download_once(spec, dest, part, progress_cb, cancel_flag, timeout_s)
            except _RangeNotSatisfiable:
                # The part is already complete, or longer than the file: verify it, else start over.
                if attempt == 0 and self._finish_if_valid(spec, part, dest):
                    return dest
                part.unlink(missing_ok=True)
        raise DownloadError(f"server keeps refusing the byte range of {spec.url}", part)

    def _finish_if_valid(self, spec: ModelSpec, part: Path, dest: Path) -> bool:
        if part.is_file() and sha256_file(part) == spec.sha256:
            os.replace(part, dest)
            self._remember_hash(dest, spec.sha256)
            return True
        return False

    def _download_once(self, spec: ModelSpec, dest: Path, part: Path, progress_cb: ProgressCallback | None,
                       cancel_flag: CancelFlag, timeout_s: float) -> Path:
        hasher = hashlib.sha256()
        offset = part.stat().st_size if part.is_file() else 0
        if offset:  # hash what is already there so the final digest covers the whole file
            hashed = 0
            with open(part, "rb") as f:
                while chunk := f.read(_CHUNK):
                    hasher.update(chunk)
                    hashed += len(chunk)
                    emit(progress_cb, ProgressEvent("verify", hashed, offset, "bytes", "partial download"))
        headers = {"User-Agent": "bas-desktop"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        assert spec.url is not None  # download() only fetches downloadable specs
        request = urllib.request.Request(spec.url, headers=headers)
        if is_cancelled(cancel_flag):
            raise Cancelled(f"download of {spec.name} cancelled", part)
        try:
            response = urllib.request.urlopen(request, timeout=timeout_s)  # noqa: S310 (https URL from our spec)
        except urllib.error.HTTPError as exc:
            if exc.code == 416 and offset:
                raise _RangeNotSatisfiable() from exc
            raise DownloadError(f"HTTP {exc.code} {exc.reason} from {spec.url}", part) from exc
        except OSError as exc:
            raise DownloadError(f"cannot reach {spec.url}: {exc}", part) from exc
        with response:
            status = response.status
            length = response.headers.get("Content-Length")
            length = int(length) if length and length.isdigit() else None
            if status == 206:
                m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", response.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    raise DownloadError(f"bad Content-Range from {spec.url}", part)
                total = int(m.group(3)) if m.group(3) != "*" else (offset + length if length else 0)
                mode = "ab"
            elif status == 200:
                # The server ignored the Range header: the body is the whole file, start the part over.
                offset, hasher, mode = 0, hashlib.sha256(), "wb"
                total = length or spec.size_bytes or 0
            else:
                raise DownloadError(f"unexpected HTTP {status} from {spec.url}", part)
            done = offset
            emit(progress_cb, ProgressEvent("download", done, total, "bytes", spec.name))
            with open(part, mode) as out:
                while True:
                    if is_cancelled(cancel_flag):
                        raise Cancelled(f"download of {spec.name} cancelled at {done} bytes; "
                                        "start it again to resume", part)
                    try:
                        chunk = response.read(_CHUNK)
                    except (OSError, http.client.HTTPException) as exc:
                        raise DownloadError(f"download of {spec.url} interrupted at {done} bytes ({exc!r}); "
                                            "start it again to resume", part) from exc
                    if not chunk:
                        break
                    out.write(chunk)
                    hasher.update(chunk)
                    done += len(chunk)
                    emit(progress_cb, ProgressEvent("download", done, total, "bytes", spec.name))
        if total and done != total:
            raise DownloadError(f"download of {spec.url} stopped at {done} of {total} bytes; "
                                "start it again to resume", part)
        digest = hasher.hexdigest()
        if digest != spec.sha256:
            part.unlink(missing_ok=True)
            raise ChecksumError(f"downloaded {spec.name} has SHA-256 {digest} but {spec.sha256} was expected; "
                                "the partial file was deleted", dest)
        os.replace(part, dest)
        self._remember_hash(dest, digest)
        return dest


class _RangeNotSatisfiable(Exception):
    """HTTP 416 on a resume request."""
