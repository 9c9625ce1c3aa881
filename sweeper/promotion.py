"""``sweeper promote SWEEP``: retrain the sweep's best candidate and the family's baselines on
several seeds with the same budget, judge them on the test split, record the verdict in MLflow.

Every check that can fail on the user's input (sweep name, seeds, epochs, tracking store, a
sweep whose trials all diverged) runs before Ray starts. The retraining runs as Ray tasks, so a
cluster runs the seeds in parallel; latency is measured before it in this process, the models
in turn, so the numbers are comparable and no retraining slows them.

Ctrl-C stops it cleanly: before the promotion run exists nothing is left behind; after, the run
ends KILLED (tag ``sweeper.status`` = interrupted), and running the command again records a new,
complete promotion run next to it, as MLflow shows any interrupted run.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import re
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import ray
import torch

from search_spaces.policy import Policy
from sweeper import promotion_report
from sweeper.cluster import start_ray
from sweeper.interrupts import ctrl_c_deferred
from sweeper.memory import peak_forward_memory_mb
from sweeper.decision import Interval, Measured, ModelEvidence, Verdict, decide, gain_interval, measured_rows, sequential_looks, should_stop
from sweeper.model_folder import ExportedModel, instantiate, load, write_folder
from sweeper.objectives import LATENCY, objective_values, resolve_objectives, sweep_front
from sweeper.sweeps import SweepRecord, TrialResult, rank_trials, read_trials, sweep_data
from sweeper.journal import SweepLog, open_sweep_log
from sweeper.tracking import PROMOTION_ARTIFACTS, STATUS_TAG, SWEEP_KEY, check_reachable, split_records
from trainables.data import SPLITS, DataSplits
from trainables.errors import ConfigError, UserError
from trainables.families import Family
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
AUTO = "auto"
REFERENCE = "reference"  # the family's non-learned reference, scored on the test split like a model
LATENCY_REPEATS = 100


class NothingToPromoteError(UserError):
    pass


MODEL_NAME = re.compile(r"[\w.-]+")  # what models:/NAME@ALIAS URIs (sweeper export --model) can name


@dataclass(frozen=True)
class PromoteOptions:
    tracking_uri: str | None = None  # default: where the sweep was tracked
    seeds: int | str = "auto"  # per model; "auto": rounds from the policy's min_seeds to max_seeds (decision.sequential_looks)
    epochs: int | None = None  # default: the sweep's
    cpus_per_trial: float | None = None  # default: the sweep's
    gpus_per_trial: float | None = None
    address: str | None = None  # an existing Ray cluster; default: local Ray
    candidate: str | None = None  # a trial id; default: the best trial (see choose_candidate)
    registered_model: str | None = None  # the registry's model name; default: the family's name


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
    looks: list[tuple[int, float]]  # (seeds per model, one-sided confidence) of each look taken


@dataclass(frozen=True)
class _Plan:
    options: PromoteOptions
    record: SweepRecord
    family: Family
    policy: Policy
    models: dict[str, dict[str, Any]]  # name -> config, the candidate first
    candidate: TrialResult
    tracking_uri: str
    settings: TrainSettings
    looks: list[tuple[int, float, bool]]  # (seeds per model, one-sided confidence, last?) per round
    cpus: float
    gpus: float

    @property
    def model_name(self) -> str:
        """The registered model's name."""
        return self.options.registered_model or self.family.name


