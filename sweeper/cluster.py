"""Where work runs: local Ray started by the CLI, or an existing cluster; what a trial may ask for."""
from __future__ import annotations

import logging
import os
from typing import Mapping

import ray
import torch

from trainables.errors import ConfigError


def start_ray(address: str | None) -> bool:
    """Connect to ``address`` or start local Ray; False if Ray was already running in this process."""
    if ray.is_initialized():
        return False
    if address is None:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING)
    else:
        ray.init(address=address, logging_level=logging.WARNING)
    return True


def local_resources() -> dict[str, float]:
    return {"CPU": float(os.cpu_count() or 1), "GPU": float(torch.cuda.device_count())}


def physical_memory() -> float:
    """This machine's memory in bytes."""
    return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def cluster_nodes() -> list[dict[str, float]]:
    return [node["Resources"] for node in ray.nodes() if node.get("Alive")]


def check_fits(cpus: float, gpus: float, nodes: list[Mapping[str, float]]) -> None:
    """A trial must fit on one node; say what the largest node has if it does not."""
    if any(node.get("CPU", 0) >= cpus and node.get("GPU", 0) >= gpus for node in nodes):
        return
    largest = max(nodes, key=lambda node: (node.get("CPU", 0), node.get("GPU", 0)), default={})
    raise ConfigError(
        f"a trial asks for {cpus:g} CPUs and {gpus:g} GPUs, but the largest node has "
        f"{largest.get('CPU', 0):g} CPUs and {largest.get('GPU', 0):g} GPUs; lower --cpus-per-trial / --gpus-per-trial"
    )


def concurrent_slots(cpus_per_trial: float, gpus_per_trial: float) -> int:
    """How many trials of this size fit on the running Ray cluster at once."""
    available = ray.cluster_resources()
    limits = [available.get("CPU", 1.0) // cpus_per_trial]
    if gpus_per_trial:
        limits.append(available.get("GPU", 0.0) // gpus_per_trial)
    return max(1, int(min(limits)))
