"""The Python API: ``sweeper.launch(...)`` and ``sweeper.open(name)`` return a :class:`Sweep`, the one
handle on a sweep; every ``sweeper`` command is a thin layer over it.

A Sweep is its record (what it was launched with, in ``STORAGE/NAME/sweeper.json``) with its family
resolved once, when it is opened. Reading it (status, trials, best) reads Ray's results folder
afresh each time, so a handle on a running sweep shows its progress.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd

from sweeper.export import Exported, export_sweep
from sweeper.journal import Journal
from sweeper.launcher import LaunchOptions, SweepResult, launch as launch_options, resume as resume_sweep
from sweeper.objectives import Front, Objective, resolve_objectives, sweep_front
from sweeper.promotion import PromoteOptions, PromotionOutcome, promote as promote_sweep
from sweeper.sweep_artifacts import trial_rows
from sweeper.sweeps import DEFAULT_STORAGE, SweepRecord, TrialResult, load_record, rank_trials, read_trials, sweep_data, sweep_names
from trainables.data import SPLITS, DataSplits
from trainables.data.tables import Arrays
from trainables.errors import ConfigError
from trainables.families import Family, get_family


@dataclass(frozen=True)
class SweepStatus:
    name: str
    family: str
    trials: int  # asked for
    started: int
    by_status: dict[str, int]
    best: TrialResult | None
    nodes: list[str]
    unsent_records: int  # MLflow records still in the journal
    tracking_uri: str
    metric: str  # the validation metric ``best`` is ranked by

    def as_json(self) -> dict[str, Any]:
        """The status for machines (``sweeper status --json``, ``sweeper list --json``)."""
        best = self.best and {"trial": self.best.trial_id, "value": self.best.best_value, "epoch": self.best.best_epoch,
                              "config": self.best.config}  # fmt: skip
        return {"name": self.name, "family": self.family, "trials": self.trials, "started": self.started, "by_status": self.by_status,
                "metric": self.metric, "best": best, "nodes": self.nodes, "unsent_records": self.unsent_records,
                "tracking_uri": self.tracking_uri}  # fmt: skip


@dataclass(frozen=True)
class Sweep:
    """A recorded sweep and its family. ``sweeper.open(name)`` or ``sweeper.launch(...)`` make one."""

    record: SweepRecord
    family: Family
    result: SweepResult | None = None  # what launch or resume returned, when this handle came from them

    @classmethod
    def open(cls, name: str, storage: str = DEFAULT_STORAGE) -> Sweep:
        record = load_record(name, storage)
        return cls(record, get_family(record.family, record.plugins))

    @property
    def name(self) -> str:
        return self.record.name

    @property
    def objectives(self) -> tuple[Objective, ...]:
        return resolve_objectives(self.family, self.record.objectives)

    def trial_results(self) -> list[TrialResult]:
        """Every trial with its history and best epoch by the family's validation metric."""
        return read_trials(self.record, self.family.validation_metric, self.family.mode)

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial: the table of ``summary/trials.parquet`` (with the front, if any)."""
        results = self.trial_results()
        front = sweep_front(rank_trials(results, self.family.mode), self.objectives)
        return pd.DataFrame(trial_rows(results, self.family.validation_metric, front.trial_ids if front else ()))

    def best(self, k: int = 1) -> list[TrialResult]:
        """The ``k`` best usable trials (finished, not diverged), best first."""
        return rank_trials(self.trial_results(), self.family.mode)[:k]

    def front(self) -> Front | None:
        """The Pareto front of a sweep of several objectives; None for one objective."""
        return sweep_front(rank_trials(self.trial_results(), self.family.mode), self.objectives)

    def status(self) -> SweepStatus:
        results = self.trial_results()
        states = [trial.status for trial in results]
        ranked = rank_trials(results, self.family.mode)
        journal = self.record.journal_dir
        return SweepStatus(
            name=self.name,
            family=self.family.name,
            trials=self.record.trials,
            started=len(results),
            by_status={state: states.count(state) for state in sorted(set(states))},
            best=ranked[0] if ranked else None,
            nodes=sorted({t.node for t in results if t.node != "unknown"}),
            unsent_records=len(Journal(journal).pending()) if journal.exists() else 0,
            tracking_uri=self.record.tracking_uri,
            metric=self.family.validation_metric,
        )

    def resume(self, address: str | None = None) -> Sweep:
        """Continue the sweep where it stopped (see ``sweeper resume``)."""
        return Sweep(self.record, self.family, resume_sweep(self.record, self.family, address))

    def promote(self, **options: Any) -> PromotionOutcome:
        """Retrain the candidate and the baselines and judge them; ``options`` are PromoteOptions'
        (seeds, epochs, candidate, tracking_uri, address, ...)."""
        return promote_sweep(self.record, self.family, PromoteOptions(**options))

    def export(self, out: str | Path, *, top_k: int = 1, metric: str | None = None, mode: str | None = None,
               pareto: bool = False, force: bool = False) -> list[Exported]:  # fmt: skip
        """The ``top_k`` best trials (or the Pareto front) as model folders under ``out``."""
        return export_sweep(self.record, self.family, Path(out), top_k, metric, mode, force, pareto)

    def data(self) -> DataSplits:
        """The sweep's train / validation / test splits, rebuilt as the sweep had them."""
        return sweep_data(self.record, self.family)

    def load_data(self, split: str) -> Arrays:
        """One split ("train", "validation" or "test") of the sweep's data, as column arrays."""
        if split not in SPLITS:
            raise ConfigError(f"unknown split {split!r}; choose one of {', '.join(SPLITS)}")
        return getattr(self.data(), split)

    def reference(self, split: str = "validation") -> dict[str, float]:
        """The family's non-learned reference, fitted on the training split, scored on ``split``."""
        return self.family.reference_metrics(self.data(), split)


def launch(family: str, *, objectives: Sequence[str] = (), warm_start: Sequence[str] = (), **options: Any) -> Sweep:
    """Run a sweep of ``family`` to its end and return its handle; ``options`` are LaunchOptions'
    (preset, trials, epochs, sampler, scheduler, storage, tracking_uri, address, ...)."""
    result = launch_options(LaunchOptions(family, objectives=tuple(objectives), warm_start=tuple(warm_start), **options))
    opened = Sweep.open(result.name, options.get("storage", DEFAULT_STORAGE))
    return Sweep(opened.record, opened.family, result)


def list_sweeps(storage: str = DEFAULT_STORAGE) -> list[str]:
    """The names of the sweeps recorded in ``storage``, sorted."""
    return sweep_names(storage)


def open(name: str, storage: str = DEFAULT_STORAGE) -> Sweep:  # noqa: A001 (the API's verb, as in io.open)
    """The sweep ``name`` in ``storage`` (a folder or a shared URI), launched earlier or elsewhere."""
    return Sweep.open(name, storage)

