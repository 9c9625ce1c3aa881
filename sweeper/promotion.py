"""``sweeper promote SWEEP``: retrain the sweep's best candidate and the family's baselines on
several seeds with the same budget, judge them on the test split, record the verdict in MLflow.

Every check that can fail on the user's input (sweep name, seeds, epochs, tracking store, a
sweep whose trials all diverged) runs before Ray starts. The retraining runs as Ray tasks, so a
cluster runs the seeds in parallel; latency is measured afterwards in this process, one model
after the other, so the numbers are comparable.

Ctrl-C stops it cleanly: before the promotion run exists nothing is left behind; after, the run
ends KILLED (tag ``sweeper.status`` = interrupted), and running the command again records a new,
complete promotion run next to it, as MLflow shows any interrupted run.
"""
from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence

import numpy as np
import ray
import torch

from search_spaces.promotion import Policy
from sweeper import report as reports
from sweeper.cluster import start_ray
from sweeper.interrupts import ctrl_c_deferred
from sweeper.memory import peak_forward_memory_mb
from sweeper.decision import Interval, ModelEvidence, Verdict, bootstrap_relative_gain, decide
from sweeper.model_folder import PROGRAM, ExportedModel, instantiate, write_folder
from sweeper.sweeps import DEFAULT_STORAGE, SweepRecord, TrialSummary, load_record, rank_trials, summarise_trials
from sweeper.tracking import PROMOTION_ARTIFACTS, SweepTracker, check_reachable
from trainables.data import DataSplits
from trainables.errors import ConfigError, UserError
from trainables.families import Family, get_family
from trainables.train_loop import (
    RetrainResult,
    TrainSettings,
    batch1_latencies,
    build_model,
    forward,
    retrain_and_test,
    stability_probe,
)

logger = logging.getLogger(__name__)

CANDIDATE = "candidate"
REFERENCE = "reference"  # the family's non-learned reference, scored on the test split like a model
LATENCY_REPEATS = 100


class NothingToPromoteError(UserError):
    pass


@dataclass(frozen=True)
class PromoteOptions:
    sweep: str
    storage: str = DEFAULT_STORAGE
    tracking_uri: str | None = None  # default: where the sweep was tracked
    seeds: int = 3
    epochs: int | None = None  # default: the sweep's
    cpus_per_trial: float | None = None  # default: the sweep's
    gpus_per_trial: float | None = None
    address: str | None = None  # an existing Ray cluster; default: local Ray


@dataclass(frozen=True)
class PromotionOutcome:
    sweep: str
    family: str
    candidate_trial: str
    candidate_config: dict[str, Any]
    verdict: Verdict
    evidence: tuple[ModelEvidence, ...]
    metric: str
    run_id: str
    model_name: str
    model_version: str
    alias: str | None
    tracking_uri: str
    seconds: float
    reference: dict[str, float]  # the non-learned reference's metrics on the test split ({}: none)
    slices: dict[str, dict[str, float]]  # slice -> model or REFERENCE -> metric on the slice's test rows


@dataclass(frozen=True)
class _Plan:
    options: PromoteOptions
    record: SweepRecord
    family: Family
    policy: Policy
    models: dict[str, dict[str, Any]]  # name -> config, the candidate first
    candidate: TrialSummary
    tracking_uri: str
    settings: TrainSettings
    cpus: float
    gpus: float


