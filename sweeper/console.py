"""What a sweep prints while it runs: a status line at most every ``every_s`` seconds and one line
per trial when it ends.

Ray Tune's own console prints a table per status update and a box per trial start and result:
hundreds of lines for a small sweep. This is Ray's ProgressReporter interface, showing what a
person at the terminal acts on: how far the sweep is, the best trial so far, how each trial ended.
"""
from __future__ import annotations

import shutil
import sys
import time
from typing import Any, Mapping, Sequence

from ray.tune import ProgressReporter

from sweeper.sweeps import trial_status

ENDED = ("TERMINATED", "ERROR")
STATUS_EVERY_S = 30.0


class SweepConsole(ProgressReporter):
    """Picklable (Ray keeps it with the experiment and restores it on resume): it holds no stream."""

    def __init__(self, metric: str, mode: str, epochs: int, every_s: float = STATUS_EVERY_S) -> None:
        self.metric, self.mode, self.epochs, self.every_s = metric, mode, epochs, every_s
        self._started = time.time()
        self._last_status = float("-inf")  # the first report shows the status, whatever the monotonic clock's origin
        self._ended: set[str] = set()  # trials whose line is printed
        self._total: int | None = None

    def setup(self, start_time: float | None = None, total_samples: int | None = None, **_: Any) -> None:
        self._started = start_time or time.time()
        self._total = total_samples

    def should_report(self, trials: Sequence[Any], done: bool = False) -> bool:
        return done or bool(self._newly_ended(trials)) or time.monotonic() - self._last_status >= self.every_s

    def report(self, trials: Sequence[Any], done: bool, *sys_info: str) -> None:
        for trial in self._newly_ended(trials):
            print(_fit(self.trial_line(trial)), flush=True)
            self._ended.add(trial.trial_id)
        if done or time.monotonic() - self._last_status >= self.every_s:
            print(_fit(self.status_line(trials)), flush=True)
            self._last_status = time.monotonic()

    def trial_line(self, trial: Any) -> str:
        """``trial_1f02e21b early_stopped after 1/2 epochs (5.1 s): val_mean_error_m 216.3 | heimdall_net_pro, heads 4, ...``"""
        result = trial.last_result or {}
        status = "error" if trial.status == "ERROR" else trial_status(result, self.epochs)
        best = trial.metric_analysis.get(self.metric, {}).get(self.mode)
        value = f"{self.metric} {best:.4g}" if best is not None else f"no {self.metric}"
        return (f"trial {trial.trial_id} {status} after {result.get('epoch', 0)}/{self.epochs} epochs "
                f"({result.get('time_total_s', 0.0):.1f} s): {value} | {config_summary(trial.config)}")  # fmt: skip

    def status_line(self, trials: Sequence[Any]) -> str:
        """``[2:31] 24 trials: 2 running, 4 pending, 18 ended | best val_mean_error_m 210.1: trial_2bb1c5f2, heimdall_net``"""
        states = [trial.status for trial in trials]
        counts = {"running": states.count("RUNNING"), "pending": states.count("PENDING") + states.count("PAUSED"),
                  "ended": sum(states.count(state) for state in ENDED)}  # fmt: skip
        total = max(self._total or 0, len(trials))
        progress = f"[{_clock(time.time() - self._started)}] {total} trials: " + ", ".join(f"{n} {state}" for state, n in counts.items())
        scored = [(trial.metric_analysis[self.metric][self.mode], trial) for trial in trials if self.metric in trial.metric_analysis]
        if not scored:
            return progress
        value, best = (min if self.mode == "min" else max)(scored, key=lambda pair: pair[0])
        return f"{progress} | best {self.metric} {value:.4g}: trial {best.trial_id}, {best.config.get('architecture', '')}"

    def _newly_ended(self, trials: Sequence[Any]) -> list[Any]:
        return [trial for trial in trials if trial.status in ENDED and trial.trial_id not in self._ended]


def config_summary(config: Mapping[str, Any]) -> str:
    """The architecture first, then every other setting, numbers to 3 significant digits."""
    rest = [f"{name} {_short(value)}" for name, value in config.items() if name != "architecture" and value is not None]
    return ", ".join([str(config.get("architecture", "")), *rest])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"


def _fit(line: str) -> str:
    """One terminal line: the config's tail gives way first (the full config is in MLflow). Output
    to a file or a pipe (a log, a CI job) keeps whole lines."""
    if not sys.stdout.isatty():
        return line
    width = shutil.get_terminal_size((160, 24)).columns
    return line if len(line) <= width else line[: width - 3] + "..."
