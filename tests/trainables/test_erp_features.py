from __future__ import annotations

import numpy as np
import pytest

from trainables.data.eeg_simulation import EEGSimulation, simulate
from trainables.models.erp_features import FEATURE_NAMES, smooth, trial_features


@pytest.fixture(scope="module")
def quiet():
    """Trials with a faint background and no alpha or blinks, with the simulator's true latencies."""
    settings = EEGSimulation(n_subjects=3, trials_per_subject=20, background_uv=1.0, alpha_uv=0.0, blinks_per_trial=0.0, seed=5)
    return simulate(settings, progress=False, latents=True)


def test_features_are_finite_and_named(quiet):
    features = trial_features(quiet["eeg"])
    assert features.shape == (60, len(FEATURE_NAMES)) and np.isfinite(features).all()


def test_latencies_follow_the_true_p300_latency_when_the_background_is_faint(quiet):
    features = dict(zip(FEATURE_NAMES, trial_features(quiet["eeg"]).T))
    for name in ("p300_peak_latency_s", "p300_template_latency_s", "p300_fractional_area_latency_s"):
        assert np.corrcoef(features[name], quiet["p300_latency_s"])[0, 1] > 0.9, name
    assert np.abs(features["p300_template_latency_s"] - quiet["p300_latency_s"]).mean() < 0.03


def test_smoothing_keeps_constants_up_to_the_edges():
    np.testing.assert_allclose(smooth(np.full((2, 200), 3.0), 0.05), 3.0)
