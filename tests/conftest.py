"""Shared test setup: an isolated cache per session and the shared example scenes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCENES = REPO.parent / "shared" / "scenes"


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models, class images and configs go to a per-session cache, never the user's."""
    path = Path(os.environ.get("BAS_TEST_CACHE") or tmp_path_factory.mktemp("bas-cache"))
    os.environ["BAS_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def scenes_dir() -> Path:
    """``../shared/scenes`` (CI has it); tests that need it skip cleanly without it."""
    if not SCENES.is_dir():
        pytest.skip("../shared/scenes is not present")
    return SCENES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow cases run only with BAS_RUN_SLOW=1 (``.ci/run`` sets it when time allows)."""
    if os.environ.get("BAS_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set BAS_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
