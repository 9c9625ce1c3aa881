"""MLflow records of sweeps, written from the driver only (workers need no MLflow access).

One experiment per family; one parent run per sweep (tag ``sweeper.sweep``); one nested run per
trial (tags ``sweeper.sweep``, ``sweeper.trial_id``, ``sweeper.architecture``,
``sweeper.status``), with every hyperparameter as a param and the metrics of every epoch.
"""
from __future__ import annotations

import logging
import math
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID, MLFLOW_RUN_NAME
from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from sweeper.sweeps import trial_status
from trainables.errors import UserError

logger = logging.getLogger(__name__)

PROMOTION_ARTIFACTS = {"report": "report", "model_folder": "exported_model"}
DEFAULT_DATABASE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
SWEEP_TAG, TRIAL_TAG, ARCHITECTURE_TAG = "sweeper.sweep", "sweeper.trial_id", "sweeper.architecture"
STATUS_TAG, FAMILY_TAG, NODE_TAG, KIND_TAG = "sweeper.status", "sweeper.family", "sweeper.node", "sweeper.kind"
# Ray's bookkeeping keys are not worth a metric each; total time is.
SKIPPED_RESULT_KEYS = set(AUTO_RESULT_KEYS) - {"time_total_s"}


class TrackingError(UserError):
    pass


def default_tracking_uri(directory: Path | None = None) -> str:
    return f"sqlite:///{(directory or Path.cwd()).resolve() / DEFAULT_DATABASE}"


class SweepTracker:
    """Writes one family's sweeps to an MLflow tracking store."""

    def __init__(self, tracking_uri: str, family: str) -> None:
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.family = family
        self._experiment_id: str | None = None

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            experiment = self.client.get_experiment_by_name(self.family)
            self._experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(self.family, artifact_location=local_artifact_location(self.tracking_uri))
            )
        return self._experiment_id

    def start_sweep(self, name: str, params: Mapping[str, Any]) -> str:
        run = self.client.create_run(
            self.experiment_id,
            run_name=name,
            tags={SWEEP_TAG: name, FAMILY_TAG: self.family, KIND_TAG: "sweep"},
        )
        self._log(run.info.run_id, params=params)
        return run.info.run_id

    def start_trial(self, sweep: str, parent_run_id: str, trial_id: str, config: Mapping[str, Any]) -> str:
        tags = {TRIAL_TAG: trial_id, ARCHITECTURE_TAG: str(config.get("architecture", "")), STATUS_TAG: "running"}
        return self._start_child(sweep, parent_run_id, trial_id, "trial", config, tags)

    def start_promotion(self, sweep: str, parent_run_id: str, params: Mapping[str, Any]) -> str:
        return self._start_child(sweep, parent_run_id, "promotion", "promotion", params, {STATUS_TAG: "running"})

    def _start_child(self, sweep: str, parent_run_id: str, name: str, kind: str, params: Mapping[str, Any], tags: Mapping[str, str]) -> str:
        tags = {MLFLOW_PARENT_RUN_ID: parent_run_id, SWEEP_TAG: sweep, FAMILY_TAG: self.family, KIND_TAG: kind, **tags}
        run = self.client.create_run(self.experiment_id, run_name=name, tags=tags)
        self._log(run.info.run_id, params=params)
        return run.info.run_id

    def log_model(
        self,
        run_id: str,
        model: Any,
        inputs: Sequence[str],
        example: Sequence[np.ndarray],
        outputs: Sequence[str],
        example_outputs: Sequence[np.ndarray],
        traceable: bool,
    ) -> str:
        """Log ``model`` with mlflow.pytorch under the run and register it as the family's model.

        Traceable models use the torch.export (pt2) format, which needs no pickle; models whose
        shapes depend on the data cannot be traced and are pickled. Returns the version.
        """
        import mlflow
        import mlflow.pytorch
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import Schema, TensorSpec

        def specs(names, arrays):
            return Schema([TensorSpec(a.dtype, (-1, *a.shape[1:]), n) for n, a in zip(names, arrays)])

        signature = ModelSignature(inputs=specs(inputs, example), outputs=specs(outputs, example_outputs))
        mlflow.set_tracking_uri(self.tracking_uri)
        serialization, input_example = ("pt2", tuple(example)) if traceable else ("pickle", dict(zip(inputs, example)))
        with mlflow.start_run(run_id=run_id):
            info = mlflow.pytorch.log_model(
                model, name="model", signature=signature, input_example=input_example,
                registered_model_name=self.family, serialization_format=serialization,
                pip_requirements=["attention-sweeper", "torch"],
            )  # fmt: skip
        self.set_tags(run_id, {"sweeper.model_format": serialization})
        return str(info.registered_model_version)

    def record_verdict(self, version: str, decision: str) -> str | None:
        """Alias the registered version by the verdict; the champion it replaces becomes previous-champion."""
        from mlflow.exceptions import MlflowException

        name = self.family
        self.client.set_model_version_tag(name, version, "sweeper.verdict", decision)
        alias = {"promote": "champion", "keep_experimental": "challenger"}.get(decision)
        if alias == "champion":
            try:
                previous = self.client.get_model_version_by_alias(name, "champion")
                self.client.set_registered_model_alias(name, "previous-champion", previous.version)
            except MlflowException:
                pass  # no champion yet
        if alias:
            self.client.set_registered_model_alias(name, alias, version)
        return alias

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int, tags: Mapping[str, Any] | None = None) -> None:
        self._log(run_id, metrics=metrics, tags=tags, step=step)

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self._log(run_id, tags=tags)

    def finish(self, run_id: str, status: str, mlflow_status: str = "FINISHED") -> None:
        self.set_tags(run_id, {STATUS_TAG: status})
        self.client.set_terminated(run_id, mlflow_status)

    def _log(self, run_id: str, params=None, metrics=None, tags=None, step: int = 0) -> None:
        now = int(time.time() * 1000)
        metric_entities = [
            Metric(key, float(value), now, step)
            for key, value in (metrics or {}).items()
            if isinstance(value, (int, float)) and math.isfinite(value)
        ]
        param_entities = [Param(key, str(value)) for key, value in (params or {}).items()]
        tag_entities = [RunTag(key, str(value)) for key, value in (tags or {}).items()]
        for start in range(0, max(len(param_entities), len(metric_entities), len(tag_entities)), 100):
            self.client.log_batch(
                run_id,
                metrics=metric_entities[start : start + 100],
                params=param_entities[start : start + 100],
                tags=tag_entities[start : start + 100],
            )