def promote(options: PromoteOptions) -> PromotionOutcome:
    started = time.perf_counter()
    plan = _plan(options)
    record, family = plan.record, plan.family
    data = family.load_data(record.data_settings, Path(record.data_file) if record.data_file else None, record.seed)
    context = family.context(data.train)
    started_ray = start_ray(options.address)
    try:
        runs, probe = _retrain(plan, data, context)
    finally:
        if started_ray:
            ray.shutdown()
    weights = {name: next((r.state for r in results if r.state is not None), None) for name, results in runs.items()}
    latency = _latencies(plan, data, context, weights)
    memory = _peak_memory(plan, context)
    evidence = tuple(_evidence(plan, name, runs[name], latency.get(name, float("nan")), memory.get(name)) for name in plan.models)
    reference_outputs = family.reference(data)(data.test) if family.reference else None
    reference = family.evaluate(reference_outputs, data.test) if reference_outputs is not None else {}
    gains = _gains(plan, runs, data, reference_outputs)
    reference_gain = gains.pop(REFERENCE, None)
    verdict = decide(evidence[0], evidence[1:], gains, probe, plan.policy, reference_gain)
    slices = _slice_metrics(plan, runs, data.test, reference_outputs)
    tracker = SweepTracker(plan.tracking_uri, family.name)
    with tempfile.TemporaryDirectory() as directory:
        folder = Path(directory)
        _write_report(plan, verdict, evidence, runs, data, context, weights[CANDIDATE], reference, slices, folder / "report")
        exported = _export_candidate(plan, context, weights[CANDIDATE], evidence[0], runs[CANDIDATE], folder / "model")
        run_id = tracker.start_promotion(record.name, record.parent_run_id, _params(plan))
        with _killed_on_interrupt(tracker, run_id):
            # Each write whole: a Ctrl-C takes effect between them, so the run can still be ended.
            with ctrl_c_deferred():
                _log_results(tracker, run_id, plan, evidence, gains, verdict, reference, slices)
            with ctrl_c_deferred():
                tracker.client.log_artifacts(run_id, str(folder / "report"), PROMOTION_ARTIFACTS["report"])
            if exported is not None:
                with ctrl_c_deferred():
                    tracker.client.log_artifacts(run_id, str(exported), PROMOTION_ARTIFACTS["model_folder"])
            traceable = exported is not None and (exported / PROGRAM).is_file()
            with ctrl_c_deferred():
                version, alias = _register(tracker, run_id, plan, context, weights[CANDIDATE], data, verdict, traceable)
            with ctrl_c_deferred():
                tracker.finish(run_id, verdict.decision)
    return PromotionOutcome(
        record.name, family.name, plan.candidate.trial_id, dict(plan.models[CANDIDATE]), verdict, evidence,
        plan.policy.metric, run_id, family.name, version, alias, plan.tracking_uri, time.perf_counter() - started, reference, slices,
    )  # fmt: skip


def _plan(options: PromoteOptions) -> _Plan:
    if options.seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, got {options.seeds} (a promote verdict needs at least 3)")
    if options.epochs is not None and options.epochs < 1:
        raise ConfigError(f"--epochs must be positive, got {options.epochs}")
    record = load_record(options.sweep, options.storage)
    family = get_family(record.family)
    promotion = family.promotion()
    tracking_uri = options.tracking_uri or record.tracking_uri
    check_reachable(tracking_uri)
    trials = summarise_trials(record, family.validation_metric, family.mode)
    ranked = rank_trials(trials, family.mode)
    if not ranked:
        statuses = sorted({t.status for t in trials})
        if statuses == ["diverged"]:
            raise NothingToPromoteError(
                f"every trial of sweep {record.name!r} diverged; there is no candidate to promote. "
                "Narrow the learning_rate range and launch again"
            )
        raise NothingToPromoteError(f"sweep {record.name!r} has no finished trial (trial states: {', '.join(statuses)}); finish or resume it first")
    candidate = ranked[0]
    settings = TrainSettings(family=family.name, epochs=options.epochs or record.epochs, seed=record.seed)
    return _Plan(
        options, record, family, promotion.policy, {CANDIDATE: dict(candidate.config), **promotion.baselines}, candidate,
        tracking_uri, settings,
        cpus=options.cpus_per_trial or record.cpus_per_trial,
        gpus=options.gpus_per_trial if options.gpus_per_trial is not None else record.gpus_per_trial,
    )  # fmt: skip


# ---------------------------------------------------------------- retraining on Ray


def _retrain_task(config, data, context, settings, seed, cpus) -> RetrainResult:
    torch.set_num_threads(max(1, int(cpus)))
    return retrain_and_test(config, data, context, settings, seed)


def _probe_task(config, data, context, settings, batch_sizes, steps, cpus) -> dict[int, bool]:
    torch.set_num_threads(max(1, int(cpus)))
    return stability_probe(config, data, context, settings, batch_sizes, steps)


def _retrain(plan: _Plan, data: DataSplits, context: Mapping[str, Any]) -> tuple[dict[str, list[RetrainResult]], dict[int, bool]]:
    """Every model on every seed, plus the candidate's stability probe, as parallel Ray tasks."""
    resources = {"num_cpus": plan.cpus, "num_gpus": plan.gpus}
    data_ref = ray.put(data)  # once, shared by every task on every node
    retrain = ray.remote(**resources)(_retrain_task)
    seeds = [plan.record.seed + 1000 + index for index in range(plan.options.seeds)]
    futures = {
        name: [retrain.remote(config, data_ref, context, plan.settings, seed, plan.cpus) for seed in seeds]
        for name, config in plan.models.items()
    }
    probe = ray.remote(**resources)(_probe_task).remote(
        plan.models[CANDIDATE], data_ref, context, plan.settings, plan.policy.probe_batch_sizes, plan.policy.probe_steps, plan.cpus
    )
    logger.info("retraining %d models x %d seeds for %d epochs", len(futures), len(seeds), plan.settings.epochs)
    return {name: ray.get(refs) for name, refs in futures.items()}, ray.get(probe)


