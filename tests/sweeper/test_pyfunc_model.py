"""The registered model (sweeper/pyfunc_model.py): logged from an exported folder, loaded as an
MLflow pyfunc, and answering the JSON that ``mlflow models serve`` takes, without a server."""
from __future__ import annotations

import json
import os

import mlflow
import numpy as np
import pytest
import torch
from mlflow.pyfunc import scoring_server

import sweeper
from sweeper.model_folder import ExportedModel, write_folder
from sweeper.tracking import SweepTracker
from trainables.families import get_family
from trainables.train_loop import build_model, forward

FAMILY = get_family("localization")


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """A localization model of five named inputs and two outputs, logged and registered: MLflow's
    own PyTorch flavour could not serve it. The least-squares one: no trace to wait for."""
    work = tmp_path_factory.mktemp("registry")
    data = FAMILY.load_data(FAMILY.presets["smoke"].data, None, 0)
    context, config = FAMILY.context(data.train), {"architecture": "multilateration_transformer"}
    torch.manual_seed(0)
    folder = write_folder(ExportedModel(FAMILY.name, config, context, build_model(FAMILY, config, context).state_dict()), work / "folder")
    example = tuple(data.test[name][:2] for name in FAMILY.inputs)
    with torch.no_grad():
        outputs = forward(sweeper.load(folder), FAMILY, {name: torch.from_numpy(a) for name, a in zip(FAMILY.inputs, example)})
    tracker = SweepTracker(f"sqlite:///{work}/mlflow.db", FAMILY.name)
    environment = os.environ.get("MLFLOW_TRACKING_URI")
    version = tracker.log_model(tracker.create_run("sweep", "promotion", "promotion", "promotion", {}), FAMILY.name, folder, FAMILY.inputs, example,
                                FAMILY.outputs, [o.numpy() for o in outputs])  # fmt: skip
    environment_kept = os.environ.get("MLFLOW_TRACKING_URI") == environment
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLFLOW_TRACKING_URI", tracker.tracking_uri)
        model = mlflow.pyfunc.load_model(f"models:/{FAMILY.name}/{version}")
    rows = {name: data.test[name][:3] for name in FAMILY.inputs}
    with torch.no_grad():
        expected = forward(sweeper.load(folder), FAMILY, {name: torch.from_numpy(a) for name, a in rows.items()})
    return model, rows, [e.numpy() for e in expected], environment_kept


def test_registering_leaves_mlflow_tracking_uri_as_it_was(registered):
    """MLflow's set_tracking_uri, which its log_model needs, also sets MLFLOW_TRACKING_URI for the
    process: every later sweep and child process would take it as its default store."""
    *_, environment_kept = registered
    assert environment_kept


def test_predict_takes_and_gives_named_arrays(registered):
    model, rows, expected, _ = registered
    found = model.predict(rows)
    assert list(found) == list(FAMILY.outputs)
    for name, want in zip(FAMILY.outputs, expected):
        np.testing.assert_allclose(found[name], want, rtol=1e-5)


def test_the_scoring_server_answers_the_documented_json(registered):
    """The payload README's Serving section sends with curl: {"inputs": {name: nested lists}}."""
    model, rows, expected, _ = registered
    payload = json.dumps({"inputs": {name: array.tolist() for name, array in rows.items()}})
    answer = scoring_server.invocations(payload, "application/json", model, model.metadata.get_input_schema())
    assert answer.status == 200, answer.response
    predictions = json.loads(answer.response)["predictions"]
    for name, want in zip(FAMILY.outputs, expected):
        np.testing.assert_allclose(np.array(predictions[name]), want, rtol=1e-5)
