"""Peak memory of one batch-1 forward pass at a given input length, measured in a fresh process.

On CPU, torch has no allocator statistics, so the process's resident-set high-water mark is read:
each model runs in its own process (nothing else allocated there), the mark is reset after a
short warm-up pass (``/proc/self/clear_refs``, Linux), and the peak is the mark after the real
pass minus the memory held before it. Where the reset is unavailable the mark is not reset and
the number is an upper bound. Weights are random: memory does not depend on their values.

Run as ``python -m sweeper.memory JSON`` (used by :func:`peak_forward_memory_mb`).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping, Sequence

WARMUP_LENGTH = 8


def peak_forward_memory_mb(family: str, config: Mapping[str, Any], context: Mapping[str, Any], length: int,
                           plugins: Sequence[str] = (), timeout_s: float = 600) -> float:  # fmt: skip
    """Peak MB of a batch-1 forward pass with every input's last dimension set to ``length``."""
    job = {"family": family, "plugins": list(plugins), "config": dict(config), "context": dict(context), "length": length}
    completed = subprocess.run([sys.executable, "-m", "sweeper.memory", json.dumps(job, default=str)], capture_output=True, text=True, timeout=timeout_s)
    if completed.returncode != 0:
        raise RuntimeError(f"memory probe of {config.get('architecture')} at length {length} failed: {completed.stderr[-1500:]}")
    return float(completed.stdout.strip().splitlines()[-1])


def status_kb(field: str) -> int:
    """A field of /proc/self/status in kB (VmRSS: resident now, VmHWM: its high-water mark)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak() -> bool:
    """Reset VmHWM to the current resident size (Linux); False where that is unavailable."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _measure(job: Mapping[str, Any]) -> float:
    import torch

    from sweeper.model_folder import example_inputs
    from trainables.families import get_family
    from trainables.train_loop import build_model

    torch.set_num_threads(1)
    model = build_model(get_family(job["family"], job["plugins"]), job["config"], job["context"]).eval()

    def inputs(length: int) -> tuple[torch.Tensor, ...]:
        spec = {name: {**s, "shape": [*s["shape"][:-1], length]} for name, s in job["context"]["input_spec"].items()}
        return example_inputs({"input_spec": spec}, batch=1)

    with torch.no_grad():
        model(*inputs(WARMUP_LENGTH))  # load kernels and libraries before measuring
        long_inputs = inputs(job["length"])
        before_kb = status_kb("VmRSS")
        reset_peak()
        model(*long_inputs)
        return (status_kb("VmHWM") - before_kb) / 1024


if __name__ == "__main__":
    print(f"{_measure(json.loads(sys.argv[1])):.3f}")
