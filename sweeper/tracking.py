"""MLflow records of sweeps, written from the driver only (workers need no MLflow access).

One experiment per family; one parent run per sweep (tag ``sweeper.sweep``); one nested run per
trial (tags ``sweeper.sweep``, ``sweeper.trial_id``, ``sweeper.architecture``,
``sweeper.status``), with every hyperparameter as a param and the metrics of every epoch.
"""
from __future__ import annotations

import contextlib
import logging
import math
import os
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID
from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from mlflow_server.options import redacted
from sweeper.sweeps import trial_status
from trainables.errors import UserError

logger = logging.getLogger(__name__)

PROMOTION_ARTIFACTS = {"report": "report", "model_folder": "exported_model"}
DEFAULT_DATABASE = "mlflow.db"
DEFAULT_ARTIFACTS = "mlartifacts"
SWEEP_TAG, TRIAL_TAG, ARCHITECTURE_TAG = "sweeper.sweep", "sweeper.trial_id", "sweeper.architecture"
STATUS_TAG, FAMILY_TAG, NODE_TAG, KIND_TAG = "sweeper.status", "sweeper.family", "sweeper.node", "sweeper.kind"
KEY_TAG = "sweeper.key"  # a run's identity within its sweep: "sweep", "trial:<id>"
SWEEP_KEY = "sweep"
# Ray's bookkeeping keys are not worth a metric each; total time is.
SKIPPED_RESULT_KEYS = set(AUTO_RESULT_KEYS) - {"time_total_s"}


class TrackingError(UserError):
    pass


def default_tracking_uri(directory: Path | None = None) -> str:
    return f"sqlite:///{(directory or Path.cwd()).resolve() / DEFAULT_DATABASE}"


