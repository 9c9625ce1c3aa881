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
from typing import Callable, Literal, Sequence

import numpy as np
from scipy import optimize, stats

from search_spaces.policy import Policy

Decision = Literal["promote", "keep_experimental", "demote"]


@dataclass(frozen=True)
class Interval:
    point: float  # on all seeds and rows
    low: float  # one-sided lower confidence bound
    high: float  # the matching upper bound, for the report
    p_value: float = float("nan")  # of "the gain is at most the policy's threshold"


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
class Comparison:
    """What the literature asks of a claim that one model beats another (Bouthillier et al. 2021,
    "Accounting for variance in machine learning benchmarks"; Agarwal et al. 2021)."""

    baseline: str
    gain: Interval  # relative gain, its bounds and the raw p-value of "gain <= threshold"
    holm_p: float  # that p-value after Holm's correction over every baseline compared
    improvement_probability: Interval  # P(a fresh candidate seed beats a fresh baseline seed), bootstrap bounds
    effect_size: float  # Hedges' g of the per-seed test metrics (positive: the candidate is better)


@dataclass(frozen=True)
class Verdict:
    decision: Decision
    criteria: tuple[Criterion, ...]
    baseline: str  # the strongest baseline (best mean test metric)
    gain: Interval | None  # over the strongest baseline
    reference_gain: Interval | None = None  # over the family's non-learned reference, if it has one
    comparisons: tuple[Comparison, ...] = ()  # against every baseline

    @property
    def failed(self) -> tuple[Criterion, ...]:
        return tuple(c for c in self.criteria if not c.passed)


def relative_gain(candidate: float, baseline: float, mode: str) -> float:
    """How much better the candidate is, as a fraction of the baseline (positive is better)."""
    difference = baseline - candidate if mode == "min" else candidate - baseline
    return difference / abs(baseline) if baseline else float("nan")


@dataclass(frozen=True)
class Measured:
    """One model's results for the interval: the metric of each training seed on the whole test
    split, and the metric averaged over its seeds, on each resample of the test rows (the same
    resamples for every model, so the comparison stays paired)."""

    per_seed: np.ndarray  # (seeds,)
    resampled: np.ndarray  # (replicates,), or (rows,) per-row values when ``by_row``
    by_row: bool = False  # a metric that is a mean over rows: its row variance is exact, no resampling
    deterministic: bool = False  # no training noise (a non-learned reference): one "seed" says all

    @property
    def mean(self) -> float:
        return float(np.mean(self.per_seed))


def measured_rows(per_row: np.ndarray, deterministic: bool = False) -> Measured:
    """For a metric that is a mean over rows: ``per_row`` (seeds, rows) values of one model."""
    return Measured(per_row.mean(axis=1), per_row.mean(axis=0), by_row=True, deterministic=deterministic)


def gain_interval(candidate: Measured, baseline: Measured, mode: str, confidence: float, threshold: float) -> Interval:
    """Interval of the candidate's relative gain over the baseline, and the p-value of "the gain is
    at most ``threshold``".

    For a relative gain g, the contrast E(g) = s (b - c) - g |b| (s = +1 when lower is better, -1
    otherwise; c and b the models' means over seeds) is positive exactly when the gain exceeds g.
    Its variance adds the seed-to-seed variance of each model's per-seed metric over its seeds
    (training noise, independent between models) and the variance of the contrast when the test
    rows are resampled (paired: both models see the same rows). E(g) / sd is referred to Student's
    t with Welch-Satterthwaite degrees of freedom (seeds - 1 per model, rows - 1 for the rows), so
    a handful of seeds gives the wide interval it should; the bounds are the g where the statistic
    meets the one-sided critical value (Fieller's method, so the ratio needs no delta method).
    A non-deterministic model with one seed has no estimate of its training noise: no bounds.
    """
    sign = 1.0 if mode == "min" else -1.0
    c, b = candidate.mean, baseline.mean
    point = relative_gain(c, b, mode)
    if not np.isfinite([c, b]).all() or b == 0 or any(m.per_seed.size < 2 and not m.deterministic for m in (candidate, baseline)):
        return Interval(point, float("nan"), float("nan"))
    rows = _row_covariance(candidate, baseline)
    seed_variance = [0.0 if m.deterministic else float(np.var(m.per_seed, ddof=1)) / m.per_seed.size for m in (candidate, baseline)]
    seed_df = [max(m.per_seed.size - 1, 1) for m in (candidate, baseline)]
    row_df = (candidate.resampled.size if candidate.by_row else np.inf) - 1

    def statistic(g: float) -> tuple[float, float]:
        weights = np.array([-sign, sign - g * np.sign(b)])  # E(g) = weights . (c, b)
        parts = [weights[0] ** 2 * seed_variance[0], weights[1] ** 2 * seed_variance[1], max(float(weights @ rows @ weights), 0.0)]
        variance = sum(parts)
        if variance <= 0:
            return (np.inf if weights @ (c, b) > 0 else -np.inf), np.inf
        df = variance**2 / sum(part**2 / d for part, d in zip(parts, (*seed_df, row_df)) if part > 0)
        return float(weights @ (c, b)) / np.sqrt(variance), df

    def excess(g: float, side: float) -> float:
        t, df = statistic(g)
        return t - side * stats.t.ppf(confidence, df)

    low = _root(lambda g: excess(g, 1.0), point, -1.0)
    high = _root(lambda g: excess(g, -1.0), point, 1.0)
    t, df = statistic(threshold)
    return Interval(point, low, high, float(stats.t.sf(t, df)))


