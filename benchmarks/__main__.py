"""``python -m benchmarks {all,orchestration,scale,trainable,promotion,attention,latency,learning,calibration,search_quality,synthetic_search,pareto} [--quick]``.

Writes ``OUT/NAME.json`` and ``OUT/NAME.png`` per measurement (``OUT`` = ./benchmark-results),
``OUT/summary.json`` after ``all``, and prints the summary table at the end. ``all`` keeps one
local Ray session up for every measurement after those that start their own (OWN_RAY).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import time
from pathlib import Path

from benchmarks import MEASUREMENTS
from benchmarks.common import Row, format_table, machine, ray_session, run_measurement, write_json

OWN_RAY = ("orchestration", "scale")  # they run first: one times Ray's start, one declares virtual CPUs


def main(argv: list[str] | None = None) -> None:
    arguments = parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("benchmarks").setLevel(logging.INFO)
    names = MEASUREMENTS if arguments.measurement == "all" else (arguments.measurement,)
    size = "tiny" if arguments.tiny else "quick" if arguments.quick else "default"
    start = time.perf_counter()
    payloads = []
    with contextlib.ExitStack() as shared:
        for name in names:
            if name not in OWN_RAY and len(names) > 1:
                shared.enter_context(ray_session())  # starts Ray once, after the OWN_RAY ones
            measure = importlib.import_module(f"benchmarks.{name}").measure
            payloads.append(run_measurement(name, measure, size, arguments.out))
    wall_s = time.perf_counter() - start
    if arguments.measurement == "all":
        write_json(arguments.out / "summary.json", {
            "size": size, "wall_s": wall_s, "machine": machine(),
            "load": {payload["name"]: payload["load"] for payload in payloads},
            "summary": {payload["name"]: payload["summary"] for payload in payloads},
        })  # fmt: skip
    rows = [(payload["name"], Row(**row)) for payload in payloads for row in payload["summary"]]
    print(f"\n{format_table(rows)}\n\n{size} run of {', '.join(names)}: {wall_s:.0f} s; results in {arguments.out}/")


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("measurement", choices=("all", *MEASUREMENTS))
    sizes = parser.add_mutually_exclusive_group()
    sizes.add_argument("--quick", action="store_true", help="smaller sizes: `all` in about 10 minutes on 2 cores")
    sizes.add_argument("--tiny", action="store_true", help="smallest sizes, for the smoke test; numbers meaningless")
    parser.add_argument("--out", type=Path, default=Path("benchmark-results"), help="results folder (%(default)s)")
    return parser


if __name__ == "__main__":
    main()
