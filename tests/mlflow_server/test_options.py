"""The server's command line and environment, built without starting anything."""
from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

import pytest
import yaml

from mlflow_server import options as server_options
from mlflow_server.cli import main
from mlflow_server.options import ServerOptions, add_arguments, build_plan, default_tracking_uri, local_artifact_location, options_from_args, redacted
from sweeper.cli import build_parser, run
from trainables.errors import ConfigError

PASSWORD = "correct horse battery"
EXPOSED = {"MLFLOW_AUTH_ADMIN_PASSWORD": PASSWORD}


def flag(argv: tuple[str, ...], name: str) -> str:
    return argv[argv.index(name) + 1]


@pytest.fixture
def installed(monkeypatch):
    """Pretend exactly these optional drivers are installed."""

    def only(*modules: str) -> None:
        monkeypatch.setattr(server_options.importlib.util, "find_spec", lambda name: object() if name in modules else None)

    return only


def test_mlflow_tracking_uri_naming_a_database_is_what_it_serves(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    database = f"sqlite:///{tmp_path.resolve()}/elsewhere.db"
    assert build_plan(ServerOptions(), {"MLFLOW_TRACKING_URI": database}).backend == database
    # a server's address is where `sweeper launch` sends runs, not a store to serve: the default stays
    assert build_plan(ServerOptions(), {"MLFLOW_TRACKING_URI": "http://head:5000"}).backend == default_tracking_uri()
    assert build_plan(ServerOptions(backend="other.db"), {"MLFLOW_TRACKING_URI": database}).backend.endswith("/other.db")


def test_defaults_serve_what_sweeper_launch_writes_on_loopback_only(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plan = build_plan(ServerOptions(), {})
    assert plan.backend == default_tracking_uri() == f"sqlite:///{tmp_path.resolve()}/mlflow.db"  # `sweeper launch` without --tracking-uri
    assert plan.artifacts == local_artifact_location(plan.backend) == (tmp_path / "mlartifacts").resolve().as_uri()
    assert plan.argv[1:4] == ("-m", "mlflow", "server")
    assert plan.env["MLFLOW_BACKEND_STORE_URI"] == plan.backend and flag(plan.argv, "--artifacts-destination") == plan.artifacts
    assert "--backend-store-uri" not in plan.argv  # the URI may hold a database password: not on the command line
    assert "--serve-artifacts" in plan.argv and "--app-name" not in plan.argv
    assert (flag(plan.argv, "--host"), flag(plan.argv, "--port"), flag(plan.argv, "--workers")) == ("127.0.0.1", "5000", "1")
    assert plan.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false" and plan.auth_config is None
    assert plan.url == "http://127.0.0.1:5000"


@pytest.mark.parametrize("prog, parser", [("mlflow_server", None), ("sweeper ui", "ui")])
def test_both_commands_share_the_options_and_their_defaults(prog, parser):
    if parser is None:
        parsed = argparse.ArgumentParser(prog=prog)
        add_arguments(parsed)
        args = parsed.parse_args([])
    else:
        args = build_parser().parse_args(["ui"])
    assert options_from_args(args) == ServerOptions()


def test_user_settings_win_over_ours(tmp_path):
    plan = build_plan(ServerOptions(port=5001, workers=2), {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true", "PATH": "/bin"}, tmp_path)
    assert plan.env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "true", "PATH": "/bin", "MLFLOW_BACKEND_STORE_URI": plan.backend}
    assert (flag(plan.argv, "--port"), flag(plan.argv, "--workers")) == ("5001", "2")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "localhost", "::1"])
def test_loopback_hosts_need_nothing_more(host, tmp_path):
    assert flag(build_plan(ServerOptions(host=host), {}, tmp_path).argv, "--host") == host


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.168.1.20", "mlflow.example.com"])
def test_any_other_host_is_refused_without_expose(host, tmp_path):
    with pytest.raises(ConfigError, match=f"--host {host} makes the server reachable from other machines; add --expose"):
        build_plan(ServerOptions(host=host), EXPOSED, tmp_path)  # a password alone is not consent


@pytest.mark.parametrize(
    "environ, password_file, message",
    [
        ({}, None, "--expose needs an admin password: set MLFLOW_AUTH_ADMIN_PASSWORD or pass --password-file FILE"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": ""}, None, "--expose needs an admin password"),
        ({}, "", "--expose needs an admin password"),
        ({}, "missing", "--password-file .*missing does not exist"),
        ({"MLFLOW_AUTH_ADMIN_PASSWORD": "short"}, None, "at least 12 characters"),
    ],
)
def test_expose_is_refused_without_a_real_password(environ, password_file, message, tmp_path):
    if password_file == "":
        (tmp_path / "empty").write_text("\n")
        password_file = "empty"
    options = ServerOptions(expose=True, password_file=tmp_path / password_file if password_file else None)
    with pytest.raises(ConfigError, match=message):
        build_plan(options, environ, tmp_path)


def test_expose_turns_on_basic_auth_with_the_users_password(tmp_path):
    plan = build_plan(ServerOptions(expose=True), EXPOSED, tmp_path)
    assert flag(plan.argv, "--app-name") == "basic-auth" and flag(plan.argv, "--host") == "0.0.0.0"
    assert plan.env["MLFLOW_AUTH_ADMIN_PASSWORD"] == PASSWORD
    assert len(plan.env["MLFLOW_FLASK_SERVER_SECRET_KEY"]) == 64  # generated: the user had none
    assert f"database_uri = sqlite:///{tmp_path.resolve()}/basic_auth.db\n" in plan.auth_config  # next to the backend
    assert plan.url == "http://127.0.0.1:5000" and PASSWORD not in repr(plan)


def test_a_password_file_and_the_users_secret_key_are_used(tmp_path):
    (tmp_path / "password").write_text(PASSWORD + "\n")
    options = ServerOptions(expose=True, host="10.0.0.5", password_file=tmp_path / "password")
    plan = build_plan(options, {"MLFLOW_FLASK_SERVER_SECRET_KEY": "kept"}, tmp_path)
    assert plan.env["MLFLOW_AUTH_ADMIN_PASSWORD"] == PASSWORD and plan.env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == "kept"
    assert flag(plan.argv, "--host") == "10.0.0.5" and plan.url == "http://10.0.0.5:5000"


def test_allowed_hosts_keep_loopback_for_clients_on_the_server_machine(tmp_path):
    plan = build_plan(ServerOptions(expose=True, allowed_hosts="mlflow.example.com"), EXPOSED, tmp_path)
    assert flag(plan.argv, "--allowed-hosts") == "mlflow.example.com,localhost:*,127.0.0.1:*"
    assert "--allowed-hosts" not in build_plan(ServerOptions(), {}, tmp_path).argv  # MLflow's default otherwise


def test_the_users_database_is_the_backend_beside_postgresql_or_the_one_given(tmp_path, installed):
    installed("psycopg2")
    postgres = ServerOptions(expose=True, backend="postgresql://mlflow@db/mlflow")
    assert "database_uri = postgresql+psycopg2://mlflow@db/mlflow\n" in build_plan(postgres, EXPOSED, tmp_path).auth_config
    plan = build_plan(ServerOptions(expose=True, backend="postgresql://mlflow@db/mlflow", auth_db="postgresql://mlflow@db/users"), EXPOSED, tmp_path)
    assert "database_uri = postgresql+psycopg2://mlflow@db/users\n" in plan.auth_config
    own = {**EXPOSED, "MLFLOW_AUTH_CONFIG_PATH": "/etc/mlflow/auth.ini"}
    assert build_plan(postgres, own, tmp_path).auth_config is None  # the user's own auth settings are kept
    with pytest.raises(ConfigError, match="--auth-db and MLFLOW_AUTH_CONFIG_PATH both name the users database"):
        build_plan(ServerOptions(expose=True, auth_db="users.db"), own, tmp_path)


def test_stores_given_as_paths_or_uris(tmp_path, installed):
    plan = build_plan(ServerOptions(backend="runs/mlflow.db", artifacts="store"), {}, tmp_path)
    assert plan.backend == f"sqlite:///{tmp_path.resolve()}/runs/mlflow.db" and plan.artifacts == (tmp_path / "store").resolve().as_uri()
    installed("psycopg", "boto3")
    plan = build_plan(ServerOptions(backend="postgresql://u@db:5432/mlflow", artifacts="s3://bucket/sweeps"), {}, tmp_path)
    assert plan.env["MLFLOW_BACKEND_STORE_URI"] == "postgresql://u@db:5432/mlflow"
    assert flag(plan.argv, "--artifacts-destination") == "s3://bucket/sweeps"


@pytest.mark.parametrize(
    "drivers, backend, expected",
    [
        (["psycopg2"], "postgresql://u@db/mlflow", "postgresql+psycopg2://u@db/mlflow"),  # SQLAlchemy 2.1 would want psycopg 3
        (["psycopg", "psycopg2"], "postgresql://u@db/mlflow", "postgresql://u@db/mlflow"),
        (["psycopg2"], "postgresql+psycopg2://u@db/mlflow", "postgresql+psycopg2://u@db/mlflow"),
    ],
)
def test_postgresql_uris_use_the_installed_driver(drivers, backend, expected, tmp_path, installed):
    installed(*drivers)
    assert build_plan(ServerOptions(backend=backend), {}, tmp_path).backend == expected


def test_passwords_in_database_uris_are_not_printed():
    assert redacted("postgresql://mlflow:s3cret@db:5432/mlflow") == "postgresql://mlflow:***@db:5432/mlflow"
    assert redacted("sqlite:////srv/mlflow.db") == "sqlite:////srv/mlflow.db"


@pytest.mark.parametrize(
    "options, message",
    [
        (ServerOptions(backend="http://head:5000"), "--tracking-uri http://head:5000 is a server, not a database"),
        (ServerOptions(backend="sqlite:////no/such/folder/mlflow.db"), "the folder of the SQLite database /no/such/folder/mlflow.db does not exist"),
        (ServerOptions(port=0), "--port must be between 1 and 65535, got 0"),
        (ServerOptions(workers=0), "--workers must be at least 1, got 0"),
    ],
)
def test_invalid_options_name_the_problem(options, message, tmp_path):
    with pytest.raises(ConfigError, match=message):
        build_plan(options, {}, tmp_path)


def test_missing_drivers_are_named_with_the_install_command(tmp_path, installed):
    installed()
    with pytest.raises(ConfigError, match="a PostgreSQL --tracking-uri needs the psycopg2-binary package: pip install psycopg2-binary"):
        build_plan(ServerOptions(backend="postgresql://u@db/mlflow"), {}, tmp_path)
    with pytest.raises(ConfigError, match="s3:// --artifacts needs the boto3 package: pip install boto3"):
        build_plan(ServerOptions(artifacts="s3://bucket"), {}, tmp_path)


def test_both_commands_refuse_with_one_line_and_exit_code_2(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MLFLOW_AUTH_ADMIN_PASSWORD", raising=False)
    assert run(["ui", "--expose"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("sweeper: error: --expose needs an admin password") and error.count("\n") == 1
    with pytest.raises(SystemExit) as exit_:
        main(["--host", "0.0.0.0"])
    assert exit_.value.code == 2
    assert capsys.readouterr().err.startswith("mlflow_server: error: --host 0.0.0.0 makes the server reachable")
    assert list(Path(tmp_path).iterdir()) == []  # nothing started, nothing written


def service_examples() -> dict[str, list[str]]:
    """The `python -m mlflow_server` arguments of the service files, which cannot run here (no Docker, no systemd)."""
    folder = Path(__file__).resolve().parents[2] / "mlflow_server"
    docker = {line.split(maxsplit=1)[0]: json.loads(line.split(maxsplit=1)[1])
              for line in (folder / "Dockerfile").read_text().splitlines() if line.startswith(("ENTRYPOINT", "CMD"))}  # fmt: skip
    entrypoint = docker["ENTRYPOINT"][docker["ENTRYPOINT"].index("mlflow_server") + 1 :]
    compose = yaml.safe_load((folder / "compose.yaml").read_text())["services"]["mlflow"]["command"]
    unit = (folder / "attention-sweeper-mlflow.service").read_text().replace("\\\n", " ")
    exec_start = shlex.split(next(line for line in unit.splitlines() if line.startswith("ExecStart=")))
    return {"Dockerfile": entrypoint + docker["CMD"], "compose.yaml": entrypoint + compose,
            "systemd unit": exec_start[exec_start.index("mlflow_server") + 1 :]}  # fmt: skip


@pytest.mark.parametrize("name", ["Dockerfile", "compose.yaml", "systemd unit"])
def test_the_service_examples_are_valid_exposed_commands(name, tmp_path, installed, monkeypatch):
    installed("psycopg2")
    monkeypatch.setattr(Path, "is_dir", lambda self: True)  # their folders exist on the server, not here
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    plan = build_plan(options_from_args(parser.parse_args(service_examples()[name])), EXPOSED, tmp_path)
    assert flag(plan.argv, "--app-name") == "basic-auth" and flag(plan.argv, "--port") == "5000"
