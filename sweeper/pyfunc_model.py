"""The registered model's MLflow pyfunc: the exported folder a promotion logs, behind MLflow's
``predict``, so ``mlflow models serve`` answers for every family and architecture.

MLflow's own PyTorch flavour cannot serve these models: its pyfunc takes one tensor and returns
one, and for a torch.export program of several inputs it logs no pyfunc at all. This file is
logged as MLflow "models from code" (SweepTracker.log_model): MLflow keeps it with the model and
runs it when the model is loaded, so nothing is pickled, and the weights come from the folder's
weights.safetensors once its manifest checks out (sweeper.load).

``predict`` takes the family's inputs by name, as arrays (what the scoring server makes of
``{"inputs": {"iq": [...], ...}}``), and returns the family's outputs by name.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import mlflow
import numpy as np
import torch

from sweeper.tracking import PYFUNC_FOLDER


class ExportedFolderModel(mlflow.pyfunc.PythonModel):
    # MLflow would derive an input schema of its own from predict's type hint, and warns that a
    # mapping of arrays gives none: the signature logged with the model checks the inputs instead.
    _skip_type_hint_validation = True

    def load_context(self, context: Any) -> None:
        from sweeper.model_folder import load, read_config
        from trainables.families import get_family

        folder = Path(context.artifacts[PYFUNC_FOLDER])
        self.model = load(folder)
        config = read_config(folder)
        self.family = get_family(config["family"], config.get("plugins", ()))

    def predict(self, context: Any, model_input, params: Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
        """``model_input``: the family's inputs by name, arrays of one batch."""
        tensors = [torch.as_tensor(np.asarray(model_input[name])) for name in self.family.inputs]
        with torch.no_grad():
            outputs = self.model(*tensors)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        return {name: output.numpy() for name, output in zip(self.family.outputs, outputs)}


mlflow.models.set_model(ExportedFolderModel())
