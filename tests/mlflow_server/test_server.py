"""The real server, started by `python -m mlflow_server`: sweeps logged over HTTP and read back
through MLflow's REST API, on SQLite (the defaults) and on PostgreSQL; basic auth when exposed."""
from __future__ import annotations

import signal
import urllib.error

import pytest
from mlflow.tracking import MlflowClient

from mlflow_server.options import default_tracking_uri
from tests.mlflow_server.conftest import SERVED_TRIALS, launch_over_http, read_sweep, rest
from tests.servers import mlflow_server

pytestmark = pytest.mark.slow

PASSWORD = "a long test password"


def test_a_sweep_logged_over_http_reads_back_through_the_rest_api(served_sweep):
    url = served_sweep.server.url
    parent, trials = read_sweep(url, served_sweep.name)
    history = rest(url, f"/api/2.0/mlflow/metrics/get-history?run_id={trials[0]['info']['run_id']}&metric_key=val_mean_error_m")["metrics"]
    assert history and all(point["value"] > 0 for point in history)  # one point per epoch
    assert f"Browse it: open {url}" in served_sweep.stdout


def test_the_defaults_are_the_files_sweeper_launch_uses(served_sweep):
    """Without options the server keeps runs in ./mlflow.db and artifacts in ./mlartifacts, the
    files a sweep launched in the same folder without --tracking-uri writes."""
    url, workdir = served_sweep.server.url, served_sweep.workdir
    parent, _ = read_sweep(url, served_sweep.name)
    run_id = parent["info"]["run_id"]
    assert default_tracking_uri(workdir) == f"sqlite:///{workdir.resolve()}/mlflow.db"
    assert MlflowClient(default_tracking_uri(workdir)).get_run(run_id).info.run_name == served_sweep.name
    listed = rest(url, f"/api/2.0/mlflow/artifacts/list?run_id={run_id}&path=summary")  # uploaded through the server
    assert "summary/trials.parquet" in {item["path"] for item in listed.get("files", [])}
    assert list((workdir / "mlartifacts").glob(f"*/{run_id}/artifacts/summary/trials.parquet"))


def test_exposed_it_asks_for_the_users_password_and_ctrl_c_stops_it(tmp_path):
    with mlflow_server(tmp_path, "--expose", "--host", "127.0.0.1", env={"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD}) as server:
        with pytest.raises(urllib.error.HTTPError) as refused:
            rest(server.url, "/api/2.0/mlflow/experiments/search?max_results=10")
        assert refused.value.code == 401
        assert rest(server.url, "/api/2.0/mlflow/experiments/search?max_results=10", password=PASSWORD)["experiments"]
        assert "Basic auth is on" in server.output() and (tmp_path / "basic_auth.db").is_file()  # next to ./mlflow.db
        server.stop(signal.SIGINT)  # Ctrl-C: exit code 0 and nothing left running, or this fails


def test_postgresql_backend_exposed_with_its_users_in_the_same_database(postgres_uri, tmp_path):
    """The team set-up: runs and users in PostgreSQL, a sweep driver logging in with its credentials."""
    import psycopg2

    options = ("--artifacts", "artifacts", "--expose", "--host", "127.0.0.1")
    with mlflow_server(tmp_path, *options, backend=postgres_uri, env={"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD}) as server:
        print(f"MLflow server on PostgreSQL answered after {server.started_in_s:.1f} s")
        launch_over_http(tmp_path, server, "postgres-sweep", password=PASSWORD)
        parent, _ = read_sweep(server.url, "postgres-sweep", password=PASSWORD)
    with psycopg2.connect(postgres_uri) as connection, connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM runs")
        assert cursor.fetchone()[0] == 1 + SERVED_TRIALS
        cursor.execute("SELECT username FROM users")
        assert cursor.fetchall() == [("admin",)]
    connection.close()
    assert list((tmp_path / "artifacts").glob(f"*/{parent['info']['run_id']}/artifacts/summary/trials.parquet"))
