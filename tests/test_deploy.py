"""deploy/ cannot run here (no Kubernetes, no Docker engine): check what can be checked statically."""
from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping
from urllib.parse import urlparse

import yaml

from sweeper.cli import build_parser

DEPLOY = Path(__file__).parents[1] / "deploy"


def yaml_documents(text: str) -> list[dict]:
    return [d for d in yaml.safe_load_all(text) if d]


def documents(name: str) -> list[dict]:
    return yaml_documents((DEPLOY / name).read_text())


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


def test_cluster_launcher_gives_the_mlflow_server_its_passwords_from_files():
    (config,) = documents("ray-cluster.yaml")
    (server,) = [command for command in config["head_start_ray_commands"] if "mlflow_server" in command]
    assert "PGPASSWORD=$(cat /etc/mlflow/db_password)" in server
    assert "--password-file /etc/mlflow/admin_password" in server


# Secrets: a password belongs in a Kubernetes Secret (or a file), never in a manifest, a URI or a
# command line. Checked over every manifest, so a new one gets the same checks.

MLFLOW_CREDENTIALS = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")
URI = re.compile(r"\b[a-z][a-z0-9+.-]*://[^\s'\",]+", re.IGNORECASE)
URI_WITH_PASSWORD = re.compile(r"\b(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<user>[^\s/@:]*):[^\s/@]+@", re.IGNORECASE)
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
# NAME=value in a shell command; a value read at run time ($VAR, $(cat FILE)) is fine.
SECRET_ASSIGNMENT = re.compile(r"\b(?P<name>\w*(?:PASSWORD|TOKEN|SECRET)\w*)=(?!\"?\$)\S", re.IGNORECASE)

Document = tuple[str, dict]  # (the manifest's path under deploy/, one YAML document of it)


@dataclass(frozen=True)
class Container:
    manifest: str
    workload: str  # Kind/name of the document whose pods run it
    spec: dict
    pod_labels: dict

    def __str__(self) -> str:
        return f"{self.manifest}: container {self.spec['name']!r} of {self.workload}"

    @property
    def command_line(self) -> str:
        return " ".join([*self.spec.get("command", []), *self.spec.get("args", [])])

    @property
    def runs_mlflow_server(self) -> bool:
        return "mlflow_server" in self.command_line

    def env_values(self) -> list[str]:
        return [str(item["value"]) for item in self.spec.get("env", []) if "value" in item]

    def from_secret(self, variable: str) -> bool:
        item = next((item for item in self.spec.get("env", []) if item["name"] == variable), {})
        return "secretKeyRef" in item.get("valueFrom", {})


def deploy_manifests() -> dict[str, str]:
    return {str(path.relative_to(DEPLOY)): path.read_text() for path in sorted(DEPLOY.rglob("*.yaml"))}


def parse(manifests: Mapping[str, str]) -> list[Document]:
    return [(name, document) for name, text in manifests.items() for document in yaml_documents(text)]


def nodes(node: object) -> Iterator[object]:
    """``node`` and everything nested in it."""
    yield node
    children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
    for child in children:
        yield from nodes(child)


def pod_templates(document: dict) -> list[dict]:
    """Every pod template in a document, wherever its kind nests them."""
    return [node for node in nodes(document) if isinstance(node, dict) and "containers" in (node.get("spec") or {})]


def strings(document: dict) -> list[str]:
    return [node for node in nodes(document) if isinstance(node, str)]


def pod_containers(manifest: str, workload: str, pod: dict) -> list[Container]:
    labels = pod.get("metadata", {}).get("labels", {})
    return [Container(manifest, workload, spec, labels) for spec in pod["spec"]["containers"]]


def kind_and_name(document: dict) -> str:
    return f"{document['kind']}/{document['metadata']['name']}"


def containers(documents: list[Document]) -> list[Container]:
    return [container for manifest, document in documents for pod in pod_templates(document)
            for container in pod_containers(manifest, kind_and_name(document), pod)]  # fmt: skip


