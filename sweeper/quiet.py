"""Library chatter kept off the console: what users act on is printed, the rest is not."""
from __future__ import annotations

import contextlib
import io
import logging
from typing import Iterator


@contextlib.contextmanager
def quiet(*loggers: str, stderr: bool = False) -> Iterator[None]:
    """``loggers`` (by name) report only errors during the block; with ``stderr``, what the block
    prints to stderr directly (progress bars, MLflow's eprint) is dropped too: its failures still
    raise."""
    named = [logging.getLogger(name) for name in loggers]
    levels = [log.level for log in named]
    for log in named:
        log.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stderr(io.StringIO()) if stderr else contextlib.nullcontext():
            yield
    finally:
        for log, level in zip(named, levels):
            log.setLevel(level)