def promote(record: SweepRecord, family: Family, options: PromoteOptions = PromoteOptions()) -> PromotionOutcome:
    """Retrain the sweep's candidate and the family's baselines, judge them, record and register the verdict."""
    started = time.perf_counter()
    plan = _plan(record, family, options)
    record, family = plan.record, plan.family
    data = sweep_data(record, family)
    context = family.context(data.train)
    reference_outputs = family.reference(data)(data.test) if family.reference else None
    reference = family.evaluate(reference_outputs, data.test) if reference_outputs is not None else {}
    started_ray = start_ray(options.address, record.plugins)
    try:
        runs, judged = _judge_in_rounds(plan, data, context, reference_outputs)
    finally:
        if started_ray:
            ray.shutdown()
    evidence, verdict, weights = judged.evidence, judged.verdict, judged.weights
    slices = _slice_metrics(plan, runs, data.test, reference_outputs)
    log, key = promotion_log(record, plan.tracking_uri), f"promotion:{datetime.now():%Y%m%d-%H%M%S-%f}"
    folder = log.journal.path.parent / "promotions" / key.replace(":", "-")  # kept until sent: the journal may send it later
    _write_report(plan, verdict, evidence, runs, data, context, weights[CANDIDATE], reference, slices, judged.looks, folder / "report")
    exported = _export_candidate(plan, context, weights[CANDIDATE], evidence[0], runs[CANDIDATE], folder / "model")
    with _killed_on_interrupt(log, key):
        # Each write whole: a Ctrl-C takes effect between them, so the run can still be ended.
        with ctrl_c_deferred():
            log.start_run(key, "promotion", "promotion", _params(plan), {STATUS_TAG: "running"}, parent=SWEEP_KEY)
            log.log_inputs(key, split_records(family.name, data, SPLITS))
            _log_results(log, key, plan, evidence, verdict, reference, slices, judged.looks)
        with ctrl_c_deferred():
            log.log_artifacts(key, folder / "report", PROMOTION_ARTIFACTS["report"])
        if exported is not None:
            with ctrl_c_deferred():
                log.log_artifacts(key, exported, PROMOTION_ARTIFACTS["model_folder"])
        with ctrl_c_deferred():
            version, alias = _register(log, key, plan, exported, data, verdict)
        with ctrl_c_deferred():
            log.finish(key, verdict.decision)
    if log.drain():
        shutil.rmtree(folder)
    run_id = log.run_id(key) or ""
    return PromotionOutcome(
        record.name, family.name, plan.candidate.trial_id, dict(plan.models[CANDIDATE]), verdict, evidence,
        plan.policy.metric, run_id, plan.model_name, version, alias, plan.tracking_uri, time.perf_counter() - started, reference, slices,
        judged.looks,
    )  # fmt: skip


def _plan(record: SweepRecord, family: Family, options: PromoteOptions) -> _Plan:
    if options.seeds != AUTO and (not isinstance(options.seeds, int) or options.seeds < 1):
        raise ConfigError(f"--seeds must be {AUTO} or a positive integer, got {options.seeds!r} (a promote verdict needs at least 3)")
    if options.epochs is not None and options.epochs < 1:
        raise ConfigError(f"--epochs must be positive, got {options.epochs}")
    if options.registered_model is not None and not MODEL_NAME.fullmatch(options.registered_model):
        raise ConfigError(f"--registered-model {options.registered_model!r}: use letters, digits, '.', '_' and '-' "
                          "(the name goes into models:/NAME@ALIAS URIs)")  # fmt: skip
    promotion = family.promotion()
    tracking_uri = options.tracking_uri or record.tracking_uri
    check_reachable(tracking_uri)
    trials = read_trials(record, family.validation_metric, family.mode)
    ranked = rank_trials(trials, family.mode)
    if not ranked:
        statuses = sorted({t.status for t in trials})
        if statuses == ["diverged"]:
            raise NothingToPromoteError(
                f"every trial of sweep {record.name!r} diverged; there is no candidate to promote. "
                "Narrow the learning_rate range and launch again"
            )
        raise NothingToPromoteError(f"sweep {record.name!r} has no finished trial (trial states: {', '.join(statuses)}); finish or resume it first")
    policy = promotion.policy
    candidate = choose_candidate(ranked, record, family, policy, options.candidate)
    settings = TrainSettings(family=family.name, epochs=options.epochs or record.epochs, seed=record.seed, plugins=tuple(record.plugins))
    looks = sequential_looks(policy) if options.seeds == AUTO else [(int(options.seeds), policy.confidence, True)]
    return _Plan(
        options, record, family, policy, {CANDIDATE: dict(candidate.config), **promotion.baselines}, candidate,
        tracking_uri, settings, looks,
        cpus=options.cpus_per_trial or record.cpus_per_trial,
        gpus=options.gpus_per_trial if options.gpus_per_trial is not None else record.gpus_per_trial,
    )  # fmt: skip


