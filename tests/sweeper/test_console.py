"""The sweep's console lines, from Ray trials as the reporter sees them."""
from __future__ import annotations

import sys
from types import SimpleNamespace

from sweeper.console import SweepConsole


def trial(trial_id: str, status: str, epoch: int = 0, best: float | None = None, architecture: str = "heimdall_net") -> SimpleNamespace:
    analysis = {"val_loss": {"min": best, "max": best}} if best is not None else {}
    return SimpleNamespace(trial_id=trial_id, status=status, config={"architecture": architecture, "learning_rate": 0.0012345, "heads": 4},
                           last_result={"epoch": epoch, "time_total_s": 3.25}, metric_analysis=analysis)  # fmt: skip


def test_each_trial_gets_one_line_when_it_ends_and_the_status_names_the_best(capsys):
    console = SweepConsole("val_loss", "min", epochs=4, every_s=3600)
    console.setup(total_samples=5)
    running = [trial("a", "TERMINATED", 4, 0.5), trial("b", "TERMINATED", 2, 0.25, "heimdall_net_pro"), trial("c", "RUNNING", 1, 0.75),
               trial("d", "ERROR", 1), trial("e", "PENDING")]  # fmt: skip
    assert console.should_report(running)
    console.report(running, False)
    console.report(running, True)
    lines = capsys.readouterr().out.splitlines()
    assert lines[:3] == [
        "trial a completed after 4/4 epochs (3.2 s): val_loss 0.5 | heimdall_net, learning_rate 0.00123, heads 4",
        "trial b early_stopped after 2/4 epochs (3.2 s): val_loss 0.25 | heimdall_net_pro, learning_rate 0.00123, heads 4",
        "trial d error after 1/4 epochs (3.2 s): no val_loss | heimdall_net, learning_rate 0.00123, heads 4",
    ]
    assert lines[3].endswith("5 trials: 1 running, 1 pending, 3 ended | best val_loss 0.25: trial b, heimdall_net_pro")
    assert len(lines) == 5 and lines[4].split("] ")[1] == lines[3].split("] ")[1], "done: the status once more, no trial twice"
    assert not console.should_report(running), "nothing new and the status is not due"


def test_lines_are_cut_to_a_terminal_and_kept_whole_in_a_file(capsys, monkeypatch):
    console = SweepConsole("val_loss", "min", epochs=4, every_s=3600)
    ended = [trial("a", "TERMINATED", 4, 0.5)]
    console.report(ended, False)
    whole = capsys.readouterr().out.splitlines()[0]
    monkeypatch.setenv("COLUMNS", "40")
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    SweepConsole("val_loss", "min", epochs=4, every_s=3600).report(ended, False)
    cut = capsys.readouterr().out.splitlines()[0]
    assert len(whole) > 40 and whole.endswith("heads 4") and cut == whole[:37] + "..."
