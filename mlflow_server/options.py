"""What to run: the ``mlflow server`` command line and environment, built from our options.

Pure (no processes, no network) so that every rule, above all "reachable from other machines
only with a password and MLflow's basic auth", is unit-tested without starting a server.
"""
from __future__ import annotations

import argparse
import importlib.util
import ipaddress
import os
import secrets
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

from trainables.errors import ConfigError

LOOPBACK, ALL_INTERFACES = "127.0.0.1", "0.0.0.0"
LOOPBACK_HOST_HEADERS = ("localhost:*", "127.0.0.1:*")
DEFAULT_PORT, DEFAULT_WORKERS, DEFAULT_START_TIMEOUT_S = 5000, 1, 120.0
AUTH_DATABASE = "basic_auth.db"
MIN_PASSWORD_LENGTH = 12  # MLflow refuses shorter admin passwords, but only once the server runs
PASSWORD_ENV, SECRET_KEY_ENV, AUTH_CONFIG_ENV = "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_FLASK_SERVER_SECRET_KEY", "MLFLOW_AUTH_CONFIG_PATH"
# Job consumers serve MLflow's GenAI features; without them (and with one worker) the server
# answers in about 10 s with 0.5 GB instead of 22 s with 3 GB.
JOB_EXECUTION_ENV = "MLFLOW_SERVER_ENABLE_JOB_EXECUTION"
BACKEND_ENV = "MLFLOW_BACKEND_STORE_URI"  # `mlflow server --backend-store-uri` reads it


@dataclass(frozen=True)
class ServerOptions:
    backend: str | None = None  # default: the SQLite file `sweeper launch` writes by default
    artifacts: str | None = None  # default: mlartifacts next to that file (or in the current folder)
    host: str | None = None  # default: 127.0.0.1, or 0.0.0.0 with expose
    port: int = DEFAULT_PORT
    workers: int = DEFAULT_WORKERS
    expose: bool = False  # serve other machines: basic auth with the user's admin password
    password_file: Path | None = None
    auth_db: str | None = None  # default: basic_auth.db next to a SQLite backend, else the backend itself
    allowed_hosts: str | None = None  # host names clients use; replaces MLflow's default, loopback stays
    start_timeout: float = DEFAULT_START_TIMEOUT_S


@dataclass(frozen=True)
class ServerPlan:
    argv: tuple[str, ...]
    env: dict[str, str] = field(repr=False)  # the server's whole environment (holds the admin password)
    url: str  # where this machine reaches the server
    backend: str
    artifacts: str
    auth_config: str | None  # basic-auth settings file to write (and point AUTH_CONFIG_ENV at), if any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The server's options, shared by ``python -m mlflow_server`` and ``sweeper ui``."""
    parser.add_argument("--tracking-uri", "--backend", dest="backend", metavar="URI",
                        help="where runs are stored: sqlite:///PATH, a .db path or postgresql://USER@HOST/DB "
                             "(default: MLFLOW_TRACKING_URI if it names a database, else ./mlflow.db, as `sweeper launch`)")
    parser.add_argument("--artifacts", metavar="PATH_OR_URI", help="artifact store the server serves: a folder or s3://BUCKET/PREFIX (default: mlartifacts next to a SQLite backend)")
    parser.add_argument("--host", help=f"interface to bind (default: {LOOPBACK}; with --expose {ALL_INTERFACES})")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"default {DEFAULT_PORT}")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS, help=f"server processes (default {DEFAULT_WORKERS}, about 0.5 GB each)")
    parser.add_argument("--expose", action="store_true", help=f"allow a host other than loopback; needs an admin password ({PASSWORD_ENV} or --password-file) and turns on MLflow's basic auth")
    parser.add_argument("--password-file", type=Path, metavar="FILE", help=f"file holding the admin password (instead of {PASSWORD_ENV})")
    parser.add_argument("--auth-db", metavar="URI", help=f"users database with --expose (default: {AUTH_DATABASE} next to a SQLite backend, else the backend)")
    parser.add_argument("--allowed-hosts", metavar="HOSTS", help="comma-separated host names clients use, e.g. mlflow.example.com (loopback always works; replaces MLflow's default of private IPs)")
    parser.add_argument("--start-timeout", type=float, default=DEFAULT_START_TIMEOUT_S, metavar="SECONDS", help=f"give up if the server does not answer by then (default {DEFAULT_START_TIMEOUT_S:.0f})")