def local_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts next to a local SQLite file; MLflow would otherwise use ./mlruns of whatever
    directory the process happens to run in."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    return (Path(parsed.path).parent / DEFAULT_ARTIFACTS).resolve().as_uri()


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before anything starts, when the tracking store cannot be used."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme in ("http", "https"):
        try:
            urllib.request.urlopen(f"{tracking_uri.rstrip('/')}/health", timeout=timeout_s).close()
        except (urllib.error.URLError, OSError) as error:
            raise TrackingError(
                f"MLflow tracking server {tracking_uri} is unreachable ({getattr(error, 'reason', error)}); "
                "start it or pass another --tracking-uri"
            ) from None
    elif parsed.scheme == "sqlite":
        directory = Path(parsed.path).parent
        if not directory.is_dir():
            raise TrackingError(f"the folder of the MLflow database {parsed.path} does not exist; create it or pass another --tracking-uri")
    elif parsed.scheme not in ("file", "") and "://" not in tracking_uri:
        raise TrackingError(f"--tracking-uri {tracking_uri!r} is not a URI; use sqlite:///PATH or http://HOST:PORT")


class TrialLogger(Callback):
    """Ray Tune callback: one nested MLflow run per trial, a metric step per reported epoch."""

    def __init__(self, tracker: SweepTracker, sweep: str, parent_run_id: str, epochs: int) -> None:
        self.tracker, self.sweep, self.parent_run_id, self.epochs = tracker, sweep, parent_run_id, epochs
        self.runs: dict[str, str] = {}

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if trial.trial_id not in self.runs:
            self.runs[trial.trial_id] = self.tracker.start_trial(self.sweep, self.parent_run_id, trial.trial_id, trial.config)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        metrics = {k: v for k, v in result.items() if k not in SKIPPED_RESULT_KEYS and isinstance(v, (int, float)) and not isinstance(v, bool)}
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        # The node on every result: a retried trial may continue on another node.
        self.tracker.log_metrics(self.runs[trial.trial_id], metrics, step, tags={NODE_TAG: result.get("node", "unknown")})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.tracker.finish(self.runs[trial.trial_id], trial_status(trial.last_result, self.epochs))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.tracker.finish(self.runs[trial.trial_id], "error", "FAILED")
