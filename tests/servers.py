"""Real servers for tests: MLflow through ``python -m mlflow_server`` and a throw-away PostgreSQL.

Only on 127.0.0.1 and free ports; stopped by process id, and a stop that leaves any of the
server's processes behind fails the test (after killing them). Importable from any test:

    with mlflow_server(workdir, port=port, backend=uri) as server:   # or start_mlflow_server(...)
        ...
        server.kill()                                # a crash: SIGKILL to the whole tree
        server = start_mlflow_server(workdir, port=port, backend=uri)  # back on the same port
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import psutil

from tests.cli import environment

SERVER_START_TIMEOUT_S = 180.0  # a cold first start on a loaded CI machine; about 10 s usually


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MlflowServer:
    process: subprocess.Popen  # `python -m mlflow_server`, which runs `mlflow server` as its child
    port: int
    log: Path
    started_in_s: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop it as a user or a service manager would; fails if it exits badly or leaves processes."""
        tree = _tree(self.process.pid)
        self.process.send_signal(signum)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = None
        leftovers = [p for p in tree if _running(p)]
        _kill(tree)
        assert code == 0 and not leftovers, f"stop: exit code {code}, left behind {leftovers}\n{self.output()[-3000:]}"

    def kill(self) -> None:
        """A crash: SIGKILL to the wrapper and the server (the server is in a process group of its own)."""
        _kill(_tree(self.process.pid))


def start_mlflow_server(workdir: Path, *options: str, port: int | None = None, backend: str | None = None,
                        env: dict[str, str] | None = None) -> MlflowServer:  # fmt: skip
    """``python -m mlflow_server`` in ``workdir`` (its defaults are relative to it), answering on loopback."""
    port = port or free_port()
    log = workdir / f"mlflow-server-{port}.log"
    command = [sys.executable, "-m", "mlflow_server", "--port", str(port), *(["--backend", backend] if backend else []), *options]
    started = time.monotonic()
    with log.open("a") as output:
        process = subprocess.Popen(command, cwd=workdir, env=environment(workdir, env), stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)  # fmt: skip
    server = MlflowServer(process, port, log, 0.0)
    while not _ready(server):
        if process.poll() is not None or time.monotonic() - started > SERVER_START_TIMEOUT_S:
            server.kill()
            raise AssertionError(f"the MLflow server did not start (exit code {process.poll()}):\n{server.output()[-3000:]}")
        time.sleep(0.2)
    server.started_in_s = time.monotonic() - started
    return server


@contextmanager
def mlflow_server(workdir: Path, *options: str, port: int | None = None, backend: str | None = None,
                  env: dict[str, str] | None = None) -> Iterator[MlflowServer]:  # fmt: skip
    server = start_mlflow_server(workdir, *options, port=port, backend=backend, env=env)
    try:
        yield server
    finally:
        if server.process.poll() is None:
            server.stop()


def _ready(server: MlflowServer) -> bool:
    """Ready once the wrapper says so: it only does after /health answered."""
    return "Press Ctrl-C to stop." in server.output() and _answers(f"{server.url}/health")


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


def _tree(pid: int) -> list[psutil.Process]:
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def kill_tree(pid: int) -> None:
    """SIGKILL a process and every descendant (servers and Ray workers start sessions of their own)."""
    _kill(_tree(pid))


def _kill(processes: list[psutil.Process]) -> None:
    for process in processes:
        try:
            process.kill()
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(processes, timeout=10)


# ---------------------------------------------------------------------------------------------
# PostgreSQL (Debian's packages), as the `postgres` user when we are root: it refuses root.


def postgres_binaries() -> Path | None:
    """The folder holding initdb and postgres: on PATH, or Debian's versioned folder."""
    on_path = shutil.which("initdb")
    if on_path and Path(on_path).with_name("postgres").exists():
        return Path(on_path).resolve().parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return versions[-1].parent if versions else None


