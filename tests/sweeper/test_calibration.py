"""The promotion decision's error rates on synthetic problems with known truth (sweeper/calibration.py).

Seeded, so every run sees the same draws: a rate is compared with the nominal level plus its
Monte-Carlo error, never re-drawn until it passes. The full table is the benchmark's
(``python -m benchmarks calibration``).
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from sweeper.calibration import NOISE, POLICY, Problem, draw, rates, sequential_verdict
from sweeper.decision import sequential_looks

NOMINAL = 1 - POLICY.confidence
SEQUENTIAL = replace(POLICY, max_seeds=9)


@pytest.mark.parametrize("seeds", [3, 5, 10])
def test_no_gain_is_claimed_more_often_than_the_nominal_rate(seeds):
    claims_any_gain = replace(POLICY, min_relative_improvement=0.0)
    measured = rates(Problem(true_gain=0.0, seed_noise=NOISE["mid"]), seeds, claims_any_gain, repetitions=400)
    assert measured.claimed_gain <= NOMINAL + measured.monte_carlo_error


@pytest.mark.parametrize("seeds", [3, "auto"])
def test_a_gain_at_the_threshold_is_promoted_at_most_at_the_nominal_rate(seeds):
    measured = rates(Problem(true_gain=POLICY.min_relative_improvement, seed_noise=NOISE["mid"]), seeds, SEQUENTIAL, repetitions=400)
    assert measured.promoted <= NOMINAL + measured.monte_carlo_error


def test_twice_the_threshold_is_found_with_the_seeds_auto_chooses():
    measured = rates(Problem(true_gain=2 * POLICY.min_relative_improvement, seed_noise=NOISE["mid"]), "auto", SEQUENTIAL, repetitions=200)
    assert measured.promoted >= 0.8 and measured.seeds < SEQUENTIAL.max_seeds


def test_the_looks_spend_the_error_rate_once():
    looks = sequential_looks(SEQUENTIAL)
    assert [seeds for seeds, _, _ in looks] == [3, 5, 7, 9] and [last for *_, last in looks] == [False, False, False, True]
    assert sum(1 - confidence for _, confidence, _ in looks) == pytest.approx(NOMINAL)
    assert sequential_looks(POLICY) == [(3, POLICY.confidence, True)]  # no max_seeds: one look


def test_a_clear_answer_stops_at_the_first_look():
    rng = np.random.default_rng(0)
    candidate, baseline = draw(Problem(true_gain=0.5, seed_noise=NOISE["small"]), 9, rng)
    verdict, seeds = sequential_verdict(candidate, baseline, SEQUENTIAL)
    assert verdict.decision == "promote" and seeds == 3
    worse, _ = draw(Problem(true_gain=-0.5, seed_noise=NOISE["small"]), 9, rng)
    verdict, seeds = sequential_verdict(worse, baseline, SEQUENTIAL)
    assert verdict.decision == "demote" and seeds == 3
