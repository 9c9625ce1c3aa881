"""Exported model folders without a sweep: safetensors weights of every architecture, folders
written before safetensors (weights.pt), and model.onnx against PyTorch in ONNX Runtime."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable

import numpy as np
import onnxruntime
import pytest
import safetensors.torch
import torch

import sweeper
from sweeper.model_folder import (
    LEGACY_WEIGHTS, MANIFEST, ONNX, PROGRAM, WEIGHTS, ExportedModel, IntegrityError, read_weights, sha256, write_folder,
    write_weights,
)  # fmt: skip
from trainables.families import get_family
from trainables.models import architectures
from trainables.train_loop import build_model, forward

FAMILIES = ("language_model", "localization", "response_time", "segmentation")
EVERY_ARCHITECTURE = [(family, name) for family in FAMILIES for name in architectures(family)]
# One exportable model per family; HeimdallNetPro's layers are HeimdallNet's and a Performer block
ONNX_MODELS = [("language_model", "softmax"), ("localization", "heimdall_net_pro"), ("response_time", "response_time_cnn"),
               ("segmentation", "self")]  # fmt: skip


@pytest.fixture(scope="module")
def smoke_data():
    """Each family's smoke splits, loaded once: the models' context and real inputs."""
    return {name: get_family(name).load_data(get_family(name).presets["smoke"].data, None, 0) for name in FAMILIES}


def random_model(family: str, architecture: str, context: dict) -> torch.nn.Module:
    """A model with weights and buffers that differ from their initial values."""
    torch.manual_seed(0)
    model = build_model(get_family(family), {"architecture": architecture}, context)
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.add_(torch.randn_like(tensor) * 0.01)
    return model.eval()


@pytest.fixture(scope="module")
def exports(smoke_data, tmp_path_factory) -> Callable[[str, str], tuple[torch.nn.Module, Path]]:
    """``exports(family, architecture)``: a model and its exported folder, written once per module."""
    written: dict[tuple[str, str], tuple[torch.nn.Module, Path]] = {}

    def export(family: str, architecture: str) -> tuple[torch.nn.Module, Path]:
        if (family, architecture) not in written:
            context = get_family(family).context(smoke_data[family].train)
            model = random_model(family, architecture, context)
            out = tmp_path_factory.mktemp("exported") / architecture
            written[family, architecture] = model, write_folder(ExportedModel(family, {"architecture": architecture}, context, model.state_dict()), out)
        return written[family, architecture]

    return export


@pytest.mark.parametrize("family, architecture", EVERY_ARCHITECTURE, ids=[f"{f}-{a}" for f, a in EVERY_ARCHITECTURE])
def test_weights_round_trip_bit_exactly(family, architecture, smoke_data, tmp_path):
    context = get_family(family).context(smoke_data[family].train)
    original = random_model(family, architecture, context).state_dict()
    write_weights(original, tmp_path / WEIGHTS)
    weights = read_weights(tmp_path / WEIGHTS)
    assert weights.keys() == original.keys()
    for name, tensor in original.items():
        assert weights[name].dtype == tensor.dtype and torch.equal(weights[name], tensor), name
    reloaded = build_model(get_family(family), {"architecture": architecture}, context)
    reloaded.load_state_dict(weights)  # tied parameters (a language model's head and embedding) get one value twice
    assert all(torch.equal(tensor, original[name]) for name, tensor in reloaded.state_dict().items())


def test_shared_and_strided_tensors_are_written_as_their_values(tmp_path):
    base = torch.arange(12.0).view(3, 4)
    weights = {"matrix": base, "transposed": base.t(), "column": base[:, 1], "same": base}
    write_weights(weights, tmp_path / WEIGHTS)
    for name, tensor in read_weights(tmp_path / WEIGHTS).items():
        assert torch.equal(tensor, weights[name]) and tensor.is_contiguous()


@pytest.fixture(scope="module")
def folder(exports):
    """A small model's exported folder, for the tests that only read or copy it."""
    return exports("response_time", "response_time_cnn")


