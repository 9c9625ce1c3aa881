"""The promotion decision on constructed evidence: each verdict and each criterion's edge."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from search_spaces.policy import Policy
from sweeper.decision import (
    Interval,
    Measured,
    ModelEvidence,
    decide,
    gain_interval,
    hedges_g,
    holm,
    improvement_probability,
    measured_rows,
    relative_gain,
)

POLICY = Policy(metric="mean_error_m", mode="min", min_relative_improvement=0.20, latency_budget_ms=70, latency_limit_ms=100)
PROBE = {1: True, 2: True, 512: True}
BASELINE = ModelEvidence("heimdall_net", test=(100.0, 104.0, 96.0), validation=(98.0, 99.0, 97.0),
                         diverged_seeds=0, nonfinite_count=0, latency_p95_ms=20.0)  # fmt: skip
CANDIDATE = ModelEvidence("candidate", test=(70.0, 72.0, 68.0), validation=(66.0, 67.0, 65.0),
                          diverged_seeds=0, nonfinite_count=0, latency_p95_ms=40.0)  # fmt: skip
CLEAR_GAIN = {"heimdall_net": Interval(point=0.30, low=0.24, high=0.35)}


def verdict(candidate=CANDIDATE, gains=CLEAR_GAIN, probe=PROBE, policy=POLICY, baselines=(BASELINE,)):
    return decide(candidate, baselines, gains, probe, policy)


def failed(result) -> set[str]:
    return {criterion.name for criterion in result.failed}


def test_clearly_better_fast_stable_candidate_is_promoted():
    result = verdict()
    assert result.decision == "promote" and not result.failed and result.baseline == "heimdall_net"
    assert {c.name for c in result.criteria} == {
        "no divergence", "stability probe", "better than baseline", "clearly better", "enough seeds",
        "consistent over seeds", "latency budget", "latency limit", "generalization gap",
    }  # fmt: skip


def test_lower_bound_exactly_at_the_threshold_passes():
    assert verdict(gains={"heimdall_net": Interval(0.25, 0.20, 0.30)}).decision == "promote"


def test_interval_straddling_the_threshold_keeps_it_experimental():
    result = verdict(gains={"heimdall_net": Interval(0.25, 0.1999, 0.30)})
    assert result.decision == "keep_experimental" and failed(result) == {"clearly better"}


def test_no_better_than_the_baseline_is_demoted():
    result = verdict(gains={"heimdall_net": Interval(-0.02, -0.10, 0.05)})
    assert result.decision == "demote" and "better than baseline" in failed(result)


def test_one_diverged_seed_demotes():
    diverged = dataclasses.replace(CANDIDATE, test=(70.0, 72.0, float("nan")), diverged_seeds=1)
    result = verdict(candidate=diverged)
    assert result.decision == "demote" and "no divergence" in failed(result)


def test_non_finite_steps_beyond_the_tolerance_demote():
    assert verdict(candidate=dataclasses.replace(CANDIDATE, nonfinite_count=1)).decision == "demote"
    tolerant = dataclasses.replace(POLICY, max_nonfinite=1)
    assert verdict(candidate=dataclasses.replace(CANDIDATE, nonfinite_count=1), policy=tolerant).decision == "promote"


@pytest.mark.parametrize("latency, decision", [(70.0, "promote"), (70.1, "keep_experimental"), (100.0, "keep_experimental"), (100.1, "demote")])
def test_latency_budget_and_limit(latency, decision):
    assert verdict(candidate=dataclasses.replace(CANDIDATE, latency_p95_ms=latency)).decision == decision


def test_too_few_seeds_never_promote():
    two = dataclasses.replace(CANDIDATE, test=(70.0, 72.0), validation=(66.0, 67.0))
    result = verdict(candidate=two)
    assert result.decision == "keep_experimental" and failed(result) == {"enough seeds"}


def test_an_inconsistent_seed_keeps_it_experimental():
    uneven = dataclasses.replace(CANDIDATE, test=(60.0, 62.0, 101.0), validation=(60.0, 60.0, 95.0))
    result = verdict(candidate=uneven)
    assert result.decision == "keep_experimental" and failed(result) == {"consistent over seeds"}


def test_unstable_probe_keeps_it_experimental():
    result = verdict(probe={1: False, 2: True, 512: True})
    assert result.decision == "keep_experimental" and failed(result) == {"stability probe"}


def test_large_generalization_gap_keeps_it_experimental():
    # The seed's TCN: validation 0.0102, test 1.63.
    overfit = dataclasses.replace(CANDIDATE, validation=(40.0, 41.0, 39.0))
    result = verdict(candidate=overfit)
    assert result.decision == "keep_experimental" and failed(result) == {"generalization gap"}


def test_judged_against_the_strongest_baseline():
    weak = dataclasses.replace(BASELINE, name="weak", test=(200.0, 210.0, 190.0))
    gains = {**CLEAR_GAIN, "weak": Interval(0.65, 0.6, 0.7)}
    assert verdict(baselines=(weak, BASELINE), gains=gains).baseline == "heimdall_net"


def test_higher_is_better_metrics():
    policy = dataclasses.replace(POLICY, metric="f1", mode="max")
    assert relative_gain(0.6, 0.5, "max") == pytest.approx(0.2)
    better = ModelEvidence("c", (0.60, 0.61, 0.62), (0.62, 0.62, 0.63), 0, 0, 10.0)
    baseline = ModelEvidence("b", (0.50, 0.49, 0.51), (0.5, 0.5, 0.5), 0, 0, 10.0)
    assert decide(better, [baseline], {"b": Interval(0.22, 0.2, 0.25)}, PROBE, policy).decision == "promote"


# ---------------------------------------------------------------- the interval


def interval(candidate, baseline, threshold=0.0, **kwargs):
    return gain_interval(measured_rows(np.asarray(candidate)), measured_rows(np.asarray(baseline), **kwargs), "min", 0.95, threshold)


def test_identical_models_straddle_zero():
    rng = np.random.default_rng(0)
    seeds = rng.exponential(100, (3, 500)) * rng.lognormal(0, 0.05, (3, 1))
    result = interval(seeds, seeds)
    assert result.point == 0 and result.low < 0 < result.high and result.p_value == pytest.approx(0.5)


def test_a_clear_improvement_is_found():
    rng = np.random.default_rng(1)
    errors = rng.exponential(100, (3, 400)) * rng.lognormal(0, 0.03, (3, 1))
    result = interval(errors * 0.6, errors)  # 40% lower error on every row
    assert result.point == pytest.approx(0.4) and 0.3 < result.low <= 0.4 <= result.high < 0.5
    assert result.p_value < 1e-3


def test_seed_noise_widens_the_interval():
    rng = np.random.default_rng(2)
    rows = rng.exponential(100, 400)
    baseline = np.stack([rows * f for f in (0.99, 1.0, 1.01)])
    steady = np.stack([rows * f for f in (0.79, 0.8, 0.81)])
    noisy = np.stack([rows * f for f in (0.5, 0.8, 1.1)])  # same mean gain, noisy training
    narrow, wide = interval(steady, baseline), interval(noisy, baseline)
    assert wide.high - wide.low > 5 * (narrow.high - narrow.low)


def test_one_seed_has_no_interval_unless_deterministic():
    rng = np.random.default_rng(3)
    errors = rng.exponential(100, (3, 300))
    assert np.isnan(interval(errors[:1] * 0.5, errors).low)
    reference = interval(errors * 0.5, errors[:1], deterministic=True)  # a non-learned reference: no training noise
    assert 0.3 < reference.low < 0.5 < reference.high


def test_the_lower_bound_and_the_p_value_agree():
    rng = np.random.default_rng(4)
    for gain in (0.05, 0.1, 0.15):
        errors = rng.exponential(100, (3, 300)) * rng.lognormal(0, 0.05, (3, 1))
        result = interval(errors * (1 - gain) * rng.lognormal(0, 0.05, (3, 1)), errors, threshold=0.1)
        assert (result.low >= 0.1) == (result.p_value <= 0.05)


def test_resampled_rows_give_the_interval_of_exact_row_variances():
    rng = np.random.default_rng(5)
    baseline = rng.exponential(100, (3, 400)) * rng.lognormal(0, 0.05, (3, 1))
    candidate = baseline * 0.8 * rng.lognormal(0, 0.05, (3, 1))
    exact = interval(candidate, baseline)
    resamples = rng.integers(0, 400, (4000, 400))
    by_bootstrap = [Measured(m.mean(axis=1), m.mean(axis=0)[resamples].mean(axis=1)) for m in (candidate, baseline)]
    approximate = gain_interval(*by_bootstrap, "min", 0.95, 0.0)
    assert approximate.low == pytest.approx(exact.low, abs=0.01) and approximate.high == pytest.approx(exact.high, abs=0.01)


def test_holm_adjusts_in_step_down_order():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_improvement_probability_and_effect_size():
    rng = np.random.default_rng(6)
    better = improvement_probability((70.0, 72.0, 68.0), (100.0, 104.0, 96.0), POLICY, rng)
    assert better.point == 1.0 and better.low == 1.0
    mixed = improvement_probability((99.0, 101.0), (100.0, 100.0), POLICY, rng)
    assert mixed.point == 0.5 and mixed.low < 0.5 < mixed.high
    assert hedges_g((70.0, 72.0, 68.0), (100.0, 104.0, 96.0), "min") > 5 > 0 > hedges_g((100.0, 104.0, 96.0), (70.0, 72.0, 68.0), "min")


def test_peak_memory_must_be_lower_when_the_policy_asks():
    policy = dataclasses.replace(POLICY, peak_memory_length=4096)
    baseline = dataclasses.replace(BASELINE, peak_memory_mb=300.0)
    lean = dataclasses.replace(CANDIDATE, peak_memory_mb=40.0)
    assert verdict(candidate=lean, baselines=(baseline,), policy=policy).decision == "promote"
    heavy = verdict(candidate=dataclasses.replace(CANDIDATE, peak_memory_mb=300.0), baselines=(baseline,), policy=policy)
    assert heavy.decision == "keep_experimental" and failed(heavy) == {"peak memory"}
    assert "peak memory" not in {c.name for c in verdict().criteria}


@pytest.mark.parametrize(
    "gain, decision",
    [
        (Interval(0.40, 0.30, 0.50), "promote"),
        (Interval(0.05, -0.02, 0.12), "keep_experimental"),  # better on the point estimate, not clearly
        (Interval(-0.60, -0.70, -0.50), "demote"),  # loses to least squares: never promoted, whatever the baseline
    ],
)
def test_the_non_learned_reference_must_be_beaten(gain, decision):
    policy = dataclasses.replace(POLICY, min_gain_over_reference=0.0)
    result = decide(CANDIDATE, (BASELINE,), CLEAR_GAIN, PROBE, policy, reference_gain=gain)
    assert result.decision == decision and result.reference_gain == gain
    assert ("beats the non-learned reference" in failed(result)) == (decision != "promote")


def test_a_policy_asking_for_a_reference_the_family_lacks_never_promotes():
    policy = dataclasses.replace(POLICY, min_gain_over_reference=0.0)
    result = decide(CANDIDATE, (BASELINE,), CLEAR_GAIN, PROBE, policy, reference_gain=None)
    assert result.decision == "keep_experimental" and failed(result) == {"beats the non-learned reference"}
