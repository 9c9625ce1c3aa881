"""The scale benchmark's trial: it sleeps through its epochs and reports each with a tiny checkpoint.

Up to 64 of these run at once on a 2-core machine next to the driver, so this module imports
Ray Tune and nothing heavier (no torch, no project code): each worker process holds Ray and
this file. A sleeping trial leaves the cores to the driver, whose bookkeeping is what the scale
benchmark measures. The loss is the orchestration workload's (benchmarks/workload.py imports
it from here), so the searcher has something to model.
"""
from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

from ray import tune

CHECKPOINT_FILE = "epoch.json"


def synthetic_loss(config: Mapping[str, Any], epoch: int) -> float:
    """A smooth function of the config, so the searcher has something to model."""
    width = math.log2(config.get("width", 64)) - 6
    return (math.log10(config["learning_rate"]) + 3.0) ** 2 + 0.1 * width**2 + 1.0 / epoch


def sleep_trial(config: dict[str, Any], *, epochs: int, epoch_seconds: float) -> None:
    """Ray Tune function trainable: ``epochs`` epochs of ``epoch_seconds`` asleep, each reported
    with a checkpoint, and the timings benchmarks.orchestration.trial_record reads."""
    # As the project's trainable: no log line per checkpoint (at 64 slots, hundreds a second for the driver to print).
    logging.getLogger("ray.train._internal.storage").setLevel(logging.WARNING)
    trial_started = time.time()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        time.sleep(epoch_seconds)
        metrics = {
            "epoch": epoch,
            "loss": synthetic_loss(config, epoch),
            "compute_s": time.perf_counter() - start,  # the work a real epoch would do
            "trial_started": trial_started,
            "epoch_ended": time.time(),
            "pid": os.getpid(),
        }
        with tempfile.TemporaryDirectory() as directory:
            (Path(directory) / CHECKPOINT_FILE).write_text(json.dumps({"epoch": epoch}))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))
