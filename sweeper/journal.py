"""A sweep's MLflow records, written ahead to a journal on disk, so an unreachable server loses nothing.

Every record (a run started, metrics and tags logged, a run finished, artifacts) is appended to
``journal.jsonl`` before it is sent: while Ray Tune's loop runs, by a thread of its own (a
record costs MLflow several database transactions, and the loop would wait for each), otherwise
at once. When the tracking server does not answer, the sweep goes
on: records stay in the journal, sending is retried every ``RETRY_SECONDS``, and whatever is
still unsent when the sweep ends is sent by ``sweeper sync SWEEP``. Records waiting together go
out together: each run's epochs in one MLflow call, progress noted once per window (a deletion,
which cannot be applied twice, is a window of its own). Replaying is idempotent:
runs are found again by their key (tag ``sweeper.key``) before one is created, metrics carry
the timestamp they were recorded with (MLflow ignores an identical metric row), and params and
tags are set to the same values again. ``journal-state.json`` remembers how far the journal has
been sent and the run id of each key, which is also how a resumed sweep reuses its runs.
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from mlflow.exceptions import MlflowException, RestException
from sqlalchemy.exc import OperationalError

from ray.tune import Callback
from ray.tune.result import AUTO_RESULT_KEYS

from sweeper.sweeps import trial_status
from sweeper.tracking import ARCHITECTURE_TAG, NODE_TAG, STATUS_TAG, SWEEP_KEY, TRIAL_TAG, SweepTracker, trial_key

logger = logging.getLogger(__name__)

JOURNAL_FILE, STATE_FILE = "journal.jsonl", "journal-state.json"
RETRY_SECONDS = 15.0
# Records sent between two notes of progress: a window that fails part-way is sent again, whole.
SEND_WINDOW = 256
# While Tune's loop runs, how long the sending thread lets records gather before it sends them.
GATHER_SECONDS = 1.0
_CONNECTION_FAILURE = re.compile(r"API request to \S+ failed with (timeout )?exception")


def unreachable(error: BaseException) -> bool:
    """Whether ``error`` means the tracking store could not be reached (worth retrying later)."""
    if isinstance(error, OperationalError):  # a locked or vanished SQLite file, a dropped database link
        return True
    if isinstance(error, RestException):  # the server answered, with an error of its own
        return error.get_http_status_code() >= 500
    if isinstance(error, MlflowException):
        return bool(_CONNECTION_FAILURE.search(error.message))
    return isinstance(error, (ConnectionError, TimeoutError))


class Journal:
    """Append-only records plus how far they have been sent; one folder per sweep."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path, self.state_path = directory / JOURNAL_FILE, directory / STATE_FILE
        self.records = [json.loads(line) for line in self.path.read_text().splitlines()] if self.path.exists() else []
        state = json.loads(self.state_path.read_text()) if self.state_path.exists() else {}
        self.sent: int = state.get("sent", 0)  # records[:sent] are in MLflow
        self.runs: dict[str, str] = state.get("runs", {})  # key -> MLflow run id

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as stream:
            stream.write(json.dumps(record, default=str) + "\n")
        self.records.append(record)

    def pending(self) -> list[dict[str, Any]]:
        return self.records[self.sent :]

    def mark_sent(self, count: int) -> None:
        """The next ``count`` records are in MLflow (the runs they made are in ``runs`` already)."""
        self.sent += count
        self._save()

    def remember(self, key: str, run_id: str) -> None:
        """The run of ``key`` is known already (created elsewhere): records may name it as parent."""
        if self.runs.get(key) != run_id:
            self.runs[key] = run_id
            self._save()

    def _save(self) -> None:
        temporary = self.state_path.with_suffix(".tmp")
        temporary.write_text(json.dumps({"sent": self.sent, "runs": self.runs}))
        os.replace(temporary, self.state_path)


