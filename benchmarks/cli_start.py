"""CLI start-up: ``leopard-etl --help`` against ``python -c pass``, runs interleaved, medians.

Start-up is what a person feels on every command and what CI pays per test that
shells out; the CLI imports heavy packages (pandas, SQLAlchemy) only inside the
command that needs them, and this figure guards that.
"""

from __future__ import annotations

import statistics
import sys

from .datasets import Datasets, Size
from .end_to_end import cli_command, run_child
from .measure import Figure, Skip, need, ratio, skipped

BENCH = "cli_start"


def run(data: Datasets, size: Size) -> list[Figure]:
    del data  # no input needed
    try:
        need("leopard_etl.cli", "main")
    except Skip as why:
        return [skipped(BENCH, "leopard-etl --help start-up", str(why))]
    commands = {
        "script": [*cli_command(), "--help"],
        "module": [sys.executable, "-m", "leopard_etl.cli", "--help"],
        "pass": [sys.executable, "-c", "pass"],
    }
    samples: dict[str, list[float]] = {k: [] for k in commands}
    for _ in range(size.cli_runs):
        for name, args in commands.items():
            wall, _, code, last = run_child(args)
            if code != 0:
                reason = f"{' '.join(args)} exited {code}: {last}"
                return [skipped(BENCH, "leopard-etl --help start-up", reason)]
            samples[name].append(wall)
    base = statistics.median(samples["pass"])
    figures = []
    labels = {"script": "leopard-etl --help (venv script)", "module": "python -m leopard_etl.cli --help"}
    for name, label in labels.items():
        med = statistics.median(samples[name])
        figures.append(
            Figure(
                BENCH, label, med, "s", base, "s python -c pass", ratio(med, base), "<=", 0.3, "value",
                note=f"median of {size.cli_runs} interleaved runs; own cost above the interpreter "
                f"{med - base:.3f} s",
                samples={name: samples[name], "pass": samples["pass"]},
            )
        )
    return figures
