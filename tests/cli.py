"""Running the `sweeper` CLI in fresh processes, as a user would."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Mapping


def _environment(workdir: Path, env: Mapping[str, str] | None) -> dict[str, str]:
    return {**os.environ, "SWEEPER_CACHE_DIR": str(workdir / "cache"), **(env or {})}


def sweeper(workdir: Path, *arguments: str, env: Mapping[str, str] | None = None, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the CLI to completion."""
    return subprocess.run([sys.executable, "-m", "sweeper", *arguments], cwd=workdir, env=_environment(workdir, env),
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start_sweeper(workdir: Path, *arguments: str, env: Mapping[str, str] | None = None, log: Path) -> subprocess.Popen:
    """Start the CLI in the background (its own session, so it can be killed alone), output to ``log``."""
    return subprocess.Popen([sys.executable, "-m", "sweeper", *arguments], cwd=workdir, env=_environment(workdir, env),
                            stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
