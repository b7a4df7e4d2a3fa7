"""Shared test setup: an isolated cache per session and the example scenes the project renders."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Iterator

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


@pytest.fixture(scope="module")
def local_ray() -> Iterator[Any]:
    """A Ray instance in this process with 2 CPUs (the cluster tests); skipped with the reason where
    Ray is missing or cannot start."""
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[cluster]')")
    try:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}})
    except Exception as e:  # noqa: BLE001 - a sandbox without shared memory or sockets
        pytest.skip(f"Ray cannot start here: {e}")
    yield ray
    ray.shutdown()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Slow cases run only with BAS_RUN_SLOW=1 (``.ci/run`` sets it when time allows)."""
    if os.environ.get("BAS_RUN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set BAS_RUN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