@contextmanager
def postgresql(database: str = "mlflow") -> Iterator[str]:
    """A fresh PostgreSQL on 127.0.0.1 and a free port; yields the URI of an empty ``database``."""
    import psycopg2

    binaries = postgres_binaries()
    assert binaries is not None, "PostgreSQL binaries not found (check postgres_binaries() before)"
    as_user = {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}
    folder = Path(tempfile.mkdtemp(prefix="sweeper-postgres-"))  # not under pytest's root-only folders
    if as_user:
        shutil.chown(folder, "postgres", "postgres")
    env = {**os.environ, "LC_ALL": "C.UTF-8"}
    port = free_port()
    try:
        subprocess.run([binaries / "initdb", "-D", folder / "data", "-U", "postgres", "-A", "trust", "--no-sync"], cwd=folder,
                       env=env, check=True, capture_output=True, timeout=120, **as_user)  # fmt: skip
        command = [binaries / "postgres", "-D", folder / "data", "-h", "127.0.0.1", "-p", str(port), "-k", folder,
                   "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]  # fmt: skip
        with (folder / "postgres.log").open("w") as log:
            server = subprocess.Popen(command, cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, **as_user)
        try:
            _create_database(psycopg2, port, database, server, folder / "postgres.log")
            yield f"postgresql://postgres@127.0.0.1:{port}/{database}"
        finally:
            tree = _tree(server.pid)
            server.send_signal(signal.SIGINT)  # PostgreSQL's "fast" shutdown
            try:
                server.wait(timeout=60)
            finally:
                _kill([p for p in tree if _running(p)])
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _create_database(psycopg2, port: int, database: str, server: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        try:
            connection = psycopg2.connect(host="127.0.0.1", port=port, user="postgres", dbname="postgres", connect_timeout=2)
            break
        except psycopg2.OperationalError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"PostgreSQL did not start:\n{log.read_text()[-3000:]}") from None
            time.sleep(0.2)
    connection.autocommit = True  # CREATE DATABASE refuses to run in a transaction
    connection.cursor().execute(f'CREATE DATABASE "{database}"')
    connection.close()


# ---------------------------------------------------------------------------------------------
# What a server exposes: its listening sockets, and whether a Ray driver may connect.


def listening_sockets(pid: int) -> set[tuple[str, str, int]]:
    """(process name, address, port) of every TCP socket the process tree of ``pid`` listens on."""
    sockets = set()
    for process in _tree(pid):
        try:
            name = process.name()
            connections = process.net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            continue
        sockets |= {(name, c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
    return sockets


RAY_CONNECT = "import ray, sys; ray.init(address=sys.argv[1]); print('connected to', sum(n['Alive'] for n in ray.nodes()), 'nodes')"


@dataclass(frozen=True)
class DriverOutcome:
    returncode: int | None  # None: killed after the timeout
    output: str

    @property
    def refused_for_its_token(self) -> bool:
        return self.returncode not in (0, None) and "InvalidAuthToken" in self.output


def ray_drivers_connect(address: str, auth_by_case: dict[str, dict[str, str]], timeout_s: float = 120) -> dict[str, DriverOutcome]:
    """For each case, a driver that connects to the Ray cluster at ``address`` with only that
    case's RAY_AUTH_* settings (none inherited) and exits; all at once, to keep it quick. One
    connection attempt each instead of Ray's 20 s of retries: a refusal is certain at the first."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_AUTH")}
    drivers = {
        case: subprocess.Popen([sys.executable, "-c", RAY_CONNECT, address], env={**env, **auth, "RAY_gcs_server_port_wait_time_s": "1"},
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)  # fmt: skip
        for case, auth in auth_by_case.items()
    }
    deadline = time.monotonic() + timeout_s
    return {case: _outcome(driver, deadline) for case, driver in drivers.items()}


def _outcome(driver: subprocess.Popen, deadline: float) -> DriverOutcome:
    try:
        output, _ = driver.communicate(timeout=max(1.0, deadline - time.monotonic()))
        return DriverOutcome(driver.returncode, output)
    except subprocess.TimeoutExpired:
        kill_tree(driver.pid)
        return DriverOutcome(None, driver.communicate()[0])
