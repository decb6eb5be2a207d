"""Benchmark sizes and the synthetic inputs they need, generated once per run.

Generating synthetic patients costs seconds per thousand, so every dataset is made
at most once per invocation (in a temporary folder removed at exit) and shared by
the benchmarks that read it. ``small`` is sized so that ``all`` ends in under two
minutes on a shared 2-core machine; ``large`` is for a person with time (its 10×N end-to-end
input holds ≥ 1 M resources, issue 14).

Formats are the generator's (``fhir-ndjson``, ``omop-duckdb`` …) plus ``fhir-cohort``: the shape of
a held-out site cohort, NDJSON with one large transaction Bundle (:mod:`benchmarks.cohort`).
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .measure import need


@dataclass(frozen=True)
class Size:
    name: str
    #: end to end: patients at N and 10×N
    e2e_patients: tuple[int, int]
    #: FHIR reader throughput dataset (reuses the e2e 10×N set when equal)
    fhir_patients: int
    #: dataset profiled once with cProfile (reuses an e2e set when equal)
    profile_patients: int
    #: resources validated with fhir.resources (a sample: ~350 µs each)
    fhir_model_sample: int
    omop_patients: int
    load_rows: int
    #: rows timed through pandas ``to_sql`` (row-at-a-time executemany is slow; rates are compared)
    to_sql_rows: int
    cli_runs: int
    repeats: int


SIZES = {
    "small": Size("small", (200, 2_000), 2_000, 200, 1_500, 600, 100_000, 5_000, 10, 3),
    "large": Size("large", (2_000, 20_000), 10_000, 10_000, 5_000, 10_000, 1_000_000, 200_000, 20, 5),
}


class Datasets:
    """Synthetic inputs by (format, patients), generated lazily with seed 1."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="leopard-bench-"))
        self._made: dict[tuple[str, int], Path] = {}
        #: what a writer said about a dataset (``fhir-cohort``: resources, Bundle bytes)
        self.summaries: dict[tuple[str, int], dict[str, Any]] = {}

    def get(self, fmt: str, patients: int) -> Path:
        """Folder holding ``fmt`` for ``patients`` (for ``omop-duckdb``: the folder of omop.duckdb)."""
        key = (fmt, patients)
        if key not in self._made:
            out = self.root / f"{fmt}-{patients}"
            if fmt == "fhir-cohort":
                from .cohort import write_cohort

                self.summaries[key] = write_cohort(patients, out)
            else:
                generate = need("leopard_etl.synth", "generate")
                generate(patients=patients, seed=1, out=out, fmt=fmt)
            self._made[key] = out
        return self._made[key]

    def scratch(self, name: str) -> Path:
        path = self.root / "scratch" / name
        path.mkdir(parents=True, exist_ok=True)
        return path

    def close(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)
