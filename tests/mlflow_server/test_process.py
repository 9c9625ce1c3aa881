"""Process handling with stand-in servers (small Python programs), so it runs in a second."""
from __future__ import annotations

import os
import signal
import socket
import sys
import time
import urllib.request

import psutil
import pytest

from mlflow_server.options import ServerPlan
from mlflow_server.process import ServerError, interrupt_on_sigterm, running
from tests.servers import free_port

HEALTHY_SERVER = """
import http.server, os, subprocess, sys
# A member of the group that ignores SIGTERM, as a hung worker would.
stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"])
open({pids!r}, "w").write(f"{{os.getpid()}} {{stubborn.pid}}")

class Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200); self.end_headers(); self.wfile.write(b"OK")

print("serving", flush=True)
http.server.HTTPServer(("127.0.0.1", {port}), Health).serve_forever()
"""


def plan_running(script: str, port: int) -> ServerPlan:
    return ServerPlan((sys.executable, "-c", script), dict(os.environ), f"http://127.0.0.1:{port}", "sqlite:///unused.db", "file:///unused", None)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.fixture
def healthy(tmp_path):
    port = free_port()
    return plan_running(HEALTHY_SERVER.format(pids=str(tmp_path / "pids"), port=port), port), tmp_path / "pids"


def test_the_whole_group_is_stopped_even_a_member_ignoring_sigterm(healthy):
    plan, pids = healthy
    with running(plan, start_timeout=30, grace=1) as server:
        assert urllib.request.urlopen(f"{server.url}/health", timeout=5).read() == b"OK"
        assert os.getpgid(server.pid) == server.pid != os.getpgid(0)  # a process group of its own
    assert all(gone(int(pid)) for pid in pids.read_text().split())


def test_ctrl_c_in_the_foreground_stops_the_server(healthy):
    plan, pids = healthy
    with pytest.raises(KeyboardInterrupt), running(plan, start_timeout=30, grace=1):
        raise KeyboardInterrupt
    assert all(gone(int(pid)) for pid in pids.read_text().split())


def test_a_server_that_never_answers_times_out_with_its_last_lines_and_is_stopped(tmp_path):
    script = f"import os, sys, time\nopen({str(tmp_path / 'pid')!r}, 'w').write(str(os.getpid()))\n" \
             "print('migrating', file=sys.stderr)\nprint('stuck on a lock', file=sys.stderr, flush=True)\ntime.sleep(300)"
    with pytest.raises(ServerError) as error:
        with running(plan_running(script, free_port()), start_timeout=1.5, grace=1):
            pass
    message = str(error.value)
    assert "did not answer" in message and "within 2 s (--start-timeout)" in message
    assert message.endswith("migrating\nstuck on a lock")
    assert gone(int((tmp_path / "pid").read_text()))


def test_a_server_that_exits_at_start_shows_its_exit_code_and_output():
    script = "import sys\nprint('Error: the database schema is newer than this MLflow', file=sys.stderr)\nsys.exit(3)"
    with pytest.raises(ServerError, match="exited with code 3 before answering; its last output:\nError: the database schema is newer"):
        with running(plan_running(script, free_port()), start_timeout=30):
            pass


def test_a_port_already_in_use_is_refused_before_starting_anything(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = f"open({str(tmp_path / 'started')!r}, 'w')"
        with pytest.raises(ServerError, match=f"something already listens on 127.0.0.1:{port}; stop it or pass another --port"):
            with running(plan_running(script, port), start_timeout=5):
                pass
    assert not (tmp_path / "started").exists()


def test_sigterm_takes_the_ctrl_c_path_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt), interrupt_on_sigterm():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # the handler interrupts this at once
    assert signal.getsignal(signal.SIGTERM) is before
