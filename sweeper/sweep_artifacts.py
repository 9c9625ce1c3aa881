"""The artifacts of a finished sweep (its MLflow run's ``summary/`` folder): its trial table and Optuna's plots of the search.

The Optuna study is rebuilt from the trials' configs and best values (with the distributions of
the family's search space), so the plots come out the same after a restore or in a later
process, and Optuna's own visualisation does the drawing.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from functools import partial
from typing import Callable, Sequence

import matplotlib

matplotlib.use("Agg")  # files only: never open a window, work without a display

import optuna  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from matplotlib import pyplot as plt  # noqa: E402
from optuna.visualization import matplotlib as optuna_plots  # noqa: E402

from search_spaces import SearchSpace  # noqa: E402
from sweeper.objectives import Objective, objective_values  # noqa: E402
from sweeper.sweeps import TrialResult  # noqa: E402

logger = logging.getLogger(__name__)

TRIAL_TABLE = "trials.parquet"
PLOTS: dict[str, Callable[[optuna.Study], object]] = {
    "optimization_history.png": optuna_plots.plot_optimization_history,
    "parameter_importance.png": optuna_plots.plot_param_importances,
    "parallel_coordinate.png": optuna_plots.plot_parallel_coordinate,
}
PARETO_PLOT = "pareto_front.png"
CONSTANTS = ("param_count", "latency_ms_p50", "latency_ms_p95")


def trial_rows(trials: list[TrialResult], metric: str, front: Sequence[str] = ()) -> list[dict[str, object]]:
    """One row per trial: identity, outcome, node, best metric and every hyperparameter; with
    several objectives, whether the trial is on the Pareto front."""
    rows = []
    for trial in trials:
        last = trial.history.iloc[-1] if len(trial.history) else {}
        row = {
            "trial_id": trial.trial_id,
            "status": trial.status,
            "node": trial.node,
            "epochs": int(last.get("epoch", 0)) if len(trial.history) else 0,
            "best_epoch": trial.best_epoch,
            f"best_{metric}": trial.best_value if trial.best_epoch is not None else None,
            **{name: float(last[name]) for name in CONSTANTS if name in getattr(last, "index", ())},
            **({"pareto_front": trial.trial_id in front} if front else {}),
        }
        rows.append({**row, **{f"config.{key}": value for key, value in trial.config.items()}})
    return rows


def write_trial_table(rows: list[dict[str, object]], path: Path) -> None:
    names = list(dict.fromkeys(name for row in rows for name in row))  # every column, first-seen order
    columns = {name: _one_type([row.get(name) for row in rows]) for name in names}
    pq.write_table(pa.table(columns), path)


def _one_type(values: list[object]) -> list[object]:
    """A categorical parameter may mix types (tile_size: 16, 32, "adaptive"): Parquet columns cannot."""
    kinds = {type(v) for v in values if v is not None}
    return [None if v is None else str(v) for v in values] if len(kinds) > 1 and not kinds <= {int, float} else values


def rebuild_study(trials: list[TrialResult], space: SearchSpace, objectives: Sequence[Objective]) -> optuna.Study:
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # a study in memory for plotting is not news
    study = optuna.create_study(directions=["minimize" if o.mode == "min" else "maximize" for o in objectives])
    for trial in trials:
        distributions = space.distributions(trial.config)
        params = {name: trial.config[name] for name in distributions}
        if trial.best_epoch is None:
            state, values = optuna.trial.TrialState.FAIL, None
        else:
            state, values = optuna.trial.TrialState.COMPLETE, objective_values(trial, objectives)
        study.add_trial(optuna.trial.create_trial(params=params, distributions=distributions, values=values, state=state))
    return study


def write_sweep_artifacts(trials: list[TrialResult], space: SearchSpace, objectives: Sequence[Objective], directory: Path,
                  front: Sequence[str] = ()) -> list[Path]:  # fmt: skip
    """The trial table (Parquet) and the search plots (PNG) in ``directory``; returns what was
    written. The search plots are of the first objective; with several, Optuna's Pareto-front plot too."""
    directory.mkdir(parents=True, exist_ok=True)
    write_trial_table(trial_rows(trials, objectives[0].name, front), directory / TRIAL_TABLE)
    written = [directory / TRIAL_TABLE]
    first = rebuild_study(trials, space, objectives[:1])
    plots = {name: partial(plot, first) for name, plot in PLOTS.items()}
    if len(objectives) > 1:
        every = rebuild_study(trials, space, objectives)
        plots[PARETO_PLOT] = partial(optuna_plots.plot_pareto_front, every, target_names=[o.name for o in objectives])
    for name, draw in plots.items():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # Optuna marks its matplotlib plots experimental
                axes = draw()
        except (ValueError, RuntimeError) as error:  # e.g. importance needs two finished trials
            logger.info("no %s: %s", name, error)
            continue
        figure = getattr(axes, "figure", None) or axes.flat[0].figure
        figure.savefig(directory / name, dpi=110, bbox_inches="tight")
        plt.close(figure)
        written.append(directory / name)
    return written
