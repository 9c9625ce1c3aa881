"""MLflow records of sweeps, written from the driver only (workers need no MLflow access).

One experiment per family; one parent run per sweep (tag ``sweeper.sweep``); one nested run per
trial (tags ``sweeper.sweep``, ``sweeper.trial_id``, ``sweeper.architecture``,
``sweeper.status``), with every hyperparameter as a param and the metrics of every epoch. Every run
carries the context MLflow's own fluent API would give it (user, source, git commit) and the
versions of the libraries that shape the results; sweep and promotion runs log their data splits
as MLflow inputs.
"""
from __future__ import annotations

import contextlib
import functools
import getpass
import importlib.metadata
import logging
import math
import os
import subprocess
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlparse

import numpy as np
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT, MLFLOW_GIT_COMMIT, MLFLOW_PARENT_RUN_ID, MLFLOW_SOURCE_NAME, MLFLOW_SOURCE_TYPE, MLFLOW_USER,
)  # fmt: skip

from mlflow_server.options import TRACKING_URI_ENV, local_artifact_location, redacted
from sweeper.quiet import quiet
from trainables.data import DataSplits
from trainables.errors import UserError

logger = logging.getLogger(__name__)

PROMOTION_ARTIFACTS = {"report": "report", "model_folder": "exported_model"}
PYFUNC_CODE = Path(__file__).with_name("pyfunc_model.py")  # the registered model's predict, as MLflow "models from code"
PYFUNC_FOLDER = "model_folder"  # the registered model's artifact: the exported folder
SWEEP_TAG, TRIAL_TAG, ARCHITECTURE_TAG = "sweeper.sweep", "sweeper.trial_id", "sweeper.architecture"
STATUS_TAG, FAMILY_TAG, NODE_TAG, KIND_TAG = "sweeper.status", "sweeper.family", "sweeper.node", "sweeper.kind"
EXPERIMENT_KIND_TAG, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"  # MLflow's UI reads it
KEY_TAG = "sweeper.key"  # a run's identity within its sweep: "sweep", "trial:<id>"
SWEEP_KEY = "sweep"


class TrackingError(UserError):
    pass


