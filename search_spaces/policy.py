"""A family's baselines and promotion policy: data next to its search space, validated when loaded.

File ``search_spaces/<family>.promotion.yaml``::

    family: localization
    baselines:                    # name -> a complete trial config with fixed values
      heimdall_net: {architecture: heimdall_net, dropout: 0.1, learning_rate: 1.0e-3,
                     weight_decay: 1.0e-4, batch_size: 32}
    policy:
      metric: mean_error_m        # judged on the test split
      mode: min
      min_relative_improvement: 0.20
      latency_budget_ms: 70       # p95 at batch 1; above it at best keep_experimental
      latency_limit_ms: 100       # above it: demote

The fields of :class:`Policy` are the keys ``policy`` accepts; each is explained there.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Mapping, Sequence

from search_spaces import PACKAGE_DIR, SearchSpaceError, read_yaml


@dataclass(frozen=True)
class Policy:
    """When a candidate is promoted, kept experimental or demoted (see sweeper/decision.py)."""

    metric: str  # the family metric judged on the test split
    mode: Literal["min", "max"]  # whether lower or higher values of ``metric`` are better
    min_relative_improvement: float  # the lower confidence bound of the gain must reach this
    # the same bound of the gain over the family's non-learned reference must reach this, so a
    # network that loses to least squares (or an n-gram model, ...) is never promoted; None: report only
    min_gain_over_reference: float | None = None
    confidence: float = 0.95  # one-sided level of that bound
    latency_budget_ms: float | None = None  # p95 batch-1 latency above it: keep_experimental
    latency_limit_ms: float | None = None  # above it: demote
    max_generalization_gap: float = 0.25  # (test - validation) / validation, worse direction
    max_nonfinite: int = 0  # non-finite losses or gradients tolerated over all seeds
    min_seeds: int = 3  # fewer seeds than this never promote; with --seeds auto, the first round
    max_seeds: int | None = None  # --seeds auto adds rounds up to this many seeds per model (None: min_seeds)
    seed_step: int = 2  # seeds per model added by each further round of --seeds auto
    probe_batch_sizes: tuple[int, ...] = (1, 2, 512)  # stability probe: a few steps at each
    probe_steps: int = 3
    bootstrap_replicates: int = 2000
    peak_memory_length: int | None = None  # if set: at this input length the candidate must use less memory


@dataclass(frozen=True)
class Promotion:
    source: str
    baselines: Mapping[str, Mapping[str, Any]]  # name -> complete config
    policy: Policy


def family_promotion_path(family: str) -> Path:
    return PACKAGE_DIR / f"{family}.promotion.yaml"


def load_promotion(
    path: Path,
    family: str,
    architectures: Sequence[str],
    hyperparameters: Callable[[str], Iterable[str]],
    training_hyperparameters: Iterable[str],
    required_training: Iterable[str],
    metrics: Sequence[str],
) -> Promotion:
    """Read and validate a family's baselines and policy; raise SearchSpaceError naming the key."""
    source = str(path)

    def fail(key: str, problem: str) -> SearchSpaceError:
        return SearchSpaceError(f"{source}: {key}: {problem}")

    document = read_yaml(path, "promotion settings")
    if not isinstance(document, dict) or set(document) - {"family", "baselines", "policy"}:
        raise fail("top level", "expected a mapping with keys family, baselines, policy")
    if document.get("family") != family:
        raise fail("family", f"expected {family!r}, got {document.get('family')!r}")
    baselines = document.get("baselines")
    if not isinstance(baselines, dict) or not baselines:
        raise fail("baselines", "expected a non-empty mapping of baseline name to its config")
    training, required = tuple(training_hyperparameters), tuple(required_training)
    for name, config in baselines.items():
        _check_baseline(f"baselines.{name}", config, architectures, hyperparameters, training, required, fail)
    policy = _parse_policy(document.get("policy"), metrics, fail)
    return Promotion(source, {str(k): dict(v) for k, v in baselines.items()}, policy)


def _check_baseline(key: str, config: Any, architectures, hyperparameters, training, required, fail) -> None:
    if not isinstance(config, dict):
        raise fail(key, "expected a mapping of hyperparameter to a fixed value")
    architecture = config.get("architecture")
    if architecture not in architectures:
        raise fail(f"{key}.architecture", f"unknown architecture {architecture!r}; known: {', '.join(architectures)}")
    accepted = set(hyperparameters(architecture)) | set(training) | {"architecture"}
    unknown = sorted(set(config) - accepted)
    if unknown:
        raise fail(f"{key}.{unknown[0]}", f"{architecture} does not take it; known: {', '.join(sorted(accepted))}")
    missing = [name for name in required if name not in config]
    if missing:
        raise fail(key, f"missing {', '.join(missing)}; a baseline fixes every training setting")


def _parse_policy(raw: Any, metrics: Sequence[str], fail) -> Policy:
    if not isinstance(raw, dict):
        raise fail("policy", "expected a mapping; see search_spaces/policy.py for the keys")
    known = {f.name: f for f in fields(Policy)}
    unknown = sorted(set(raw) - set(known))
    if unknown:
        raise fail(f"policy.{unknown[0]}", f"unknown key; known: {', '.join(known)}")
    required = [name for name in ("metric", "mode", "min_relative_improvement") if name not in raw]
    if required:
        raise fail("policy", f"missing {', '.join(required)}")
    if raw["metric"] not in metrics:
        raise fail("policy.metric", f"unknown metric {raw['metric']!r}; known: {', '.join(metrics)}")
    if raw["mode"] not in ("min", "max"):
        raise fail("policy.mode", f"expected min or max, got {raw['mode']!r}")
    values = dict(raw)
    for name in ("min_relative_improvement", "min_gain_over_reference", "latency_budget_ms", "latency_limit_ms", "max_generalization_gap"):
        if name in values and values[name] is not None and not _is_number(values[name]):
            raise fail(f"policy.{name}", f"expected a number, got {values[name]!r}")
    if not 0.5 <= values.get("confidence", 0.95) < 1:
        raise fail("policy.confidence", f"expected a level in [0.5, 1), got {values['confidence']!r}")
    if values.get("peak_memory_length") is not None and (not isinstance(values["peak_memory_length"], int) or values["peak_memory_length"] < 1):
        raise fail("policy.peak_memory_length", "expected a positive integer (an input length) or null")
    if values.get("max_seeds") is not None and (not isinstance(values["max_seeds"], int) or values["max_seeds"] < values.get("min_seeds", 3)):
        raise fail("policy.max_seeds", f"expected an integer >= min_seeds ({values.get('min_seeds', 3)}) or null")
    for name in ("max_nonfinite", "min_seeds", "seed_step", "probe_steps", "bootstrap_replicates"):
        if name in values and (not isinstance(values[name], int) or values[name] < (0 if name == "max_nonfinite" else 1)):
            raise fail(f"policy.{name}", f"expected a {'non-negative' if name == 'max_nonfinite' else 'positive'} integer")
    sizes = values.get("probe_batch_sizes", [1])
    if not isinstance(sizes, list) or not sizes or not all(isinstance(b, int) and b > 0 for b in sizes):
        raise fail("policy.probe_batch_sizes", "expected a non-empty list of positive integers")
    values["probe_batch_sizes"] = tuple(sizes)
    return Policy(**values)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