def _latencies(plan: _Plan, data: DataSplits, context, weights: Mapping[str, Any]) -> dict[str, float]:
    """p95 batch-1 latency of each model that finished a run, with the threads a trial gets."""
    models = {name: instantiate(plan.family.name, plan.models[name], context, w) for name, w in weights.items() if w is not None}
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, int(plan.cpus)))
    try:
        measured = batch1_latencies(models, plan.family, data.test, torch.device("cpu"), LATENCY_REPEATS)
    finally:
        torch.set_num_threads(threads)
    return {name: values["latency_ms_p95"] for name, values in measured.items()}


def _peak_memory(plan: _Plan, context: Mapping[str, Any]) -> dict[str, float]:
    """Peak MB of a batch-1 forward pass at the policy's length, each model in a fresh process."""
    length = plan.policy.peak_memory_length
    if length is None:
        return {}
    return {name: peak_forward_memory_mb(plan.family.name, config, context, length) for name, config in plan.models.items()}


def _evidence(plan: _Plan, name: str, results: Sequence[RetrainResult], latency_p95_ms: float, memory_mb: float | None) -> ModelEvidence:
    metric = plan.policy.metric
    return ModelEvidence(
        name=name,
        test=tuple(r.test.get(metric, float("nan")) for r in results),
        validation=tuple(r.validation.get(metric, float("nan")) for r in results),
        diverged_seeds=sum(r.diverged for r in results),
        nonfinite_count=sum(r.nonfinite_count for r in results),
        latency_p95_ms=latency_p95_ms,
        peak_memory_mb=memory_mb,
    )


def _gains(plan: _Plan, runs: Mapping[str, Sequence[RetrainResult]], data: DataSplits,
           reference_outputs: list[np.ndarray] | None) -> dict[str, Interval]:  # fmt: skip
    """Bootstrap interval of the candidate's gain over each baseline, and over the non-learned
    reference (key REFERENCE; one deterministic "seed", so only its test rows are resampled)."""
    policy = plan.policy
    targets = {name: data.test[name] for name in plan.family.targets}
    finished = {name: [r.test_outputs for r in results if r.test_outputs] for name, results in runs.items()}
    if reference_outputs is not None:
        finished[REFERENCE] = [reference_outputs]
    samples, score = _resampling(plan.family, policy.metric, finished, targets)
    rows = len(next(iter(targets.values())))
    return {
        name: bootstrap_relative_gain(samples[CANDIDATE], samples[name], score, rows, policy.mode, policy.confidence,
                                      policy.bootstrap_replicates, seed=plan.record.seed)  # fmt: skip
        for name in samples
        if name != CANDIDATE and samples[name] and samples[CANDIDATE]
    }


def _slice_metrics(plan: _Plan, runs: Mapping[str, Sequence[RetrainResult]], test: Mapping[str, np.ndarray],
                   reference_outputs: list[np.ndarray] | None) -> dict[str, dict[str, float]]:  # fmt: skip
    """The policy metric on each of the family's slices of the test split (e.g. by active receivers),
    per model averaged over its seeds, and for the reference: where a model wins and where it loses."""
    family, metric = plan.family, plan.policy.metric
    if family.slices is None:
        return {}
    outputs = {name: [r.test_outputs for r in results if r.test_outputs] for name, results in runs.items()}
    if reference_outputs is not None:
        outputs[REFERENCE] = [reference_outputs]
    table = {}
    for name, rows in family.slices(test).items():
        if rows.any():
            part = {column: values[rows] for column, values in test.items()}
            table[name] = {model: float(np.mean([family.evaluate([o[rows] for o in seed], part)[metric] for seed in seeds]))
                           for model, seeds in outputs.items() if seeds}  # fmt: skip
    return table


