"""A real multi-node Ray cluster on loopback: a head and a worker node, each its own `ray start`
process tree, with token authentication set the same way for head, worker and driver. Nodes are
stopped by killing their process trees by PID, never with `ray stop` (which would end every Ray
on the machine)."""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.servers import free_port, kill_tree

RAY = str(Path(sys.executable).with_name("ray"))


@dataclass
class Cluster:
    address: str
    env: dict[str, str]
    nodes: dict[str, subprocess.Popen] = field(default_factory=dict)

    logs: dict[str, Path] = field(default_factory=dict)

    def start_node(self, name: str, *arguments: str, log: Path) -> None:
        command = [RAY, "start", "--block", "--num-cpus=1", "--disable-usage-stats", *arguments]
        self.nodes[name] = subprocess.Popen(command, env=self.env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
        self.logs[name] = log

    def alive_nodes(self) -> int:
        status = subprocess.run([RAY, "status", "--address", self.address], env=self.env, capture_output=True, text=True, timeout=60)
        active = status.stdout.split("Active:")[-1].split("Pending:")[0]
        return sum(1 for line in active.splitlines() if "node_" in line)

    def wait_for(self, nodes: int, timeout_s: float = 90) -> None:
        deadline = time.monotonic() + timeout_s
        while self.alive_nodes() != nodes:
            for name, process in self.nodes.items():
                if process.poll() is not None:
                    raise RuntimeError(f"Ray node {name} exited: {self.logs[name].read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the cluster did not reach {nodes} nodes")
            time.sleep(1)

    def start_worker(self) -> None:
        log = self.logs["head"].with_name(f"worker-{len(self.logs)}.log")
        self.start_node("worker", f"--address={self.address}", "--node-ip-address=127.0.0.1", log=log)
        self.wait_for(2)

    def kill_node(self, name: str) -> None:
        kill_tree(self.nodes.pop(name).pid)

    def stop(self) -> None:
        for name in list(self.nodes):
            self.kill_node(name)


@pytest.fixture(scope="session")
def running_cluster(tmp_path_factory):
    """One cluster for every cluster test: starting one takes 10-20 s."""
    # Ray's socket paths must stay under 108 bytes: pytest's temporary paths are too long.
    ray_temp = Path(tempfile.mkdtemp(prefix="ray-", dir="/tmp"))
    logs = tmp_path_factory.mktemp("cluster")
    port = free_port()
    env = {**os.environ, "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "SWEEPER_CACHE_DIR": str(logs / "cache")}
    cluster = Cluster(f"127.0.0.1:{port}", env)
    try:
        started = time.monotonic()
        cluster.start_node("head", "--head", f"--port={port}", "--node-ip-address=127.0.0.1", "--include-dashboard=false",
                           "--dashboard-host=127.0.0.1", f"--temp-dir={ray_temp}", log=logs / "head.log")  # fmt: skip
        cluster.wait_for(1)
        cluster.start_worker()
        print(f"2-node cluster up in {time.monotonic() - started:.1f} s")
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(ray_temp, ignore_errors=True)


@pytest.fixture
def cluster(running_cluster):
    """The cluster with both nodes up: a worker node a test killed is started again."""
    if "worker" not in running_cluster.nodes:
        running_cluster.start_worker()
    return running_cluster
