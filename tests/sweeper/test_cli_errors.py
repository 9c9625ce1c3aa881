"""User errors: one line on stderr, exit code 2, and nothing started or written."""
from __future__ import annotations

import argparse
import os
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import ray

from sweeper import __version__
from sweeper.cli import build_parser, run
from sweeper.launcher import LaunchOptions, plan_sweep


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad_space.yaml").write_text("family: localization\nparameters:\n  architecture: {type: categorical, choices: []}\n")
    (tmp_path / "ray_results" / "taken").mkdir(parents=True)
    pq.write_table(pa.table({"values": np.zeros(100_000)}), tmp_path / "large.parquet")  # 0.8 MB in memory
    return tmp_path


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["weather"], "localization, response_time, segmentation (a family of your own: install its package with an "
                      "'attention_sweeper.families' entry point, or name its module with --plugin)"),
        (["localization", "--preset", "huge"], "unknown preset 'huge'; choose one of smoke, quick, standard, default"),
        (["localization", "--trials", "0"], "--trials must be positive, got 0"),
        (["localization", "--cpus-per-trial", "64"], "a trial asks for 64 CPUs and 0 GPUs, but the largest node has"),
        (["localization", "--objectives", "accuracy"], "--objectives accuracy: not an objective of localization; choose from val_mean_error_m"),
        (["localization", "--objectives", "--sampler", "cmaes"], "sampler 'cmaes' optimises one objective"),
        (["localization", "--scheduler", "pbt", "--mutate", "heads"], "--mutate heads: not sampled for every trial by the search space"),
        (["localization", "--scheduler", "pbt", "--warm-start", "taken"], "--warm-start feeds earlier trials to the sampler"),
        (["localization", "--scheduler", "median", "--brackets", "2"], "scheduler 'median' does not take --brackets; it takes --grace-period"),
        (["localization", "--time-budget", "0"], "--time-budget must be positive, got 0"),
        (["localization", "--search-space", "bad_space.yaml"], "bad_space.yaml: parameters.architecture.choices: expected a non-empty list"),
        (["localization", "--name", "taken"], "a sweep named 'taken' already exists"),
        (["localization", "--data", "nowhere.parquet"], "data file nowhere.parquet does not exist"),
        (["localization", "--data", "large.parquet", "--memory-budget-gb", "0.0001"],
         "data file large.parquet takes 0.000745 GiB in memory, more than the budget of 0.0001 GiB (--memory-budget-gb)"),
        (["localization", "--memory-budget-gb", "0"], "--memory-budget-gb must be positive, got 0"),
        (["localization", "--tracking-uri", "http://127.0.0.1:9"], "MLflow tracking server http://127.0.0.1:9 is unreachable"),
        (["localization", "--tracking-uri", "sqlite:////no/such/folder/mlflow.db"], "the folder of the MLflow database"),
    ],
)
def test_user_errors_exit_2_with_one_line_and_start_nothing(workdir, capsys, arguments, message):
    code = run(["launch", *arguments, "--preset", "smoke"] if "--preset" not in arguments else ["launch", *arguments])
    error = capsys.readouterr().err.strip()
    assert code == 2
    assert error.startswith("sweeper: error: ") and message in error and "\n" not in error
    assert not ray.is_initialized()
    assert not (workdir / "mlflow.db").exists() and not (workdir / "mlartifacts").exists()
    assert [p.name for p in (workdir / "ray_results").iterdir()] == ["taken"]


def test_data_beyond_the_object_store_is_refused_with_the_numbers(workdir, capsys, monkeypatch):
    monkeypatch.setattr("sweeper.launcher.physical_memory", lambda: 2**21)  # a 2 MiB machine
    code = run(["launch", "localization", "--preset", "smoke", "--data", "large.parquet"])
    error = capsys.readouterr().err.strip()
    assert code == 2 and not ray.is_initialized()
    assert "more than the budget of 0.000586 GiB (Ray's object store: 30% of this machine's memory)" in error


def test_internal_bugs_keep_their_traceback(workdir, monkeypatch):
    def broken_planner(options):
        raise ZeroDivisionError("a bug, not a user error")

    monkeypatch.setattr("sweeper.launcher.plan_sweep", broken_planner)
    with pytest.raises(ZeroDivisionError, match="a bug"):
        run(["launch", "localization", "--preset", "smoke"])


