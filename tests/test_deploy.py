"""deploy/ cannot run here (no Kubernetes, no Docker engine): check what can be checked statically."""
from __future__ import annotations

import shlex
from pathlib import Path

import yaml

from sweeper.cli import build_parser

DEPLOY = Path(__file__).parents[1] / "deploy"


def documents(name: str) -> list[dict]:
    return [d for d in yaml.safe_load_all((DEPLOY / name).read_text()) if d]


def ray_containers(cluster: dict) -> list[dict]:
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    return [c for group in groups for c in group["template"]["spec"]["containers"]]


def test_kuberay_cluster_keeps_the_dashboard_local_and_authenticates_every_node():
    (cluster,) = documents("kuberay/ray-cluster.yaml")
    assert cluster["kind"] == "RayCluster" and cluster["spec"]["rayVersion"] == "2.60.0"
    assert cluster["spec"]["headGroupSpec"]["rayStartParams"]["dashboard-host"] == "127.0.0.1"
    for container in ray_containers(cluster):
        env = {item["name"]: item for item in container["env"]}
        assert env["RAY_AUTH_MODE"]["value"] == "token" and env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"]["name"] == "ray-auth"


def test_ray_job_commands_are_valid_sweeper_commands_with_the_same_auth():
    (job,) = documents("kuberay/ray-job.yaml")
    commands = [shlex.split(part) for part in job["spec"]["entrypoint"].split("&&")]
    assert [command[1] for command in commands] == ["launch", "promote"]
    for command in commands:
        assert command[0] == "sweeper"
        build_parser().parse_args(command[1:])  # exits on an unknown option
    env = {item["name"] for item in job["spec"]["submitterPodTemplate"]["spec"]["containers"][0]["env"]}
    assert {"RAY_AUTH_MODE", "RAY_AUTH_TOKEN"} <= env


def test_cluster_launcher_starts_every_node_with_token_auth_and_a_local_dashboard():
    (config,) = documents("ray-cluster.yaml")
    head, workers = " ".join(config["head_start_ray_commands"]), " ".join(config["worker_start_ray_commands"])
    assert "--dashboard-host=127.0.0.1" in head
    assert head.count("RAY_AUTH_MODE=token") == workers.count("RAY_AUTH_MODE=token") == 1


def test_mlflow_manifests_parse():
    kinds = [document["kind"] for document in documents("kuberay/mlflow.yaml")]
    assert kinds == ["StatefulSet", "Service", "Deployment", "Service"]
