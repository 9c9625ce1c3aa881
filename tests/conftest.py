from __future__ import annotations

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
