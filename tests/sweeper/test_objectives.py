"""Several objectives: resolving them against a family, the Pareto front and its hypervolume on
points whose answers are known by hand."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from sweeper.objectives import Objective, hypervolume, objective_values, pareto_front, pareto_mask, reference_point, resolve_objectives
from sweeper.sweeps import TrialResult
from trainables.errors import ConfigError
from trainables.families import get_family

MIN2 = (Objective("error", "min"), Objective("latency", "min"))


def test_no_objectives_is_the_main_metric_and_default_is_the_familys_pair():
    localization, response_time = get_family("localization"), get_family("response_time")
    assert resolve_objectives(localization, ()) == (Objective("val_mean_error_m", "min"),)
    assert resolve_objectives(localization, ("default",)) == (Objective("val_mean_error_m", "min"), Objective("latency_ms_p95", "min"))
    assert resolve_objectives(response_time, ("default",))[1] == Objective("param_count", "min")
    # a cost alone gets the main metric put first
    assert resolve_objectives(localization, ("param_count",)) == (Objective("val_mean_error_m", "min"), Objective("param_count", "min"))


@pytest.mark.parametrize("names, message", [
    (("val_p50_error_m",), "--objectives val_p50_error_m: not an objective of localization; choose from val_mean_error_m"),
    (("param_count", "param_count"), "an objective is named twice"),
])  # fmt: skip
def test_unknown_or_repeated_objectives_are_user_errors(names, message):
    with pytest.raises(ConfigError, match=message):
        resolve_objectives(get_family("localization"), names)


def test_the_front_keeps_exactly_the_undominated_points():
    points = np.array([[1, 3], [2, 2], [3, 1], [3, 3], [2, 2.5], [1, 3]])
    # (3, 3) and (2, 2.5) are dominated; the repeated (1, 3) dominates neither copy
    assert pareto_mask(points, MIN2).tolist() == [True, True, True, False, False, True]
    # maximising the second objective turns the order around
    assert pareto_mask(points, (MIN2[0], Objective("accuracy", "max"))).tolist() == [True, False, False, False, False, True]


def test_hypervolume_of_a_staircase():
    points = np.array([[1, 3], [2, 2], [3, 1], [3.5, 3.5]])
    # the union of [1,4]x[3,4], [2,4]x[2,4] and [3,4]x[1,4]: 3 + 2 + 1; the dominated point adds nothing
    assert hypervolume(points, MIN2, np.array([4, 4])) == pytest.approx(6.0)
    assert hypervolume(np.array([[5, 5]]), MIN2, np.array([4, 4])) == 0.0  # beyond the reference
    # in the max direction: accuracy 0.9 at latency 2 against (reference accuracy 0.5, latency 4): 0.4 x 2
    assert hypervolume(np.array([[2, 0.9]]), (MIN2[1], Objective("accuracy", "max")), np.array([4, 0.5])) == pytest.approx(0.8)


def test_the_reference_point_lies_beyond_the_worst_value_of_each_objective():
    reference = reference_point(np.array([[1.0, 10.0], [3.0, 30.0]]), (MIN2[0], Objective("accuracy", "max")))
    assert reference.tolist() == pytest.approx([3.2, 8.0])


def _trial(trial_id: str, error: float, latency: float, best_epoch: int = 2) -> TrialResult:
    history = pd.DataFrame({"epoch": [1, 2], "val_mean_error_m": [error + 1, error], "latency_ms_p95": [latency, latency]})
    return TrialResult(trial_id, "completed", {"architecture": "x"}, "node", history, error, best_epoch, None)


def test_a_trials_values_are_those_of_its_best_epoch_and_the_front_is_ranked_by_the_first():
    objectives = resolve_objectives(get_family("localization"), ("default",))
    ranked = [_trial("a", 10.0, 50.0), _trial("b", 12.0, 20.0), _trial("c", 13.0, 60.0), _trial("d", 15.0, 5.0)]
    assert objective_values(_trial("e", 7.0, 3.0, best_epoch=1), objectives) == [8.0, 3.0]
    front = pareto_front(ranked, objectives)
    assert front.trial_ids == ("a", "b", "d") and front.values.tolist() == [[10, 50], [12, 20], [15, 5]]
    assert front.hypervolume > 0 and front.reference.tolist() == pytest.approx([15.5, 65.5])
