"""Ctrl-C held back during work that must not be cut in half, then raised."""
from __future__ import annotations

import os
import signal

import pytest

from sweeper.interrupts import ctrl_c_deferred


def test_a_ctrl_c_during_the_block_is_raised_when_it_ends():
    finished = []
    with pytest.raises(KeyboardInterrupt):
        with ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append(True)
    assert finished == [True]


def test_a_ctrl_c_wins_over_an_error_of_the_block():
    """torch.export, for one, fails when interrupted: the error must not hide the Ctrl-C."""
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt) as raised:
        with ctrl_c_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            raise ValueError("the block failed")
    assert isinstance(raised.value.__context__, ValueError)
    assert signal.getsignal(signal.SIGINT) is before


def test_without_a_ctrl_c_the_blocks_error_passes_unchanged():
    with pytest.raises(ValueError, match="the block failed"):
        with ctrl_c_deferred():
            raise ValueError("the block failed")
