"""Spark (local mode) against the default engine (DuckDB + pandas) on the same FHIR export.

Both engines read the same synthetic NDJSON export and derive the cohort (the outputs they write
afterwards are the same code and are left out). On one machine the default engine wins: Spark
pays a fixed cost per run (jobs, stages, Python workers, shuffles) on top of the per-record work.
This benchmark measures both at a few sizes, fits ``time = fixed + per_patient * n`` to each, and
prints the ratios and the size from which Spark's fixed cost is under 10% of its run time — from
there on the comparison is per-record throughput, which a cluster multiplies by its cores.

``python -m benchmarks.spark_vs_duckdb [--sizes 200,1000,4000] [--repeats 1]`` (a few minutes);
the session start (JVM) is timed apart and counted in neither engine's runs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .datasets import Datasets, Size
from .measure import Figure, Skip, need, print_table, ratio, write_results

BENCH = "spark_vs_duckdb"
DEFAULT_SIZES = (200, 1_000, 4_000)
RUN_DAY = dt.date(2026, 11, 30)


def _default_run(folder: Path, matcher: Any, rules: Any) -> int:
    """The default engine's read and derivation (pipeline.execute without the writers)."""
    from leopard_etl.partitioned import derive_partitions
    from leopard_etl.sources.fhir import read_fhir
    from leopard_etl.spool import PARTITION_ROWS, EventSpool, SpooledEvents

    with tempfile.TemporaryDirectory(prefix="bench-default-") as tmp:
        spool = EventSpool(Path(tmp))
        spool.run_day = RUN_DAY
        read_fhir(str(folder), matcher, spool)
        spool.close()
        with SpooledEvents(spool) as source:
            cutoff = source.cutoff(
                rules.cutoff, run_day=RUN_DAY, small_cell_excludes_icd=rules.small_cell_excludes_icd
            )
            derivation = derive_partitions(
                source.partitions(PARTITION_ROWS), rules, matcher.mappings, "fhir", cutoff
            )
    return len(derivation.patients_csv)


def _spark_run(
    folder: Path, matcher: Any, cfg: Any, spark: Any, settings: Any
) -> tuple[int, dict[str, float], int]:
    from leopard_etl.engines.spark import run_spark

    with tempfile.TemporaryDirectory(prefix="bench-spark-") as tmp:
        result = run_spark(cfg, matcher, workdir=Path(tmp), settings=settings, run_day=RUN_DAY, spark=spark)
    return len(result.derivation.patients_csv), result.timings, result.stats.read


