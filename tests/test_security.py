"""Security defaults: what the servers the tool starts listen on, who may join the Ray it starts,
and that a password given for the MLflow server is stored and printed nowhere.

The Ray cluster's refusal of drivers without its token is in tests/cluster/test_security.py.
"""
from __future__ import annotations

import contextlib
import json
import os
import secrets
import select
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest
from mlflow.tracking import MlflowClient

from tests.cli import start_sweeper, sweeper
from tests.servers import free_port, kill_tree, listening_sockets, mlflow_server, ray_drivers_connect

pytestmark = pytest.mark.slow

ALL_INTERFACES = {"0.0.0.0", "::"}
RAY_DASHBOARD_PORT = 8265
LOCAL_RAY_START_TIMEOUT_S = 180
# Unique, so that finding it anywhere cannot be a coincidence.
PASSWORD = f"mlflow-admin-{secrets.token_hex(12)}"


def addresses(sockets: set[tuple[str, str, int]]) -> set[str]:
    return {address for _, address, _ in sockets}


def table(sockets: set[tuple[str, str, int]]) -> str:
    return "\n".join(f"  {name:<24} {address:<15} {port}" for name, address, port in sorted(sockets))


# ---------------------------------------------------------------------------------------------
# The MLflow server


def test_the_mlflow_server_listens_on_loopback_only_unless_exposed(tmp_path):
    with mlflow_server(tmp_path) as server:
        sockets = listening_sockets(server.process.pid)
    print(f"MLflow server, defaults:\n{table(sockets)}")
    assert addresses(sockets) == {"127.0.0.1"} and server.port in {port for _, _, port in sockets}, sockets
    refused = subprocess.run([sys.executable, "-m", "mlflow_server", "--host", "0.0.0.0", "--port", str(free_port())],
                             cwd=tmp_path, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert refused.returncode == 2 and "add --expose and an admin password" in refused.stderr, refused.stderr


# ---------------------------------------------------------------------------------------------
# Local Ray, as `sweeper launch` starts it without --address


LOCAL_RAY = """
import json, sys
import ray
from sweeper.cluster import start_ray

start_ray(None)
workers_joined = ray.get(ray.remote(lambda: True).remote())  # they authenticate with the session token
print(json.dumps({"gcs": ray.get_runtime_context().gcs_address, "workers_joined": workers_joined}), flush=True)
sys.stdin.readline()
ray.shutdown()
"""


def test_local_ray_has_no_dashboard_and_refuses_drivers_without_its_session_token(tmp_path):
    home, ray_temp = tmp_path / "home", Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))  # socket paths < 108 bytes
    (home / ".ray").mkdir(parents=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    env.update(HOME=str(home), RAY_TMPDIR=str(ray_temp))
    driver = subprocess.Popen([sys.executable, "-c", LOCAL_RAY], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=(tmp_path / "driver.log").open("w"), text=True, start_new_session=True)  # fmt: skip
    ray_processes: list[psutil.Process] = []
    try:
        ready, _, _ = select.select([driver.stdout], [], [], LOCAL_RAY_START_TIMEOUT_S)
        started = json.loads(driver.stdout.readline() if ready else "{}")
        assert started.get("workers_joined"), (tmp_path / "driver.log").read_text()[-3000:]
        ray_processes = psutil.Process(driver.pid).children(recursive=True)  # killed too, should shutdown orphan one
        sockets = listening_sockets(driver.pid)
        tokens_on_disk = os.listdir(home / ".ray")
        (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))  # a user's own token, from an earlier cluster
        outcomes = ray_drivers_connect(started["gcs"], {
            "auth disabled": {"RAY_AUTH_MODE": "disabled"},
            "a wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
            "~/.ray/auth_token": {"RAY_AUTH_MODE": "token", "HOME": str(home)},
        })  # fmt: skip
        driver.communicate("stop\n", timeout=60)
    finally:
        kill_tree(driver.pid)
        for process in ray_processes:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()  # psutil refuses if the process id now belongs to another process
        shutil.rmtree(ray_temp, ignore_errors=True)
    print(f"local Ray (GCS {started['gcs']}):\n{table(sockets)}")
    assert RAY_DASHBOARD_PORT not in {port for _, _, port in sockets} and not any("dashboard" in n.lower() for n, _, _ in sockets)
    # Ray binds its servers to every interface whatever node address it is given: the reason
    # for the token. Should a Ray version bind loopback instead, this fails and the docs change.
    assert {address for name, address, _ in sockets if name == "gcs_server"} & ALL_INTERFACES, sockets
    refused = {case: outcome.refused_for_its_token for case, outcome in outcomes.items()}
    assert all(refused.values()), {case: outcome.output[-1500:] for case, outcome in outcomes.items()}
    assert tokens_on_disk == [], "the session token is written nowhere (Ray would otherwise create ~/.ray/auth_token)"


