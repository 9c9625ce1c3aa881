"""Promotion's rounds of retraining on local Ray: queued ahead, gathered in seed order, cancelled
when the verdict is clear (the retraining itself replaced by a task that takes a known time)."""
from __future__ import annotations

import time
from types import SimpleNamespace

import ray

from sweeper.promotion import _Retraining

SLEEP_S = {"fast": 0.1, "slow": 0.5}
HELD_BACK_S = 600.0  # the runs a verdict cancels would hold their slots this long


def sleeping_retrain(config, data, context, settings, seed, cpus):
    index = seed % 1000
    time.sleep(HELD_BACK_S if index >= 2 else SLEEP_S[config["name"]])
    return SimpleNamespace(seed=seed, test={"error": float(index)}, model=config["name"])


def plan() -> SimpleNamespace:
    models = {"candidate": {"name": "fast"}, "baseline": {"name": "slow"}}
    return SimpleNamespace(models=models, record=SimpleNamespace(seed=0), settings=SimpleNamespace(epochs=1), cpus=1, gpus=0,
                           policy=SimpleNamespace(metric="error"))  # fmt: skip


def test_runs_come_back_in_seed_order_and_a_clear_verdict_cancels_the_next_round(ray_session):
    retraining = _Retraining(plan(), ray.put(None), {}, ["baseline", "candidate"], retrain=sleeping_retrain)
    retraining.submit(2)
    retraining.submit(3)  # the next round, queued behind
    assert len(retraining.running) == ray.cluster_resources()["CPU"] and len(retraining.running) + len(retraining.waiting) == 6
    runs = retraining.wait_for(2)
    assert {name: [r.seed for r in results] for name, results in runs.items()} == {"candidate": [1000, 1001], "baseline": [2000, 2001]}
    assert {r.model for r in runs["baseline"]} == {"slow"}
    started = time.perf_counter()
    retraining.cancel()
    assert not retraining.running and not retraining.waiting
    every_slot = ray.remote(num_cpus=ray.cluster_resources()["CPU"])(lambda: "every slot free")
    assert ray.get(every_slot.remote(), timeout=60) == "every slot free", "the cancelled runs let go of their slots"
    assert time.perf_counter() - started < 60
