"""The project's gallery on disk: PNGs (with their generation metadata) plus ``index.json``.

Plain Python, no Qt. The index is rewritten atomically on every change; if it is lost or
corrupt, :meth:`GalleryStore.load` rebuilds it from the PNGs' own metadata, so no image is lost.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from engine.formats.png import read_png_metadata

INDEX = "index.json"


@dataclass
class GalleryEntry:
    """One generated image and the parameters that made it."""

    file: str
    prompt: str
    seed: int
    steps: int
    guidance: float
    scheduler: str = "ddim"
    kind: str = "prompt"  # prompt | variations | background | edit
    group: str = ""  # images of one request share it
    label: str = ""
    created: float = 0.0
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GalleryEntry:
        """Build from a dict, ignoring unknown keys."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


class GalleryStore:
    """The ordered list of entries of one gallery folder (oldest first)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.entries: list[GalleryEntry] = []
        self.problem: str | None = None  # why the index had to be rebuilt, if it had to

    def path(self, entry: GalleryEntry) -> Path:
        """The PNG of an entry."""
        return self.folder / entry.file

    def load(self) -> GalleryStore:
        """Read the index (missing: empty; unreadable: rebuilt from the PNGs' metadata)."""
        idx = self.folder / INDEX
        self.entries, self.problem = [], None
        if idx.is_file():
            try:
                data = json.loads(idx.read_text(encoding="utf-8"))
                self.entries = [GalleryEntry.from_dict(d) for d in data["entries"]]
                self.entries = [e for e in self.entries if self.path(e).is_file()]
                return self
            except (OSError, ValueError, KeyError, TypeError) as e:
                self.problem = f"{idx}: unreadable gallery index ({e}); rebuilt from the images"
        if self.folder.is_dir():
            self.entries = self._rebuild()
            if self.entries and self.problem:
                self.save()
        return self

    def _rebuild(self) -> list[GalleryEntry]:
        """Entries from the settings the PNGs carry (:func:`engine.formats.png.read_png_metadata`)."""
        out = []
        for png in sorted(self.folder.glob("*.png")):
            try:
                meta = read_png_metadata(png)
                out.append(GalleryEntry(file=png.name, prompt=str(meta.get("prompt", "")),
                                        seed=int(meta.get("seed", 0)), steps=int(meta.get("steps", 0)),
                                        guidance=float(meta.get("guidance", 0.0)),
                                        scheduler=str(meta.get("scheduler", "ddim")), created=png.stat().st_mtime,
                                        params=meta))
            except (OSError, ValueError, TypeError):  # not an image, or settings of the wrong types
                continue
        return out

    def save(self) -> None:
        """Write the index atomically."""
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = self.folder / (INDEX + ".tmp")
        tmp.write_text(json.dumps({"version": 1, "saved": time.time(),
                                   "entries": [asdict(e) for e in self.entries]}, indent=1), encoding="utf-8")
        os.replace(tmp, self.folder / INDEX)

    def add(self, entry: GalleryEntry) -> None:
        """Append an entry whose PNG is already in the folder."""
        if not self.path(entry).is_file():
            raise FileNotFoundError(f"{self.path(entry)}: the image of this gallery entry is missing")
        self.entries.append(entry)
        self.save()

    def delete(self, entry: GalleryEntry) -> None:
        """Remove an entry and its PNG."""
        self.entries = [e for e in self.entries if e.file != entry.file]
        self.save()
        self.path(entry).unlink(missing_ok=True)
