from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import TINY_SIMULATION
from trainables.data import DataSplits, cache_dir
from trainables.data.rf_simulation import RFSimulation
from trainables.data.tables import write_table
from trainables.errors import ConfigError, DataError
from trainables.families import UnknownFamilyError, get_family

FAMILY = get_family("localization")
SMALL = {"n_samples": 24, "iq_length": 128, "sample_rate_hz": 5e6, "seed": 3}


def test_simulated_data_is_cached_and_split(tmp_path, monkeypatch):
    monkeypatch.setenv("SWEEPER_CACHE_DIR", str(tmp_path))
    first = FAMILY.load_data(SMALL, None, 0)
    assert len(list(cache_dir().glob("localization-*.parquet"))) == 1
    again = FAMILY.load_data(SMALL, None, 0)
    assert first.sizes() == {"train": 17, "validation": 3, "test": 4}
    np.testing.assert_array_equal(first.test["iq"], again.test["iq"])


def test_users_parquet_file_is_used(tmp_path, rf_arrays):
    path = tmp_path / "mine.parquet"
    write_table(rf_arrays, path)
    splits = FAMILY.load_data({}, path, 0)
    assert sum(splits.sizes().values()) == TINY_SIMULATION.n_samples and splits.source == str(path)


def test_rows_without_active_receivers_are_refused(tmp_path, rf_arrays):
    mask = rf_arrays["mask"].copy()
    mask[5] = False
    write_table({**rf_arrays, "mask": mask}, tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="rows with no active receiver"):
        FAMILY.load_data({}, tmp_path / "bad.parquet", 0)


def test_bad_simulator_settings_name_the_setting():
    with pytest.raises(ConfigError, match="unknown localization data setting .samples."):
        FAMILY.load_data({"samples": 10}, None, 0)
    with pytest.raises(DataError, match="raise iq_length"):
        FAMILY.load_data({**SMALL, "iq_length": 64}, None, 0)


def test_model_context_holds_training_statistics(rf_arrays):
    context = FAMILY.model_context(rf_arrays)
    assert context["max_receivers"] == 10 and len(context["feature_mean"]) == 6
    assert 300 < context["position_scale"] < 900  # std of positions uniform in a 2 km square
    assert context["propagation"]["path_loss_exponent"] == RFSimulation().path_loss_exponent


def test_loss_has_a_finite_gradient_at_zero_error():
    position = torch.zeros(2, 2, requires_grad=True)
    uncertainty = torch.ones(2, 2, requires_grad=True)
    FAMILY.loss((position, uncertainty), {"transmitter_xy": torch.zeros(2, 2)}).backward()
    assert torch.isfinite(position.grad).all() and torch.isfinite(uncertainty.grad).all()


def test_reference_beats_guessing_the_centre(rf_arrays):
    predict = FAMILY.reference(DataSplits(rf_arrays, rf_arrays, None, "tiny"))  # never reads the test split
    metrics = FAMILY.evaluate(predict(rf_arrays), rf_arrays)
    centre_error = np.linalg.norm(rf_arrays["transmitter_xy"] - 1000.0, axis=1).mean()
    assert metrics["p50_error_m"] < centre_error


def test_unknown_family_lists_the_known_ones():
    # built in, after any plugin family an earlier test registered in this process
    with pytest.raises(UnknownFamilyError, match=r"'weather'; known: ([a-z_]+, )*language_model, localization, response_time, segmentation \(a family of"):
        get_family("weather")


def test_slices_by_active_receivers_cover_every_row_once(rf_arrays):
    slices = FAMILY.slices(rf_arrays)
    assert list(slices) == ["1-2 receivers", "3-5 receivers", "6-10 receivers"]
    assert (sum(mask.astype(int) for mask in slices.values()) == 1).all()