def test_mlflow_tracking_uri_from_the_environment_is_the_default(workdir, capsys, monkeypatch):
    """MLflow's own MLFLOW_TRACKING_URI is honoured when no --tracking-uri is given; the flag wins."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    assert run(["launch", "localization", "--preset", "smoke"]) == 2
    assert "MLflow tracking server http://127.0.0.1:9 is unreachable" in capsys.readouterr().err
    options = LaunchOptions("localization", preset="smoke", tracking_uri=f"sqlite:///{workdir}/flag.db")
    assert plan_sweep(options).tracking_uri == f"sqlite:///{workdir}/flag.db"
    assert not ray.is_initialized()


def test_ray_address_from_the_environment_is_the_cluster(workdir, monkeypatch):
    """Ray's own RAY_ADDRESS names the cluster when no --address is given: a trial bigger than this
    machine is then checked against the cluster's nodes once connected, not refused here."""
    monkeypatch.setenv("RAY_ADDRESS", "ray-head:6379")
    plan = plan_sweep(LaunchOptions("localization", preset="smoke", cpus_per_trial=64))
    assert plan.options.address == "ray-head:6379" and not ray.is_initialized()
    assert plan_sweep(LaunchOptions("localization", preset="smoke", address="other:6379", name="b")).options.address == "other:6379"


def test_version(capsys):
    with pytest.raises(SystemExit) as exited:
        run(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == f"sweeper {__version__}"


@pytest.mark.parametrize(
    "arguments, message",
    [
        (["launch", "localization", "--scheduler", "bohb"], "argument --scheduler: invalid choice: 'bohb' (choose from 'asha', 'fifo',"),
        (["launch", "localization", "--trials", "many"], "argument --trials: invalid int value: 'many' (see sweeper launch --help)"),
        (["promote"], "the following arguments are required: sweep (see sweeper promote --help)"),
        (["export", "s", "--out", "x", "--tracking-uri", "sqlite:///other.db"], "--tracking-uri is for --model exports"),
        (["export", "--model", "models:/localization@champion", "--out", "x", "--storage", "s"], "--storage locates a sweep's checkpoints"),
        (["export", "--model", "models:/localization@champion", "--out", "x"], "there is no MLflow database at"),
    ],
)
def test_command_line_errors_are_one_line_too(workdir, capsys, arguments, message):
    """argparse's own errors (bad choice, type, missing argument) as well: one line, exit 2, and
    a failed registry lookup does not leave a new ./mlflow.db behind."""
    try:
        code = run(arguments)
    except SystemExit as exited:
        code = exited.code
    error = capsys.readouterr().err.strip()
    assert code == 2 and error.startswith("sweeper: error: ") and message in error and "\n" not in error
    assert not (workdir / "mlflow.db").exists() and not (workdir / "x").exists()


def test_every_option_has_help_and_the_top_level_help_is_plain_text(capsys):
    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    undocumented = [f"{name} {'/'.join(action.option_strings) or action.dest}"
                    for name, command in commands.choices.items() for action in command._actions
                    if not action.help and not isinstance(action, argparse._HelpAction)]  # fmt: skip
    assert undocumented == []
    with pytest.raises(SystemExit):
        run(["--help"])
    assert "``" not in capsys.readouterr().out


def test_shell_completion_names_commands_and_choices(tmp_path):
    """What bash receives on Tab once `eval "$(register-python-argcomplete sweeper)"` is in the shell's profile."""
    def complete(line: str) -> set[str]:
        answer = tmp_path / "completions"
        environment = {**os.environ, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_IFS": "\n", "COMP_LINE": line, "COMP_POINT": str(len(line)),
                       "_ARGCOMPLETE_STDOUT_FILENAME": str(answer)}  # fmt: skip
        subprocess.run([sys.executable, "-m", "sweeper"], env=environment, cwd=tmp_path, check=True, timeout=120)
        return set(answer.read_text().split())

    assert complete("sweeper l") == {"launch", "list"}
    assert complete("sweeper launch localization --scheduler a") == {"asha"}
    assert complete("sweeper launch localization --preset s") == {"smoke", "standard"}
