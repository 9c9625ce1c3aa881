"""The sweep journal against a real MLflow store (SQLite), with the store made unreachable at will."""
from __future__ import annotations

import threading
import time

import pytest
from mlflow.exceptions import MlflowException, RestException
from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_PARENT_RUN_ID

from sweeper import journal as journal_module
from sweeper.journal import STATE_FILE, Journal, SweepLog, coalesced, next_window, unreachable
from sweeper.tracking import SWEEP_KEY, SweepTracker


class Outage:
    """Makes every MLflow call of a tracker fail as an unreachable server does, until ended."""

    def __init__(self, tracker: SweepTracker, monkeypatch: pytest.MonkeyPatch) -> None:
        self.tracker, self.monkeypatch = tracker, monkeypatch

    @staticmethod
    def refuse(*args, **kwargs):
        raise MlflowException("API request to http://127.0.0.1:5000/api/2.0/mlflow/runs/log-batch failed with exception ConnectionError")

    def __enter__(self) -> Outage:
        for name in ("log_batch", "create_run", "set_terminated", "log_artifacts", "search_runs"):
            self.monkeypatch.setattr(self.tracker.client, name, self.refuse)
        return self

    def __exit__(self, *exc) -> None:
        self.monkeypatch.undo()


@pytest.fixture
def store(tmp_path):
    return f"sqlite:///{tmp_path}/mlflow.db"


def open_log(store, tmp_path) -> SweepLog:
    return SweepLog(SweepTracker(store, "localization"), Journal(tmp_path / "journal"), "s1")


def record_a_sweep(log: SweepLog, epochs=range(1, 4), trials=("a", "b")) -> None:
    log.start_run(SWEEP_KEY, "s1", "sweep", {"trials": len(trials)}, {})
    for trial in trials:
        log.start_run(f"trial:{trial}", trial, "trial", {"lr": 0.1}, {}, parent=SWEEP_KEY)
        for epoch in epochs:
            log.log(f"trial:{trial}", {"val_loss": 1.0 / epoch, "diverged": 0}, step=epoch)
        log.finish(f"trial:{trial}", "completed")
    log.finish(SWEEP_KEY, "completed")


def runs_of(store) -> dict[str, object]:
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("localization")
    return {run.data.tags["sweeper.key"]: run for run in client.search_runs([experiment.experiment_id])}


def history(store, run, key="val_loss") -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(store).get_metric_history(run.info.run_id, key))