class SweepLog:
    """The records of one sweep (parent run, trial runs, its artifacts, promotions), sent through a :class:`Journal`."""

    def __init__(self, tracker: SweepTracker, journal: Journal, sweep: str) -> None:
        self.tracker, self.journal, self.sweep = tracker, journal, sweep
        self._offline_since: float | None = None
        self._last_attempt = 0.0
        self._sending = threading.Lock()  # one flush at a time, so a record is sent once and in order
        self._sender: threading.Thread | None = None
        self._new_record, self._stopping = threading.Event(), threading.Event()

    def run_id(self, key: str) -> str | None:
        return self.journal.runs.get(key)

    @property
    def offline(self) -> bool:
        return self._offline_since is not None

    def start_run(self, key: str, name: str, kind: str, params: Mapping[str, Any], tags: Mapping[str, Any], parent: str | None = None) -> None:
        if key not in self.keys():
            self._submit({"op": "start", "key": key, "name": name, "kind": kind, "parent": parent,
                          "params": _strings(params), "tags": _strings(tags)})  # fmt: skip

    def log(self, key: str, metrics: Mapping[str, Any] | None = None, step: int = 0, tags: Mapping[str, Any] | None = None) -> None:
        now = int(time.time() * 1000)
        finite = [[k, float(v), now, step] for k, v in (metrics or {}).items() if _finite_number(v)]
        self._submit({"op": "log", "key": key, "metrics": finite, "tags": _strings(tags or {})})

    def log_inputs(self, key: str, datasets: Mapping[str, Mapping[str, str]]) -> None:
        """``datasets``: split name -> ``tracking.dataset_record``."""
        self._submit({"op": "inputs", "key": key, "datasets": {split: dict(record) for split, record in datasets.items()}})

    def finish(self, key: str, status: str, mlflow_status: str = "FINISHED") -> None:
        self._submit({"op": "finish", "key": key, "status": status, "mlflow_status": mlflow_status})

    def discard(self, key: str) -> None:
        """Delete the run of ``key`` (a trial the restored experiment never knew)."""
        self._submit({"op": "delete", "key": key})

    def remember(self, key: str, run_id: str) -> None:
        with self._sending:
            self.journal.remember(key, run_id)

    def keys(self) -> set[str]:
        return {record["key"] for record in self.journal.records if record["op"] == "start"}

    def log_artifacts(self, key: str, directory: Path, artifact_path: str) -> None:
        """``directory`` must outlive the call: it may be sent later."""
        self._submit({"op": "artifacts", "key": key, "directory": str(directory), "path": artifact_path})

    def flush(self) -> bool:
        """Send every pending record in order; False (and offline) at the first unreachable one."""
        with self._sending:
            return self._flush()

    def _flush(self) -> bool:
        self._last_attempt = time.monotonic()
        while window := next_window(self.journal.pending()):
            try:
                for record in coalesced(window):
                    self.journal.runs.update(self._send(record))
            except Exception as error:  # noqa: BLE001 - classified right below
                if not unreachable(error):
                    raise
                if not self.offline:
                    logger.warning("MLflow at %s is unreachable (%s); records are kept in %s and sent when it is back "
                                   "(or by `sweeper sync %s`)", self.tracker.tracking_uri, error, self.journal.path, self.sweep)  # fmt: skip
                    self._offline_since = time.monotonic()
                return False
            self.journal.mark_sent(len(window))
        if self.offline:
            logger.warning("MLflow at %s is reachable again; every record is sent", self.tracker.tracking_uri)
        self._offline_since = None
        return True

    def drain(self, attempts: int = 3, wait_s: float = 5.0) -> bool:
        """At the end: a few last tries to send everything."""
        for attempt in range(attempts):
            if self.flush():
                return True
            if attempt + 1 < attempts:
                time.sleep(wait_s)
        return False

    def send_in_background(self) -> None:
        """From now on a thread of this log sends the records as they come, so that whoever submits
        them (Ray Tune's loop, through TrialLogger) only appends them to the journal and never
        waits for MLflow; until ``stop_background``."""
        if self._sender is None:
            self._stopping.clear()
            self._sender = threading.Thread(target=self._send_until_stopped, name=f"sweep-log-{self.sweep}", daemon=True)
            self._sender.start()

    def stop_background(self) -> None:
        """End the sending thread, then send what is pending here (if a retry is due): records are
        sent as they come again."""
        sender, self._sender = self._sender, None
        if sender is None:
            return
        self._stopping.set()
        self._new_record.set()
        sender.join()
        if self._retry_due():
            self.flush()

    def _send_until_stopped(self) -> None:
        while True:
            self._new_record.wait(RETRY_SECONDS)  # woken by a record, or time to retry an unreachable MLflow
            if self._stopping.wait(GATHER_SECONDS):  # records that come meanwhile go out with this one
                return
            self._new_record.clear()
            if self.journal.pending() and self._retry_due():
                try:
                    self.flush()
                except Exception:  # noqa: BLE001 - not an outage; stop_background's flush raises it again
                    logger.exception("sending sweep %s's records to MLflow failed; they stay in %s", self.sweep, self.journal.path)
                    return

    def _submit(self, record: dict[str, Any]) -> None:
        self.journal.append(record)
        if self._sender is not None:
            self._new_record.set()
        elif self._retry_due():
            self.flush()

    def _retry_due(self) -> bool:
        return not self.offline or time.monotonic() - self._last_attempt >= RETRY_SECONDS

    def _send(self, record: dict[str, Any]) -> dict[str, str]:
        """Apply one record to MLflow; returns run ids it created."""
        tracker, key = self.tracker, record["key"]
        if record["op"] == "start":
            # Looked up even when made here: a `sweeper sync` in another process may have made it.
            run_id = self.journal.runs.get(key) or tracker.find_run(self.sweep, key)
            if run_id is None:
                parent = self.journal.runs[record["parent"]] if record["parent"] else None
                run_id = tracker.create_run(self.sweep, key, record["name"], record["kind"], record["tags"], parent)
            tracker.log_batch(run_id, params=record["params"])
            return {key: run_id}
        run_id = self.journal.runs[key]
        if record["op"] == "log":
            tracker.log_batch(run_id, metrics=[tuple(m) for m in record["metrics"]], tags=record["tags"])
        elif record["op"] == "inputs":
            tracker.log_inputs(run_id, record["datasets"])
        elif record["op"] == "finish":
            tracker.finish(run_id, record["status"], record["mlflow_status"])
        elif record["op"] == "artifacts":
            tracker.client.log_artifacts(run_id, record["directory"], record["path"])
        elif record["op"] == "delete":
            tracker.client.delete_run(run_id)
        return {}


