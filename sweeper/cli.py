# PYTHON_ARGCOMPLETE_OK  (argcomplete looks for this marker in the entry point's module)
"""The `sweeper` command. User errors print one line on stderr and exit with code 2; Ctrl-C
prints one line saying how to continue and exits with code 130, as shells report it."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, Sequence

import argcomplete

from mlflow_server.options import add_arguments as add_server_arguments
from sweeper import __version__
from trainables.errors import ConfigError, UserError

if TYPE_CHECKING:
    from sweeper.launcher import SweepInterrupted, SweepResult

logger = logging.getLogger("sweeper")

INTERRUPTED = 130  # 128 + SIGINT: what a shell reports for a command ended by Ctrl-C
# The registries' names, written out so that `sweeper --help` need not import Optuna and Ray
# (tests/sweeper/test_strategies.py checks them against sweeper.strategies).
SAMPLER_NAMES = ("cmaes", "gp", "nsga2", "qmc", "random", "tpe")
SCHEDULER_NAMES = ("asha", "fifo", "hyperband", "median", "pbt")
FAIL_ON = ("demote", "keep_experimental")  # verdicts from worst up: --fail-on X fails on X and everything below it
DESCRIPTION = """Hyperparameter sweeps of attention architectures on Ray Tune and Optuna, tracked in MLflow.
Start with `sweeper families`, then `sweeper launch FAMILY --preset quick`; `sweeper COMMAND --help` for each command.
User errors print one line and exit with code 2; Ctrl-C exits with 130 and says how to continue."""


class Parser(argparse.ArgumentParser):
    """argparse, with the one-line error every user error gets (argparse prints the whole usage first)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"sweeper: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="sweeper", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    launch = commands.add_parser("launch", help="run a hyperparameter sweep of one family")
    launch.add_argument("family", nargs="?", help="the family to sweep (`sweeper families` lists them; or family: in --config)"
                        ).completer = _complete_families  # fmt: skip
    launch.add_argument("--config", type=Path, metavar="SWEEP.yaml", help="read the launch settings from a sweep file; flags override it")
    launch.add_argument("--print-config", action="store_true", help="print the effective settings as a sweep file and exit without running")
    # Each family has its own presets (a plugin's may differ), so the family checks the name, not argparse.
    launch.add_argument("--preset", default="default", metavar="{smoke,quick,standard,default}",
                        help="the built-in families' presets: smoke (seconds), quick (minutes), standard (the smallest sweep that "
                             "learns the task: <= 30 minutes on 2 cores) or default; `sweeper families` lists each family's"
                        ).completer = _complete_presets  # fmt: skip
    launch.add_argument("--trials", type=int, help="number of trials (default: the preset's)")
    launch.add_argument("--epochs", type=int, help="maximum epochs per trial (default: the preset's)")
    launch.add_argument("--name", help="sweep name (default: FAMILY-YYYYmmdd-HHMMSS)")
    launch.add_argument("--seed", type=int, default=0, help="seed of the sampler, the data and the models")
    launch.add_argument("--max-concurrent", type=int, help="trials at once (default: as many as resources allow)")
    launch.add_argument("--cpus-per-trial", type=float, default=1.0, help="CPUs each trial reserves (default 1)")
    launch.add_argument("--gpus-per-trial", type=float, default=0.0, help="fractions share a GPU, e.g. 0.5")
    launch.add_argument("--storage", default="ray_results", help="results and checkpoints: a folder, or a path every node shares")
    launch.add_argument("--tracking-uri", help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)")
    launch.add_argument("--address", help="address of a running Ray cluster (default: RAY_ADDRESS, else start Ray locally)")
    launch.add_argument("--data", type=Path, help="your own Parquet file in the family's schema")
    launch.add_argument("--search-space", type=Path, help="your own search-space YAML (default: the family's)")
    launch.add_argument("--plugin", dest="plugins", type=_names, metavar="MODULE[,MODULE...]",
                        help="import your own family, models or attention from these modules (importable from here or PYTHONPATH); "
                             "their packages are copied to the cluster's workers")
    strategies = launch.add_argument_group("search strategy (sweeper/strategies.py)")
    strategies.add_argument("--objectives", type=_names, nargs="?", const=("default",), default=(), metavar="NAME[,NAME...]",
                            help="search for the Pareto front of several objectives: the validation metric and "
                                 "latency_ms_p95, latency_ms_p50 or param_count (alone: the family's default pair)")
    strategies.add_argument("--sampler", default="tpe", choices=SAMPLER_NAMES, help="which configs to try (default tpe)")
    strategies.add_argument("--scheduler", choices=SCHEDULER_NAMES, help="which trials to stop early (default asha; fifo with --objectives)")
    strategies.add_argument("--startup", type=int, help="tpe, gp, cmaes: random trials before modelling (default: a quarter of the trials, 3 to 10)")
    strategies.add_argument("--population", type=int, help="nsga2: trials per generation (default: a quarter of the trials, 4 to 50)")
    strategies.add_argument("--grace-period", type=int, help="asha, median: epochs before a trial may be stopped (default: a third of the epochs)")
    strategies.add_argument("--reduction-factor", type=float, help="asha, hyperband: keep 1 / this at each rung (default 3)")
    strategies.add_argument("--perturbation-interval", type=int, help="pbt: epochs between exploit-and-explore steps (default: a quarter of the epochs)")
    strategies.add_argument("--mutate", type=_names, metavar="NAME[,NAME...]",
                            help="pbt: the settings it perturbs (default: learning_rate, weight_decay, dropout)")
    strategies.add_argument("--warm-start", type=_names, default=(), metavar="SWEEP[,SWEEP...]",
                            help="feed the finished trials of earlier sweeps of this family (same --storage) to the sampler")
    strategies.add_argument("--brackets", type=int, help="asha, hyperband: brackets of different aggressiveness (default 1 and 3)")
    launch.add_argument("--time-budget", type=float, dest="time_budget_s", metavar="SECONDS",
                        help="end the sweep after this many seconds: running trials stop, no new ones start (default: none)")
    launch.add_argument("--system-metrics", action="store_true", default=False,
                        help="log this machine's CPU, memory, disk, network and GPU use to the sweep's MLflow run every 10 s")
    launch.add_argument("--max-failures", type=int, default=2, help="retries of a trial whose process or node dies, from its last checkpoint (default 2)")
    launch.add_argument("--memory-budget-gb", type=float, help="largest --data a node may hold in memory (default: its Ray object store, 30%% of its memory)")
    for action in launch._actions:
        action.default = argparse.SUPPRESS  # the namespace holds only what was typed: it overrides --config

    resume = commands.add_parser("resume", help="continue an interrupted sweep where it stopped (same search, same MLflow runs)")
    resume.add_argument("sweep", help="the sweep's name").completer = _complete_sweeps
    resume.add_argument("--storage", default="ray_results", help="where the sweep's results are (default: ray_results)")
    resume.add_argument("--address", help="address of a running Ray cluster (default: RAY_ADDRESS, else start Ray locally)")

    status = commands.add_parser("status", help="a sweep's trials by state, the best so far and the nodes used")
    status.add_argument("sweep", help="the sweep's name").completer = _complete_sweeps
    status.add_argument("--storage", default="ray_results", help="where the sweep's results are (default: ray_results)")
    status.add_argument("--json", action="store_true", help="print the status as JSON on stdout")

    listing = commands.add_parser("list", help="the sweeps in a storage, each with its family, trials and best value")
    listing.add_argument("--storage", default="ray_results", help="where sweeps' results are (default: ray_results)")
    listing.add_argument("--json", action="store_true", help="print every sweep's status as JSON on stdout")

    promote = commands.add_parser("promote", help="retrain a sweep's best trial and the baselines on several seeds; judge on the test split")
    promote.add_argument("sweep", help="the sweep's name (as given to or printed by launch)").completer = _complete_sweeps
    promote.add_argument("--seeds", type=_seeds, default="auto",
                         help="seeds per model, or auto (default): rounds from the policy's min_seeds to max_seeds until the verdict is clear")
    promote.add_argument("--candidate", metavar="TRIAL", help="the trial to promote (default: the best; with --objectives, "
                         "the Pareto-front member with the best metric inside the policy's latency budget)")
    promote.add_argument("--fail-on", choices=FAIL_ON, help="exit with code 1 when the verdict is this or worse (for CI pipelines)")
    promote.add_argument("--json", action="store_true", help="print the verdict and every criterion as JSON on stdout")
    promote.add_argument("--epochs", type=int, help="epochs per run (default: the sweep's)")
    promote.add_argument("--registered-model", metavar="NAME", help="register the candidate under this name in MLflow's model registry "
                         "(default: the family's name; choose your own in a shared registry)")
    _add_location(promote)
    promote.add_argument("--cpus-per-trial", type=float, help="per retraining run (default: the sweep's)")
    promote.add_argument("--gpus-per-trial", type=float, help="per retraining run (default: the sweep's)")
    promote.add_argument("--address", help="address of a running Ray cluster (default: RAY_ADDRESS, else start Ray locally)")

    export = commands.add_parser("export", help="write the best trials of a sweep (or a registered model) as self-contained folders")
    export.add_argument("sweep", nargs="?", help="the sweep's name (or use --model)").completer = _complete_sweeps
    export.add_argument("--model", help="a registered model instead: models:/NAME@ALIAS or models:/NAME/VERSION (NAME: the family, or promote --registered-model)")
    export.add_argument("--out", type=Path, required=True, help="folder to write (refused if it exists and is not empty)")
    export.add_argument("--top-k", type=int, default=1, help="how many of the best trials (default 1)")
    export.add_argument("--metric", help="validation metric to rank by (default: the family's)")
    export.add_argument("--mode", choices=("min", "max"), help="whether lower or higher --metric is better")
    export.add_argument("--pareto", action="store_true", help="every member of the sweep's Pareto front (a sweep with --objectives)")
    export.add_argument("--force", action="store_true", help="replace a non-empty --out")
    export.add_argument("--json", action="store_true", help="print the exported folders as JSON on stdout")
    export.add_argument("--storage", help="where the sweep's results are (default: ray_results)")
    export.add_argument("--tracking-uri", help="with --model: the MLflow store it is registered in (default: MLFLOW_TRACKING_URI, else ./mlflow.db)")

    sync = commands.add_parser("sync", help="send a sweep's MLflow records that could not be sent while it ran (idempotent)")
    sync.add_argument("sweep", help="the sweep's name").completer = _complete_sweeps
    _add_location(sync)

    predict = commands.add_parser("predict", help="batch inference with an exported model over a Parquet file")
    predict.add_argument("folder", type=Path, help="an exported model folder")
    predict.add_argument("--input", type=Path, required=True, help="Parquet file with the family's input columns")
    predict.add_argument("--out", type=Path, required=True, help="Parquet file for the predictions")
    predict.add_argument("--batch-size", type=int, default=256, help="rows per forward pass (default 256)")
    predict.add_argument("--force", action="store_true", help="replace an existing --out")

    families = commands.add_parser("families", help="the families there are to sweep: built in, installed plugins, --plugin modules")
    families.add_argument("--plugin", dest="plugins", type=_names, default=(), metavar="MODULE[,MODULE...]",
                          help="also import these modules, as launch --plugin does")

    ui = commands.add_parser("ui", help="browse sweeps: the MLflow tracking server and UI, on ./mlflow.db by default (Ctrl-C stops it)")
    add_server_arguments(ui)
    return parser


