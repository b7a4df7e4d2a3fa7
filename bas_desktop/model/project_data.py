"""Where a project keeps what the engine produces: training checkpoints, the pack, the gallery.

Plain Python (no Qt, no torch). A project file ``scene.basproj`` gets a sibling folder
``scene.basproj.data/`` (an unsaved project uses a folder in the cache until it is saved)::

    DATA/
      train/        checkpoint.pt and run.json (the settings of the run in progress, for resume)
      pack/         the handle pack of the last finished break (engine/packs/pack.py format)
      gallery/      index.json and the generated PNGs (see bas_desktop/model/gallery_store.py)
      exports/      default place for exported packs
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.formats.names import CHECKPOINT_NAME

RUN_FILE = "run.json"


@dataclass(frozen=True)
class ProjectData:
    """The data folder of one project."""

    root: Path

    @classmethod
    def for_project(cls, project_file: str | Path) -> ProjectData:
        """The data folder next to a project file."""
        p = Path(project_file)
        return cls(p.with_name(p.name + ".data"))

    @property
    def work_dir(self) -> Path:
        """Training work folder (checkpoint + run settings)."""
        return self.root / "train"

    @property
    def pack_dir(self) -> Path:
        """The finished handle pack."""
        return self.root / "pack"

    @property
    def gallery_dir(self) -> Path:
        """Generated images and their index."""
        return self.root / "gallery"

    @property
    def exports_dir(self) -> Path:
        """Default export destination."""
        return self.root / "exports"

    def ensure(self) -> ProjectData:
        """Create the folders; returns self."""
        for d in (self.work_dir, self.gallery_dir):
            d.mkdir(parents=True, exist_ok=True)
        return self

    def has_pack(self) -> bool:
        """True when a finished break left a pack."""
        return (self.pack_dir / "pack.json").is_file()

    def has_checkpoint(self) -> bool:
        """True when an unfinished run left a checkpoint to resume."""
        return (self.work_dir / CHECKPOINT_NAME).is_file() and (self.work_dir / RUN_FILE).is_file()

    def write_run(self, settings: dict[str, Any]) -> None:
        """Remember the settings of the run being started (resume must use the same ones)."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.work_dir / (RUN_FILE + ".tmp")
        tmp.write_text(json.dumps(settings, indent=2), encoding="utf-8")
        os.replace(tmp, self.work_dir / RUN_FILE)

    def read_run(self) -> dict[str, Any] | None:
        """The settings of the unfinished run, or None (also for an unreadable file)."""
        try:
            data = json.loads((self.work_dir / RUN_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def clear_run(self) -> None:
        """Forget the unfinished run (after it finished, or when the user starts over)."""
        for name in (CHECKPOINT_NAME, RUN_FILE, "losses.json"):
            (self.work_dir / name).unlink(missing_ok=True)
