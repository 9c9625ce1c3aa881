from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from trainables.data.eeg_simulation import (
    CHANNELS,
    EYES,
    POZ,
    PZ,
    RT_LIMITS_S,
    SAMPLE_RATE_HZ,
    SAMPLES,
    TIMES_S,
    EEGSimulation,
    electrode_positions,
    simulate,
    topography,
)

TINY = EEGSimulation(n_subjects=4, trials_per_subject=10, seed=3)
QUIET = dict(alpha_uv=0.0, p300_uv=0.0, blinks_per_trial=0.0)  # background and amplifier noise only


@pytest.fixture(scope="module")
def tiny() -> dict[str, np.ndarray]:
    return simulate(TINY, progress=False)


@pytest.fixture(scope="module")
def many() -> dict[str, np.ndarray]:
    return simulate(EEGSimulation(n_subjects=8, trials_per_subject=60, seed=1), progress=False, latents=True)


def test_shapes_dtypes_and_subjects(tiny):
    n = TINY.n_trials
    expected = {
        "eeg": ((n, CHANNELS, SAMPLES), np.float32),
        "response_time": ((n,), np.float32),
        "subject": ((n,), np.int64),
    }
    assert {name: (a.shape, a.dtype.type) for name, a in tiny.items()} == expected
    assert np.isfinite(tiny["eeg"]).all()
    np.testing.assert_array_equal(tiny["subject"], np.repeat(np.arange(4), 10))
    assert (tiny["response_time"] >= RT_LIMITS_S[0]).all() and (tiny["response_time"] <= RT_LIMITS_S[1]).all()


def test_deterministic_for_a_seed_and_different_across_seeds(tiny):
    again = simulate(TINY, progress=False)
    other = simulate(dataclasses.replace(TINY, seed=4), progress=False)
    assert all(np.array_equal(tiny[name], again[name]) for name in tiny)
    assert not np.array_equal(tiny["eeg"], other["eeg"])
    assert not np.array_equal(tiny["response_time"], other["response_time"])


def test_average_reference_and_plausible_amplitudes(tiny):
    eeg = tiny["eeg"]
    np.testing.assert_allclose(eeg.mean(axis=1), 0.0, atol=1e-3)
    assert 5.0 < np.median(eeg.std(axis=-1)) < 40.0  # microvolts


def test_response_time_drives_the_p300_latency_but_not_perfectly(many):
    r = np.corrcoef(many["response_time"], many["p300_latency_s"])[0, 1]
    assert 0.6 < r < 0.97


def test_the_eeg_carries_the_latency(many):
    """Averaged over trials, the parietal positivity of slow responses peaks later than that of fast ones."""
    parietal = topography(PZ, 6.0)
    signal = np.einsum("c,nct->nt", parietal - parietal.mean(), many["eeg"])  # (N, T)
    slow = many["response_time"] > np.median(many["response_time"])
    window = (TIMES_S > 0.25) & (TIMES_S < 1.5)
    peak_fast, peak_slow = (TIMES_S[window][signal[group][:, window].mean(axis=0).argmax()] for group in (~slow, slow))
    expected = 0.45 * (many["response_time"][slow].mean() - many["response_time"][~slow].mean())
    assert peak_slow - peak_fast > 0.5 * expected


def test_background_is_spatially_correlated_with_a_1_over_f_spectrum():
    eeg = simulate(EEGSimulation(n_subjects=2, trials_per_subject=40, **QUIET), progress=False)["eeg"]
    correlation = np.corrcoef(eeg.transpose(1, 0, 2).reshape(CHANNELS, -1))
    positions = electrode_positions()
    distance = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    assert correlation[(distance > 0) & (distance < 2.5)].mean() > 0.6
    assert abs(correlation[distance > 14].mean()) < 0.3
    power = (np.abs(np.fft.rfft(eeg, axis=-1)) ** 2).mean(axis=(0, 1))
    frequency = np.fft.rfftfreq(SAMPLES, 1 / SAMPLE_RATE_HZ)
    assert power[(frequency > 1.5) & (frequency < 4)].mean() > 5 * power[(frequency > 20) & (frequency < 40)].mean()


def test_alpha_is_posterior_and_blinks_are_frontal():
    quiet = dataclasses.replace(EEGSimulation(n_subjects=2, trials_per_subject=40), **QUIET)
    background = simulate(quiet, progress=False)["eeg"].var(axis=(0, 2))  # (C,)
    alpha = simulate(dataclasses.replace(quiet, alpha_uv=20.0), progress=False)["eeg"].var(axis=(0, 2))
    blinks = simulate(dataclasses.replace(quiet, blinks_per_trial=2.0), progress=False)["eeg"].var(axis=(0, 2))
    frontal = sum(topography(eye, 4.0) for eye in EYES).argmax()
    posterior = topography(POZ, 6.0).argmax()
    # The average reference spreads a little of every source to all channels, hence a factor 3, not 10.
    assert alpha[posterior] - background[posterior] > 3 * (alpha[frontal] - background[frontal])
    assert blinks[frontal] - background[frontal] > 10 * (blinks[posterior] - background[posterior])


def test_problems_name_the_field_and_the_fix():
    assert TINY.problems() == []
    (message,) = dataclasses.replace(TINY, n_subjects=0).problems()
    assert "n_subjects" in message and "raise n_subjects" in message
    (message,) = dataclasses.replace(TINY, latency_jitter_s=0.5).problems()
    assert "latency_jitter_s" in message and "[0, 0.2]" in message
    assert len(dataclasses.replace(TINY, alpha_uv=-1.0, blinks_per_trial=9.0).problems()) == 2
