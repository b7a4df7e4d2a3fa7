"""App settings in the platform's settings location (QSettings): window state, recent files, tools.

``BAS_DESKTOP_SETTINGS`` (an .ini path) redirects them, which tests use to stay isolated.
"""

from __future__ import annotations

import os
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from bas_desktop.model.tool_settings import ToolSettings

ORG, APP = "BreakAScene", "bas-desktop"
MAX_RECENT = 10


def data_dir() -> Path:
    """Per-user data folder (autosaves live under it); ``BAS_DESKTOP_DATA`` overrides it."""
    env = os.environ.get("BAS_DESKTOP_DATA")
    if env:
        return Path(env)
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.GenericDataLocation)
    return Path(base or Path.home()) / APP


class Settings:
    """Typed access to the app's QSettings."""

    def __init__(self) -> None:
        path = os.environ.get("BAS_DESKTOP_SETTINGS")
        self.q = QSettings(path, QSettings.Format.IniFormat) if path else QSettings(ORG, APP)

    # recent files
    def recent_files(self) -> list[str]:
        """Most recent first; files that no longer exist are dropped."""
        value = self.q.value("recent", [])
        items = [value] if isinstance(value, str) else list(value or [])
        return [p for p in items if Path(p).exists()]

    def add_recent(self, path: str | Path) -> None:
        """Put ``path`` at the top of the recent files."""
        p = str(Path(path).resolve())
        items = [p] + [r for r in self.recent_files() if r != p]
        self.q.setValue("recent", items[:MAX_RECENT])

    # window
    def window_state(self) -> tuple[QByteArray | None, QByteArray | None]:
        """Saved geometry and dock layout."""
        return self.q.value("window/geometry"), self.q.value("window/state")

    def save_window_state(self, geometry: QByteArray, state: QByteArray) -> None:
        """Remember geometry and dock layout."""
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)

    # tools
    def tool_settings(self) -> ToolSettings:
        """Brush size etc. as last used."""
        t = ToolSettings()
        t.brush_size = float(self.q.value("tools/brush_size", t.brush_size))
        t.hardness = float(self.q.value("tools/hardness", t.hardness))
        t.tolerance = int(self.q.value("tools/tolerance", t.tolerance))
        t.fill_from_photo = str(self.q.value("tools/fill_from_photo", t.fill_from_photo)).lower() == "true"
        return t

    def save_tool_settings(self, t: ToolSettings) -> None:
        """Remember brush size etc."""
        for key in ("brush_size", "hardness", "tolerance", "fill_from_photo"):
            self.q.setValue(f"tools/{key}", getattr(t, key))

    # misc
    def value(self, key: str, default: object = None) -> object:
        """Raw access for the few remaining keys (``sam/model``, ``last_dir``...)."""
        return self.q.value(key, default)

    def set_value(self, key: str, value: object) -> None:
        """Raw write."""
        self.q.setValue(key, value)

    def sync(self) -> None:
        """Flush to disk."""
        self.q.sync()