def options_from_args(args: argparse.Namespace) -> ServerOptions:
    return ServerOptions(**{field.name: getattr(args, field.name) for field in fields(ServerOptions)})


def build_plan(options: ServerOptions, environ: Mapping[str, str], cwd: Path | None = None) -> ServerPlan:
    """The server's argv and environment; ConfigError names the first problem and its fix."""
    if not 1 <= options.port <= 65535:
        raise ConfigError(f"--port must be between 1 and 65535, got {options.port}")
    if options.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {options.workers}")
    cwd = cwd or Path.cwd()
    backend = resolve_backend(options.backend, cwd, environ)
    artifacts = resolve_artifacts(options.artifacts, backend, cwd)
    host = options.host or (ALL_INTERFACES if options.expose else LOOPBACK)
    if not options.expose and not is_loopback(host):
        raise ConfigError(
            f"--host {host} makes the server reachable from other machines; add --expose and an admin password "
            f"({PASSWORD_ENV} or --password-file) to serve it with MLflow's basic auth"
        )
    argv = [sys.executable, "-m", "mlflow", "server", "--serve-artifacts",
            "--artifacts-destination", artifacts, "--host", host, "--port", str(options.port),
            "--workers", str(options.workers)]  # fmt: skip
    if options.allowed_hosts:
        # MLflow's list replaces its default (loopback and private IPs); loopback stays, for the
        # sweep driver and tools on the server's own machine.
        argv += ["--allowed-hosts", ",".join([options.allowed_hosts, *LOOPBACK_HOST_HEADERS])]
    # A database URI may hold a password: in the environment, unlike argv, `ps` does not show it.
    env = {**environ, BACKEND_ENV: backend}
    env.setdefault(JOB_EXECUTION_ENV, "false")
    auth_config = None
    if options.expose:
        argv += ["--app-name", "basic-auth"]
        env[PASSWORD_ENV] = admin_password(options.password_file, environ)
        env.setdefault(SECRET_KEY_ENV, secrets.token_hex(32))  # signs sessions; only needs to be secret
        auth_config = auth_settings(options.auth_db, backend, environ, cwd)
    return ServerPlan(tuple(argv), env, f"http://{connect_host(host)}:{options.port}", backend, artifacts, auth_config)


DEFAULT_DATABASE = "mlflow.db"  # what `sweeper launch` writes by default, and what the server serves
DEFAULT_ARTIFACTS = "mlartifacts"


TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"  # MLflow's own: where its users already keep the setting


def default_tracking_uri(directory: Path | None = None) -> str:
    return f"sqlite:///{(directory or Path.cwd()).resolve() / DEFAULT_DATABASE}"


def tracking_uri_or_default(given: str | None) -> str:
    """``--tracking-uri`` if given, else MLflow's ``MLFLOW_TRACKING_URI``, else ./mlflow.db."""
    return given or os.environ.get(TRACKING_URI_ENV) or default_tracking_uri()


def local_artifact_location(tracking_uri: str) -> str | None:
    """Artifacts next to a local SQLite file; MLflow would otherwise use ./mlruns of whatever
    directory the process happens to run in."""
    parsed = urlparse(tracking_uri)
    if parsed.scheme != "sqlite":
        return None
    return (Path(parsed.path).parent / DEFAULT_ARTIFACTS).resolve().as_uri()


def resolve_backend(backend: str | None, cwd: Path, environ: Mapping[str, str]) -> str:
    """A URI for MLflow: the default is exactly the store `sweeper launch` writes to (MLFLOW_TRACKING_URI
    when it names a database, else ./mlflow.db)."""
    if backend is None:
        from_environment = environ.get(TRACKING_URI_ENV, "")
        if "://" not in from_environment or from_environment.startswith(("http://", "https://")):
            return default_tracking_uri(cwd)
        backend = from_environment
    return store_uri(backend, "--tracking-uri", cwd)


