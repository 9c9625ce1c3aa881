"""The benchmarks' entry point at the tiniest sizes: every measurement runs and writes its files.

Benchmarks are not tests: nothing here is timed or compared with a target, only the shape of
what ``python -m benchmarks all`` writes.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import MEASUREMENTS

pytestmark = pytest.mark.slow  # starts Ray and runs tiny sweeps

REPOSITORY = Path(__file__).resolve().parents[1]
KEYS = {"name", "size", "started", "wall_s", "machine", "load", "settings", "results", "summary"}
MACHINE_KEYS = {"arch", "cpu_model", "cores", "torch", "ray"}
ROW_KEYS = {"quantity", "value", "target", "met"}
RESULT_KEYS = {
    "orchestration": {"ray_start_s", "slots", "per_repeat", "spread", "mlflow_trial_runs", "anchors"},
    "scale": {"runs", "profile", "driver_max_rss_mb", "anchor"},
    "promotion": {"slots", "repeats", "efficiency"},
    "trainable": {"samples_per_s", "overhead", "latency_probe_s", "checkpoint_save_s"},
    "attention": {"memory_cap_mb", "memory", "timing", "crossover", "performer_error"},
    "latency": {"cases", "formats"},
    "learning": {"localization"},
    "calibration": {"policy", "table"},
    "search_quality": {"metric", "sweeps", "comparisons", "anchor"},
    "synthetic_search": {"curves", "comparisons", "trials"},
    "pareto": {"objectives", "points", "comparisons"},
}


def test_all_at_tiny_sizes_writes_every_result(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks", "all", "--tiny", "--out", str(tmp_path)],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "quantity" in completed.stdout and "per-trial overhead" in completed.stdout  # the summary table
    for name in MEASUREMENTS:
        payload = json.loads((tmp_path / f"{name}.json").read_text())
        assert KEYS <= set(payload) and payload["name"] == name and payload["size"] == "tiny"
        assert MACHINE_KEYS <= set(payload["machine"]) and "during_1min" in payload["load"]
        assert RESULT_KEYS[name] <= set(payload["results"])
        assert payload["summary"] and all(set(row) == ROW_KEYS for row in payload["summary"])
        assert (tmp_path / f"{name}.png").stat().st_size > 0
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["summary"]) == set(MEASUREMENTS)
    stack = json.loads((tmp_path / "orchestration.json").read_text())["results"]
    assert stack["mlflow_trial_runs"] == [2], "the full stack logged one nested MLflow run per trial"
    for run in json.loads((tmp_path / "scale.json").read_text())["results"]["runs"].values():
        records = run["mlflow_records"]
        assert records["trial_runs"] == records["trials"] and records["metric_steps"] == 3 * records["trials"]
        assert records["lost_runs"] == records["duplicated_runs"] == records["lost_steps"] == records["duplicated_steps"] == 0