def next_window(pending: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records to send before progress is noted: up to ``SEND_WINDOW``, with a deletion alone.
    A window that fails part-way is sent again whole, and records sent again to a deleted run fail
    for good (MLflow writes only to active runs)."""
    window = pending[:SEND_WINDOW]
    deletion = next((position for position, record in enumerate(window) if record["op"] == "delete"), None)
    return window if deletion is None else window[: deletion or 1]


def coalesced(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``records`` with each run's consecutive metric records merged into one (an MLflow call is a
    few database transactions, whatever it carries). A merged record stands where its first part
    stood, and any other record of the run ends the merging, so each run's records keep their order."""
    merged: list[dict[str, Any]] = []
    open_logs: dict[str, dict[str, Any]] = {}  # run key -> the metric record being merged
    for record in records:
        key = record["key"]
        if record["op"] != "log":
            open_logs.pop(key, None)
            merged.append(record)
        elif key in open_logs:
            open_logs[key]["metrics"] += record["metrics"]
            open_logs[key]["tags"].update(record["tags"])
        else:
            open_logs[key] = {**record, "metrics": list(record["metrics"]), "tags": dict(record["tags"])}
            merged.append(open_logs[key])
    return merged


_open_logs: dict[Path, SweepLog] = {}


def open_sweep_log(tracking_uri: str, family: str, sweep: str, directory: Path) -> SweepLog:
    """The one SweepLog of this journal folder in this process (the launch and a restored Ray
    callback must not keep two diverging copies of the same journal)."""
    directory = directory.resolve()
    if directory not in _open_logs:
        _open_logs[directory] = SweepLog(SweepTracker(tracking_uri, family), Journal(directory), sweep)
    return _open_logs[directory]


def sync(sweep: str, storage: str, tracking_uri: str | None = None) -> tuple[int, int]:
    """``sweeper sync``: send what the sweep's journal still holds; returns (sent, runs known)."""
    from sweeper.sweeps import load_record
    from sweeper.tracking import TrackingError, check_reachable

    record = load_record(sweep, storage)
    uri = tracking_uri or record.tracking_uri
    check_reachable(uri)
    log = open_sweep_log(uri, record.family, record.name, record.journal_dir)
    pending = len(log.journal.pending())
    if not log.flush():
        raise TrackingError(f"MLflow at {uri} is still unreachable; {len(log.journal.pending())} records wait in {log.journal.path}")
    return pending, len(log.journal.runs)


def _strings(values: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in values.items()}


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) != float("inf")


# Ray's bookkeeping keys are not worth a metric each; total time is.
SKIPPED_RESULT_KEYS = set(AUTO_RESULT_KEYS) - {"time_total_s"}


class TrialLogger(Callback):
    """Ray Tune callback: one nested MLflow run per trial, a metric step per reported epoch.

    Records go through the sweep's journal, so a tracking server that is
    briefly unreachable neither fails the sweep nor loses a record. Ray pickles callbacks with
    the experiment and restores them on resume, so this holds only where the journal is.
    """

    def __init__(self, tracking_uri: str, family: str, sweep: str, journal_dir: Path, epochs: int) -> None:
        self.tracking_uri, self.family, self.sweep, self.journal_dir, self.epochs = tracking_uri, family, sweep, journal_dir, epochs

    @property
    def log(self) -> SweepLog:
        return open_sweep_log(self.tracking_uri, self.family, self.sweep, self.journal_dir)

    def setup(self, **info: Any) -> None:
        self.log.send_in_background()  # an MLflow call per record would hold up Ray Tune's loop

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.log.stop_background()

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