def _row_covariance(candidate: Measured, baseline: Measured) -> np.ndarray:
    """Covariance (2, 2) of the two seed-averaged metrics under resampling of the test rows."""
    pair = np.stack([candidate.resampled, baseline.resampled])
    if candidate.by_row:
        return np.cov(pair) / pair.shape[1]  # a mean over rows: its variance is the rows' over their count
    return np.cov(pair)


def _root(function: Callable[[float], float], start: float, direction: float) -> float:
    """Where the decreasing ``function`` crosses zero, searched from ``start`` towards ``direction``;
    +-inf when it never does (the ratio's interval is unbounded, as Fieller's can be)."""
    if not np.isfinite(start):
        return float("nan")
    step, near = 0.01, start
    for _ in range(60):
        far = near + direction * step
        if np.sign(function(far)) != np.sign(function(near)):
            return float(optimize.brentq(function, min(near, far), max(near, far), xtol=1e-6))
        near, step = far, step * 2
    return float(direction * np.inf)


def compare_scores(candidate: np.ndarray, baseline: np.ndarray, policy: Policy) -> Interval:
    """Interval of the candidate's relative gain from per-row scores of a metric that is a mean
    over rows: (seeds, rows) arrays of each model on the same test rows."""
    return gain_interval(measured_rows(candidate), measured_rows(baseline), policy.mode, policy.confidence, policy.min_relative_improvement)


def sequential_looks(policy: Policy) -> list[tuple[int, float, bool]]:
    """The rounds of ``--seeds auto``: (seeds per model, one-sided confidence, last?) for each look.

    Looking after every round gives a no-better candidate several chances to pass, so the
    error rate is spent over the looks: the power family alpha * (k / K)^2 of Kim and DeMets,
    each look at the increment of that spending function. The increments sum to the policy's
    error rate, so by the union bound the false-promotion rate over all looks stays within it;
    early looks promote only a very clear gain and most of the rate is left for the last one.
    """
    last = max(policy.max_seeds or policy.min_seeds, policy.min_seeds)
    counts = list(range(policy.min_seeds, last, policy.seed_step)) + [last]
    alpha, looks = 1 - policy.confidence, len(counts)
    spent = [alpha * (k / looks) ** 2 for k in range(looks + 1)]
    return [(seeds, 1 - (spent[k + 1] - spent[k]), k == looks - 1) for k, seeds in enumerate(counts)]


