from __future__ import annotations

import numpy as np
import torch

from trainables.data.rf_simulation import SPEED_OF_LIGHT
from trainables.models.multilateration import multilaterate, solve

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


def test_padded_slots_never_reach_the_solution_even_as_nan():
    rng = np.random.default_rng(1)
    sites = np.column_stack([rng.uniform(0, 2000, (4, 2)), rng.uniform(10, 60, 4)])
    toa, rssi = measurements(np.array([900.0, 1100.0]), sites)
    mask = np.array([[True, True, True, False]])
    clean = multilaterate(sites[None], toa[None], rssi[None], np.ones((1, 4)), mask, **MODEL)
    toa[3], rssi[3], sites[3] = np.nan, np.inf, np.nan
    dirty = multilaterate(sites[None], toa[None], rssi[None], np.ones((1, 4)), mask, **MODEL)
    np.testing.assert_array_equal(clean, dirty)


def test_sigma_shrinks_with_more_receivers():
    rng = np.random.default_rng(2)
    sites = np.column_stack([rng.uniform(0, 2000, (8, 2)), rng.uniform(10, 60, 8)])
    toa, rssi = measurements(np.array([1000.0, 1000.0]), sites)
    mask = torch.tensor([[True] + [False] * 7, [True] * 8])
    solution = solve(*(torch.tensor(np.stack([a, a])) for a in (sites, toa, rssi, np.ones(8))), mask, **MODEL)
    one, eight = solution.xy_sigma.norm(dim=-1)
    assert eight < 20 < 200 < one
    assert solution.toa_residual_m[1].abs().max() < 1.0 and (solution.toa_residual_m[0, 1:] == 0).all()
