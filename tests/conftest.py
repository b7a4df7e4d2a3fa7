"""Shared test setup: an isolated cache per session and the example scenes the project renders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Models, class images and configs go to a per-session cache, never the user's."""
    path = Path(os.environ.get("BAS_TEST_CACHE") or tmp_path_factory.mktemp("bas-cache"))
    os.environ["BAS_CACHE_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def scenes_dir() -> Path:
    """A folder of example scenes (``chicken`` ...) rendered by the project itself (tests/rendered_scenes.py)."""
    from tests.rendered_scenes import rendered_scene_dir

    return rendered_scene_dir("chicken").parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow cases run only with BAS_RUN_SLOW=1 (``.ci/run`` sets it when time allows)."""
    if os.environ.get("BAS_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set BAS_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
