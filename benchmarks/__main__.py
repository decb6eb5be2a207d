"""``python -m benchmarks <name>|all --size small|large``: run, print the table, write results/*.json.

A benchmark whose code under test is missing or fails reports a skipped row with the
reason instead of stopping the others: the run always ends with a table.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from . import cli_start, end_to_end, fhir_read, load, omop_read, profiles
from .datasets import SIZES, Datasets, Size
from .measure import Figure, Skip, print_table, skipped, write_results

Bench = Callable[[Datasets, Size], list[Figure]]

#: cheap, data-free first; the end-to-end runs last because they are the longest
BENCHES: dict[str, Bench] = {
    "cli_start": cli_start.run,
    "fhir_read": fhir_read.run,
    "omop_read": omop_read.run,
    "load": load.run,
    "profile": profiles.run,
    "end_to_end": end_to_end.run,
}


def _run_one(name: str, bench: Bench, data: Datasets, size: Size) -> list[Figure]:
    start = time.perf_counter()
    try:
        figures = bench(data, size)
    except Skip as why:
        figures = [skipped(name, name, str(why))]
    except Exception as exc:  # code under test failing is a result, not a crash
        first = (str(exc).strip().splitlines() or [""])[0]
        figures = [skipped(name, name, f"failed: {type(exc).__name__}: {first}")]
    elapsed = time.perf_counter() - start
    path = write_results(name, size.name, figures, {"elapsed_s": round(elapsed, 2)})
    print(f"{name}: {elapsed:.1f} s → {path.name}", flush=True)
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("name", choices=["all", *BENCHES], help="benchmark to run")
    parser.add_argument("--size", choices=list(SIZES), default="small")
    args = parser.parse_args(argv)
    size = SIZES[args.size]
    names = list(BENCHES) if args.name == "all" else [args.name]
    data = Datasets()
    start = time.perf_counter()
    figures: list[Figure] = []
    try:
        for name in names:
            figures += _run_one(name, BENCHES[name], data, size)
    finally:
        data.close()
    print_table(figures, f"leopard-etl benchmarks, size {size.name} ({time.perf_counter() - start:.0f} s)")
    for f in figures:
        if f.note and f.skipped is None:
            print(f"- {f.bench} / {f.figure}: {f.note}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
