"""Exported model folders: self-contained, verifiable, loadable anywhere this package is installed.

A folder holds::

    weights.safetensors  the model's state dict in safetensors format: tensors only, no pickle
                         (folders exported before it hold weights.pt, a weights-only torch pickle;
                         they still load)
    config.json          family, architecture, every hyperparameter, the data context, input spec
    metrics.json         validation metrics of the exported epoch, test metrics where known, size, latency
    README.md            a short model card
    manifest.json        SHA-256 of every other file and the package version
    model.pt2            optional: torch.export program, for serving without this package
    model.onnx           optional: the same program as ONNX, for ONNX Runtime; batch dimension dynamic

Where a model cannot be traced, or an operator it uses has no ONNX form, the optional files are
left out and its README.md says so; the rest of the folder is complete without them.

Folders are written to a temporary sibling and renamed into place, so a failed export leaves
nothing half-written, and an existing non-empty folder is only replaced when asked to.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Collection, Iterator, Mapping, Sequence

import safetensors
import safetensors.torch
import torch
from torch import nn

from sweeper import __version__
from sweeper.interrupts import ctrl_c_deferred
from sweeper.quiet import quiet
from trainables.errors import UserError
from trainables.families import get_family
from trainables.train_loop import build_model, load_weights_only

logger = logging.getLogger(__name__)

WEIGHTS, CONFIG, METRICS, CARD, MANIFEST, PROGRAM, ONNX = (
    "weights.safetensors", "config.json", "metrics.json", "README.md", "manifest.json", "model.pt2", "model.onnx",
)  # fmt: skip
LEGACY_WEIGHTS = "weights.pt"  # folders exported before safetensors: a torch pickle, loaded weights-only
REEXPORT = "export the model again"


class ExportError(UserError):
    pass


class IntegrityError(UserError):
    """An exported folder does not match its manifest, or its weights are not plain tensors."""


@dataclass(frozen=True)
class ExportedModel:
    """What goes into one folder."""

    family: str
    config: Mapping[str, Any]  # architecture + hyperparameters (+ training settings, for the record)
    context: Mapping[str, Any]  # what the model knows about the data, incl. ``input_spec``
    weights: Mapping[str, torch.Tensor]
    metrics: Mapping[str, Any] = field(default_factory=dict)
    source: Mapping[str, Any] = field(default_factory=dict)  # sweep, trial, epoch, run ids
    plugins: tuple[str, ...] = ()  # the modules that register a user's own family or model (trainables/plugins.py)


def write_folder(model: ExportedModel, out: Path, force: bool = False) -> Path:
    """Write ``model`` to ``out`` atomically; refuse a non-empty ``out`` unless ``force``."""
    with staged(out, force) as staging:
        _write_files(model, staging)
    return out.expanduser().resolve()


@contextlib.contextmanager
def staged(out: Path, force: bool) -> Iterator[Path]:
    """A fresh folder to fill, renamed to ``out`` on success and removed on any failure."""
    out = out.expanduser().resolve()
    if out.exists() and (not out.is_dir() or any(out.iterdir())) and not force:
        raise ExportError(f"{out} exists and is not empty; choose another --out or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        yield staging
        for folder in (staging, *(p for p in staging.rglob("*") if p.is_dir())):
            folder.chmod(0o777 & ~_umask())  # mkdtemp makes private folders; exports are shared
        if out.exists():
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_files(model: ExportedModel, directory: Path) -> None:
    network = instantiate(model.family, model.config, model.context, model.weights, model.plugins)
    write_weights(model.weights, directory / WEIGHTS)
    config = {
        "family": model.family,
        "architecture": model.config["architecture"],
        "config": dict(model.config),
        "context": dict(model.context),
        "inputs": model.context.get("input_spec", {}),
        "outputs": list(get_family(model.family, model.plugins).outputs),
        "source": dict(model.source),
        "plugins": list(model.plugins),
    }
    metrics = {"param_count": sum(p.numel() for p in network.parameters()), **model.metrics}
    _write_json(directory / CONFIG, config)
    _write_json(directory / METRICS, metrics)
    _write_serving_files(network, model.context, config["outputs"], directory)
    (directory / CARD).write_text(model_card(config, metrics, {p.name for p in directory.iterdir()}))
    files = sorted(p.name for p in directory.iterdir())
    _write_json(directory / MANIFEST, {"package": "attention-sweeper", "version": __version__,
                                       "files": {name: sha256(directory / name) for name in files}})  # fmt: skip


def _write_serving_files(network: nn.Module, context: Mapping[str, Any], outputs: Sequence[str], directory: Path) -> None:
    """model.pt2 and model.onnx, where the model can be traced and converted."""
    program = _traced(network, context)
    if program is not None:
        torch.export.save(program, directory / PROGRAM)
        _write_onnx(program, context, outputs, directory / ONNX)


def _traced(network: nn.Module, context: Mapping[str, Any]) -> torch.export.ExportedProgram | None:
    """torch.export of the model with a dynamic batch dimension; None where it cannot be traced."""
    example = example_inputs(context, batch=2)
    dynamic = [{0: torch.export.Dim("batch")}] * len(example)  # not AUTO: that would quietly fix the batch size it traced
    try:
        # torch.export turns a Ctrl-C inside its tracing into an error of its own, which would read
        # as "cannot trace" and let the export go on: hold the Ctrl-C until the call returns.
        # A failed trace prints its whole graph, and torch's shape solver logs warnings about it
        with ctrl_c_deferred(), quiet("torch.fx.experimental.symbolic_shapes", stderr=True):
            return torch.export.export(network, example, dynamic_shapes=dynamic)
    except Exception as error:  # noqa: BLE001 - tracing fails in many ways; the folder is complete without it
        logger.info("no %s or %s: torch.export cannot trace this model (%s)", PROGRAM, ONNX, type(error).__name__)
        return None


def _write_onnx(program: torch.export.ExportedProgram, context: Mapping[str, Any], outputs: Sequence[str], path: Path) -> None:
    """The traced program as one ONNX file, inputs and outputs named as in config.json and their
    first axis named ``batch``; none where an operator has no ONNX form."""
    inputs = list(context["input_spec"])
    try:
        with ctrl_c_deferred(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):  # progress lines
            torch.onnx.export(program, example_inputs(context, batch=2), path, dynamo=True, external_data=False, input_names=inputs,
                              output_names=list(outputs), dynamic_shapes=[{0: "batch"}] + [None] * (len(inputs) - 1))  # inputs share the batch axis  # fmt: skip
    except Exception as error:  # noqa: BLE001 - as for tracing: the folder is complete without it
        path.unlink(missing_ok=True)
        logger.info("no %s: the ONNX exporter cannot convert this model (%s)", ONNX, type(error).__name__)


def example_inputs(context: Mapping[str, Any], batch: int) -> tuple[torch.Tensor, ...]:
    """Inputs of the documented shapes and dtypes (zeros; masks all True), for tracing."""
    tensors = []
    for spec in context["input_spec"].values():
        shape = [batch, *spec["shape"][1:]]
        dtype = getattr(torch, spec["dtype"])
        tensors.append(torch.ones(shape, dtype=dtype) if dtype == torch.bool else torch.zeros(shape, dtype=dtype))
    return tuple(tensors)


def write_weights(weights: Mapping[str, torch.Tensor], path: Path) -> None:
    """``weights`` as a safetensors file. safetensors refuses tensors that share memory (a language
    model's output head tied to its embedding) and views with gaps, so each tensor is written as a
    contiguous copy of its own; loading fills tied parameters twice with the same values."""
    safetensors.torch.save_file({name: tensor.detach().cpu().clone(memory_format=torch.contiguous_format)
                                 for name, tensor in weights.items()}, path)  # fmt: skip


def weights_file(directory: Path, files: Collection[str]) -> Path:
    """The folder's weights file among the manifest's ``files``: safetensors, or weights.pt in a
    folder exported before safetensors."""
    for name in (WEIGHTS, LEGACY_WEIGHTS):
        if name in files:
            return directory / name
    raise IntegrityError(f"{directory / MANIFEST} lists no weights file ({WEIGHTS}); {REEXPORT}")


def read_weights(path: Path) -> dict[str, torch.Tensor]:
    """The state dict in ``path``, read as tensors only: nothing in a damaged or hostile file is run."""
    if path.name == LEGACY_WEIGHTS:
        return load_weights_only(path, REEXPORT, IntegrityError)
    try:
        return safetensors.torch.load_file(path)
    except safetensors.SafetensorError:
        raise IntegrityError(f"{path} is damaged or not a safetensors file of tensors; {REEXPORT}") from None


def instantiate(family: str, config: Mapping[str, Any], context: Mapping[str, Any], weights: Mapping[str, torch.Tensor],
                plugins: Sequence[str] = ()) -> nn.Module:  # fmt: skip
    model = build_model(get_family(family, plugins), config, context)
    model.load_state_dict(weights)
    return model.eval()


def load(directory: str | Path) -> nn.Module:
    """The exported model in eval mode, after checking every file against the manifest."""
    directory = Path(directory)
    path = weights_file(directory, verify(directory))
    config = json.loads((directory / CONFIG).read_text())
    # The manifest only proves the files belong together, not who wrote them: still tensors only.
    weights = read_weights(path)
    try:
        return instantiate(config["family"], config["config"], config["context"], weights, config.get("plugins", ()))
    except (TypeError, AttributeError, RuntimeError):  # not a state dict, or not this architecture's
        raise IntegrityError(f"{path} does not hold the weights of the model in {CONFIG}; {REEXPORT}") from None


def read_config(directory: Path) -> dict[str, Any]:
    verify(directory)
    return json.loads((directory / CONFIG).read_text())


def verify(directory: Path) -> frozenset[str]:
    """The files the manifest vouches for; raises IntegrityError naming the first missing or altered one."""
    if not (directory / MANIFEST).is_file():
        raise IntegrityError(f"{directory} has no {MANIFEST}; it is not an exported model folder (see `sweeper export`)")
    try:
        expected = json.loads((directory / MANIFEST).read_text())["files"]
    except (ValueError, KeyError):
        raise IntegrityError(f"{directory / MANIFEST} is damaged; export the model again") from None
    for name, digest in expected.items():
        path = directory / name
        if not path.is_file():
            raise IntegrityError(f"{path} is missing; export the model again")
        if sha256(path) != digest:
            raise IntegrityError(f"{path} does not match its SHA-256 in {MANIFEST} (altered or truncated); export the model again")
    return frozenset(expected)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def _serving_notes(files: Collection[str]) -> str:
    """What the card says about the files for serving without attention-sweeper."""
    if PROGRAM not in files:
        return (f"There is no `{PROGRAM}` or `{ONNX}`: torch.export cannot trace this architecture "
                "(shapes that depend on the data).")  # fmt: skip
    notes = [f"- `{PROGRAM}` is a torch.export program: `torch.export.load('{PROGRAM}').module()(*inputs)`."]
    notes.append(f"- `{ONNX}` runs in ONNX Runtime at any batch size: `onnxruntime.InferenceSession('{ONNX}').run(None, inputs)` "
                 "with `inputs` a dict of NumPy arrays named as below; it returns the outputs in the order above."
                 if ONNX in files else f"- There is no `{ONNX}`: the ONNX exporter cannot convert this architecture's program.")  # fmt: skip
    return "\n".join(notes)


def model_card(config: Mapping[str, Any], metrics: Mapping[str, Any], files: Collection[str]) -> str:
    hyper = "\n".join(f"| `{k}` | {v} |" for k, v in sorted(config["config"].items()))
    inputs = "\n".join(f"| `{name}` | {s['dtype']} | {s['shape']} |" for name, s in config["inputs"].items())
    numbers = "\n".join(f"| `{k}` | {v:.6g} |" if isinstance(v, float) else f"| `{k}` | {v} |" for k, v in sorted(metrics.items()))
    source = ", ".join(f"{k} `{v}`" for k, v in config["source"].items()) or "not recorded"
    return f"""# {config['family']} / {config['architecture']}

Exported by attention-sweeper. Source: {source}.

```python
import sweeper
model = sweeper.load("path/to/this/folder")   # checks manifest.json, returns the model in eval mode
outputs = model(*inputs)                       # outputs: {', '.join(config['outputs'])}
```

The weights are in `{WEIGHTS}` (tensors only, no pickle). Batch inference on a Parquet file:
`sweeper predict FOLDER --input FILE.parquet --out PRED.parquet`. Without attention-sweeper:

{_serving_notes(files)}

## Inputs

| name | dtype | shape |
|---|---|---|
{inputs}

## Hyperparameters

| name | value |
|---|---|
{hyper}

## Metrics

| name | value |
|---|---|
{numbers}
"""
