"""Where work runs: local Ray started by the CLI, or an existing cluster; what a trial may ask for."""
from __future__ import annotations

import logging
import os
import secrets
from typing import Any, Mapping, Sequence

import ray
import torch

from sweeper.interrupts import ctrl_c_deferred
from trainables.errors import ConfigError
from trainables.plugins import shipped_modules

logger = logging.getLogger(__name__)

AUTH_MODE_ENV, AUTH_TOKEN_ENV, ADDRESS_ENV = "RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_ADDRESS"
# Longer than a sweep's set-up between Ray's start and its first trials (1.6 s in launch, more with a
# remote MLflow); short, since the workers no slot takes hold memory until then (230 MB each).
IDLE_WORKER_KEPT_MS = 10_000


def start_ray(address: str | None, plugins: Sequence[str] = (), num_cpus: int | None = None, preload: Sequence[str] = ()) -> bool:
    """Connect to ``address`` or start local Ray; False if Ray was already running in this process.
    The ``--plugin`` modules' packages are copied to every worker (Ray's runtime environment), so
    code that is installed nowhere runs on a cluster's other machines too. Local Ray declares
    ``num_cpus`` CPUs (default: this machine's; more makes virtual slots, as Ray's scalability
    tests do). A Ctrl-C while Ray starts waits until it is up, then shuts it down and raises
    KeyboardInterrupt.

    Local Ray starts a few idle workers with itself; a slot's first trial actor takes one if
    neither the job nor the actor has a runtime environment (``--plugin`` gives the job one), so
    no worker set-up hook is used, and the sweep drops Ray Tune's default actor environment
    (``launcher.tune_environment``). Given ``preload`` modules, those workers import them while
    the driver sets the sweep up, and are kept while it does (BENCHMARKS.md, section 1); not with
    ``--plugin``, whose trial actors cannot take them. A cluster's nodes take such settings from
    their own ``ray start``."""
    if ray.is_initialized():
        return False
    address = ray_address(address)
    runtime_env = {"py_modules": shipped_modules(plugins)} if plugins else {}
    try:
        with ctrl_c_deferred():
            if address is None:
                use_session_token()
                ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, logging_level=logging.WARNING,
                         runtime_env=runtime_env or None, _system_config=worker_start_config(() if plugins else preload))  # fmt: skip
            else:
                connect_ray(address, runtime_env or None)
    except KeyboardInterrupt:
        ray.shutdown()
        raise
    return True


def worker_start_config(preload: Sequence[str]) -> dict[str, Any]:
    """Local Ray's system config for its idle workers: import ``preload`` as they start, and wait
    for the sweep's first trials; Ray's defaults without ``preload``."""
    if not preload:
        return {}
    # Ray ends a worker idle for over a second once no CPU is free for it, and Tune's placement
    # groups take every CPU before the first trial actor is placed: Ray would end the idle workers
    # and start new ones for the actors.
    config = {"preload_python_modules": list(preload), "idle_worker_killing_time_threshold_ms": IDLE_WORKER_KEPT_MS}
    return {key: value for key, value in config.items() if f"RAY_{key}" not in os.environ}  # the user's own win


def ray_address(given: str | None) -> str | None:
    """``--address`` if given, else Ray's own ``RAY_ADDRESS`` (as ``ray.init`` reads it), else None: local Ray."""
    return given or os.environ.get(ADDRESS_ENV) or None


def connect_ray(address: str, runtime_env: Mapping[str, Any] | None = None) -> None:
    """Join the cluster at ``address``; a refused or missing token is the user's to fix, so say how."""
    try:
        ray.init(address=address, logging_level=logging.WARNING, runtime_env=runtime_env)
    except (ConnectionError, ray.exceptions.AuthenticationError) as error:
        if not _about_the_token(error):
            raise
        raise ConfigError(
            f"the Ray cluster at {address} needs its token: set {AUTH_MODE_ENV}=token and {AUTH_TOKEN_ENV} "
            "(or RAY_AUTH_TOKEN_PATH) to the token its nodes were started with"
        ) from None


def _about_the_token(error: BaseException | None) -> bool:
    """Ray wraps the refusal in a ConnectionError whose cause quotes it; follow the chain."""
    while error is not None:
        if isinstance(error, ray.exceptions.AuthenticationError) or "InvalidAuthToken" in str(error):
            return True
        error = error.__cause__ or error.__context__
    return False


def use_session_token() -> None:
    """Token authentication for local Ray, with a token that lives only as long as this process.

    Ray's servers (GCS, raylet, workers) listen on every interface whatever node address they are
    given, so the token is what keeps other machines out. Left to itself, ``ray.init`` would use
    ~/.ray/auth_token, creating it world-readable if missing and shared by every local cluster; a
    token of our own reaches Ray's processes through the environment they inherit and is written
    nowhere. A RAY_AUTH_MODE the user set is respected (``disabled`` with a warning).
    """
    mode = os.environ.get(AUTH_MODE_ENV)
    if mode is not None:
        if mode.lower() != "token":
            logger.warning("%s=%s: local Ray's servers accept anyone who can reach this machine", AUTH_MODE_ENV, mode)
        return
    os.environ[AUTH_MODE_ENV] = "token"
    os.environ.setdefault(AUTH_TOKEN_ENV, secrets.token_hex(32))
    # Ray reads both settings once, when it is imported; its own switch to token mode reloads
    # them in the same way (ray._private.authentication.authentication_token_setup).
    from ray._raylet import AuthenticationTokenLoader, Config

    Config.initialize("")
    AuthenticationTokenLoader.instance().reset_cache()


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