def ray_job_driver(job: dict, documents: list[Document]) -> Container:
    """Where a RayJob's entrypoint runs: the head of its RayCluster (the submitter only hands it over)."""
    cluster_name = job["spec"]["clusterSelector"]["ray.io/cluster"]
    clusters = [(manifest, document) for manifest, document in documents
                if document.get("kind") == "RayCluster" and document["metadata"]["name"] == cluster_name]  # fmt: skip
    assert clusters, f"RayJob {job['metadata']['name']} runs on RayCluster {cluster_name}, which no manifest defines"
    ((manifest, cluster),) = clusters
    return pod_containers(manifest, kind_and_name(cluster), cluster["spec"]["headGroupSpec"]["template"])[0]


def uris_in_use(documents: list[Document]) -> Iterator[tuple[Container, str]]:
    """(container, URI) for every URI a container uses: in its command line, its environment, or
    the entrypoint of a RayJob whose driver it runs."""
    for container in containers(documents):
        for text in [container.command_line, *container.env_values()]:
            yield from ((container, uri) for uri in URI.findall(text))
    for _, document in documents:
        if document.get("kind") == "RayJob":
            driver = ray_job_driver(document, documents)
            yield from ((driver, uri) for uri in URI.findall(document["spec"]["entrypoint"]))


def authenticated_mlflow_services(documents: list[Document]) -> set[str]:
    """The Services in front of an MLflow server with basic auth (`python -m mlflow_server --expose`)."""
    exposed = [container.pod_labels for container in containers(documents)
               if container.runs_mlflow_server and "--expose" in container.command_line]  # fmt: skip
    return {document["metadata"]["name"] for _, document in documents
            if document.get("kind") == "Service" and (selector := document["spec"].get("selector"))
            and any(selector.items() <= labels.items() for labels in exposed)}  # fmt: skip


def authenticated_mlflow_clients(documents: list[Document]) -> list[tuple[Container, str]]:
    services = authenticated_mlflow_services(documents)
    return [(container, uri) for container, uri in uris_in_use(documents)
            if urlparse(uri).scheme in ("http", "https") and service_name(uri) in services]  # fmt: skip


def service_name(uri: str) -> str:
    """"mlflow" and "mlflow.NAMESPACE.svc.cluster.local" name the same Service."""
    return urlparse(uri).hostname.split(".")[0]


def clients_without_mlflow_credentials(documents: list[Document]) -> list[str]:
    return sorted({f"{container}: talks to the MLflow server {uri} (basic auth) without "
                   f"{' and '.join(MLFLOW_CREDENTIALS)} from a secret"
                   for container, uri in authenticated_mlflow_clients(documents)
                   if not all(container.from_secret(variable) for variable in MLFLOW_CREDENTIALS)})  # fmt: skip


def database_passwords_outside_the_environment(documents: list[Document]) -> list[str]:
    return [f"{container}: runs the MLflow server on PostgreSQL without PGPASSWORD from a secret"
            for container in containers(documents)
            if container.runs_mlflow_server and "postgresql" in container.command_line
            and not container.from_secret("PGPASSWORD")]  # fmt: skip


def literal_secrets(documents: list[Document]) -> list[str]:
    in_env = [f"{container}: {item['name']} is written in the manifest; take it from a Secret (secretKeyRef)"
              for container in containers(documents) for item in container.spec.get("env", [])
              if SECRET_NAME.search(item["name"]) and "value" in item]  # fmt: skip
    in_commands = [f"{manifest}: {match['name']}=... sets a secret in a command; read it from a Secret or a file"
                   for manifest, document in documents for text in strings(document)
                   for match in SECRET_ASSIGNMENT.finditer(text)]  # fmt: skip
    return in_env + in_commands


def uris_with_passwords(manifests: Mapping[str, str]) -> list[str]:
    """Read from the text, comments included: an example there gets copied."""
    return [f"{manifest}, line {number}: a password in the URI {match['scheme']}://{match['user']}:...@ "
            "(stored and printed with it); use PGPASSWORD or MLFLOW_TRACKING_PASSWORD"
            for manifest, text in manifests.items() for number, line in enumerate(text.splitlines(), 1)
            for match in URI_WITH_PASSWORD.finditer(line)]  # fmt: skip