def _resampling(family: Family, metric: str, outputs: Mapping[str, list], targets: Mapping[str, np.ndarray]) -> tuple[dict, Any]:
    """Per model and seed, what the bootstrap resamples, and how a resample of rows is scored.

    For a metric that is a mean over rows, each seed's rows are scored once and a resample is
    only an average; otherwise the family's evaluate runs on every resample.
    """
    if family.row_scores is not None:
        per_row = {name: [family.row_scores(o, targets).get(metric) for o in seeds] for name, seeds in outputs.items()}
        if all(values is not None for seeds in per_row.values() for values in seeds):
            return per_row, lambda values, rows: float(values[rows].mean())

    def evaluate(seed_outputs: Sequence[np.ndarray], rows: np.ndarray) -> float:
        return family.evaluate([o[rows] for o in seed_outputs], {k: v[rows] for k, v in targets.items()})[metric]

    return dict(outputs), evaluate


# ---------------------------------------------------------------- report and MLflow


def _write_report(plan, verdict, evidence, runs, data, context, candidate_weights, reference, slices, directory: Path) -> None:
    family, metric = plan.family, plan.policy.metric
    directory.mkdir(parents=True)
    figures = {
        "comparison.png": reports.comparison_plot(evidence, metric, reference.get(metric)),
        "learning_curves.png": reports.learning_curves_plot(
            {name: [r.history for r in results] for name, results in runs.items()}, family.validation_metric
        ),
    }
    if family.plots:
        outputs = {name: [r.test_outputs for r in results if r.test_outputs] for name, results in runs.items()}
        figures.update(family.plots({k: v for k, v in outputs.items() if v}, {k: data.test[k] for k in family.targets}))
    if candidate_weights is not None:
        model = instantiate(family.name, plan.models[CANDIDATE], context, candidate_weights)
        figures.update(reports.attention_plots(model, [torch.from_numpy(data.test[name][:3]) for name in family.inputs]))
    names = reports.save_figures(figures, directory)
    params = {name: sum(p.numel() for p in build_model(family, config, context).parameters()) for name, config in plan.models.items()}
    blocks = _report_blocks(plan, verdict, evidence, reference, slices, params, names)
    title = f"Promotion of sweep {plan.record.name} ({family.name}): {verdict.decision}"
    (directory / "report.md").write_text(reports.render_markdown(title, blocks))
    (directory / "report.html").write_text(reports.render_html(title, blocks))


def _report_blocks(plan, verdict, evidence, reference, slices, params, figures) -> list[reports.Block]:
    metric, gain = plan.policy.metric, verdict.gain
    gain_text = f"{gain.point:+.1%} (one-sided {plan.policy.confidence:.0%} bound {gain.low:+.1%}, upper {gain.high:+.1%})" if gain else "not measurable"
    blocks: list[reports.Block] = [
        ("text", f"Verdict: {verdict.decision}. Candidate: trial {plan.candidate.trial_id} ({plan.models[CANDIDATE]['architecture']}), "
                 f"judged against {verdict.baseline} on the test split over {plan.options.seeds} seeds of {plan.settings.epochs} epochs. "
                 f"Relative gain in {metric}: {gain_text}."),
        ("heading", "Criteria"),
        ("table", reports.criteria_table(verdict)),
        ("heading", "Models"),
        ("table", reports.models_table(evidence, metric, params)),
        ("text", "Candidate config: " + ", ".join(f"{k}={v}" for k, v in plan.models[CANDIDATE].items())),
    ]  # fmt: skip
    if reference:
        against = verdict.reference_gain
        gain_text = f"; the candidate's gain over it: {against.point:+.1%} (lower bound {against.low:+.1%})" if against else ""
        blocks.append(("text", f"Non-learned reference on the test split (fitted on the training split, not retrained): {metric} "
                               f"{reference[metric]:.4g}{gain_text}. All its metrics: " + ", ".join(f"{k} {v:.4g}" for k, v in reference.items())))  # fmt: skip
    if slices:
        models = list(next(iter(slices.values())))
        rows = [(name, *(f"{values.get(model, float('nan')):.4g}" for model in models)) for name, values in slices.items()]
        blocks += [("heading", f"Test {metric} by slice (mean over seeds)"), ("table", reports.Table(("slice", *models), rows))]
    blocks.append(("text", "Method: the gain interval is a two-level percentile bootstrap (training seeds resampled per model, "
                           f"test rows resampled jointly) with {plan.policy.bootstrap_replicates} replicates; each run is tested at "
                           "its best validation epoch; latency is the p95 of batch-1 forward passes in one process."))  # fmt: skip
    blocks.append(("heading", "Plots"))
    blocks += [("figure", name) for name in figures]
    return blocks


