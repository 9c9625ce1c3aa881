"""Ctrl-C held back while work that must not be cut in half runs (Ray starting, an MLflow write,
torch.export), and the handlers Ray Tune leaves behind put back."""
from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator


@contextlib.contextmanager
def ctrl_c_deferred() -> Iterator[None]:
    """A Ctrl-C during the block is remembered and raised as KeyboardInterrupt once it ends.

    Cut in half, Ray's start-up leaves agents running or crashes at exit, and an MLflow write to
    SQLite leaves its transaction holding the database lock, so that recording the interruption
    itself fails ("database is locked").
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread receives signals
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received:  # also when the block failed: the Ctrl-C wins over its error, which would hide it
            raise KeyboardInterrupt


@contextlib.contextmanager
def signal_handlers_restored(*signals: int) -> Iterator[None]:
    """The handlers of ``signals`` as they were before the block. Ray Tune's fit() installs its own
    Ctrl-C handler and leaves it behind: after a sweep run from Python (a notebook), the next
    Ctrl-C would only end a sweep that has already ended."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {number: signal.getsignal(number) for number in signals}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
