"""How often the promotion decision is wrong, measured on synthetic problems with known truth.

A problem is a test split of ``rows`` rows and two models whose true relative gain is known:
  * each row has a difficulty shared by both models (log-normal), so the comparison is paired;
  * the candidate's error on a row is the baseline's times a per-row factor whose mean over the
    population of rows is exactly ``1 - true_gain`` (log-normal spread ``gain_spread``), so a
    finite test split has a gain of its own around the true one;
  * every training run (seed) scales its errors by a log-normal factor of spread ``seed_noise``
    (training noise), and each (run, row) pair by one of spread ``row_noise``.
Every factor has mean 1 but the gain's, so the metric (the mean error over rows) differs between
the models by exactly ``true_gain`` in expectation. The repetitions of a problem go through
:func:`sweeper.decision.compare_scores` and :func:`sweeper.decision.decide`, the code a real
promotion runs, with the sequential rounds of ``--seeds auto`` where asked.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

import numpy as np

from search_spaces.policy import Policy
from sweeper.decision import ModelEvidence, Verdict, compare_scores, decide, sequential_looks, should_stop

POLICY = Policy(metric="mean_error", mode="min", min_relative_improvement=0.10, min_gain_over_reference=None)
PROBE = {1: True}
NOISE = {"small": 0.02, "mid": 0.05, "large": 0.10}  # seed_noise levels of the harness


@dataclass(frozen=True)
class Problem:
    true_gain: float  # relative gain of the candidate's mean error over the baseline's, on the population of rows
    seed_noise: float  # log-normal spread of a training run's factor
    rows: int = 300
    row_noise: float = 0.2  # log-normal spread of each (run, row) factor
    gain_spread: float = 0.2  # log-normal spread of the per-row gain factor
    difficulty_spread: float = 0.8  # log-normal spread of the rows' shared difficulty


def _mean_one(rng: np.random.Generator, spread: float, size: int | tuple[int, ...]) -> np.ndarray:
    """Log-normal factors with mean exactly 1."""
    return rng.lognormal(-spread**2 / 2, spread, size)


def draw(problem: Problem, seeds: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per-row errors of ``seeds`` training runs of each model on a fresh test split: two (seeds, rows) arrays."""
    difficulty = _mean_one(rng, problem.difficulty_spread, problem.rows) * 100.0
    gain = (1 - problem.true_gain) * _mean_one(rng, problem.gain_spread, problem.rows)

    def runs(factor: np.ndarray) -> np.ndarray:
        training = _mean_one(rng, problem.seed_noise, (seeds, 1))
        return difficulty * factor * training * _mean_one(rng, problem.row_noise, (seeds, problem.rows))

    return runs(gain), runs(np.ones(problem.rows))


def evidence(name: str, errors: np.ndarray) -> ModelEvidence:
    means = tuple(errors.mean(axis=1))
    return ModelEvidence(name, test=means, validation=means, diverged_seeds=0, nonfinite_count=0, latency_p95_ms=0.0)


def judge(candidate: np.ndarray, baseline: np.ndarray, policy: Policy, confidence: float | None = None) -> Verdict:
    """The verdict on (seeds, rows) errors of each model, as a promotion reaches it."""
    policy = policy if confidence is None else replace(policy, confidence=confidence)
    gain = compare_scores(candidate, baseline, policy)
    return decide(evidence("candidate", candidate), [evidence("baseline", baseline)], {"baseline": gain}, PROBE, policy)


def sequential_verdict(candidate: np.ndarray, baseline: np.ndarray, policy: Policy) -> tuple[Verdict, int]:
    """``--seeds auto``: look after each round of seeds; stop when the verdict is clear."""
    for seeds, confidence, last in sequential_looks(policy):
        verdict = judge(candidate[:seeds], baseline[:seeds], policy, confidence)
        if last or should_stop(verdict, policy):
            return verdict, seeds
    raise AssertionError("sequential_looks always ends with a last look")


@dataclass(frozen=True)
class Rates:
    promoted: float  # share of repetitions whose verdict is promote
    claimed_gain: float  # share whose lower bound of the gain is above zero
    seeds: float  # mean seeds per model used
    repetitions: int

    @property
    def monte_carlo_error(self) -> float:
        """Standard error of ``promoted`` (at least that of a 5% rate, so zero counts are not exact)."""
        rate = max(self.promoted, 0.05)
        return float(np.sqrt(rate * (1 - rate) / self.repetitions))


def rates(problem: Problem, seeds: int | str, policy: Policy = POLICY, repetitions: int = 400, seed: int = 0) -> Rates:
    """How often the decision promotes, and claims a gain, over ``repetitions`` draws of ``problem``."""
    promoted = claimed = used = 0
    for rng in _generators(seed, repetitions):
        if seeds == "auto":
            candidate, baseline = draw(problem, policy.max_seeds, rng)
            verdict, count = sequential_verdict(candidate, baseline, policy)
        else:
            candidate, baseline = draw(problem, int(seeds), rng)
            verdict, count = judge(candidate, baseline, policy), int(seeds)
        promoted += verdict.decision == "promote"
        claimed += bool(verdict.gain is not None and verdict.gain.low > 0)
        used += count
    return Rates(promoted / repetitions, claimed / repetitions, used / repetitions, repetitions)


def _generators(seed: int, count: int) -> Iterator[np.random.Generator]:
    for index in range(count):
        yield np.random.default_rng([seed, index])