class SweepTracker:
    """Writes one family's sweeps to an MLflow tracking store."""

    def __init__(self, tracking_uri: str, family: str) -> None:
        _bound_http_retries()
        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # "Creating initial MLflow database tables..."
        self.tracking_uri = tracking_uri
        self.client = MlflowClient(tracking_uri)
        self.family = family
        self._experiment_id: str | None = None
        self._over_http = urlparse(tracking_uri).scheme in ("http", "https")  # MLflow's HTTP client resends requests

    @property
    def experiment_id(self) -> str:
        if self._experiment_id is None:
            experiment = self.client.get_experiment_by_name(self.family)
            self._experiment_id = (
                experiment.experiment_id
                if experiment is not None
                else self.client.create_experiment(self.family, artifact_location=local_artifact_location(self.tracking_uri))
            )
            if experiment is None or EXPERIMENT_KIND_TAG not in experiment.tags:
                # MLflow's UI opens an experiment without this tag on its GenAI view (traces: empty)
                self.client.set_experiment_tag(self._experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return self._experiment_id

    def create_run(self, sweep: str, key: str, name: str, kind: str, tags: Mapping[str, str], parent_run_id: str | None = None) -> str:
        """The run of ``sweep`` for ``key``, new. MLflow's HTTP client sends a request again when
        its answer is lost (a timeout, a 5xx; POSTs too), so over HTTP one call may have made two
        runs: the oldest is kept and the others deleted, so that every key has one run."""
        tags = {**context_tags(), SWEEP_TAG: sweep, FAMILY_TAG: self.family, KIND_TAG: kind, **tags, KEY_TAG: key}
        if parent_run_id:
            tags[MLFLOW_PARENT_RUN_ID] = parent_run_id
        created = self.client.create_run(self.experiment_id, run_name=name, tags=tags).info.run_id
        if not self._over_http:  # a database store commits once or not at all
            return created
        kept, *duplicates = self._runs(sweep, key) or [created]
        for duplicate in duplicates:
            logger.warning("MLflow made run %s twice (a request sent again); deleting the copy %s", kept, duplicate)
            self.client.delete_run(duplicate)
        return kept

    def find_run(self, sweep: str, key: str) -> str | None:
        """The run of ``sweep`` tagged with ``key``, if one was created already."""
        return next(iter(self._runs(sweep, key, max_results=1)), None)

    def _runs(self, sweep: str, key: str, max_results: int = 10) -> list[str]:
        """The runs of ``sweep`` tagged with ``key``, oldest first."""
        runs = self.client.search_runs(
            [self.experiment_id], f"tags.`{SWEEP_TAG}` = '{sweep}' and tags.`{KEY_TAG}` = '{key}'",
            max_results=max_results, order_by=["attributes.start_time ASC", "attributes.run_id ASC"],
        )  # fmt: skip
        return [run.info.run_id for run in runs]

    def log_model(
        self,
        run_id: str,
        name: str,
        folder: Path,
        inputs: Sequence[str],
        example: Sequence[np.ndarray],
        outputs: Sequence[str],
        example_outputs: Sequence[np.ndarray],
    ) -> str:
        """Log the exported ``folder`` as an MLflow pyfunc model under the run (sweeper/pyfunc_model.py:
        no pickle, any number of named inputs and outputs) and register it as model ``name``.
        Returns the version."""
        import mlflow
        from mlflow.models.signature import ModelSignature
        from mlflow.types.schema import Schema, TensorSpec

        def specs(names, arrays):
            return Schema([TensorSpec(a.dtype, (-1, *a.shape[1:]), n) for n, a in zip(names, arrays)])

        signature = ModelSignature(inputs=specs(inputs, example), outputs=specs(outputs, example_outputs))
        # MLflow prints its registration and an artifacts progress bar to stderr, and logs warnings about the environment
        with _fluent_tracking_uri(self.tracking_uri), mlflow.start_run(run_id=run_id), quiet("mlflow.pyfunc", "mlflow.models.model", stderr=True):
            info = mlflow.pyfunc.log_model(
                name="model", python_model=str(PYFUNC_CODE), artifacts={PYFUNC_FOLDER: str(folder)},
                signature=signature, input_example=dict(zip(inputs, example)), registered_model_name=name,
                pip_requirements=["attention-sweeper", "torch"],
            )  # fmt: skip
        self.set_tags(run_id, {"sweeper.model_format": "exported folder (pyfunc)"})
        return str(info.registered_model_version)

    def record_verdict(self, name: str, version: str, decision: str) -> str | None:
        """Alias version ``version`` of model ``name`` by the verdict; the champion it replaces becomes previous-champion."""
        from mlflow.exceptions import MlflowException

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

    def log_inputs(self, run_id: str, datasets: Mapping[str, Mapping[str, str]]) -> None:
        """``datasets``: split name -> a ``dataset_record``; the split is the input's context."""
        inputs = [DatasetInput(Dataset(**record), [InputTag(MLFLOW_DATASET_CONTEXT, split)]) for split, record in datasets.items()]
        self.client.log_inputs(run_id, datasets=inputs)

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
def _fluent_tracking_uri(tracking_uri: str) -> Iterator[None]:
    """MLflow's fluent API (``log_model``) writes where its global tracking URI points, and setting
    that also sets MLFLOW_TRACKING_URI for the whole process, which every later sweep of the process
    and every child process would then take as its default. Both are put back afterwards."""
    import mlflow

    was_set, previous, variable = mlflow.is_tracking_uri_set(), mlflow.get_tracking_uri(), os.environ.get(TRACKING_URI_ENV)
    mlflow.set_tracking_uri(tracking_uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous if was_set else None)
        if variable is None:
            os.environ.pop(TRACKING_URI_ENV, None)
        else:
            os.environ[TRACKING_URI_ENV] = variable


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


def _bound_http_retries() -> None:
    """MLflow retries a dead server for minutes by default, blocking Ray Tune's loop; the sweep
    journal retries without blocking. Users' own settings win."""
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "20")


