"""Running the `sweeper` CLI in fresh processes, as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping


# Defaults users set for their own work, and the token a local Ray started in the test process
# leaves in its environment (sweeper.cluster.use_session_token): a test that wants one passes it in ``env``.
NOT_INHERITED = ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "RAY_AUTH_MODE", "RAY_AUTH_TOKEN")


def environment(workdir: Path, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment, without NOT_INHERITED, the cache under ``workdir``, then ``env``."""
    inherited = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED}
    return {**inherited, "SWEEPER_CACHE_DIR": str(workdir / "cache"), **(env or {})}


def sweeper(workdir: Path, *arguments: str, env: Mapping[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the CLI to completion."""
    return subprocess.run([sys.executable, "-m", "sweeper", *arguments], cwd=workdir, env=environment(workdir, env),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start_sweeper(workdir: Path, *arguments: str, env: Mapping[str, str] | None = None, log: Path) -> subprocess.Popen:
    """Start the CLI in the background (its own session, so it can be killed alone), output to ``log``."""
    return subprocess.Popen([sys.executable, "-m", "sweeper", *arguments], cwd=workdir, env=environment(workdir, env),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