def test_the_folder_holds_safetensors_program_and_onnx_all_in_the_manifest(folder):
    model, path = folder
    files = json.loads((path / MANIFEST).read_text())["files"]
    assert {WEIGHTS, PROGRAM, ONNX, "config.json", "metrics.json", "README.md"} == set(files) and LEGACY_WEIGHTS not in files
    card = (path / "README.md").read_text()
    assert f"`{WEIGHTS}`" in card and f"`{ONNX}` runs in ONNX Runtime" in card
    loaded = sweeper.load(path)
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor)


def rewrite(folder: Path, old: str, new: str, write) -> None:
    """Replace ``old`` by ``new`` written with ``write``, and the manifest to match (a folder of another version)."""
    write(folder / new)
    if new != old:
        (folder / old).unlink()
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"][old]
    manifest["files"][new] = sha256(folder / new)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_a_folder_exported_with_weights_pt_still_loads(folder, tmp_path):
    model, path = folder
    old = tmp_path / "old"
    shutil.copytree(path, old)
    rewrite(old, WEIGHTS, LEGACY_WEIGHTS, lambda file: torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, file))
    loaded = sweeper.load(old)
    eeg = torch.randn(2, 129, 200)
    with torch.no_grad():
        torch.testing.assert_close(loaded(eeg), model(eeg), rtol=0, atol=0)


@pytest.mark.parametrize(
    "damage, named",
    [
        (lambda path: path.write_bytes(path.read_bytes()[:100]), "is damaged or not a safetensors file"),
        (lambda path: torch.save({"0.weight": torch.zeros(3)}, path), "is damaged or not a safetensors file"),
        (lambda path: safetensors.torch.save_file({"unrelated": torch.zeros(3)}, path), "does not hold the weights of the model"),
    ],
    ids=["truncated", "a torch pickle", "other tensors"],
)
def test_bad_weights_with_a_matching_manifest_are_named(folder, tmp_path, damage, named):
    copy = tmp_path / "copy"
    shutil.copytree(folder[1], copy)
    rewrite(copy, WEIGHTS, WEIGHTS, damage)
    with pytest.raises(IntegrityError, match=named) as raised:
        sweeper.load(copy)
    assert str(copy / WEIGHTS) in str(raised.value)


def max_difference(family, model: torch.nn.Module, session: onnxruntime.InferenceSession, rows: dict) -> float:
    """Largest absolute difference between ONNX Runtime's and PyTorch's outputs on ``rows``."""
    inputs = {name: rows[name] for name in family.inputs}
    with torch.no_grad():
        expected = forward(model, family, {name: torch.from_numpy(array) for name, array in inputs.items()})
    found = session.run(None, inputs)
    for got, want in zip(found, expected):
        np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-4)
    return max(float(np.abs(got - want.numpy()).max()) for got, want in zip(found, expected))


@pytest.mark.parametrize("family_name, architecture", ONNX_MODELS, ids=[f"{f}-{a}" for f, a in ONNX_MODELS])
def test_onnx_gives_pytorchs_outputs_at_batch_1_and_more(family_name, architecture, smoke_data, exports):
    model, path = exports(family_name, architecture)
    family, validation = get_family(family_name), smoke_data[family_name].validation
    session = onnxruntime.InferenceSession(str(path / ONNX), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == list(family.inputs) and [o.name for o in session.get_outputs()] == list(family.outputs)
    assert all(i.shape[0] == "batch" for i in session.get_inputs())
    rows = min(9, len(validation[family.inputs[0]]))  # localization's smoke rows 5 and 7 have a single active receiver
    alone = max(max_difference(family, model, session, {k: v[row : row + 1] for k, v in validation.items()}) for row in range(rows))
    together = max_difference(family, model, session, {k: v[:rows] for k, v in validation.items()})
    print(f"ONNX vs PyTorch, max abs difference: {family_name}/{architecture} batch 1: {alone:.3g}, batch {rows}: {together:.3g}")
