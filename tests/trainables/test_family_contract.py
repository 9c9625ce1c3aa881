"""What every family promises, checked on its smoke data with its first baseline model."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from trainables.families import family_names, get_family
from trainables.train_loop import build_model, predict


@pytest.fixture(scope="module", params=family_names())
def smoke(request):
    family = get_family(request.param)
    return family, family.load_data(family.presets["smoke"].data, None, 0)


@pytest.fixture(scope="module")
def evaluated(smoke):
    family, splits = smoke
    config = next(iter(family.promotion().baselines.values()))
    torch.manual_seed(0)
    model = build_model(family, config, family.context(splits.train))
    return family, predict(model, family, splits.validation, 64, torch.device("cpu")), splits.validation


def test_evaluate_returns_exactly_the_declared_metrics(evaluated):
    family, outputs, arrays = evaluated
    assert set(family.evaluate(outputs, arrays)) == set(family.metrics) and family.metric in family.metrics
    assert len(outputs) == len(family.outputs)


def test_row_scores_average_to_the_metrics(evaluated):
    family, outputs, arrays = evaluated
    if family.row_scores is None:
        pytest.skip(f"{family.name}: its metric is not a mean over rows")
    metrics = family.evaluate(outputs, arrays)
    rows = len(next(iter(arrays.values())))
    for name, values in family.row_scores(outputs, arrays).items():
        assert values.shape == (rows,) and np.mean(values) == pytest.approx(metrics[name], rel=1e-5)


def test_every_family_has_a_reference_scored_like_a_network(smoke):
    family, splits = smoke
    assert family.reference is not None, f"{family.name} has no non-learned reference"
    outputs = family.reference(splits)(splits.validation)
    assert len(outputs) == len(family.outputs)
    rows = len(next(iter(splits.validation.values())))
    assert all(len(output) == rows for output in outputs)
    metrics = family.evaluate(outputs, splits.validation)
    assert set(metrics) == set(family.metrics) and np.isfinite(metrics[family.metric])
