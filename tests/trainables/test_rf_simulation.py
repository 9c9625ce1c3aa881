from __future__ import annotations

import dataclasses

import numpy as np

from tests.conftest import TINY_SIMULATION
from trainables.data.rf_simulation import FEATURE_NAMES, SPEED_OF_LIGHT, receiver_sites, simulate

SNR, TOA = FEATURE_NAMES.index("snr_db"), FEATURE_NAMES.index("toa_us")


def test_shapes_and_dtypes(rf_arrays):
    n, r, length = TINY_SIMULATION.n_samples, TINY_SIMULATION.max_receivers, TINY_SIMULATION.iq_length
    expected = {
        "iq": ((n, r, 2, length), np.float32),
        "features": ((n, r, len(FEATURE_NAMES)), np.float32),
        "positions": ((n, r, 3), np.float32),
        "receiver_ids": ((n, r), np.int64),
        "mask": ((n, r), np.bool_),
        "transmitter_xy": ((n, 2), np.float32),
    }
    assert {name: (a.shape, a.dtype.type) for name, a in rf_arrays.items()} == expected
    assert all(np.isfinite(a).all() for a in rf_arrays.values() if a.dtype.kind == "f")


def test_deterministic_for_a_seed(rf_arrays):
    again = simulate(TINY_SIMULATION, progress=False)
    other = simulate(dataclasses.replace(TINY_SIMULATION, seed=4), progress=False)
    assert all(np.array_equal(rf_arrays[name], again[name]) for name in rf_arrays)
    assert not np.array_equal(rf_arrays["transmitter_xy"], other["transmitter_xy"])


def test_mask_and_padding(rf_arrays):
    mask = rf_arrays["mask"]
    active = mask.sum(axis=1)
    assert active.min() >= TINY_SIMULATION.min_active and active.max() <= TINY_SIMULATION.max_receivers
    assert not rf_arrays["iq"][~mask].any() and not rf_arrays["features"][~mask].any()
    rms = np.sqrt((rf_arrays["iq"][mask] ** 2).sum(axis=1).mean(axis=-1))
    np.testing.assert_allclose(rms, 1.0, rtol=1e-4)  # AGC


def test_every_receiver_count_occurs():
    arrays = simulate(dataclasses.replace(TINY_SIMULATION, n_samples=400), progress=False)
    assert set(arrays["mask"].sum(axis=1)) == set(range(1, 11))


def test_measurements_follow_the_physics():
    settings = dataclasses.replace(TINY_SIMULATION, n_samples=300, iq_length=256, sample_rate_hz=10e6)
    arrays = simulate(settings, progress=False)
    sites = receiver_sites(settings)
    mask = arrays["mask"]
    distance = np.linalg.norm(sites.positions[None, :, :2] - arrays["transmitter_xy"][:, None], axis=-1)
    snr = arrays["features"][..., SNR]
    assert np.corrcoef(np.log10(distance[mask]), snr[mask])[0, 1] < -0.5  # path loss
    # Time differences of arrival between strong receivers match the distance differences.
    strong = mask & (snr > 10)
    rows = np.flatnonzero(strong.sum(axis=1) >= 2)
    first, second = (np.argsort(~strong[rows], axis=1, kind="stable")[:, k] for k in (0, 1))
    toa_m = arrays["features"][..., TOA] * 1e-6 * SPEED_OF_LIGHT
    slant = np.linalg.norm(
        sites.positions[None] - np.concatenate([arrays["transmitter_xy"], np.full((len(mask), 1), 15.0)], 1)[:, None], axis=-1
    )
    measured = toa_m[rows, first] - toa_m[rows, second]
    truth = slant[rows, first] - slant[rows, second]
    assert np.median(np.abs(measured - truth)) < 0.3 * SPEED_OF_LIGHT / settings.sample_rate_hz + 15


def test_settings_problems_name_the_fix():
    problems = dataclasses.replace(TINY_SIMULATION, iq_length=64).problems()
    assert problems and "raise iq_length" in problems[0]
    assert dataclasses.replace(TINY_SIMULATION, min_active=0).problems()
    assert TINY_SIMULATION.problems() == []