def _complete_families(**_) -> list[str]:
    from trainables.families import family_names

    return family_names()


def _complete_presets(parsed_args: argparse.Namespace, **_) -> list[str]:
    from trainables.families import get_family

    family = getattr(parsed_args, "family", None)
    return list(get_family(family).presets) if family else []


def _complete_sweeps(parsed_args: argparse.Namespace, **_) -> list[str]:
    from sweeper.api import list_sweeps
    from sweeper.sweeps import DEFAULT_STORAGE

    return list_sweeps(getattr(parsed_args, "storage", None) or DEFAULT_STORAGE)


def _names(value: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in value.split(",") if name.strip())


def _seeds(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected auto or a number of seeds, got {value!r}") from None


def _add_location(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--storage", default="ray_results", help="where the sweep's results are (default: ray_results)")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI (default: the one the sweep used)")


def run(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    if argv is None:  # from a shell: answer a completion request (Tab, after register-python-argcomplete) and exit
        argcomplete.autocomplete(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "launch":
            return _launch(args)
        if args.command == "promote":
            return _promote(args)
        if args.command == "export":
            return _export(args)
        if args.command == "predict":
            return _predict(args)
        if args.command == "ui":
            from mlflow_server.cli import serve

            return serve(args)
        if args.command == "sync":
            return _sync(args)
        if args.command == "resume":
            return _resume(args)
        if args.command == "status":
            return _status(args)
        if args.command == "families":
            return _families(args)
        if args.command == "list":
            return _list(args)
    except UserError as error:
        print(f"sweeper: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interrupt:
        print(f"sweeper: interrupted; {_how_to_continue(args, interrupt)}", file=sys.stderr)
        return INTERRUPTED
    raise AssertionError(f"unhandled command {args.command}")


def _how_to_continue(args: argparse.Namespace, interrupt: KeyboardInterrupt) -> str:
    """Every command leaves a state its rerun completes: a sweep resumes, the others start over."""
    if args.command in ("launch", "resume"):
        from sweeper.launcher import SweepInterrupted  # loaded already: these commands import it first

        if isinstance(interrupt, SweepInterrupted):
            return f"resume with: {_resume_command(interrupt)}"
        if args.command == "launch":
            return "the sweep had not started; launch it again"
    return "run the same command again"


def _resume_command(interrupted: SweepInterrupted) -> str:
    from sweeper.sweeps import DEFAULT_STORAGE, resolve_storage

    words = ["sweeper", "resume", interrupted.name]
    if interrupted.storage != resolve_storage(DEFAULT_STORAGE):
        words += ["--storage", interrupted.storage]
    if interrupted.address:
        words += ["--address", interrupted.address]
    return shlex.join(words)


def _launch(args: argparse.Namespace) -> int:
    import typing

    from sweeper import api
    from sweeper.launcher import LaunchOptions
    from sweeper.sweep_file import as_yaml, read_sweep_file

    fields = dataclasses.fields(LaunchOptions)
    typed = {k: v for k, v in vars(args).items() if k not in ("command", "config", "print_config") and v is not None}
    from_file = read_sweep_file(args.config, fields, typing.get_type_hints(LaunchOptions)) if getattr(args, "config", None) else {}
    settings = {**from_file, **typed}
    if "family" not in settings:
        raise ConfigError("name the family to sweep: sweeper launch FAMILY, or family: in the --config file")
    if getattr(args, "print_config", False):
        print(as_yaml({field.name: settings.get(field.name, field.default) for field in fields}), end="")
        return 0
    _print_result(api.launch(settings.pop("family"), **settings).result)
    return 0


def _families(args: argparse.Namespace) -> int:
    from trainables.families import family_names, get_family
    from trainables.plugins import import_plugins

    import_plugins(args.plugins)  # first: the families they register are listed too
    families = [get_family(name) for name in family_names()]
    width = max(len(family.name) for family in families)
    for family in families:
        print(f"{family.name:<{width}}  {family.description} (metric: {family.metric}, {family.mode}; presets: {', '.join(family.presets)})")
    return 0


def _resume(args: argparse.Namespace) -> int:
    from sweeper import api

    _print_result(api.open(args.sweep, args.storage).resume(args.address).result)
    return 0


def _status(args: argparse.Namespace) -> int:
    from sweeper import api

    sweep = api.open(args.sweep, args.storage)
    status = sweep.status()
    if args.json:
        print(json.dumps(status.as_json(), indent=2))
        return 0
    print(f"Sweep {status.name} ({status.family}): {status.started} of {status.trials} trials started; "
          + ", ".join(f"{count} {state}" for state, count in status.by_status.items()))  # fmt: skip
    if status.best:
        best = status.best
        print(f"Best so far: trial {best.trial_id} ({best.config.get('architecture')}) {sweep.family.validation_metric} = {best.best_value:.4g} at epoch {best.best_epoch}")
    print(f"Nodes used: {', '.join(status.nodes) or 'none yet'}")
    unsent = status.unsent_records
    print(f"MLflow: {status.tracking_uri}" + (f" ({unsent} records not sent yet: sweeper sync {status.name})" if unsent else ", up to date"))
    return 0


def _list(args: argparse.Namespace) -> int:
    from sweeper import api

    statuses = [api.open(name, args.storage).status() for name in api.list_sweeps(args.storage)]
    if args.json:
        print(json.dumps([status.as_json() for status in statuses], indent=2))
        return 0
    if not statuses:
        print(f"No sweeps in {args.storage}")
    for status in statuses:
        best = f"best {status.metric} {status.best.best_value:.4g}" if status.best else "no finished trial"
        print(f"{status.name}  {status.family}  {status.started}/{status.trials} trials  {best}")
    return 0


def _print_result(result: SweepResult) -> None:
    trials = ", ".join(f"{count} {status}" for status, count in result.trials_by_status.items())
    print(f"\nSweep {result.name}: {trials}")
    print(
        f"Best trial {result.best_trial_id} ({result.best_config.get('architecture')}): "
        f"{result.metric} = {result.best_value:.4g} at epoch {result.best_epoch}"
    )
    gain = result.gain_over_reference
    if gain is not None:
        reference = result.reference[result.metric.removeprefix("val_")]
        verdict = f"the best trial is {gain:.1%} better" if gain > 0 else f"the best trial is {-gain:.1%} WORSE: no network of this sweep beats it"
        print(f"Non-learned reference on the validation split: {result.metric} = {reference:.4g}; {verdict}")
    print(f"Config: {result.best_config}")
    if result.pareto_front:
        _print_front(result.pareto_front, result.name)
    print(f"Results and checkpoints: {result.results_path}")
    if result.unsent_records:
        print(f"MLflow at {result.tracking_uri} was unreachable: {result.unsent_records} records are kept on disk; "
              f"send them with: sweeper sync {result.name}")  # fmt: skip
    print(f"Browse it: {_browse_command(result.tracking_uri)}  (experiment {result.family!r}, run {result.name!r})")


def _print_front(front, sweep: str) -> None:
    names = [objective.name for objective in front.objectives]
    members = f"{len(front.trials)} trial{'s' if len(front.trials) > 1 else ''}"
    print(f"Pareto front of {', '.join(names)}: {members}; hypervolume {front.hypervolume:.4g} "
          f"against ({', '.join(f'{value:.4g}' for value in front.reference)})")  # fmt: skip
    for trial, values in zip(front.trials, front.values):
        print(f"  trial {trial.trial_id} ({trial.config.get('architecture')}): " + ", ".join(f"{n} {v:.4g}" for n, v in zip(names, values)))
    print(f"Export them with: sweeper export {sweep} --pareto --out FOLDER; promote one with: sweeper promote {sweep} --candidate TRIAL")


def _browse_command(tracking_uri: str) -> str:
    """What to type to see the runs of ``tracking_uri`` in a browser."""
    from mlflow_server.options import default_tracking_uri

    if tracking_uri.startswith(("http://", "https://")):
        return f"open {tracking_uri}"
    return "sweeper ui" if tracking_uri == default_tracking_uri() else f"sweeper ui --tracking-uri {tracking_uri}"


def _promote(args: argparse.Namespace) -> int:
    from sweeper import api

    options = {k: v for k, v in vars(args).items() if k not in ("command", "fail_on", "json", "sweep", "storage")}
    sweep = api.open(args.sweep, args.storage)
    # With --json, stdout holds the JSON document alone: what Ray's workers and raylet print goes to stderr.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        outcome = sweep.promote(**options)
    if args.json:
        print(json.dumps(_outcome_json(outcome), indent=2))
    else:
        _print_outcome(outcome)
    failing = FAIL_ON[: FAIL_ON.index(args.fail_on) + 1] if args.fail_on else ()
    return 1 if outcome.verdict.decision in failing else 0


def _print_outcome(outcome) -> None:
    verdict = outcome.verdict
    print(f"\nPromotion of sweep {outcome.sweep}: {verdict.decision.upper()}")
    print(f"Candidate: trial {outcome.candidate_trial} ({outcome.candidate_config['architecture']}) against {verdict.baseline}")
    seeds, confidence = outcome.looks[-1]
    print(f"Seeds: {seeds} per model after {len(outcome.looks)} look(s); intervals at one-sided {confidence:.2%}")
    for model in outcome.evidence:
        print(f"  {model.name:<24} test {outcome.metric} {model.mean_test():.4g} per seed {[round(v, 4) for v in model.test]}, p95 latency {model.latency_p95_ms:.1f} ms")
    if outcome.metric in outcome.reference:
        print(f"  {'non-learned reference':<24} test {outcome.metric} {outcome.reference[outcome.metric]:.4g} (no training, no seeds)")
    for name, values in outcome.slices.items():
        print(f"  {name:<24} " + ", ".join(f"{model} {value:.4g}" for model, value in values.items()))
    for c in verdict.comparisons:
        probability = c.improvement_probability
        print(f"  vs {c.baseline}: gain {c.gain.point:+.1%} [{c.gain.low:+.1%}, {c.gain.high:+.1%}], Holm p {c.holm_p:.3g}, "
              f"P(a candidate seed beats a {c.baseline} seed) {probability.point:.2f} [{probability.low:.2f}, {probability.high:.2f}], "
              f"Hedges' g {c.effect_size:+.2f}")  # fmt: skip
    width = max(len(c.name) for c in verdict.criteria)
    for criterion in verdict.criteria:
        mark = "pass" if criterion.passed else "FAIL"
        print(f"  [{mark}] {criterion.name:<{width}}  {criterion.measured}  (required {criterion.required})")
    against = verdict.reference_gain
    if against is not None:
        beats = "beats" if against.low > 0 else "does NOT clearly beat" if against.point > 0 else "does NOT beat"
        print(f"On the test split the candidate {beats} the non-learned reference: gain {against.point:+.1%}, lower bound {against.low:+.1%}")
    alias = f" alias {outcome.alias!r}" if outcome.alias else ""
    print(f"Registered model {outcome.model_name!r} version {outcome.model_version}{alias}; promotion run {outcome.run_id}")
    print(f"Took {outcome.seconds:.0f} s. Report: the run's artifacts report/report.html in `{_browse_command(outcome.tracking_uri)}`")


def _outcome_json(outcome) -> dict:
    """The verdict for machines: every criterion, every model's per-seed results, every comparison."""
    verdict = outcome.verdict
    return {
        "sweep": outcome.sweep, "family": outcome.family, "decision": verdict.decision, "metric": outcome.metric,
        "candidate": {"trial": outcome.candidate_trial, "config": outcome.candidate_config},
        "baseline": verdict.baseline,
        "seeds_per_model": outcome.looks[-1][0], "looks": [{"seeds": s, "confidence": c} for s, c in outcome.looks],
        "criteria": [dataclasses.asdict(c) for c in verdict.criteria],
        "models": [{"name": m.name, "test": list(m.test), "validation": list(m.validation), "latency_p95_ms": m.latency_p95_ms,
                    "diverged_seeds": m.diverged_seeds} for m in outcome.evidence],
        "comparisons": [dataclasses.asdict(c) for c in verdict.comparisons],
        "reference": {"test": outcome.reference, "gain": dataclasses.asdict(verdict.reference_gain) if verdict.reference_gain else None},
        "slices": outcome.slices,
        "registered": {"model": outcome.model_name, "version": outcome.model_version, "alias": outcome.alias},
        "run_id": outcome.run_id, "tracking_uri": outcome.tracking_uri, "seconds": outcome.seconds,
    }  # fmt: skip


def _export(args: argparse.Namespace) -> int:
    from sweeper import api
    from sweeper.export import export_registered
    from sweeper.sweeps import DEFAULT_STORAGE

    if (args.sweep is None) == (args.model is None):
        raise ConfigError("name a sweep or pass --model models:/NAME@ALIAS, not both")
    if args.model:
        if args.storage:
            raise ConfigError("--storage locates a sweep's checkpoints; --model exports come from the MLflow registry (--tracking-uri)")
        folder = export_registered(args.model, args.out, args.tracking_uri, args.force)
        if args.json:
            print(json.dumps([{"path": str(folder), "model": args.model}], indent=2))
        else:
            print(f"Exported {args.model} to {folder}")
        return 0
    if args.tracking_uri:
        raise ConfigError("--tracking-uri is for --model exports; a sweep's export reads its checkpoints from --storage, not from MLflow")
    exported = api.open(args.sweep, args.storage or DEFAULT_STORAGE).export(args.out, top_k=args.top_k, metric=args.metric, mode=args.mode,
                                                         pareto=args.pareto, force=args.force)  # fmt: skip
    if args.json:
        print(json.dumps([{"path": str(e.path), "trial": e.trial_id, "epoch": e.epoch, "value": e.value} for e in exported], indent=2))
        return 0
    for item in exported:
        print(f"{item.path}  trial {item.trial_id}, epoch {item.epoch}, {item.value:.4g}")
    print("Load one with: import sweeper; model = sweeper.load(FOLDER)")
    return 0


def _predict(args: argparse.Namespace) -> int:
    from sweeper.export import predict_file

    rows = predict_file(args.folder, args.input, args.out, args.batch_size, args.force)
    print(f"Wrote {rows} predictions to {args.out}")
    return 0


def _sync(args: argparse.Namespace) -> int:
    from sweeper.journal import sync

    sent, runs = sync(args.sweep, args.storage, args.tracking_uri)
    print(f"Sweep {args.sweep}: sent {sent} pending records; MLflow holds its {runs} runs")
    return 0


def main(argv: Sequence[str] | None = None) -> NoReturn:
    sys.exit(run(argv))
