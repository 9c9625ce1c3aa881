"""Token authentication on a real 2-node cluster: Ray's servers listen on every interface, so the
token is what protects them. A driver without the cluster's token is refused; with it, it joins."""
from __future__ import annotations

import secrets

import pytest

from tests.cli import environment, start_sweeper
from tests.servers import kill_tree, listening_sockets, ray_drivers_connect

pytestmark = pytest.mark.slow


def test_only_a_driver_with_the_clusters_token_connects(cluster, tmp_path):
    assert not any(key.startswith("RAY_AUTH") for key in environment(tmp_path)), "the sweeper below must start without the token"
    home = tmp_path / "home"
    (home / ".ray").mkdir(parents=True)
    (home / ".ray" / "auth_token").write_text(secrets.token_hex(32))  # a token of another cluster
    log = tmp_path / "sweeper.log"
    sweep = start_sweeper(tmp_path, "launch", "localization", "--preset", "smoke", "--address", cluster.address,
                          env={"RAY_gcs_server_port_wait_time_s": "1"}, log=log)  # one attempt, not 20 s of retries; fmt: skip
    try:
        outcomes = ray_drivers_connect(cluster.address, {
            "the cluster's token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": cluster.env["RAY_AUTH_TOKEN"]},
            "auth disabled": {"RAY_AUTH_MODE": "disabled"},
            "auth mode unset": {},
            "a wrong token": {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "0" * 64},
            "~/.ray/auth_token of another cluster": {"RAY_AUTH_MODE": "token", "HOME": str(home)},
        })  # fmt: skip
        sweep_code = sweep.wait(timeout=300)
    finally:
        kill_tree(sweep.pid)
    joined = outcomes.pop("the cluster's token")
    assert joined.returncode == 0 and "connected to 2 nodes" in joined.output, joined.output[-3000:]
    refused = {case: outcome.refused_for_its_token for case, outcome in outcomes.items()}
    assert all(refused.values()), {case: outcome.output[-1500:] for case, outcome in outcomes.items()}
    assert sweep_code == 2 and f"the Ray cluster at {cluster.address} needs its token" in log.read_text(), log.read_text()[-3000:]
    for name, node in cluster.nodes.items():
        print(f"{name} node listens on:", sorted(listening_sockets(node.pid)))
