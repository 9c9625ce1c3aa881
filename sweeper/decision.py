"""The promotion decision: pure functions over measured results, no I/O.

The gain of the candidate over a baseline is judged on its confidence interval, not on a point
estimate. The interval comes from a two-level percentile bootstrap: each replicate resamples the
test rows (the same rows for every model, so the comparison stays paired) and, independently for
each model, its training seeds; the metric of each resampled (seed, rows) pair is averaged over
the resampled seeds. Seeds carry the training noise, rows the finite size of the test split.
The lower bound is the one-sided ``confidence`` quantile of the relative gain.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Literal, Sequence, TypeVar

import numpy as np

from search_spaces.promotion import Policy

Outputs = TypeVar("Outputs")
Decision = Literal["promote", "keep_experimental", "demote"]


@dataclass(frozen=True)
class Interval:
    point: float  # on all seeds and rows
    low: float  # one-sided lower confidence bound
    high: float  # the matching upper bound, for the report


@dataclass(frozen=True)
class ModelEvidence:
    """Everything measured for one model (candidate or baseline) over its seeds."""

    name: str
    test: tuple[float, ...]  # the policy metric on the test split, per seed (NaN where diverged)
    validation: tuple[float, ...]  # the same metric at the best validation epoch, per seed
    diverged_seeds: int
    nonfinite_count: int
    latency_p95_ms: float
    peak_memory_mb: float | None = None  # batch-1 forward at the policy's peak_memory_length

    @property
    def seeds(self) -> int:
        return len(self.test)

    def mean_test(self) -> float:
        return float(np.nanmean(self.test)) if np.isfinite(self.test).any() else float("nan")


@dataclass(frozen=True)
class Criterion:
    name: str
    passed: bool
    measured: str
    required: str
    fails_to: Decision  # the verdict this criterion forces when it fails


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    criteria: tuple[Criterion, ...]
    baseline: str  # the strongest baseline, the one judged against
    gain: Interval | None
    reference_gain: Interval | None = None  # over the family's non-learned reference, if it has one

    @property
    def failed(self) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if not c.passed)


def relative_gain(candidate: float, baseline: float, mode: str) -> float:
    """How much better the candidate is, as a fraction of the baseline (positive is better)."""
    difference = baseline - candidate if mode == "min" else candidate - baseline
    return difference / abs(baseline) if baseline else float("nan")


def bootstrap_relative_gain(
    candidate: Sequence[Outputs],
    baseline: Sequence[Outputs],
    score: Callable[[Outputs, np.ndarray], float],
    rows: int,
    mode: str,
    confidence: float,
    replicates: int,
    seed: int = 0,
) -> Interval:
    """Interval of the relative gain; ``score(outputs, row_indices)`` is the metric on those rows.

    ``candidate`` and ``baseline`` hold one entry per training seed (outputs over the test split).
    """
    everything = np.arange(rows)
    point = relative_gain(_mean_score(candidate, range(len(candidate)), everything, score),
                          _mean_score(baseline, range(len(baseline)), everything, score), mode)  # fmt: skip
    rng = np.random.default_rng(seed)
    gains = np.empty(replicates)
    for replicate in range(replicates):
        sample = rng.integers(0, rows, rows)
        ours = _mean_score(candidate, rng.integers(0, len(candidate), len(candidate)), sample, score)
        theirs = _mean_score(baseline, rng.integers(0, len(baseline), len(baseline)), sample, score)
        gains[replicate] = relative_gain(ours, theirs, mode)
    low, high = np.nanquantile(gains, [1 - confidence, confidence])
    return Interval(float(point), float(low), float(high))


def _mean_score(outputs: Sequence[Outputs], seeds, rows: np.ndarray, score) -> float:
    return float(np.mean([score(outputs[s], rows) for s in seeds]))


def decide(
    candidate: ModelEvidence,
    baselines: Sequence[ModelEvidence],
    gains: dict[str, Interval],
    probe: dict[int, bool],
    policy: Policy,
    reference_gain: Interval | None = None,
) -> Verdict:
    """Promote only if every criterion passes; demote if a demoting one fails; else keep experimental.

    The candidate is judged against the strongest baseline (best mean test metric);
    ``gains[name]`` is the bootstrap interval of the gain over baseline ``name``, and
    ``reference_gain`` the one over the family's non-learned reference (None: it has none).
    """
    finite = [b for b in baselines if np.isfinite(b.mean_test())]
    strongest = min(finite or baselines, key=lambda b: b.mean_test() * (1 if policy.mode == "min" else -1))
    gain = gains.get(strongest.name)
    criteria = (
        *_stability(candidate, probe, policy),
        *_accuracy(candidate, strongest, gain, policy),
        *_reference(reference_gain, policy),
        *_latency(candidate, policy),
        *_memory(candidate, strongest, policy),
        _generalization(candidate, policy),
    )
    if any(not c.passed and c.fails_to == "demote" for c in criteria):
        decision: Decision = "demote"
    elif all(c.passed for c in criteria):
        decision = "promote"
    else:
        decision = "keep_experimental"
    return Verdict(decision, criteria, strongest.name, gain, reference_gain)


def _stability(candidate: ModelEvidence, probe: dict[int, bool], policy: Policy) -> tuple[Criterion, ...]:
    unstable = [size for size, finite in sorted(probe.items()) if not finite]
    return (
        Criterion(
            "no divergence",
            candidate.diverged_seeds == 0 and candidate.nonfinite_count <= policy.max_nonfinite,
            f"{candidate.diverged_seeds} of {candidate.seeds} seeds diverged, {candidate.nonfinite_count} non-finite steps",
            f"0 diverged, <= {policy.max_nonfinite} non-finite",
            "demote",
        ),
        Criterion(
            "stability probe",
            bool(probe) and not unstable,
            f"non-finite at batch sizes {unstable}" if unstable else f"finite at batch sizes {sorted(probe)}",
            f"finite at batch sizes {list(policy.probe_batch_sizes)}",
            "keep_experimental",
        ),
    )


def _accuracy(candidate: ModelEvidence, baseline: ModelEvidence, gain: Interval | None, policy: Policy) -> tuple[Criterion, ...]:
    level = f"{policy.confidence:.0%}"
    threshold = policy.min_relative_improvement
    point, low = (gain.point, gain.low) if gain else (float("nan"), float("nan"))
    beaten = sum(relative_gain(value, baseline.mean_test(), policy.mode) > 0 for value in candidate.test)
    return (
        Criterion("better than baseline", bool(point > 0), f"gain {point:+.1%} over {baseline.name}", "gain > 0", "demote"),
        Criterion(
            "clearly better", bool(low >= threshold), f"{level} lower bound {low:+.1%}", f">= {threshold:+.0%}", "keep_experimental"
        ),
        Criterion(
            "enough seeds", candidate.seeds >= policy.min_seeds, f"{candidate.seeds} seeds", f">= {policy.min_seeds}", "keep_experimental"
        ),
        Criterion(
            "consistent over seeds",
            beaten == candidate.seeds,
            f"{beaten} of {candidate.seeds} seeds beat the baseline mean",
            "every seed",
            "keep_experimental",
        ),
    )


def _reference(gain: Interval | None, policy: Policy) -> tuple[Criterion, ...]:
    """A network that is no better than a method without learning is not worth promoting, whatever
    the baselines do; one that is worse on the point estimate is demoted."""
    threshold = policy.min_gain_over_reference
    if threshold is None:
        return ()
    required = f"{policy.confidence:.0%} lower bound >= {threshold:+.0%}"
    if gain is None:
        return (Criterion("beats the non-learned reference", False, "the family defines no reference", required, "keep_experimental"),)
    return (
        Criterion(
            "beats the non-learned reference",
            bool(gain.low >= threshold),
            f"gain {gain.point:+.1%}, lower bound {gain.low:+.1%}",
            required,
            "keep_experimental" if gain.point > 0 else "demote",
        ),
    )


def _latency(candidate: ModelEvidence, policy: Policy) -> tuple[Criterion, ...]:
    measured = f"p95 {candidate.latency_p95_ms:.1f} ms at batch 1"
    limits = []
    if policy.latency_budget_ms is not None:
        limits.append(("latency budget", policy.latency_budget_ms, "keep_experimental"))
    if policy.latency_limit_ms is not None:
        limits.append(("latency limit", policy.latency_limit_ms, "demote"))
    return tuple(
        Criterion(name, candidate.latency_p95_ms <= limit, measured, f"<= {limit:g} ms", fails_to)
        for name, limit, fails_to in limits
    )  # fmt: skip


def _memory(candidate: ModelEvidence, baseline: ModelEvidence, policy: Policy) -> tuple[Criterion, ...]:
    if policy.peak_memory_length is None:
        return ()
    ours, theirs = candidate.peak_memory_mb, baseline.peak_memory_mb
    measured = f"{ours:.1f} MB vs {theirs:.1f} MB at length {policy.peak_memory_length}" if ours is not None and theirs is not None else "not measured"
    passed = ours is not None and theirs is not None and ours < theirs
    return (Criterion("peak memory", passed, measured, f"< {baseline.name}'s", "keep_experimental"),)


def _generalization(candidate: ModelEvidence, policy: Policy) -> Criterion:
    gap = generalization_gap(candidate, policy.mode)
    return Criterion(
        "generalization gap",
        bool(gap <= policy.max_generalization_gap),
        f"test {gap:+.1%} vs validation",
        f"<= {policy.max_generalization_gap:+.0%}",
        "keep_experimental",
    )


def generalization_gap(model: ModelEvidence, mode: str) -> float:
    """How much worse the test metric is than the validation metric, relative to validation."""
    test, validation = float(np.nanmean(model.test)), float(np.nanmean(model.validation))
    return -relative_gain(test, validation, mode)