def _export_candidate(plan, context, weights, evidence: ModelEvidence, results, directory: Path) -> Path | None:
    if weights is None:
        return None
    test = [r.test for r in results if r.test]
    metrics = {
        "test": {k: float(np.mean([t[k] for t in test])) for k in test[0]} if test else {},
        "latency_ms_p95": evidence.latency_p95_ms,
        "seeds": evidence.seeds,
    }
    source = {"sweep": plan.record.name, "trial": plan.candidate.trial_id, "retrained_seed": results[0].seed}
    return write_folder(ExportedModel(plan.family.name, plan.models[CANDIDATE], context, weights, metrics, source), directory)


def _params(plan: _Plan) -> dict[str, Any]:
    return {
        "seeds": plan.options.seeds,
        "epochs": plan.settings.epochs,
        "candidate_trial": plan.candidate.trial_id,
        **{f"candidate.{k}": v for k, v in plan.models[CANDIDATE].items()},
        **{f"baseline.{name}": config["architecture"] for name, config in plan.models.items() if name != CANDIDATE},
        **{f"policy.{k}": v for k, v in vars(plan.policy).items()},
    }


def _log_results(tracker, run_id, plan, evidence, gains, verdict, reference, slices) -> None:
    metric = plan.policy.metric
    for model in evidence:
        for index, (test, validation) in enumerate(zip(model.test, model.validation)):
            tracker.log_metrics(run_id, {f"{model.name}_test_{metric}": test, f"{model.name}_val_{metric}": validation}, step=index)
        tracker.log_metrics(run_id, {
            f"{model.name}_test_{metric}_mean": model.mean_test(),
            f"{model.name}_test_{metric}_std": float(np.nanstd(model.test)),
            f"{model.name}_latency_ms_p95": model.latency_p95_ms,
            f"{model.name}_diverged_seeds": model.diverged_seeds,
        }, step=0)  # fmt: skip
    for name, gain in gains.items():
        tracker.log_metrics(run_id, {f"gain_vs_{name}": gain.point, f"gain_vs_{name}_low": gain.low, f"gain_vs_{name}_high": gain.high}, step=0)
    tracker.log_metrics(run_id, {f"reference_test_{k}": v for k, v in reference.items()}, step=0)
    if verdict.reference_gain is not None:
        gain = verdict.reference_gain
        tracker.log_metrics(run_id, {"gain_vs_reference": gain.point, "gain_vs_reference_low": gain.low, "gain_vs_reference_high": gain.high}, step=0)
    for name, values in slices.items():
        tracker.log_metrics(run_id, {f"slice/{name}/{model}_test_{metric}": value for model, value in values.items()}, step=0)
    tags = {"sweeper.verdict": verdict.decision, "sweeper.baseline": verdict.baseline}
    tags.update({f"sweeper.criterion.{c.name.replace(' ', '_')}": "pass" if c.passed else "fail" for c in verdict.criteria})
    tracker.set_tags(run_id, tags)


@contextlib.contextmanager
def _killed_on_interrupt(tracker: SweepTracker, run_id: str) -> Iterator[None]:
    """Ctrl-C ends the promotion run as KILLED (and tags any model version it registered), instead
    of leaving it RUNNING forever; rerunning the command records a new, complete promotion run."""
    try:
        yield
    except KeyboardInterrupt:
        tracker.finish(run_id, "interrupted", "KILLED")
        for version in tracker.client.search_model_versions(f"run_id = '{run_id}'"):
            tracker.client.set_model_version_tag(version.name, version.version, "sweeper.verdict", "interrupted")
        raise


def _register(tracker, run_id, plan, context, weights, data, verdict, traceable: bool) -> tuple[str, str | None]:
    """Log the candidate as an MLflow model, register it under the family's name, alias the verdict."""
    if weights is None:
        return "", None
    model = instantiate(plan.family.name, plan.models[CANDIDATE], context, weights)
    example = tuple(data.test[name][:2] for name in plan.family.inputs)
    with torch.no_grad():
        outputs = forward(model, plan.family, {name: torch.from_numpy(a) for name, a in zip(plan.family.inputs, example)})
    version = tracker.log_model(run_id, model, plan.family.inputs, example, plan.family.outputs, [o.numpy() for o in outputs], traceable)
    return version, tracker.record_verdict(version, verdict.decision)
