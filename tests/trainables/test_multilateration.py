from __future__ import annotations

import numpy as np

from trainables.data.rf_simulation import SPEED_OF_LIGHT
from trainables.models.multilateration import multilaterate

MODEL = {"tx_power_dbm": 30.0, "reference_loss_db": 25.0, "path_loss_exponent": 3.0, "tx_height_m": 15.0}


def measurements(transmitter: np.ndarray, sites: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Noise-free arrival times (with an unknown transmit time) and RSSI for one transmission."""
    slant = np.linalg.norm(sites - np.append(transmitter, MODEL["tx_height_m"]), axis=-1)
    toa_us = 3.7 + slant / SPEED_OF_LIGHT * 1e6
    rssi = MODEL["tx_power_dbm"] - MODEL["reference_loss_db"] - 10 * MODEL["path_loss_exponent"] * np.log10(slant)
    return toa_us, rssi


def test_exact_measurements_give_the_exact_position():
    rng = np.random.default_rng(0)
    sites = np.column_stack([rng.uniform(0, 2000, (5, 2)), rng.uniform(10, 60, 5)])
    transmitters = rng.uniform(200, 1800, (20, 2))
    toa, rssi = map(np.stack, zip(*(measurements(t, sites) for t in transmitters)))
    mask = np.ones((20, 5), dtype=bool)
    mask[::2, 4] = False  # four receivers in half the samples
    estimate = multilaterate(np.broadcast_to(sites, (20, 5, 3)), toa, rssi, np.ones((20, 5)), mask, **MODEL)
    assert np.abs(estimate - transmitters).max() < 1.0


def test_one_receiver_falls_back_to_its_surroundings():
    sites = np.array([[500.0, 500.0, 30.0], [0.0, 0.0, 0.0]])
    toa, rssi = measurements(np.array([700.0, 500.0]), sites)
    estimate = multilaterate(sites[None], toa[None], rssi[None], np.ones((1, 2)), np.array([[True, False]]), **MODEL)
    assert np.isfinite(estimate).all() and np.linalg.norm(estimate - sites[0, :2]) < 400
