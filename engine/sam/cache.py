"""Image-embedding cache: a small in-memory LRU in front of ``.npy`` files keyed by pixels + model id."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np


def image_key(image: np.ndarray) -> str:
    """SHA-256 of the image's shape and pixel bytes (two photos with the same pixels share an embedding)."""
    h = hashlib.sha256()
    h.update(repr((image.shape, str(image.dtype))).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


class EmbeddingCache:
    """Embeddings for one model: ``memory_items`` newest in RAM, up to ``disk_items`` files on disk.

    ``folder`` None disables the disk level. A file that cannot be read or has the wrong shape is deleted
    and treated as a miss, so a damaged cache costs one re-encode, never an error.
    """

    def __init__(self, folder: Path | None, shape: tuple[int, ...], memory_items: int = 4,
                 disk_items: int = 64) -> None:
        self.folder = Path(folder) if folder is not None else None
        self.shape = tuple(shape)
        self.memory_items = max(0, memory_items)
        self.disk_items = max(0, disk_items)
        self._memory: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def _file(self, key: str) -> Path:
        assert self.folder is not None
        return self.folder / f"{key}.npy"

    def get(self, key: str) -> np.ndarray | None:
        """The cached embedding for ``key`` or None."""
        with self._lock:
            if key in self._memory:
                self._memory.move_to_end(key)
                return self._memory[key]
        if self.folder is None:
            return None
        path = self._file(key)
        if not path.is_file():
            return None
        try:
            emb = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError):
            emb = None
        if emb is None or emb.shape != self.shape or emb.dtype != np.float32:
            path.unlink(missing_ok=True)
            return None
        os.utime(path)  # recency for pruning
        self._remember(key, emb)
        return emb

    def put(self, key: str, embedding: np.ndarray) -> None:
        """Store ``embedding`` in memory and (atomically) on disk, then prune the oldest files."""
        embedding = np.ascontiguousarray(embedding, np.float32)
        if embedding.shape != self.shape:
            raise ValueError(f"embedding shape {embedding.shape} != {self.shape}")
        self._remember(key, embedding)
        if self.folder is None or self.disk_items == 0:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(suffix=".npy.tmp", dir=self.folder)
        try:
            with os.fdopen(fd, "wb") as f:
                np.save(f, embedding, allow_pickle=False)
            os.replace(tmp, self._file(key))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
        self._prune()

    def _remember(self, key: str, embedding: np.ndarray) -> None:
        if self.memory_items == 0:
            return
        with self._lock:
            self._memory[key] = embedding
            self._memory.move_to_end(key)
            while len(self._memory) > self.memory_items:
                self._memory.popitem(last=False)

    def _prune(self) -> None:
        assert self.folder is not None
        files = sorted(self.folder.glob("*.npy"), key=lambda p: p.stat().st_mtime_ns)
        for old in files[: max(0, len(files) - self.disk_items)]:
            old.unlink(missing_ok=True)