def should_stop(verdict: Verdict, policy: Policy) -> bool:
    """After a look of ``--seeds auto``: stop once the verdict is clear. Promote is clear; so is
    demote (worse than a baseline or the reference, diverged, too slow), and so is a gain whose
    upper bound lies below the threshold, which more seeds would only confirm. Stopping early
    for anything but promote cannot raise the false-promotion rate."""
    if verdict.decision in ("promote", "demote"):
        return True
    return verdict.gain is not None and verdict.gain.high < policy.min_relative_improvement


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
    comparisons = compare_seeds(candidate, baselines, gains, policy)
    criteria = (
        *_stability(candidate, probe, policy),
        *_accuracy(candidate, strongest, comparisons, policy),
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
    return Verdict(decision, criteria, strongest.name, gain, reference_gain, comparisons)


def compare_seeds(candidate: ModelEvidence, baselines: Sequence[ModelEvidence], gains: dict[str, Interval], policy: Policy) -> tuple[Comparison, ...]:
    """The candidate against each baseline whose gain was measured, with Holm-adjusted p-values."""
    measured = [b for b in baselines if b.name in gains]
    adjusted = holm([gains[b.name].p_value for b in measured])
    rng = np.random.default_rng(0)
    return tuple(
        Comparison(b.name, gains[b.name], p, improvement_probability(candidate.test, b.test, policy, rng), hedges_g(candidate.test, b.test, policy.mode))
        for b, p in zip(measured, adjusted)
    )  # fmt: skip


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error over the comparisons), in input order."""
    order = np.argsort(p_values)
    adjusted, running = np.empty(len(p_values)), 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted.tolist()


def improvement_probability(candidate: Sequence[float], baseline: Sequence[float], policy: Policy, rng: np.random.Generator) -> Interval:
    """Share of (candidate seed, baseline seed) pairs where the candidate is better (ties count
    half), with a percentile bootstrap over each model's seeds; ``high`` and ``low`` one-sided at
    the policy's confidence."""
    ours, theirs = np.asarray(candidate, float), np.asarray(baseline, float)
    ours, theirs = ours[np.isfinite(ours)], theirs[np.isfinite(theirs)]
    if not ours.size or not theirs.size:
        return Interval(float("nan"), float("nan"), float("nan"))

    def share(a: np.ndarray, b: np.ndarray) -> np.ndarray:  # (..., n), (..., m) -> (...)
        difference = (b[..., None, :] - a[..., :, None]) * (1 if policy.mode == "min" else -1)
        return ((difference > 0) + 0.5 * (difference == 0)).mean(axis=(-2, -1))

    replicates = policy.bootstrap_replicates
    resampled = share(ours[rng.integers(0, ours.size, (replicates, ours.size))], theirs[rng.integers(0, theirs.size, (replicates, theirs.size))])
    low, high = np.quantile(resampled, [1 - policy.confidence, policy.confidence])
    return Interval(float(share(ours, theirs)), float(low), float(high))


def hedges_g(candidate: Sequence[float], baseline: Sequence[float], mode: str) -> float:
    """Standardised mean difference of per-seed metrics, small-sample corrected; positive: candidate better."""
    ours, theirs = np.asarray(candidate, float), np.asarray(baseline, float)
    n, m = ours.size, theirs.size
    if n < 2 or m < 2:
        return float("nan")
    pooled = np.sqrt(((n - 1) * ours.var(ddof=1) + (m - 1) * theirs.var(ddof=1)) / (n + m - 2))
    difference = (theirs.mean() - ours.mean()) * (1 if mode == "min" else -1)
    correction = 1 - 3 / (4 * (n + m) - 9)
    return float(difference / pooled * correction) if pooled > 0 else float(np.sign(difference) * np.inf)


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


def _accuracy(candidate: ModelEvidence, strongest: ModelEvidence, comparisons: Sequence[Comparison], policy: Policy) -> tuple[Criterion, ...]:
    """Better than the strongest baseline on the point estimate, and clearly better than every
    baseline on its lower bound (an intersection-union test: each at the policy's level, no
    multiplicity correction needed for the claim "better than all of them")."""
    level = f"{policy.confidence:.1%}" if policy.confidence > 0.95 else f"{policy.confidence:.0%}"
    threshold = policy.min_relative_improvement
    against = {c.baseline: c.gain for c in comparisons}
    point = against[strongest.name].point if strongest.name in against else float("nan")
    lows = [c.gain.low for c in comparisons] or [float("nan")]
    weakest = min(comparisons, key=lambda c: c.gain.low, default=None)
    beaten = sum(relative_gain(value, strongest.mean_test(), policy.mode) > 0 for value in candidate.test)
    return (
        Criterion("better than baseline", bool(point > 0), f"gain {point:+.1%} over {strongest.name}", "gain > 0", "demote"),
        Criterion(
            "clearly better",
            bool(min(lows) >= threshold),
            f"{level} lower bound {min(lows):+.1%}" + (f" (vs {weakest.baseline})" if len(comparisons) > 1 and weakest else ""),
            f">= {threshold:+.0%} vs every baseline",
            "keep_experimental",
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
