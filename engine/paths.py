"""Where the app keeps resources (shipped) and caches (downloaded models, class images)."""

from __future__ import annotations

import os
import sys
from pathlib import Path


def resources_dir() -> Path:
    """The shipped ``resources/`` folder (source checkout, wheel install or PyInstaller bundle)."""
    bundle = getattr(sys, "_MEIPASS", None)
    if bundle:
        return Path(bundle) / "resources"
    return Path(__file__).resolve().parents[1] / "resources"


def cache_dir() -> Path:
    """The per-user cache: ``$BAS_CACHE_DIR``, else the platform's cache location."""
    env = os.environ.get("BAS_CACHE_DIR")
    if env:
        path = Path(env)
    elif sys.platform == "win32":
        path = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "bas-desktop" / "cache"
    elif sys.platform == "darwin":
        path = Path.home() / "Library" / "Caches" / "bas-desktop"
    else:
        path = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bas-desktop"
    path.mkdir(parents=True, exist_ok=True)
    return path
