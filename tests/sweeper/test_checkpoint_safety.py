"""Damaged and malicious trial checkpoints and exported weights: refused with an error naming the
file, never executed, and nothing half-exported. Works on a copy of the smoke sweep's results."""
from __future__ import annotations

import ast
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import pytest
import torch

import sweeper
from sweeper.cli import run as run_cli
from sweeper.model_folder import MANIFEST, WEIGHTS, IntegrityError, sha256
from sweeper.sweeps import load_record, rank_trials, read_trials
from trainables.families import get_family
from trainables.train_loop import CHECKPOINT_FILE, CheckpointError

FAMILY = get_family("localization")
SWEEP = "smoke-sweep"
ROOT = Path(__file__).resolve().parents[2]
slow = pytest.mark.slow


class Planted:
    """Unpickling this runs a shell command that creates ``marker``: what a malicious file would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


MALICIOUS_FORMATS = {
    "torch.save": lambda payload, path: torch.save({"model": payload, "epoch": 1}, path),
    "plain pickle": lambda payload, path: path.write_bytes(pickle.dumps(payload)),
}


@dataclass(frozen=True)
class Results:
    storage: Path  # a copy of the smoke sweep's Ray results, ours to damage
    checkpoint: Path  # the checkpoint file exporting the best trial reads


@pytest.fixture(scope="module")
def results(smoke_sweep, tmp_path_factory) -> Results:
    storage = tmp_path_factory.mktemp("copied") / "ray_results"
    shutil.copytree(smoke_sweep.workdir / "ray_results" / SWEEP, storage / SWEEP)
    record = load_record(SWEEP, str(storage))
    best = rank_trials(read_trials(record, FAMILY.validation_metric, FAMILY.mode), FAMILY.mode)[0]
    checkpoint = Path(best.checkpoint_path) / CHECKPOINT_FILE
    # Results are found where they are now, not where they were written; else we would damage the shared sweep.
    assert checkpoint.is_relative_to(storage) and checkpoint.is_file()
    return Results(storage, checkpoint)


@pytest.fixture
def checkpoint(results) -> Iterator[Path]:
    """The best trial's checkpoint file, restored after each test."""
    original = results.checkpoint.read_bytes()
    yield results.checkpoint
    results.checkpoint.parent.mkdir(exist_ok=True)
    results.checkpoint.write_bytes(original)


@pytest.fixture(scope="module")
def exported_folder(results, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("exported") / "best"
    sweeper.open(SWEEP, str(results.storage)).export(out)
    (folder,) = out.iterdir()
    return folder


def flip_middle_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside tensor data: torch.load alone would not notice
    path.write_bytes(bytes(data))


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


DAMAGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "corrupted": (flip_middle_byte, "fails its CRC-32 check"),
    "truncated": (truncate, "is truncated or corrupted"),
    "emptied": (lambda path: path.write_bytes(b""), "is truncated or corrupted"),
    "replaced by text": (lambda path: path.write_text("not a checkpoint\n"), "or holds objects other than tensors"),
    "not a checkpoint": (lambda path: torch.save({"model": {}}, path), "is not a trial checkpoint"),
    "missing": (lambda path: path.unlink(), "is missing"),
    "folder missing": (lambda path: shutil.rmtree(path.parent), "is missing"),
}


def assert_refused_by_export(results: Results, out: Path, named: str, capsys) -> None:
    """The Python function and the CLI both name the file, print no traceback and write nothing."""
    with pytest.raises(CheckpointError, match=named) as raised:
        sweeper.open(SWEEP, str(results.storage)).export(out)
    assert str(results.checkpoint) in str(raised.value)
    capsys.readouterr()
    assert run_cli(["export", SWEEP, "--storage", str(results.storage), "--out", str(out)]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("sweeper: error:")]
    assert len(errors) == 1 and str(results.checkpoint) in errors[0] and named in errors[0]
    assert not out.exists() and list(out.parent.iterdir()) == [], "no folder, not even a staging one"


@slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_or_missing_checkpoint_is_named_and_nothing_is_exported(results, checkpoint, damage, tmp_path, capsys):
    spoil, named = DAMAGES[damage]
    spoil(checkpoint)
    assert_refused_by_export(results, tmp_path / "out" / "exports", named, capsys)


def test_the_planted_payload_really_runs_when_unpickled(tmp_path):
    """Guards the tests below: the marker's absence there means the payload was refused."""
    pickle.loads(pickle.dumps(Planted(tmp_path / "marker")))
    assert (tmp_path / "marker").exists()


@slow
@pytest.mark.parametrize("write", MALICIOUS_FORMATS)
def test_a_malicious_checkpoint_is_never_unpickled(results, checkpoint, write, tmp_path, capsys):
    marker = tmp_path / "marker"
    MALICIOUS_FORMATS[write](Planted(marker), checkpoint)
    assert_refused_by_export(results, tmp_path / "out" / "exports", "or holds objects other than tensors", capsys)
    assert not marker.exists()


@slow
def test_the_cli_refuses_a_malicious_checkpoint_in_a_fresh_process(smoke_sweep, results, checkpoint, tmp_path):
    marker = tmp_path / "marker"
    MALICIOUS_FORMATS["torch.save"](Planted(marker), checkpoint)
    completed = subprocess.run(
        [sys.executable, "-m", "sweeper", "export", SWEEP, "--storage", str(results.storage), "--out", str(tmp_path / "out")],
        cwd=smoke_sweep.workdir, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert completed.returncode == 2 and "Traceback" not in completed.stderr
    assert f"sweeper: error: {checkpoint} is damaged or holds objects other than tensors" in completed.stderr
    assert not marker.exists() and not (tmp_path / "out").exists()


def rewrite_weights(folder: Path, write: Callable[[Path], None]) -> None:
    """Replace the weights file and recompute the manifest, so the hash check passes."""
    write(folder / WEIGHTS)
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][WEIGHTS] = sha256(folder / WEIGHTS)
    (folder / MANIFEST).write_text(json.dumps(manifest))


@slow
@pytest.mark.parametrize("write", MALICIOUS_FORMATS)
def test_malicious_weights_with_a_matching_manifest_are_never_unpickled(exported_folder, write, tmp_path):
    folder, marker = tmp_path / "copy", tmp_path / "marker"
    shutil.copytree(exported_folder, folder)
    rewrite_weights(folder, lambda path: MALICIOUS_FORMATS[write](Planted(marker), path))
    with pytest.raises(IntegrityError, match=re.escape(f"{folder / WEIGHTS} is damaged or not a safetensors file")):
        sweeper.load(folder)
    assert not marker.exists()


# ---------------------------------------------------------------- every load is weights-only

UNSAFE_LOADS = {"pickle.load", "pickle.loads", "cloudpickle.load", "cloudpickle.loads", "mlflow.pytorch.load_model",
                "torch.export.load", "joblib.load", "dill.load", "dill.loads"}  # fmt: skip


def dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Attribute):
        return f"{dotted(node.value)}.{node.attr}"
    return node.id if isinstance(node, ast.Name) else ""


def unsafe_loads(path: Path) -> Iterator[str]:
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = dotted(node.func)
        weights_only = any(k.arg == "weights_only" and getattr(k.value, "value", None) is True for k in node.keywords)
        if name in UNSAFE_LOADS or (name == "torch.load" and not weights_only):
            yield f"{path.relative_to(ROOT)}:{node.lineno} {name}"


def test_every_load_in_the_code_base_is_weights_only():
    sources = [path for package in ("sweeper", "trainables", "mlflow_server") for path in (ROOT / package).rglob("*.py")]
    assert [load for path in sources for load in unsafe_loads(path)] == []