class SweepTracker:
    """Writes one family's sweeps to an MLflow tracking store."""

    def __init__(self, tracking_uri: str, family: str) -> None:
        if urlparse(tracking_uri).scheme in ("http", "https"):
            # MLflow retries a dead server for minutes by default, blocking Ray Tune's loop; the
            # sweep journal retries without blocking. Users' own settings win.
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
            os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")
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

    def create_run(self, sweep: str, name: str, kind: str, tags: Mapping[str, str], parent_run_id: str | None = None) -> str:
        tags = {SWEEP_TAG: sweep, FAMILY_TAG: self.family, KIND_TAG: kind, **tags}
        if parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        return self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id

    def find_run(self, sweep: str, key: str) -> str | None:
        """The run of ``sweep`` tagged with ``key``, if one was created already."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{KEY_TAG}` = '{key}'", max_results=1
        )
        return runs[0].info.run_id if runs else None

    def start_promotion(self, sweep: str, parent_run_id: str, params: Mapping[str, Any]) -> str:
        run_id = self.create_run(sweep, "promotion", "promotion", {STATUS_TAG: "running"}, parent_run_id)
        self.log_batch(run_id, params=params)
        return run_id

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
        # For pickled multi-input models MLflow warns that pickle is unsafe and that its pyfunc server
        # takes one tensor; both are known and documented (use sweeper export / mlflow.pytorch).
        with mlflow.start_run(run_id=run_id), _quiet("mlflow.pytorch", "mlflow.models.model"):
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

    def log_metrics(self, run_id: str, metrics: Mapping[str, Any], step: int) -> None:
        now = int(time.time() * 1000)
        self.log_batch(run_id, metrics=[(k, v, now, step) for k, v in metrics.items()])

    def set_tags(self, run_id: str, tags: Mapping[str, Any]) -> None:
        self.log_batch(run_id, tags=tags)

    def finish(self, run_id: str, status: str, mlflow_status: str = "FINISHED") -> None:
        self.set_tags(run_id, {STATUS_TAG: status})
        self.client.set_terminated(run_id, mlflow_status)

    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[tuple[str, Any, int, int]] = (),  # (key, value, timestamp ms, step)
        params: Mapping[str, Any] | None = None,
        tags: Mapping[str, Any] | None = None,
    ) -> None:
        """Non-finite metric values are dropped; MLflow takes at most 100 params per call."""
        metric_entities = [
            Metric(key, float(value), timestamp, step)
            for key, value, timestamp, step in metrics
            if isinstance(value, (int, float)) and math.isfinite(value)
        ]
        param_entities = [Param(key, str(value)) for key, value in (params or {}).items()]
        tag_entities = [RunTag(key, str(value)) for key, value in (tags or {}).items()]
        for start in range(0, max(len(param_entities), len(metric_entities), len(tag_entities), 1), 100):
            self.client.log_batch(
                run_id,
                metrics=metric_entities[start : start + 100],
                params=param_entities[start : start + 100],
                tags=tag_entities[start : start + 100],
            )


@contextlib.contextmanager
def _quiet(*names: str) -> Iterator[None]:
    loggers = [logging.getLogger(name) for name in names]
    levels = [log.level for log in loggers]
    for log in loggers:
        log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for log, level in zip(loggers, levels):
            log.setLevel(level)


def local_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts next to a local SQLite file; MLflow would otherwise use ./mlruns of whatever
    directory the process happens to run in."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    return (Path(parsed.path).parent / DEFAULT_ARTIFACTS).resolve().as_uri()


def check_no_password(tracking_uri: str) -> None:
    """A tracking URI is stored (sweeper.json, Ray's experiment state, MLflow params) and printed,
    and later commands reuse it: a password inside it would end up in all of those. Redacting it
    would leave resume, promote and sync without it, so it is refused; credentials go in MLflow's
    own environment variables, which are read when needed and stored nowhere."""
    if urlparse(tracking_uri).password is None:
        return
    raise TrackingError(
        f"--tracking-uri {redacted(tracking_uri)} holds a password, which would be stored with the sweep and printed; "
        "pass the URI without it and set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
        "(for a database URI, the driver's own password variable or file, e.g. PGPASSWORD or ~/.pgpass)"
    )


def check_reachable(tracking_uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast, before anything starts, when the tracking store cannot be used."""
    check_no_password(tracking_uri)
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
    """Ray Tune callback: one nested MLflow run per trial, a metric step per reported epoch.

    Records go through the sweep's journal (sweeper/journal.py), so a tracking server that is
    briefly unreachable neither fails the sweep nor loses a record. Ray pickles callbacks with
    the experiment and restores them on resume, so this holds only where the journal is.
    """

    def __init__(self, tracking_uri: str, family: str, sweep: str, journal_dir: Path, epochs: int) -> None:
        self.tracking_uri, self.family, self.sweep, self.journal_dir, self.epochs = tracking_uri, family, sweep, journal_dir, epochs

    @property
    def log(self) -> Any:
        from sweeper.journal import open_sweep_log

        return open_sweep_log(self.tracking_uri, self.family, self.sweep, self.journal_dir)

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tags = {TRIAL_TAG: trial.trial_id, ARCHITECTURE_TAG: str(trial.config.get("architecture", "")), STATUS_TAG: "running"}
        self.log.start_run(trial_key(trial.trial_id), trial.trial_id, "trial", trial.config, tags, parent=SWEEP_KEY)

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        metrics = {k: v for k, v in result.items() if k not in SKIPPED_RESULT_KEYS}
        step = int(result.get("epoch", result.get("training_iteration", 0)))
        # The node on every result: a retried trial may continue on another node.
        self.log.log(trial_key(trial.trial_id), metrics, step, tags={NODE_TAG: result.get("node", "unknown")})

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log.finish(trial_key(trial.trial_id), trial_status(trial.last_result, self.epochs))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log.finish(trial_key(trial.trial_id), "error", "FAILED")


TRIAL_PREFIX = "trial:"


def trial_key(trial_id: str) -> str:
    return f"{TRIAL_PREFIX}{trial_id}"
