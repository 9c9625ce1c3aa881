"""Running a planned server: a child process in its own process group, up only once /health answers.

The child gets its own group so that a terminal's Ctrl-C reaches only us, and we decide how it
stops: SIGTERM to the whole group (MLflow's CLI and its uvicorn workers), SIGKILL after a grace
period. Nothing is left running when the context manager exits, however it exits.
"""
from __future__ import annotations

import collections
import logging
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator
from urllib.parse import urlparse

from mlflow_server.options import AUTH_CONFIG_ENV, ServerPlan
from trainables.errors import UserError

logger = logging.getLogger(__name__)
output_logger = logging.getLogger("mlflow_server.output")  # the server's own lines, as they come

STOP_GRACE_S = 10.0
KILL_WAIT_S = 5.0  # SIGKILL is not instant either
TAIL_LINES = 20


class ServerError(UserError):
    """The server did not come up (or went down); the message ends with its last output lines."""


class OutputTail:
    """Drains the server's output (a full pipe would stall it), logs it, keeps the last lines."""

    def __init__(self, stream: IO[str], lines: int = TAIL_LINES) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=lines)
        self._thread = threading.Thread(target=self._drain, args=(stream,), daemon=True, name="mlflow-server-output")
        self._thread.start()

    def _drain(self, stream: IO[str]) -> None:
        for line in stream:
            line = line.rstrip("\n")
            self.lines.append(line)
            output_logger.info(line)

    def join(self, timeout: float = 5.0) -> None:
        self._thread.join(timeout)

    def text(self) -> str:
        return "\n".join(self.lines) or "(no output)"


class RunningServer:
    def __init__(self, process: subprocess.Popen, url: str, output: OutputTail) -> None:
        self.process, self.url, self.output = process, url, output

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait(self) -> int:
        """Block until the server exits by itself; its exit code (its output read to the end)."""
        code = self.process.wait()
        self.output.join()
        return code


@contextmanager
def running(plan: ServerPlan, start_timeout: float, grace: float = STOP_GRACE_S) -> Iterator[RunningServer]:
    """The server of ``plan``, answering on ``plan.url``; stopped on exit (also on Ctrl-C)."""
    check_port_free(plan.url)
    with tempfile.TemporaryDirectory(prefix="mlflow-server-") as scratch:
        env = dict(plan.env)
        if plan.auth_config is not None:
            settings = Path(scratch) / "basic_auth.ini"
            settings.write_text(plan.auth_config)
            env[AUTH_CONFIG_ENV] = str(settings)
        started = time.monotonic()
        process = subprocess.Popen(plan.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                   stdin=subprocess.DEVNULL, text=True, start_new_session=True)  # fmt: skip
        try:
            output = OutputTail(process.stdout)
            wait_until_healthy(plan.url, process, output, start_timeout)
            logger.debug("MLflow server %s answered after %.1f s", plan.url, time.monotonic() - started)
            yield RunningServer(process, plan.url, output)
        finally:
            stop(process, grace)


def check_port_free(url: str) -> None:
    """Refuse early: a server already on the port would answer /health in our place."""
    address = urlparse(url)
    with socket.socket(socket.AF_INET6 if ":" in address.hostname else socket.AF_INET) as probe:
        if probe.connect_ex((address.hostname, address.port)) == 0:
            raise ServerError(f"something already listens on {address.netloc}; stop it or pass another --port")


def wait_until_healthy(url: str, process: subprocess.Popen, output: OutputTail, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output.join()
            raise ServerError(f"the MLflow server exited with code {process.returncode} before answering; its last output:\n{output.text()}")
        if answers(url):
            return
        time.sleep(0.25)
    raise ServerError(f"the MLflow server did not answer {url}/health within {timeout:.0f} s (--start-timeout); its last output:\n{output.text()}")


def answers(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def stop(process: subprocess.Popen, grace: float = STOP_GRACE_S) -> None:
    """SIGTERM to the server's process group, SIGKILL to what is left after ``grace`` seconds.

    A second Ctrl-C while stopping is ignored: it would otherwise leave the server behind.
    """
    group = process.pid  # start_new_session made the child the leader of its own group
    with _signals_ignored():
        _signal_group(group, signal.SIGTERM)
        if not _group_ended(group, process, grace):
            logger.warning("the MLflow server did not stop within %.0f s of SIGTERM; killing it", grace)
            _signal_group(group, signal.SIGKILL)
            _group_ended(group, process, KILL_WAIT_S)
        process.wait()


@contextmanager
def interrupt_on_sigterm() -> Iterator[None]:
    """SIGTERM (systemd, docker stop, kill) ends the server like Ctrl-C: through the clean-up path."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def _signals_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread handles signals
        return
    previous = {signum: signal.signal(signum, signal.SIG_IGN) for signum in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _group_ended(group: int, process: subprocess.Popen, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for every process of the group to end; whether they did."""
    deadline = time.monotonic() + timeout
    while _group_alive(group, process):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _group_alive(group: int, process: subprocess.Popen) -> bool:
    process.poll()  # reap the leader, or it counts as a member while a zombie
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def _signal_group(group: int, signum: signal.Signals) -> None:
    try:
        os.killpg(group, signum)
    except ProcessLookupError:
        pass  # already gone