def _check_credentials(tracking_uri: str) -> None:
    """MLflow's /health answers without authentication: ask for what needs it, so that missing or
    wrong credentials stop a command here instead of failing every record of a running sweep."""
    from mlflow.exceptions import MlflowException

    _bound_http_retries()
    try:
        MlflowClient(tracking_uri).search_experiments(max_results=1)
    except MlflowException as error:
        if error.get_http_status_code() not in (401, 403):
            raise
        raise TrackingError(
            f"MLflow at {tracking_uri} refused this user (HTTP {error.get_http_status_code()}); "
            "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to an account of that server"
        ) from None


def dataset_record(name: str, arrays: Mapping[str, np.ndarray], source: str) -> dict[str, str]:
    """One split as MLflow's data set view shows it (source, digest, schema, shapes), without the data."""
    import mlflow.data

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a local path reads as two equal source types
        return mlflow.data.from_numpy(dict(arrays), source=source, name=name).to_dict()


def split_records(family: str, data: DataSplits, splits: Sequence[str]) -> dict[str, dict[str, str]]:
    """``dataset_record`` of each of ``splits`` ("train", "validation", "test") of ``data``."""
    return {split: dataset_record(f"{family}-{split}", getattr(data, split), data.source) for split in splits}


VERSIONED = ("torch", "ray", "optuna", "mlflow", "performer-pytorch", "numpy")  # the libraries that shape the results


@functools.cache
def context_tags() -> dict[str, str]:
    """Who ran it, from which code and with which libraries: MLflow's fluent API sets the first
    three itself, MlflowClient.create_run (which the journal needs) does not."""
    tags = {MLFLOW_USER: getpass.getuser(), MLFLOW_SOURCE_NAME: "sweeper", MLFLOW_SOURCE_TYPE: "LOCAL"}
    tags.update({f"sweeper.version.{package}": _version(package) for package in ("attention-sweeper", *VERSIONED)})
    tags.update(_git_tags(Path(__file__).resolve().parent))
    return tags



def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _git_tags(directory: Path) -> dict[str, str]:
    """The commit of a git checkout this code runs from (an editable install), and whether it had
    uncommitted changes; nothing for an installed wheel."""
    def git(*arguments: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *arguments], capture_output=True, text=True, timeout=10, check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return {}
    return {MLFLOW_GIT_COMMIT: commit, "sweeper.git.dirty": str(dirty).lower()}


@contextlib.contextmanager
def system_metrics(run_id: str, tracking_uri: str, enabled: bool, resume: bool = False) -> Iterator[None]:
    """MLflow's system metrics (CPU, memory, disk, network, GPU) of this machine, the driver's,
    logged to ``run_id`` every 10 s while the block runs."""
    if not enabled:
        yield
        return
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(run_id, resume_logging=resume, tracking_uri=tracking_uri)
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def check_reachable(tracking_uri: str, timeout_s: float = 5.0, *, existing: bool = False) -> None:
    """Fail fast, before anything starts, when the tracking store cannot be used; with ``existing``
    (a command that only reads), also when a SQLite store is not there yet: opening it would create it."""
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
        _check_credentials(tracking_uri)
    elif parsed.scheme == "sqlite" and parsed.path:
        database = Path(parsed.path[1:])  # SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute.db
        if not database.parent.is_dir():
            raise TrackingError(f"the folder of the MLflow database {database} does not exist; create it or pass another --tracking-uri")
        if existing and not database.is_file():
            raise TrackingError(f"there is no MLflow database at {database}; pass the --tracking-uri the sweep was promoted into "
                                "(or set MLFLOW_TRACKING_URI)")  # fmt: skip
    elif parsed.scheme not in ("file", "") and "://" not in tracking_uri:
        raise TrackingError(f"--tracking-uri {tracking_uri!r} is not a URI; use sqlite:///PATH or http://HOST:PORT")


TRIAL_PREFIX = "trial:"


def trial_key(trial_id: str) -> str:
    return f"{TRIAL_PREFIX}{trial_id}"