def choose_candidate(ranked: Sequence[TrialResult], record: SweepRecord, family: Family, policy: Policy, trial_id: str | None) -> TrialResult:
    """The trial ``trial_id``; by default the best trial by the main metric, or, for a sweep of
    several objectives, the front member with the best main metric inside the latency budget."""
    if trial_id is not None:
        by_id = {trial.trial_id: trial for trial in ranked}
        if trial_id not in by_id:
            raise ConfigError(f"--candidate {trial_id}: not a finished, non-diverged trial of sweep {record.name!r}; "
                              f"choose one of {', '.join(by_id)} (sweeper status {record.name})")  # fmt: skip
        return by_id[trial_id]
    front = sweep_front(ranked, resolve_objectives(family, record.objectives))
    if front is None:
        return ranked[0]
    members = front.trials
    budget = policy.latency_budget_ms
    inside = [trial for trial in members if budget is None or objective_values(trial, [LATENCY])[0] <= budget]
    if not inside:
        logger.warning("no member of the Pareto front is inside the %s ms latency budget; promoting the most accurate one", budget)
    return (inside or members)[0]


# ---------------------------------------------------------------- retraining on Ray


def _retrain_task(config, data, context, settings, seed, cpus) -> RetrainResult:
    torch.set_num_threads(max(1, int(cpus)))
    return retrain_and_test(config, data, context, settings, seed)


def _probe_task(config, data, context, settings, batch_sizes, steps, cpus) -> dict[int, bool]:
    torch.set_num_threads(max(1, int(cpus)))
    return stability_probe(config, data, context, settings, batch_sizes, steps)


@dataclass(frozen=True)
class _Judged:
    """The verdict at one look, with what it was reached on."""

    evidence: tuple[ModelEvidence, ...]  # the candidate first
    verdict: Verdict
    weights: dict[str, Any]  # each model's weights from its first finished run
    looks: list[tuple[int, float]]  # (seeds per model, confidence) of each look so far


def _judge_in_rounds(plan: _Plan, data: DataSplits, context: Mapping[str, Any],
                     reference_outputs: list[np.ndarray] | None) -> tuple[dict[str, list[RetrainResult]], _Judged]:  # fmt: skip
    """Retrain every model in rounds of seeds as parallel Ray tasks and judge after each round,
    until the verdict is clear or the seeds run out (one round for a fixed --seeds). The next
    round's runs are wanted as soon as the current one's, so the slots that a round's last runs
    leave free start on them; a clear verdict cancels them."""
    resources = {"num_cpus": plan.cpus, "num_gpus": plan.gpus}
    data_ref = ray.put(data)  # once, shared by every task on every node
    probe = ray.remote(**resources)(_probe_task).remote(
        plan.models[CANDIDATE], data_ref, context, plan.settings, plan.policy.probe_batch_sizes, plan.policy.probe_steps, plan.cpus
    )
    # Measured before the retraining starts, beside only the probe: retraining runs on the same cores would slow them.
    latency, memory = _latencies(plan, data, context), _peak_memory(plan, context)
    retraining = _Retraining(plan, data_ref, context, sorted(plan.models, key=latency.__getitem__, reverse=True))
    retraining.submit(plan.looks[0][0])
    looks: list[tuple[int, float]] = []
    for position, (seeds, confidence, last) in enumerate(plan.looks):
        if not last:
            retraining.submit(plan.looks[position + 1][0], ahead=True)
        runs = retraining.wait_for(seeds)
        weights = {name: next((r.state for r in results if r.state is not None), None) for name, results in runs.items()}
        policy = replace(plan.policy, confidence=confidence)
        evidence = tuple(_evidence(plan, name, runs[name], latency[name], memory.get(name)) for name in plan.models)
        gains = _gains(plan, policy, runs, data, reference_outputs)
        reference_gain = gains.pop(REFERENCE, None)
        verdict = decide(evidence[0], evidence[1:], gains, ray.get(probe), policy, reference_gain)
        looks.append((seeds, confidence))
        logger.info("look %d at %d seeds per model (one-sided confidence %.4g): %s", len(looks), seeds, confidence, verdict.decision)
        if last or should_stop(verdict, policy):
            retraining.cancel()
            return runs, _Judged(evidence, verdict, weights, looks)
    raise AssertionError("the looks of a promotion always end with a last one")


