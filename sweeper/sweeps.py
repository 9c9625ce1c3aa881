"""Finding a sweep again from its name: its record and its trials, in a later process.

``launch`` writes ``sweeper.json`` into the sweep's results folder (``STORAGE/NAME``, a local
folder or shared storage such as ``s3://``), next to Ray Tune's own state. Everything after the
sweep (promote, export, status, resume) starts from that record and from Ray's
``ExperimentAnalysis`` of the same folder, so nothing depends on the launching process.
"""
from __future__ import annotations

import importlib
import json
import math
import sys
import types
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

import pandas as pd
import pyarrow.fs

from search_spaces import InlineSpace, SearchSpace
from trainables.data import DataSplits, cache_dir
from trainables.errors import UserError
from trainables.families import Family
from trainables.train_loop import applicable

RECORD_FILE = "sweeper.json"
DEFAULT_STORAGE = "ray_results"


class _MovedModule(types.ModuleType):
    """A module that moved, for unpickling: Ray's experiment state holds functions of ours by
    module path, so a sweep launched before a move could not be read (or resumed) after it."""

    def __init__(self, old: str, new: str) -> None:
        super().__init__(old)
        self._new = new

    def __getattr__(self, name: str) -> Any:
        return getattr(importlib.import_module(self._new), name)


sys.modules.setdefault("sweeper.launch", _MovedModule("sweeper.launch", "sweeper.launcher"))  # moved in b617552


class UnknownSweepError(UserError):
    pass


@dataclass(frozen=True)
class SweepRecord:
    """What a sweep was launched with: enough to rebuild its data and find its runs."""

    name: str
    family: str
    preset: str
    seed: int
    trials: int
    epochs: int
    storage: str
    tracking_uri: str
    parent_run_id: str
    data_settings: Mapping[str, Any]  # the preset's simulator settings (unused with a data file)
    data_file: str | None
    search_space: str
    cpus_per_trial: float
    gpus_per_trial: float
    time_budget_s: float | None = None  # the sweep ends when it is spent, whatever trials remain
    objectives: tuple[str, ...] = ()  # what the sampler optimised, the main metric first; () the main metric alone
    options: Mapping[str, Any] = field(default_factory=dict)  # every launch option, for the record
    plugins: tuple[str, ...] = ()  # --plugin modules: every command on the sweep, and every worker, imports them
    search_space_document: Mapping[str, Any] | None = None  # a sweep file's inline search space (else the file)
    system_metrics: bool = False  # the driver machine's CPU, memory, disk and network use, on the sweep's run

    @property
    def path(self) -> str:
        return sweep_path(self.storage, self.name)

    @property
    def journal_dir(self) -> Path:
        """Where the driver keeps the sweep's MLflow journal: next to the results when they are
        local, in the cache when the storage is remote (a journal is appended to, objects are not)."""
        return journal_dir(self.storage, self.name)


def sweep_space(record: SweepRecord, family: Family) -> SearchSpace:
    """The search space the sweep was launched with: its file, or the sweep file's inline mapping."""
    if record.search_space_document is not None:
        return family.search_space(InlineSpace(record.search_space_document, record.search_space))
    return family.search_space(Path(record.search_space))


def sweep_data(record: SweepRecord, family: Family) -> DataSplits:
    """The sweep's data set again: the same simulator settings and seed, or the same file."""
    return family.load_data(record.data_settings, Path(record.data_file) if record.data_file else None, record.seed)


def journal_dir(storage: str, name: str) -> Path:
    if "://" in storage:
        return cache_dir() / "journals" / name
    return Path(sweep_path(storage, name)) / "mlflow"


def resolve_storage(storage: str) -> str:
    """An absolute path or a URI: Ray needs one, and it makes records independent of the cwd."""
    return storage if "://" in storage else str(Path(storage).expanduser().resolve())


def sweep_path(storage: str, name: str) -> str:
    return f"{storage.rstrip('/')}/{name}"


def save_record(record: SweepRecord) -> None:
    filesystem, path = pyarrow.fs.FileSystem.from_uri(record.path)
    filesystem.create_dir(path, recursive=True)
    with filesystem.open_output_stream(f"{path}/{RECORD_FILE}") as stream:
        stream.write(json.dumps(asdict(record), indent=2, default=str).encode())