def store_uri(uri: str, option: str, cwd: Path) -> str:
    """A database URI checked for what can be checked before starting; a bare path is SQLite."""
    if "://" not in uri:
        return f"sqlite:///{(cwd / uri).resolve()}"
    parsed = urlparse(uri)
    if parsed.scheme in ("http", "https"):
        raise ConfigError(f"{option} {uri} is a server, not a database; use sqlite:///PATH or postgresql://USER@HOST/DB")
    if parsed.scheme == "sqlite" and not sqlite_path(uri).parent.is_dir():
        raise ConfigError(f"the folder of the SQLite database {sqlite_path(uri)} does not exist; create it or pass another {option}")
    if parsed.scheme.startswith("postgresql"):
        return postgresql_uri(uri, option)
    return uri


def postgresql_uri(uri: str, option: str) -> str:
    """SQLAlchemy 2.1 reads a bare postgresql:// as psycopg 3; with only psycopg2 installed, say so."""
    scheme = urlparse(uri).scheme
    if scheme == "postgresql" and importlib.util.find_spec("psycopg") is None:
        scheme, uri = "postgresql+psycopg2", uri.replace("postgresql://", "postgresql+psycopg2://", 1)
    if scheme == "postgresql+psycopg2":
        _require_module("psycopg2", "psycopg2-binary", f"a PostgreSQL {option}")
    return uri


def resolve_artifacts(artifacts: str | None, backend: str, cwd: Path) -> str:
    """Default: the mlartifacts folder the sweeper itself uses next to a SQLite database."""
    if artifacts is None:
        return local_artifact_location(backend) or (cwd / DEFAULT_ARTIFACTS).resolve().as_uri()
    if "://" not in artifacts:
        return (cwd / artifacts).resolve().as_uri()
    if urlparse(artifacts).scheme == "s3":
        _require_module("boto3", "boto3", "s3:// --artifacts")
    return artifacts


def auth_settings(auth_db: str | None, backend: str, environ: Mapping[str, str], cwd: Path) -> str | None:
    """MLflow's basic-auth settings file to write, or None to keep the user's own (AUTH_CONFIG_ENV).

    Only the users database differs from MLflow's defaults (a basic_auth.db in whatever folder the
    server starts in): a file next to a SQLite backend, else the backend's own database, where
    MLflow's users and permissions tables sit beside its tracking tables (checked for 3.17).
    """
    if AUTH_CONFIG_ENV in environ:
        if auth_db is not None:
            raise ConfigError(f"--auth-db and {AUTH_CONFIG_ENV} both name the users database; set it in one place")
        return None
    if auth_db is not None:
        database = store_uri(auth_db, "--auth-db", cwd)
    elif urlparse(backend).scheme == "sqlite":
        database = f"sqlite:///{sqlite_path(backend).parent / AUTH_DATABASE}"
    else:
        database = backend
    return f"[mlflow]\ndefault_permission = READ\ndatabase_uri = {database}\nadmin_username = admin\n"


def sqlite_path(uri: str) -> Path:
    """The file of sqlite:///relative or sqlite:////absolute (urlparse keeps a stray slash)."""
    return Path(uri.removeprefix("sqlite:///"))


def admin_password(password_file: Path | None, environ: Mapping[str, str]) -> str:
    """The user's own password: MLflow ships none, and neither do we."""
    if password_file is not None:
        if not password_file.is_file():
            raise ConfigError(f"--password-file {password_file} does not exist")
        password = password_file.read_text().strip("\r\n")
    else:
        password = environ.get(PASSWORD_ENV, "")
    if not password:
        raise ConfigError(f"--expose needs an admin password: set {PASSWORD_ENV} or pass --password-file FILE (there is no default password)")
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ConfigError(f"the admin password must have at least {MIN_PASSWORD_LENGTH} characters (MLflow's rule), it has {len(password)}")
    return password


def redacted(uri: str) -> str:
    """``uri`` fit to print: a password in it becomes ***."""
    password = urlparse(uri).password
    return uri.replace(f":{password}@", ":***@", 1) if password else uri


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name: it may resolve anywhere


def connect_host(host: str) -> str:
    """How a client on this machine reaches a server bound to ``host``."""
    if host in (ALL_INTERFACES, "::"):
        return LOOPBACK
    return f"[{host}]" if ":" in host else host


def _require_module(module: str, package: str, purpose: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ConfigError(f"{purpose} needs the {package} package: pip install {package}")