# ---------------------------------------------------------------------------------------------
# No secrets stored or printed


def with_password(url: str) -> str:
    return url.replace("http://", f"http://admin:{PASSWORD}@", 1)


def files_holding(password: str, *folders: Path) -> list[str]:
    return [str(path) for folder in folders for path in folder.rglob("*") if path.is_file() and password.encode() in path.read_bytes()]


def mlflow_records(url: str) -> str:
    """Everything MLflow holds about the sweep's runs (names, params, tags, metric names), as text."""
    client = MlflowClient(url)
    experiment = client.get_experiment_by_name("localization")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 3, f"the sweep's run and its 2 trials, not {[(run.info.run_name, run.data.tags.get('mlflow.parentRunId')) for run in runs]}"
    return json.dumps([experiment.tags, *(run.to_dictionary() for run in runs)], default=str)


def test_the_mlflow_password_is_stored_and_printed_nowhere(tmp_path, monkeypatch):
    """A smoke sweep and an export against an exposed server with basic auth: the password given
    for it is in no MLflow record, no file of the sweep, its export, Ray's session or the server's
    folder, and in no output; a URI with the password inside it is refused before anything starts."""
    ray_temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    login = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": PASSWORD}
    env = {**login, "RAY_TMPDIR": str(ray_temp)}  # Ray's session logs, searched too
    results, export = tmp_path / "results", tmp_path / "export"
    launch = ("launch", "localization", "--preset", "smoke", "--trials", "2", "--epochs", "1", "--storage", str(results))
    try:
        with mlflow_server(tmp_path, "--expose", env={"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD}) as server:
            exposed = listening_sockets(server.process.pid)
            refused = start_sweeper(tmp_path, *launch, "--name", "refused", "--tracking-uri", with_password(server.url),
                                    env=env, log=tmp_path / "refused.log")  # alongside the next one, to save time; fmt: skip
            wrong_login = {**env, "MLFLOW_TRACKING_PASSWORD": "not-" + PASSWORD}  # /health would let it through
            unauthorized = start_sweeper(tmp_path, *launch, "--name", "unauthorized", "--tracking-uri", server.url,
                                         env=wrong_login, log=tmp_path / "unauthorized.log")  # fmt: skip
            launched = sweeper(tmp_path, *launch, "--name", "guarded", "--tracking-uri", server.url, env=env)
            assert launched.returncode == 0, launched.stderr[-3000:]
            exported = sweeper(tmp_path, "export", "guarded", "--storage", str(results), "--out", str(export), env=env)
            assert exported.returncode == 0, exported.stderr[-3000:]
            for name, value in login.items():
                monkeypatch.setenv(name, value)
            records = mlflow_records(server.url)
        refused_code, unauthorized_code = refused.wait(timeout=120), unauthorized.wait(timeout=120)
        stored = files_holding(PASSWORD, tmp_path, ray_temp)
    finally:
        shutil.rmtree(ray_temp, ignore_errors=True)
    assert addresses(exposed) == {"0.0.0.0"}, f"--expose is what moves it off loopback: {exposed}"
    refusal = (tmp_path / "refused.log").read_text()
    assert refused_code == 2 and "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD" in refusal, refusal
    unauthorized_output = (tmp_path / "unauthorized.log").read_text()
    assert unauthorized_code == 2 and "refused this user (HTTP 401)" in unauthorized_output, unauthorized_output
    assert not (results / "refused").exists() and not (results / "unauthorized").exists(), "refused before anything started"
    assert (results / "guarded" / "sweeper.json").is_file() and list(export.rglob("*.json")), "the files searched exist"
    outputs = {"refused launch": refusal, "unauthorized launch": unauthorized_output, **{name: run.stdout + run.stderr for name, run in {"launch": launched, "export": exported}.items()}}
    found = {
        "printed by": [name for name, text in outputs.items() if PASSWORD in text],
        "in MLflow's records": PASSWORD in records,
        "in files": stored,
    }
    assert found == {"printed by": [], "in MLflow's records": False, "in files": []}