def secret_problems(manifests: Mapping[str, str]) -> list[str]:
    documents = parse(manifests)
    return [*uris_with_passwords(manifests), *literal_secrets(documents),
            *database_passwords_outside_the_environment(documents),
            *clients_without_mlflow_credentials(documents)]  # fmt: skip


def test_every_manifest_keeps_passwords_in_secrets_and_gives_mlflow_clients_credentials():
    manifests = deploy_manifests()
    assert {"ray-cluster.yaml", "kuberay/mlflow.yaml", "kuberay/ray-cluster.yaml", "kuberay/ray-job.yaml"} <= set(
        manifests
    )
    problems = secret_problems(manifests)
    assert not problems, "\n".join(problems)


def test_only_the_ray_head_talks_to_mlflow_on_kubernetes():
    clients = {str(container) for container, _ in authenticated_mlflow_clients(parse(deploy_manifests()))}
    assert clients == {"kuberay/ray-cluster.yaml: container 'ray-head' of RayCluster/sweeper"}


LEAKY_MANIFESTS = {
    "mlflow.yaml": """
kind: Deployment
metadata: {name: mlflow}
spec:
  template:
    metadata: {labels: {app: mlflow}}
    spec:
      containers:
        - name: mlflow
          command: [sh, -c, 'python -m mlflow_server --expose --backend postgresql://mlflow:${DB_PASSWORD}@db/mlflow']
          env: [{name: DB_PASSWORD, valueFrom: {secretKeyRef: {name: db, key: password}}}]
---
kind: Service
metadata: {name: mlflow}
spec: {selector: {app: mlflow}}
""",
    "ray.yaml": """
kind: RayCluster
metadata: {name: sweeper}
spec:
  headGroupSpec: {template: {spec: {containers: [{name: ray-head, env: [{name: RAY_AUTH_TOKEN, value: not-a-secret}]}]}}}
---
kind: RayJob
metadata: {name: sweep}
spec:
  clusterSelector: {ray.io/cluster: sweeper}
  entrypoint: sweeper launch localization --tracking-uri http://mlflow:5000
  submitterPodTemplate: {spec: {containers: [{name: submitter, args: [MLFLOW_TRACKING_PASSWORD=not-a-secret sweeper ls]}]}}
---
kind: Deployment
metadata: {name: notebook}
spec:
  template:
    spec:
      containers:
        - name: notebook
          env: [{name: MLFLOW_TRACKING_URI, value: "http://mlflow.default.svc.cluster.local:5000"}]
""",
}


def test_secret_checks_name_the_manifest_and_container_of_every_leak():
    assert sorted(secret_problems(LEAKY_MANIFESTS)) == sorted([
        "mlflow.yaml, line 10: a password in the URI postgresql://mlflow:...@ (stored and printed with it); "
        "use PGPASSWORD or MLFLOW_TRACKING_PASSWORD",
        "mlflow.yaml: container 'mlflow' of Deployment/mlflow: runs the MLflow server on PostgreSQL "
        "without PGPASSWORD from a secret",
        "ray.yaml: container 'ray-head' of RayCluster/sweeper: RAY_AUTH_TOKEN is written in the manifest; "
        "take it from a Secret (secretKeyRef)",
        "ray.yaml: MLFLOW_TRACKING_PASSWORD=... sets a secret in a command; read it from a Secret or a file",
        "ray.yaml: container 'ray-head' of RayCluster/sweeper: talks to the MLflow server http://mlflow:5000 "
        "(basic auth) without MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD from a secret",
        "ray.yaml: container 'notebook' of Deployment/notebook: talks to the MLflow server "
        "http://mlflow.default.svc.cluster.local:5000 (basic auth) "
        "without MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD from a secret",
    ])  # fmt: skip
