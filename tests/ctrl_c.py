"""Ctrl-C as a terminal sends it (SIGINT to the command's process group), and what a command must
do then: end with one line and exit code 130, leaving no process behind."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import psutil

INTERRUPTED = 130


@dataclass(frozen=True)
class Interrupted:
    returncode: int | None
    output: str
    leftovers: list[str]  # processes of the command still alive after it exited


def wait_until(condition: Callable[[], bool], process: subprocess.Popen, what: str, timeout_s: float = 300) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert process.poll() is None, f"the command ended (exit code {process.returncode}) before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def ctrl_c(process: subprocess.Popen, log: Path) -> Interrupted:
    """SIGINT to the whole foreground group, as Ctrl-C in a terminal; then wait for the command to end."""
    tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    os.killpg(process.pid, signal.SIGINT)
    try:
        returncode = process.wait(timeout=120)
    except subprocess.TimeoutExpired:
        returncode = None
    _, alive = psutil.wait_procs(tree, timeout=15)
    leftovers = [_describe(p) for p in alive]
    for leftover in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            leftover.kill()  # psutil refuses a pid that was reused meanwhile
    return Interrupted(returncode, log.read_text(), [p for p in leftovers if p])


def _describe(process: psutil.Process) -> str | None:
    """Its command line, or None if it is gone or a zombie (exited, not yet reaped)."""
    try:
        return None if process.status() == psutil.STATUS_ZOMBIE else " ".join(process.cmdline()[:3])
    except psutil.NoSuchProcess:
        return None


def assert_one_line_and_130(interrupted: Interrupted, advice: str) -> None:
    assert interrupted.returncode == INTERRUPTED, interrupted.output[-3000:]
    assert "Traceback" not in interrupted.output, interrupted.output[-3000:]
    assert interrupted.output.rstrip().splitlines()[-1] == f"sweeper: interrupted; {advice}"
    assert not interrupted.leftovers, f"left running after Ctrl-C: {interrupted.leftovers}"