def test_records_reach_mlflow_nested_and_complete(store, tmp_path):
    log = open_log(store, tmp_path)
    record_a_sweep(log)
    runs = runs_of(store)
    assert set(runs) == {"sweep", "trial:a", "trial:b"} and not log.journal.pending()
    assert runs["trial:a"].data.tags["mlflow.parentRunId"] == runs["sweep"].info.run_id
    assert history(store, runs["trial:b"]) == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert {run.info.status for run in runs.values()} == {"FINISHED"}
    experiment = MlflowClient(store).get_experiment(runs["sweep"].info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development", "the UI opens on its training runs"


def test_an_outage_loses_nothing_and_the_records_go_out_once_it_ends(store, tmp_path, monkeypatch):
    log = open_log(store, tmp_path)
    log.start_run(SWEEP_KEY, "s1", "sweep", {}, {})
    with Outage(log.tracker, monkeypatch):
        record_a_sweep(log, trials=("a",))  # raises nothing while the store is away
        assert log.offline and len(log.journal.pending()) == 6
        assert not log.drain(attempts=2, wait_s=0)
    assert log.flush() and not log.offline
    runs = runs_of(store)
    assert set(runs) == {"sweep", "trial:a"} and history(store, runs["trial:a"]) == [(1, 1.0), (2, 0.5), (3, 1 / 3)]


def test_while_offline_sending_is_retried_only_every_few_seconds(store, tmp_path, monkeypatch):
    log = open_log(store, tmp_path)
    log.start_run(SWEEP_KEY, "s1", "sweep", {}, {})
    attempts = []
    original = log.flush
    monkeypatch.setattr(log, "flush", lambda: attempts.append(1) or original())
    with Outage(log.tracker, monkeypatch):
        for step in range(5):
            log.log(SWEEP_KEY, {"x": step}, step)
    assert len(attempts) == 1  # the first failure; the next tries wait for RETRY_SECONDS
    monkeypatch.setattr(journal_module, "RETRY_SECONDS", 0.0)
    log.log(SWEEP_KEY, {"x": 5}, 5)
    assert not log.offline and [s for s, _ in history(store, runs_of(store)["sweep"], "x")] == [0, 1, 2, 3, 4, 5]


def test_in_the_background_the_submitter_only_writes_the_journal_and_a_thread_sends_it_in_order(store, tmp_path, monkeypatch):
    log = open_log(store, tmp_path)
    senders = []
    send = log._send
    monkeypatch.setattr(log, "_send", lambda *args, **kwargs: senders.append(threading.get_ident()) or send(*args, **kwargs))
    log.send_in_background()
    record_a_sweep(log)
    wait_until(lambda: not log.journal.pending())
    assert senders and threading.get_ident() not in senders
    assert len(senders) < len(log.journal.records), "records that came within a moment went out together"
    log.stop_background()
    runs = runs_of(store)
    assert runs["trial:a"].data.tags["mlflow.parentRunId"] == runs["sweep"].info.run_id
    assert history(store, runs["trial:b"]) == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert {run.info.status for run in runs.values()} == {"FINISHED"}
    log.log(SWEEP_KEY, {"after": 1.0})  # stopped: sent as it comes again
    assert not log.journal.pending()


def test_in_the_background_an_outage_loses_nothing(store, tmp_path, monkeypatch):
    log = open_log(store, tmp_path)
    log.start_run(SWEEP_KEY, "s1", "sweep", {}, {})
    log.send_in_background()
    with Outage(log.tracker, monkeypatch):
        record_a_sweep(log, trials=("a",))
        wait_until(lambda: log.offline)
        log.stop_background()  # the retry is not due yet: nothing is tried
        assert len(log.journal.pending()) == 6
    assert log.flush() and not log.offline
    runs = runs_of(store)
    assert set(runs) == {"sweep", "trial:a"} and history(store, runs["trial:a"]) == [(1, 1.0), (2, 0.5), (3, 1 / 3)]


def wait_until(condition, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_replaying_the_whole_journal_creates_no_duplicates(store, tmp_path):
    record_a_sweep(open_log(store, tmp_path))
    before = runs_of(store)
    (tmp_path / "journal" / STATE_FILE).unlink()  # as if the driver died between sending and noting it
    replay = open_log(store, tmp_path)
    assert len(replay.journal.pending()) == len(replay.journal.records)
    assert replay.flush()
    after = runs_of(store)
    assert {k: r.info.run_id for k, r in after.items()} == {k: r.info.run_id for k, r in before.items()}
    assert history(store, after["trial:a"]) == history(store, before["trial:a"])


def test_waiting_epochs_of_a_run_go_out_in_one_call_and_each_run_keeps_its_order():
    def record(op, key, step=None):
        return {"op": op, "key": key, "metrics": [["loss", 1.0, 0, step]], "tags": {"node": str(step)}} if op == "log" else {"op": op, "key": key}

    records = [record("start", "a"), record("log", "a", 1), record("start", "b"), record("log", "b", 1), record("log", "a", 2),
               record("artifacts", "a"), record("log", "a", 3), record("log", "b", 2), record("finish", "a"), record("finish", "b")]  # fmt: skip
    sent = [(r["op"], r["key"], [m[3] for m in r.get("metrics", [])], r.get("tags", {}).get("node")) for r in coalesced(records)]
    assert sent == [("start", "a", [], None), ("log", "a", [1, 2], "2"), ("start", "b", [], None), ("log", "b", [1, 2], "2"),
                    ("artifacts", "a", [], None), ("log", "a", [3], "3"), ("finish", "a", [], None), ("finish", "b", [], None)]  # fmt: skip
    assert records[1]["metrics"] == [["loss", 1.0, 0, 1]], "the journal's own records are left as they are"


def test_records_that_waited_go_out_in_fewer_calls(store, tmp_path, monkeypatch):
    log = open_log(store, tmp_path)
    log.start_run(SWEEP_KEY, "s1", "sweep", {}, {})
    with Outage(log.tracker, monkeypatch):
        record_a_sweep(log)  # every record waits in the journal
    calls = {"log_batch": 0, "search_runs": 0}
    for name in calls:
        original = getattr(log.tracker.client, name)
        monkeypatch.setattr(log.tracker.client, name, lambda *a, _name=name, _original=original, **k: calls.update({_name: calls[_name] + 1}) or _original(*a, **k))
    assert log.flush()
    # log_batch: each trial's params, its three epochs, its end; the sweep's end. Each trial's run
    # is searched for before it is made (another process's `sweeper sync` may have made it).
    assert calls == {"log_batch": 7, "search_runs": 2}
    runs = runs_of(store)
    assert history(store, runs["trial:b"]) == [(1, 1.0), (2, 0.5), (3, 1 / 3)]
    assert {run.info.status for run in runs.values()} == {"FINISHED"}


@pytest.mark.parametrize("sender", ["the same process", "a process started anew"])
def test_a_run_made_by_a_window_that_failed_part_way_is_made_once(store, tmp_path, monkeypatch, sender):
    log = open_log(store, tmp_path)
    with monkeypatch.context() as outage:  # the sweep's run is made, then its params fail
        outage.setattr(log.tracker.client, "log_batch", Outage.refuse)
        record_a_sweep(log, trials=("a",))
    assert log.offline and log.journal.sent == 0
    assert (log if sender == "the same process" else open_log(store, tmp_path)).flush()
    runs = MlflowClient(store).search_runs([log.tracker.experiment_id], run_view_type=ViewType.ALL)
    assert sorted(run.data.tags["sweeper.key"] for run in runs) == [SWEEP_KEY, "trial:a"]
    assert runs_of(store)[SWEEP_KEY].data.params == {"trials": "1"}


def test_runs_a_sync_in_another_process_made_meanwhile_are_not_made_again(store, tmp_path, monkeypatch):
    log = open_log(store, tmp_path)
    with Outage(log.tracker, monkeypatch):
        record_a_sweep(log)  # the sweep's records wait; the user runs `sweeper sync` from another shell
    assert open_log(store, tmp_path).flush() and log.flush()
    runs = MlflowClient(store).search_runs([log.tracker.experiment_id], run_view_type=ViewType.ALL)
    assert sorted(run.data.tags["sweeper.key"] for run in runs) == [SWEEP_KEY, "trial:a", "trial:b"]


def test_a_deletion_is_sent_alone_so_a_window_sent_again_never_writes_to_a_deleted_run(store, tmp_path, monkeypatch):
    log = open_log(store, tmp_path)
    log.start_run(SWEEP_KEY, "s1", "sweep", {}, {})
    with Outage(log.tracker, monkeypatch):  # these wait in the journal, then go out in one flush
        log.start_run("trial:a", "a", "trial", {"lr": 0.1}, {}, parent=SWEEP_KEY)
        log.log("trial:a", {"val_loss": 1.0}, step=1)
        log.discard("trial:a")  # a trial the restored experiment never knew
        log.log(SWEEP_KEY, {"x": 1.0}, step=1)
    log_batch, failures = log.tracker.client.log_batch, []

    def fail_once_after_the_deletion(run_id, **kwargs):
        if run_id == log.run_id(SWEEP_KEY) and not failures:
            failures.append(run_id)
            Outage.refuse()
        return log_batch(run_id, **kwargs)

    monkeypatch.setattr(log.tracker.client, "log_batch", fail_once_after_the_deletion)
    assert not log.flush() and log.flush()
    assert set(runs_of(store)) == {SWEEP_KEY} and [s for s, _ in history(store, runs_of(store)[SWEEP_KEY], "x")] == [1]
    records = [{"op": op, "key": "k"} for op in ("start", "log", "delete", "log")]
    assert [len(next_window(records[start:])) for start in (0, 2, 3)] == [2, 1, 1]


def test_a_run_that_mlflow_made_twice_is_kept_once(store, tmp_path, monkeypatch):
    """MLflow's HTTP client sends a create-run request again when its answer is lost; the journal
    keeps the first run of the key and deletes the copy."""
    log = open_log(store, tmp_path)
    create = log.tracker.client.create_run

    def create_twice(*args, **kwargs):
        first = create(*args, **kwargs)
        create(*args, **kwargs)  # the resent request
        return first

    monkeypatch.setattr(log.tracker.client, "create_run", create_twice)
    monkeypatch.setattr(log.tracker, "_over_http", True)  # only HTTP resends; the store here is SQLite
    record_a_sweep(log)
    runs = MlflowClient(store).search_runs([log.tracker.experiment_id], run_view_type=ViewType.ALL)
    kept = runs_of(store)
    assert len(runs) == 6 and set(kept) == {SWEEP_KEY, "trial:a", "trial:b"}, "three kept, three deleted"
    assert kept["trial:a"].data.tags[MLFLOW_PARENT_RUN_ID] == kept[SWEEP_KEY].info.run_id
    assert history(store, kept["trial:b"]) == [(1, 1.0), (2, 0.5), (3, 1 / 3)]


def test_only_unreachable_stores_are_retried():
    assert unreachable(MlflowException("API request to http://h:1/api failed with exception Max retries exceeded"))
    assert unreachable(MlflowException("API request to http://h:1/api failed with timeout exception read timed out."))
    assert unreachable(RestException({"error_code": "TEMPORARILY_UNAVAILABLE", "message": "restarting"}))
    assert not unreachable(RestException({"error_code": "INVALID_PARAMETER_VALUE", "message": "bad lr"}))
    assert not unreachable(MlflowException("a local problem"))
    assert not unreachable(ValueError("a bug"))