class _Retraining:
    """A promotion's retraining runs as Ray tasks: wanted up to a number of seeds per model,
    started in order as slots free up, gathered as they finish, cancelled when no look needs them.

    Each model has seeds of its own, so two models with the same config are two independent
    samples (an A/A comparison sees training noise, not the same run twice). Within a round the
    slowest model's runs start first, so that the round ends on short runs (longest processing
    time first, by batch-1 latency as the measure of a model's cost). Runs go to Ray only as slots
    free up: Ray promises no order among queued tasks, and a run no look needs is never started."""

    def __init__(self, plan: _Plan, data_ref: ray.ObjectRef, context: Mapping[str, Any], slowest_first: Sequence[str],
                 retrain: Callable[..., RetrainResult] = _retrain_task) -> None:  # fmt: skip
        self.plan, self.data_ref, self.context, self.order = plan, data_ref, context, list(slowest_first)
        self.task = ray.remote(num_cpus=plan.cpus, num_gpus=plan.gpus)(retrain)
        self.waiting: list[tuple[str, int]] = []  # (model, seed index) in the order they start
        self.running: dict[ray.ObjectRef, tuple[str, int]] = {}
        self.finished: dict[str, dict[int, RetrainResult]] = {name: {} for name in plan.models}
        self.positions = {name: position for position, name in enumerate(plan.models)}  # a model's seeds follow its place
        self.wanted = 0  # seeds per model
        self.started = time.perf_counter()

    def submit(self, seeds: int, ahead: bool = False) -> None:
        """Want runs until every model has ``seeds`` of them; they start after those wanted before.
        ``ahead``: for the next look, which the current one may make unnecessary."""
        self.waiting += [(name, index) for name in self.order for index in range(self.wanted, seeds)]
        self.wanted = max(self.wanted, seeds)
        why = " for the next look (cancelled if this one decides)" if ahead else ""
        logger.info("retraining %d models up to %d seeds each%s: %d runs of %d epochs to go",
                    len(self.order), seeds, why, len(self.waiting) + len(self.running), self.plan.settings.epochs)  # fmt: skip
        self._start()

    def wait_for(self, seeds: int) -> dict[str, list[RetrainResult]]:
        """Each model's first ``seeds`` runs, in seed order, once they have finished."""
        while any(index not in runs for runs in self.finished.values() for index in range(seeds)):
            (done,), _ = ray.wait(list(self.running))
            name, index = self.running.pop(done)
            self.finished[name][index] = result = ray.get(done)
            self._start()
            self._report(name, result)
        return {name: [runs[index] for index in range(seeds)] for name, runs in self.finished.items()}

    def cancel(self, patience_s: float = 30.0) -> None:
        """Stop the runs no look needs: forget those not started, kill those running. Ray's cancel
        misses a task still being handed to its worker, so it is repeated until each has ended (a
        run that outlasts ``patience_s`` ends with Ray, or with this driver on a cluster)."""
        self.waiting.clear()
        refs, deadline = list(self.running), time.monotonic() + patience_s
        while refs and time.monotonic() < deadline:
            for ref in refs:
                ray.cancel(ref, force=True)
            _, refs = ray.wait(refs, num_returns=len(refs), timeout=1.0)
        self.running.clear()

    def _start(self) -> None:
        slots = self._slots()
        while self.waiting and len(self.running) < slots:
            name, index = self.waiting.pop(0)
            seed = self.plan.record.seed + 1000 * (self.positions[name] + 1) + index
            ref = self.task.remote(self.plan.models[name], self.data_ref, self.context, self.plan.settings, seed, self.plan.cpus)
            self.running[ref] = (name, index)

    def _slots(self) -> int:
        """How many runs the cluster holds at once now (it may have grown)."""
        resources = ray.cluster_resources()
        fits = [resources.get(kind, 0.0) // need for kind, need in (("CPU", self.plan.cpus), ("GPU", self.plan.gpus)) if need]
        return max(1, int(min(fits, default=1)))

    def _report(self, name: str, result: RetrainResult) -> None:
        finished = sum(len(runs) for runs in self.finished.values())
        left_runs = len(self.waiting) + len(self.running)
        elapsed = time.perf_counter() - self.started
        value = result.test.get(self.plan.policy.metric, float("nan"))
        # Models differ in cost (a baseline may take ten times a candidate's time): a guess from the
        # runs so far means something only once every model still to run has finished one.
        unseen = {other for other, _ in [*self.waiting, *self.running.values()] if not self.finished[other]}
        left = f"about {elapsed / finished * left_runs:.0f} s left" if not unseen else f"time left known after a first {', '.join(sorted(unseen))} run"
        logger.info("  %d/%d %s seed %d: test %s %.4g; %.0f s so far, %s",
                    finished, finished + left_runs, name, result.seed, self.plan.policy.metric, value, elapsed, left)  # fmt: skip


def _latencies(plan: _Plan, data: DataSplits, context: Mapping[str, Any]) -> dict[str, float]:
    """p95 batch-1 latency of each model, with the threads a trial gets. The models are freshly
    initialised: a forward pass costs the same whatever the weights (no model branches on them)."""
    models = {name: build_model(plan.family, config, context).eval() for name, config in plan.models.items()}
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
    return {name: peak_forward_memory_mb(plan.family.name, config, context, length, plan.record.plugins) for name, config in plan.models.items()}


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


def _gains(plan: _Plan, policy: Policy, runs: Mapping[str, Sequence[RetrainResult]], data: DataSplits,
           reference_outputs: list[np.ndarray] | None) -> dict[str, Interval]:  # fmt: skip
    """Interval of the candidate's gain over each baseline, and over the non-learned reference
    (key REFERENCE; deterministic, so it has no training noise and one "seed" says all)."""
    targets = {name: data.test[name] for name in plan.family.targets}
    finished = {name: [r.test_outputs for r in results if r.test_outputs] for name, results in runs.items()}
    if reference_outputs is not None:
        finished[REFERENCE] = [reference_outputs]
    measured = _measured(plan.family, policy, finished, targets, seed=plan.record.seed)
    if CANDIDATE not in measured:
        return {}
    threshold = {REFERENCE: policy.min_gain_over_reference or 0.0}
    return {
        name: gain_interval(measured[CANDIDATE], model, policy.mode, policy.confidence, threshold.get(name, policy.min_relative_improvement))
        for name, model in measured.items()
        if name != CANDIDATE
    }  # fmt: skip


def _measured(family: Family, policy: Policy, outputs: Mapping[str, list], targets: Mapping[str, np.ndarray], seed: int) -> dict[str, Measured]:
    """Each model's per-seed test metric and its row part, for the interval.

    For a metric that is a mean over rows, each seed's rows are scored once and the row variance
    is exact; otherwise the family's evaluate runs on bootstrap resamples of the rows (the same
    resamples for every model, so the comparison stays paired)."""
    outputs = {name: seeds for name, seeds in outputs.items() if seeds}
    if family.row_scores is not None:
        per_row = {name: [family.row_scores(o, targets).get(policy.metric) for o in seeds] for name, seeds in outputs.items()}
        if all(values is not None for seeds in per_row.values() for values in seeds):
            return {name: measured_rows(np.stack(values), deterministic=name == REFERENCE) for name, values in per_row.items()}
    rows = len(next(iter(targets.values())))
    resamples = np.random.default_rng(seed).integers(0, rows, (policy.bootstrap_replicates, rows))

    def metric(seed_outputs: Sequence[np.ndarray], index: np.ndarray) -> float:
        return family.evaluate([o[index] for o in seed_outputs], {k: v[index] for k, v in targets.items()})[policy.metric]

    everything = np.arange(rows)
    return {
        name: Measured(
            np.array([metric(o, everything) for o in seeds]),
            np.array([np.mean([metric(o, index) for o in seeds]) for index in resamples]),
            deterministic=name == REFERENCE,
        )
        for name, seeds in outputs.items()
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


# ---------------------------------------------------------------- report and MLflow


def _write_report(plan, verdict, evidence, runs, data, context, candidate_weights, reference, slices, looks, directory: Path) -> None:
    family, metric = plan.family, plan.policy.metric
    directory.mkdir(parents=True)
    figures = {
        "comparison.png": promotion_report.comparison_plot(evidence, metric, reference.get(metric)),
        "learning_curves.png": promotion_report.learning_curves_plot(
            {name: [r.history for r in results] for name, results in runs.items()}, family.validation_metric
        ),
    }
    if family.plots:
        outputs = {name: [r.test_outputs for r in results if r.test_outputs] for name, results in runs.items()}
        figures.update(family.plots({k: v for k, v in outputs.items() if v}, {k: data.test[k] for k in family.targets}))
    if candidate_weights is not None:
        model = instantiate(family.name, plan.models[CANDIDATE], context, candidate_weights)
        figures.update(promotion_report.attention_plots(model, [torch.from_numpy(data.test[name][:3]) for name in family.inputs]))
    names = promotion_report.save_figures(figures, directory)
    params = {name: sum(p.numel() for p in build_model(family, config, context).parameters()) for name, config in plan.models.items()}
    blocks = _report_blocks(plan, verdict, evidence, reference, slices, looks, params, names)
    title = f"Promotion of sweep {plan.record.name} ({family.name}): {verdict.decision}"
    (directory / "report.md").write_text(promotion_report.render_markdown(title, blocks))
    (directory / "report.html").write_text(promotion_report.render_html(title, blocks))


def _report_blocks(plan, verdict, evidence, reference, slices, looks, params, figures) -> list[promotion_report.Block]:
    metric, gain, (seeds, confidence) = plan.policy.metric, verdict.gain, looks[-1]
    gain_text = f"{gain.point:+.1%} (one-sided {confidence:.2%} bound {gain.low:+.1%}, upper {gain.high:+.1%})" if gain else "not measurable"
    blocks: list[promotion_report.Block] = [
        ("text", f"Verdict: {verdict.decision}. Candidate: trial {plan.candidate.trial_id} ({plan.models[CANDIDATE]['architecture']}), "
                 f"judged against {verdict.baseline} on the test split over {seeds} seeds per model of {plan.settings.epochs} epochs. "
                 f"Relative gain in {metric}: {gain_text}."),
        ("text", _seeds_text(plan, looks, verdict)),
        ("heading", "Criteria"),
        ("table", promotion_report.criteria_table(verdict)),
        ("heading", "Models"),
        ("table", promotion_report.models_table(evidence, metric, params)),
        ("table", promotion_report.comparisons_table(verdict)),
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
        blocks += [("heading", f"Test {metric} by slice (mean over seeds)"), ("table", promotion_report.Table(("slice", *models), rows))]
    blocks.append(("text", "Method: the gain interval is Fieller's for the ratio of the mean test metrics, with Student's t on "
                           "Welch-Satterthwaite degrees of freedom; its variance adds each model's seed-to-seed variance (training "
                           "noise) and the paired variance of resampling the test rows (exact for metrics that are means over rows, "
                           f"else from {plan.policy.bootstrap_replicates} bootstrap resamples). Calibrated on synthetic problems of known "
                           "gain (sweeper/calibration.py; BENCHMARKS.md). Each run is tested at its best validation epoch; latency is "
                           "the p95 of batch-1 forward passes in one process."))  # fmt: skip
    blocks.append(("heading", "Plots"))
    blocks += [("figure", name) for name in figures]
    return blocks


def _seeds_text(plan: _Plan, looks: list[tuple[int, float]], verdict: Verdict) -> str:
    """How many seeds were used and why it stopped there."""
    if plan.options.seeds != AUTO:
        return f"Seeds: {looks[-1][0]} per model, as asked (--seeds {plan.options.seeds}), at one-sided confidence {looks[-1][1]:.2%}."
    taken = ", ".join(f"{seeds} seeds at {confidence:.2%}" for seeds, confidence in looks)
    planned = len(plan.looks)
    why = "the verdict was clear" if len(looks) < planned else f"the last planned look (max_seeds {looks[-1][0]})"
    return (f"Seeds: --seeds auto looked {len(looks)} of {planned} planned times ({taken}) and stopped at {looks[-1][0]} seeds "
            f"per model because {why}: {verdict.decision}. The error rate is spent over the looks (decision.sequential_looks).")  # fmt: skip


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
    exported = ExportedModel(plan.family.name, plan.models[CANDIDATE], context, weights, metrics, source, tuple(plan.record.plugins))
    return write_folder(exported, directory)


def _params(plan: _Plan) -> dict[str, Any]:
    return {
        "seeds": plan.options.seeds,
        "epochs": plan.settings.epochs,
        "candidate_trial": plan.candidate.trial_id,
        **{f"candidate.{k}": v for k, v in plan.models[CANDIDATE].items()},
        **{f"baseline.{name}": config["architecture"] for name, config in plan.models.items() if name != CANDIDATE},
        **{f"policy.{k}": v for k, v in vars(plan.policy).items()},
    }


def promotion_log(record: SweepRecord, tracking_uri: str) -> SweepLog:
    """The sweep's own journal, so promotion records reach MLflow as the sweep's do (kept on disk
    while it is unreachable, sent by `sweeper sync`); another tracking store gets a journal of its own."""
    directory = record.journal_dir
    if tracking_uri != record.tracking_uri:
        directory = directory / "elsewhere" / hashlib.sha256(tracking_uri.encode()).hexdigest()[:12]
    log = open_sweep_log(tracking_uri, record.family, record.name, directory)
    log.remember(SWEEP_KEY, record.parent_run_id)  # the parent, even where the sweep's journal is not (another machine)
    return log


def _log_results(log: SweepLog, key: str, plan, evidence, verdict, reference, slices, looks) -> None:
    metric = plan.policy.metric
    for model in evidence:
        for index, (test, validation) in enumerate(zip(model.test, model.validation)):
            log.log(key, {f"{model.name}_test_{metric}": test, f"{model.name}_val_{metric}": validation}, step=index)
        log.log(key, {
            f"{model.name}_test_{metric}_mean": model.mean_test(),
            f"{model.name}_test_{metric}_std": float(np.nanstd(model.test)),
            f"{model.name}_latency_ms_p95": model.latency_p95_ms,
            f"{model.name}_diverged_seeds": model.diverged_seeds,
        }, step=0)  # fmt: skip
    for comparison in verdict.comparisons:
        name, gain, probability = comparison.baseline, comparison.gain, comparison.improvement_probability
        log.log(key, {
            f"gain_vs_{name}": gain.point, f"gain_vs_{name}_low": gain.low, f"gain_vs_{name}_high": gain.high,
            f"gain_vs_{name}_p_value": gain.p_value, f"gain_vs_{name}_holm_p": comparison.holm_p,
            f"improvement_probability_vs_{name}": probability.point, f"improvement_probability_vs_{name}_low": probability.low,
            f"effect_size_vs_{name}": comparison.effect_size,
        }, step=0)  # fmt: skip
    log.log(key, {"seeds_per_model": looks[-1][0], "looks": len(looks), "confidence": looks[-1][1]}, step=0)
    log.log(key, {f"reference_test_{k}": v for k, v in reference.items()}, step=0)
    if verdict.reference_gain is not None:
        gain = verdict.reference_gain
        log.log(key, {"gain_vs_reference": gain.point, "gain_vs_reference_low": gain.low, "gain_vs_reference_high": gain.high}, step=0)
    for name, values in slices.items():
        log.log(key, {f"slice/{name}/{model}_test_{metric}": value for model, value in values.items()}, step=0)
    tags = {"sweeper.verdict": verdict.decision, "sweeper.baseline": verdict.baseline}
    tags.update({f"sweeper.criterion.{c.name.replace(' ', '_')}": "pass" if c.passed else "fail" for c in verdict.criteria})
    log.log(key, tags=tags)


@contextlib.contextmanager
def _killed_on_interrupt(log: SweepLog, key: str) -> Iterator[None]:
    """Ctrl-C ends the promotion run as KILLED (and tags any model version it registered), instead
    of leaving it RUNNING forever; rerunning the command records a new, complete promotion run."""
    try:
        yield
    except KeyboardInterrupt:
        if key in log.keys():
            log.finish(key, "interrupted", "KILLED")
        run_id = log.run_id(key)
        for version in log.tracker.client.search_model_versions(f"run_id = '{run_id}'") if run_id else ():
            log.tracker.client.set_model_version_tag(version.name, version.version, "sweeper.verdict", "interrupted")
        raise


def _register(log: SweepLog, key: str, plan, exported: Path | None, data, verdict) -> tuple[str, str | None]:
    """Log the exported candidate as an MLflow model, register it (--registered-model, else the
    family's name), alias the verdict. The registry is written directly, not through the journal:
    it needs the promotion run in MLflow and the folder, so an unreachable MLflow skips it with a warning."""
    if exported is None:
        return "", None
    if not log.drain():
        logger.warning("MLflow at %s is unreachable: the candidate is not registered; `sweeper sync %s` sends the "
                       "promotion's records later, promote again to register it", log.tracker.tracking_uri, plan.record.name)  # fmt: skip
        return "", None
    tracker, run_id = log.tracker, log.run_id(key)
    example = tuple(data.test[name][:2] for name in plan.family.inputs)
    with torch.no_grad():
        outputs = forward(load(exported), plan.family, {name: torch.from_numpy(a) for name, a in zip(plan.family.inputs, example)})
    version = tracker.log_model(run_id, plan.model_name, exported, plan.family.inputs, example, plan.family.outputs,
                                [o.numpy() for o in outputs])  # fmt: skip
    return version, tracker.record_verdict(plan.model_name, version, verdict.decision)