def _fit(sizes: Sequence[int], times: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``time = fixed + slope * n`` (fixed ≥ 0)."""
    mean_n, mean_t = statistics.fmean(sizes), statistics.fmean(times)
    var = sum((n - mean_n) ** 2 for n in sizes)
    slope = sum((n - mean_n) * (t - mean_t) for n, t in zip(sizes, times, strict=True)) / var if var else 0.0
    return max(0.0, mean_t - slope * mean_n), slope


def measure(data: Datasets, sizes: Sequence[int], repeats: int = 1) -> tuple[list[Figure], dict[str, Any]]:
    need("pyspark")
    from leopard_etl.config import RunConfig
    from leopard_etl.engines.spark import SparkSettings
    from leopard_etl.engines.spark.session import find_java_home, spark_session
    from leopard_etl.mappings import CodeMatcher, load_mappings

    if not find_java_home():
        import shutil

        if not shutil.which("java"):
            raise Skip("no Java runtime for Spark")
    matcher = CodeMatcher(load_mappings())
    settings = SparkSettings.model_validate({"master": "local[*]"})
    start = time.perf_counter()
    spark = spark_session(settings)
    session_s = time.perf_counter() - start
    rows: list[dict[str, Any]] = []
    try:
        # warm-up: the first Spark run of a process pays class loading and worker start-up
        smallest = data.get("fhir-ndjson", min(sizes))
        _spark_run(smallest, matcher, RunConfig(fhir=[str(smallest)]), spark, settings)
        for n in sizes:
            folder = data.get("fhir-ndjson", n)
            cfg = RunConfig(fhir=[str(folder)])
            default_s, spark_s, steps = [], [], []
            records = 0
            for _ in range(repeats):
                t = time.perf_counter()
                screened = _default_run(folder, matcher, cfg.rules)
                default_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                screened_spark, timings, records = _spark_run(folder, matcher, cfg, spark, settings)
                spark_s.append(time.perf_counter() - t)
                steps.append(timings)
                if screened_spark != screened:
                    raise RuntimeError(f"engines disagree at {n} patients: {screened_spark} vs {screened}")
            rows.append(
                {
                    "patients": n,
                    "records": records,
                    "default_s": statistics.median(default_s),
                    "spark_s": statistics.median(spark_s),
                    "spark_steps_s": {k: round(statistics.median(s[k] for s in steps), 2) for k in steps[0]},
                }
            )
    finally:
        spark.stop()
    fixed_spark, per_patient_spark = _fit([r["patients"] for r in rows], [r["spark_s"] for r in rows])
    fixed_default, per_patient_default = _fit([r["patients"] for r in rows], [r["default_s"] for r in rows])
    # Spark's fixed cost is under 10% of its run from n = 9 * fixed / per_patient on
    fixed_matters_until = 9 * fixed_spark / per_patient_spark if per_patient_spark > 0 else None
    figures = [
        Figure(
            bench=BENCH,
            figure=f"{r['patients']} patients: spark / default",
            value=r["spark_s"],
            unit="s",
            baseline=r["default_s"],
            baseline_label="default engine",
            ratio=ratio(r["spark_s"], r["default_s"]),
            note=f"spark steps {r['spark_steps_s']}",
        )
        for r in rows
    ]
    figures.append(
        Figure(
            bench=BENCH,
            figure="per patient (fitted slope): spark / default",
            value=per_patient_spark * 1000,
            unit="ms",
            baseline=per_patient_default * 1000,
            baseline_label="default engine",
            ratio=ratio(per_patient_spark, per_patient_default),
            note="marginal cost per patient once the fixed cost is paid",
        )
    )
    figures.append(
        Figure(
            bench=BENCH,
            figure="spark fixed cost per run (fitted)",
            value=fixed_spark,
            unit="s",
            baseline=fixed_default,
            baseline_label="default engine",
            ratio=ratio(fixed_spark, fixed_default),
            note=(
                f"under 10% of Spark's run time from ~{fixed_matters_until:,.0f} patients on"
                if fixed_matters_until is not None
                else ""
            ),
        )
    )
    extra = {
        "session_start_s": round(session_s, 1),
        "sizes": rows,
        "fit": {
            "spark": {"fixed_s": fixed_spark, "per_patient_ms": per_patient_spark * 1000},
            "default": {"fixed_s": fixed_default, "per_patient_ms": per_patient_default * 1000},
            "spark_fixed_cost_under_10pct_from_patients": fixed_matters_until,
        },
    }
    return figures, extra


def run(data: Datasets, size: Size) -> list[Figure]:
    """For ``python -m benchmarks``: the default sizes, once each."""
    figures, _ = measure(data, DEFAULT_SIZES if size.name == "small" else (1_000, 5_000, 20_000))
    return figures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.spark_vs_duckdb", description=__doc__)
    parser.add_argument(
        "--sizes", default=",".join(str(n) for n in DEFAULT_SIZES), help="patients, comma-separated"
    )
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args(argv)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if len(sizes) < 2:
        parser.error("give at least two sizes (the fit needs them)")
    data = Datasets()
    start = time.perf_counter()
    try:
        figures, extra = measure(data, sizes, args.repeats)
    finally:
        data.close()
    elapsed = time.perf_counter() - start
    path = write_results(BENCH, "custom", figures, {"elapsed_s": round(elapsed, 1), **extra})
    print_table(
        figures,
        f"Spark local vs the default engine ({elapsed:.0f} s, session start {extra['session_start_s']} s)",
    )
    for row in extra["sizes"]:
        print(
            f"- {row['patients']:>6} patients ({row['records']:,} records): "
            f"default {row['default_s']:.1f} s, spark {row['spark_s']:.1f} s "
            f"= {row['spark_s'] / row['default_s']:.1f}x  (spark {row['spark_steps_s']})"
        )
    fit = extra["fit"]
    print(
        f"- fitted: spark {fit['spark']['fixed_s']:.1f} s + {fit['spark']['per_patient_ms']:.2f} ms/patient; "
        f"default {fit['default']['fixed_s']:.1f} s + {fit['default']['per_patient_ms']:.2f} ms/patient"
    )
    threshold = fit["spark_fixed_cost_under_10pct_from_patients"]
    if threshold is not None:
        print(f"- Spark's fixed cost is under 10% of its run from ~{threshold:,.0f} patients")
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
