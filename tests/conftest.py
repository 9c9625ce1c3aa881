from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from trainables.data.rf_simulation import RFSimulation, simulate

TINY_SIMULATION = RFSimulation(n_samples=24, iq_length=128, sample_rate_hz=5e6, seed=3)
TINY_CONTEXT = {
    "max_receivers": 10,
    "feature_mean": [0.0] * 6,
    "feature_std": [1.0] * 6,
    "position_center": [1000.0, 1000.0, 30.0],
    "position_scale": 600.0,
}


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Data caches go to a per-session temporary folder, never to the user's home."""
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "cache"))


@pytest.fixture(scope="session")
def rf_arrays() -> dict[str, np.ndarray]:
    return simulate(TINY_SIMULATION, progress=False)


EXAMPLE = Path(__file__).parents[1] / "examples" / "activity"  # the example plugin family


@pytest.fixture(scope="session")
def activity_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated data set of the example plugin family: a user's own Parquet file."""
    path = tmp_path_factory.mktemp("activity") / "activity.parquet"
    command = [sys.executable, "-m", "activity_family.simulate", str(path), "--windows", "600", "--subjects", "20"]
    subprocess.run(command, cwd=EXAMPLE, check=True, capture_output=True)
    return path


@pytest.fixture(scope="session")
def activity_installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The example plugin installed as a user installs a package (pip, entry points and all), into
    a folder to put on PYTHONPATH instead of into the test environment."""
    work = tmp_path_factory.mktemp("activity-install")
    shutil.copytree(EXAMPLE, work / "source", ignore=shutil.ignore_patterns("__pycache__", "build", "*.egg-info"))
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target", str(work / "site"), str(work / "source")]
    subprocess.run(command, check=True, capture_output=True)
    return work / "site"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Files of slow tests first, those with the fewest tests first among them; then the rest in
    their order. pytest-xdist hands out whole files in this order (pyproject: --dist loadfile
    --no-loadscope-reorder): a file holding one long test (the benchmarks' smoke test, two
    minutes) would otherwise come last and run alone while the other process idles."""
    files: dict[str, list[pytest.Item]] = {}
    for item in items:
        files.setdefault(item.nodeid.split("::")[0], []).append(item)

    def rank(position: int, tests: list[pytest.Item]) -> tuple[int, int]:
        slow = any(test.get_closest_marker("slow") for test in tests)
        return (0, len(tests)) if slow else (1, position)

    ordered = sorted(enumerate(files.values()), key=lambda pair: rank(*pair))
    items[:] = [item for _, tests in ordered for item in tests]