def load_record(name: str, storage: str = DEFAULT_STORAGE) -> SweepRecord:
    """The record of sweep ``name`` under ``storage``; a missing sweep lists the ones there are."""
    storage = resolve_storage(storage)
    filesystem, path = pyarrow.fs.FileSystem.from_uri(sweep_path(storage, name))
    try:
        with filesystem.open_input_stream(f"{path}/{RECORD_FILE}") as stream:
            raw = json.loads(stream.read())
    except (FileNotFoundError, OSError):
        known = ", ".join(sweep_names(storage)) or "none"
        raise UnknownSweepError(
            f"no sweep named {name!r} in {storage} (sweeps there: {known}); pass --storage where it ran"
        ) from None
    # Where the record was found, not where it was written: a results folder may be moved or copied.
    return SweepRecord(**{**raw, "storage": storage})


def sweep_names(storage: str) -> list[str]:
    filesystem, path = pyarrow.fs.FileSystem.from_uri(resolve_storage(storage))
    try:
        entries = filesystem.get_file_info(pyarrow.fs.FileSelector(path, allow_not_found=True))
    except OSError:
        return []
    return sorted(
        info.base_name
        for info in entries
        if info.type == pyarrow.fs.FileType.Directory
        and filesystem.get_file_info(f"{info.path}/{RECORD_FILE}").type == pyarrow.fs.FileType.File
    )


@dataclass(frozen=True)
class TrialResult:
    trial_id: str
    status: str  # completed, early_stopped, diverged, error, running, pending
    config: dict[str, Any]
    node: str
    history: pd.DataFrame  # one row per reported epoch
    best_value: float  # of the metric it was summarised by; the worst value if it has none
    best_epoch: int | None
    checkpoint_path: str | None  # the checkpoint of the best epoch
    checkpoint_filesystem: Any = None

    @property
    def usable(self) -> bool:
        return self.status in ("completed", "early_stopped") and self.best_epoch is not None


def trial_status(last_result: Mapping[str, Any], epochs: int) -> str:
    if last_result.get("diverged"):
        return "diverged"
    return "completed" if last_result.get("epoch", 0) >= epochs else "early_stopped"


def read_trials(record: SweepRecord, metric: str, mode: str) -> list[TrialResult]:
    """Every trial of the sweep with its best epoch by ``metric`` and that epoch's checkpoint.

    Ray Tune keeps its experiment state as cloudpickle, which reading it unpickles: read only
    results folders you trust (checkpoints themselves are loaded weights-only).
    """
    from ray.tune import ExperimentAnalysis

    filesystem, path = pyarrow.fs.FileSystem.from_uri(record.path)
    analysis = ExperimentAnalysis(path, storage_filesystem=filesystem)
    frames = analysis.trial_dataframes
    return [_trial_result(analysis, trial, frames.get(trial.trial_id), record, metric, mode) for trial in analysis.trials]


def _trial_result(analysis, trial, frame: pd.DataFrame | None, record: SweepRecord, metric: str, mode: str) -> TrialResult:
    frame = frame if frame is not None and metric in getattr(frame, "columns", ()) else pd.DataFrame()
    last = trial.last_result or {}
    status = {"ERROR": "error", "PENDING": "pending", "RUNNING": "running", "PAUSED": "running"}.get(trial.status)
    status = status or trial_status(last, record.epochs)
    finite = frame[frame[metric].map(math.isfinite)] if len(frame) else frame
    best_epoch, best_value = None, math.inf if mode == "min" else -math.inf
    if len(finite):
        row = finite.loc[finite[metric].idxmin() if mode == "min" else finite[metric].idxmax()]
        best_epoch, best_value = int(row["epoch"]), float(row[metric])
    checkpoint = analysis.get_best_checkpoint(trial, metric, mode) if best_epoch is not None else None
    return TrialResult(
        trial_id=trial.trial_id,
        status=status,
        config=applicable(trial.config),
        node=str(last.get("node") or last.get("hostname") or "unknown"),
        history=frame,
        best_value=best_value,
        best_epoch=best_epoch,
        checkpoint_path=checkpoint.path if checkpoint else None,
        checkpoint_filesystem=checkpoint.filesystem if checkpoint else None,
    )


def rank_trials(trials: list[TrialResult], mode: str) -> list[TrialResult]:
    """Usable trials (finished, not diverged), best first."""
    usable = [t for t in trials if t.usable]
    return sorted(usable, key=lambda t: t.best_value, reverse=mode == "max")
