"""Local Ray's idle workers, as a sweep's first trial actors meet them (sweeper.cluster.start_ray)."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from sweeper.cluster import worker_start_config

# A driver of its own: Ray's system config is set once per Ray, and the tests' shared Ray is up.
# Like a sweep's set-up it leaves Ray's idle workers idle for a few seconds, then takes every CPU
# in a placement group (as Tune's trials do) and places an actor in it.
FIRST_ACTOR = """
import json, os, sys, time
import psutil, ray
from ray.util.placement_group import placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from sweeper.cluster import start_ray

start_ray(None, preload=("colorsys",))  # which neither Ray nor this script imports
time.sleep(4)  # Ray's own threshold for ending an idle worker is 1 s
asked = time.time()
group = placement_group([{"CPU": os.cpu_count()}])
ray.get(group.ready())
time.sleep(1)  # Tune's loop places the actor a step after the group is ready; Ray checks for idle workers meanwhile

@ray.remote(num_cpus=os.cpu_count())
class Probe:
    def where(self):
        return {"started_before": psutil.Process().create_time() < asked, "preloaded": "colorsys" in sys.modules}

probe = Probe.options(scheduling_strategy=PlacementGroupSchedulingStrategy(group)).remote()
print(json.dumps(ray.get(probe.where.remote())))
ray.shutdown()
"""


def test_the_first_trial_actor_takes_an_idle_worker_that_has_imported_the_trial_modules(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("RAY_")}
    driver = subprocess.run([sys.executable, "-c", FIRST_ACTOR], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert driver.returncode == 0, driver.stderr[-3000:]
    where = json.loads(driver.stdout.strip().splitlines()[-1])
    assert where == {"started_before": True, "preloaded": True}, driver.stderr[-3000:]


@pytest.mark.parametrize("setting", ["idle_worker_killing_time_threshold_ms", "preload_python_modules"])
def test_a_users_own_ray_worker_settings_win(monkeypatch, setting):
    for name in ("idle_worker_killing_time_threshold_ms", "preload_python_modules"):
        monkeypatch.delenv(f"RAY_{name}", raising=False)
    monkeypatch.setenv(f"RAY_{setting}", "5")
    config = worker_start_config(("ray.tune",))
    assert setting not in config and len(config) == 1


def test_without_modules_to_preload_ray_keeps_its_own_settings():
    """Promotion and the benchmarks' shared Ray: idle workers that nothing preloads are not worth keeping."""
    assert worker_start_config(()) == {}
