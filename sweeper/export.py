"""``sweeper export`` and ``sweeper predict``: take models out of a sweep or the registry, use them.

From a sweep, the K best trials by a validation metric are exported, each at the checkpoint of
its best epoch (not its last), found again from the sweep's name alone: the record and Ray's
results in the storage folder, which works in a later process and from a cluster's shared
storage. From the registry, the folder that ``promote`` logged with the registered version.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlflow_server.options import tracking_uri_or_default
from sweeper.model_folder import ExportedModel, ExportError, load, read_config, staged, verify, write_folder
from sweeper.objectives import resolve_objectives, sweep_front
from sweeper.sweeps import SweepRecord, TrialResult, rank_trials, read_trials
from sweeper.tracking import PROMOTION_ARTIFACTS, SweepTracker, check_reachable
from trainables.data.tables import Schema, read_table, write_table
from trainables.errors import ConfigError, DataError
from trainables.families import Family, get_family
from trainables.train_loop import default_device, load_checkpoint, predict

logger = logging.getLogger(__name__)

MODEL_URI = re.compile(r"^models:/(?P<name>[^/@]+)(@(?P<alias>[\w-]+)|/(?P<version>\d+))$")


@dataclass(frozen=True)
class Exported:
    path: Path
    trial_id: str
    epoch: int
    value: float


def export_sweep(
    record: SweepRecord, family: Family, out: Path, top_k: int = 1, metric: str | None = None, mode: str | None = None,
    force: bool = False, pareto: bool = False,
) -> list[Exported]:  # fmt: skip
    """Export the ``top_k`` best trials of ``sweep`` to ``out/rank<N>-<trial>``, or with ``pareto``
    its Pareto front, best metric first, to ``out/pareto<N>-<trial>``; atomically."""
    if top_k < 1:
        raise ConfigError(f"--top-k must be at least 1, got {top_k}")
    if pareto and (top_k != 1 or metric is not None):
        raise ConfigError("--pareto exports the whole front, ranked by the sweep's first objective; drop --top-k and --metric")
    sweep = record.name
    metric, mode = _metric(family, metric, mode)
    trials = read_trials(record, metric, mode)
    ranked = rank_trials(trials, mode)
    if trials and all(trial.status == "diverged" for trial in trials):
        raise ExportError(f"every trial of sweep {sweep!r} diverged; nothing to export. Narrow the learning_rate range and launch again")
    if not ranked:
        raise ExportError(f"sweep {sweep!r} has no finished, non-diverged trial with {metric}; nothing to export")
    if pareto:
        chosen, prefix = _front(record, family, ranked), "pareto"
    else:
        chosen, prefix = ranked[:top_k], "rank"
        if len(ranked) < top_k:
            logger.warning("sweep %s has only %d usable trials; exporting those", sweep, len(ranked))
    exported = []
    with staged(out, force) as staging:
        for rank, trial in enumerate(chosen, start=1):
            name = f"{prefix}{rank}-{trial.trial_id}"
            write_folder(_from_checkpoint(trial, record, metric), staging / name)
            exported.append(Exported(out.resolve() / name, trial.trial_id, trial.best_epoch, trial.best_value))
    return exported


def _front(record: SweepRecord, family: Family, ranked: list[TrialResult]) -> tuple[TrialResult, ...]:
    front = sweep_front(ranked, resolve_objectives(family, record.objectives))
    if front is None:
        raise ConfigError(f"sweep {record.name!r} searched one objective and has no Pareto front; "
                          "launch with --objectives, or export with --top-k")  # fmt: skip
    return front.trials


def _metric(family: Family, metric: str | None, mode: str | None) -> tuple[str, str]:
    if metric is None:
        return family.validation_metric, mode or family.mode
    name = metric.removeprefix("val_")
    if name not in family.metrics:
        raise ConfigError(f"unknown metric {metric!r} for {family.name}; choose one of {', '.join(f'val_{m}' for m in family.metrics)}")
    if mode not in ("min", "max") and name != family.metric:
        raise ConfigError(f"say whether lower or higher {metric} is better: pass --mode min or --mode max")
    return f"val_{name}", mode or family.mode


def _from_checkpoint(trial: TrialResult, record: SweepRecord, metric: str) -> ExportedModel:
    from ray.tune import Checkpoint

    checkpoint = Checkpoint(trial.checkpoint_path, filesystem=trial.checkpoint_filesystem)
    with checkpoint.as_directory() as directory:
        state = load_checkpoint(Path(directory))
    if state["epoch"] != trial.best_epoch:  # Ray keeps the best epochs and the last: never confuse them
        raise ExportError(f"trial {trial.trial_id}: the checkpoint of its best epoch {trial.best_epoch} is gone (found epoch {state['epoch']})")
    row = trial.history.loc[trial.history["epoch"] == trial.best_epoch].iloc[-1]
    validation = {key: float(row[key]) for key in row.index if key.startswith("val_") and np.isfinite(row[key])}
    measured = {key: float(row[key]) for key in ("latency_ms_p50", "latency_ms_p95") if key in row.index}
    metrics = {"validation": validation, **measured, "test": "not measured: sweeps never see the test split (see sweeper promote)"}
    source = {"sweep": record.name, "trial": trial.trial_id, "epoch": trial.best_epoch, "selected_by": metric}
    return ExportedModel(record.family, state["config"], state["context"], state["model"], metrics, source, tuple(record.plugins))


def export_registered(model_uri: str, out: Path, tracking_uri: str | None = None, force: bool = False) -> Path:
    """Export the folder logged with a registered version (``models:/NAME@ALIAS`` or ``models:/NAME/VERSION``)."""
    from mlflow.exceptions import MlflowException

    match = MODEL_URI.match(model_uri)
    if not match:
        raise ConfigError(f"--model {model_uri!r} is not a model URI; write models:/NAME@ALIAS or models:/NAME/VERSION")
    tracking_uri = tracking_uri_or_default(tracking_uri)
    check_reachable(tracking_uri, existing=True)
    client = SweepTracker(tracking_uri, match["name"]).client
    try:
        version = (client.get_model_version_by_alias(match["name"], match["alias"]) if match["alias"]
                   else client.get_model_version(match["name"], match["version"]))  # fmt: skip
    except MlflowException:
        raise ExportError(f"{model_uri} is not in the model registry at {tracking_uri}; check the name and alias (run sweeper promote first)") from None
    with staged(out, force) as staging:
        try:
            downloaded = Path(client.download_artifacts(version.run_id, PROMOTION_ARTIFACTS["model_folder"], str(staging)))
        except (MlflowException, OSError):
            raise ExportError(f"{model_uri} (run {version.run_id}) has no exported model folder; promote the sweep again") from None
        verify(downloaded)
        for item in downloaded.iterdir():
            item.rename(staging / item.name)
        downloaded.rmdir()
    return out.resolve()


def predict_file(folder: Path, input_path: Path, out: Path, batch_size: int = 256, force: bool = False) -> int:
    """Batch inference over a Parquet file in the family's schema; writes one column per output."""
    config = read_config(folder)
    family = get_family(config["family"], config.get("plugins", ()))
    schema = Schema(tuple(column for column in family.schema.columns if column.name in family.inputs))
    arrays = read_table(input_path, schema)
    _check_shapes(arrays, config, input_path)
    if family.check_rows is not None:
        family.check_rows(arrays, str(input_path))
    model = load(folder)
    outputs = predict(model, family, arrays, batch_size, default_device())
    if out.exists() and not force:
        raise ExportError(f"{out} exists; choose another --out or pass --force to replace it")
    write_table(dict(zip(family.outputs, outputs)), out)
    return len(outputs[0])


def _check_shapes(arrays: dict[str, np.ndarray], config: dict[str, Any], source: Path) -> None:
    for name, spec in config["inputs"].items():
        expected = list(spec["shape"][1:])
        if list(arrays[name].shape[1:]) != expected:
            raise DataError(
                f"{source}: column {name!r} has rows of shape {list(arrays[name].shape[1:])}, but the model was trained on {expected}"
            )
