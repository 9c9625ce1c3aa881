"""``python -m mlflow_server`` and ``sweeper ui``: the MLflow server in the foreground until Ctrl-C."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn, Sequence

from mlflow_server.options import ALL_INTERFACES, ServerPlan, add_arguments, build_plan, options_from_args, redacted
from mlflow_server.process import ServerError, interrupt_on_sigterm, running
from trainables.errors import UserError


def serve(args: argparse.Namespace) -> int:
    """Start the server, say where it is, and stop it cleanly on Ctrl-C or SIGTERM (exit code 0)."""
    options = options_from_args(args)
    plan = build_plan(options, os.environ)
    print(f"Starting the MLflow server on {redacted(plan.backend)} (artifacts: {plan.artifacts}) ...", flush=True)
    with interrupt_on_sigterm():
        try:
            with running(plan, options.start_timeout) as server:
                _print_ready(plan, options.expose, options.host, options.port)
                code = server.wait()
                tail = server.output.text()
        except KeyboardInterrupt:
            print("MLflow server stopped.", flush=True)
            return 0
    raise ServerError(f"the MLflow server exited by itself with code {code}; its last output:\n{tail}")


def _print_ready(plan: ServerPlan, exposed: bool, host: str | None, port: int) -> None:
    print(f"\nMLflow UI: {plan.url}", flush=True)
    if exposed:
        if host in (None, ALL_INTERFACES, "::"):
            print(f"Listening on every interface: other machines use http://{os.uname().nodename}:{port}")
        print("Basic auth is on: log in as admin with your password. Clients (the sweep driver) set "
              "MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD.")  # fmt: skip
    print(f"Log sweeps to it: sweeper launch FAMILY --tracking-uri {plan.url}")
    print("Press Ctrl-C to stop.\n", flush=True)


def main(argv: Sequence[str] | None = None) -> NoReturn:
    parser = argparse.ArgumentParser(prog="python -m mlflow_server", description="Run the MLflow tracking server and UI for attention-sweeper.")
    add_arguments(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        code = serve(args)
    except UserError as error:
        print(f"mlflow_server: error: {error}", file=sys.stderr)
        code = 2
    sys.exit(code)
