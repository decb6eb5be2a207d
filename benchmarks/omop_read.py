"""OMOP extraction (+ derivation) on a synthetic CDM in DuckDB and PostgreSQL, against bare scans.

``read_omop`` pushes concept filters into SQL and streams rows into events; its
rows/s is set against ``SELECT count(*)`` over the same clinical tables (the cheapest
full pass the database can make, as the brief asks) and against fetching every column
of every row into Python (``SELECT *`` + ``fetchall``), the floor of any extraction
that reads the rows in Python. Derivation (``cohort.derive``) is timed on the events
read, so "extract + derive" is the whole OMOP side of a run minus writing outputs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from .datasets import Datasets, Size
from .measure import Figure, Skip, median_time, need, ratio, skipped
from .postgres import fresh_database

BENCH = "omop_read"
CLINICAL = (
    "person", "death", "observation_period", "condition_occurrence", "procedure_occurrence",
    "drug_exposure", "measurement", "observation", "episode",
)


def _scan(url: str, schema: str, what: str) -> Callable[[], int]:
    """Callable returning rows seen by a bare ``count(*)`` or ``SELECT *`` pass over CLINICAL."""
    sqlalchemy = need("sqlalchemy")

    def scan() -> int:  # a new engine per pass, as read_omop opens one per read
        total = 0
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.connect() as conn:
                for table in CLINICAL:
                    sql = f'SELECT {"count(*)" if what == "count" else "*"} FROM "{schema}"."{table}"'
                    result = conn.exec_driver_sql(sql)
                    total += int(result.scalar()) if what == "count" else len(result.fetchall())
        finally:
            engine.dispose()
        return total

    return scan


def _figures(label: str, url: str, size: Size) -> list[Figure]:
    read_omop = need("leopard_etl.sources.omop", "read_omop")
    event_sink = need("leopard_etl.events", "EventSink")
    mappings = need("leopard_etl.mappings")
    matcher = mappings.CodeMatcher(mappings.load_mappings())

    def extract() -> Any:
        sink = event_sink()
        read_omop(url, matcher, sink, cdm_schema="cdm", vocab_schema="vocab")
        return sink

    t_read, read_s, sink = median_time(extract, size.repeats)
    rows = int(sink.stats.read)
    t_count, count_s, counted = median_time(_scan(url, "cdm", "count"), size.repeats)
    t_fetch, fetch_s, fetched = median_time(_scan(url, "cdm", "fetch"), size.repeats)
    rate_read, rate_count, rate_fetch = rows / t_read, counted / t_count, fetched / t_fetch
    figures = [
        Figure(
            BENCH, f"{label}: read_omop vs SELECT count(*)", rate_read, "rows/s", rate_count,
            "count(*) rows/s", ratio(rate_read, rate_count),
            note=f"{rows} rows read, {len(sink.events)} events; {counted} rows in the clinical tables",
            samples={"read_s": read_s, "count_s": count_s},
        ),
        Figure(
            BENCH, f"{label}: read_omop vs SELECT * fetchall", rate_read, "rows/s", rate_fetch,
            "fetchall rows/s", ratio(rate_read, rate_fetch),
            note="reference floor: every column of every row into Python tuples",
            samples={"fetch_s": fetch_s},
        ),
    ]
    try:
        frames = need("leopard_etl.pipeline", "frames")
        derive = need("leopard_etl.cohort", "derive")
        rules = need("leopard_etl.config", "Rules")()
        events, patients, _ = frames(sink)
        t_derive, derive_s, result = median_time(
            lambda: derive(events, patients, rules, matcher.mappings, "omop"), size.repeats
        )
        t_both = t_read + t_derive
        figures.append(
            Figure(
                BENCH, f"{label}: read_omop + derive vs SELECT count(*)", rows / t_both, "rows/s", rate_count,
                "count(*) rows/s", ratio(rows / t_both, rate_count),
                note=f"derive alone {t_derive:.2f} s for {len(result.patients_csv)} screened patients "
                f"({len(events)} events)",
                samples={"derive_s": derive_s},
            )
        )
    except Skip as why:
        figures.append(skipped(BENCH, f"{label}: read_omop + derive", str(why)))
    return figures


def _postgres(data: Datasets, size: Size) -> list[Figure]:
    load_omop_csv = need("leopard_etl.synth", "load_omop_csv")
    sqlalchemy = need("sqlalchemy")
    folder: Path = data.get("omop-csv", size.omop_patients)
    with fresh_database("omop") as url:
        engine = sqlalchemy.create_engine(url)
        try:
            with engine.begin() as conn:
                load_omop_csv(conn, folder, "cdm", "vocab")
                conn.exec_driver_sql("ANALYZE")
        finally:
            engine.dispose()
        return _figures("PostgreSQL", url, size)


def run(data: Datasets, size: Size) -> list[Figure]:
    figures: list[Figure] = []
    try:
        folder = data.get("omop-duckdb", size.omop_patients)
        figures += _figures("DuckDB", f"duckdb:///{folder / 'omop.duckdb'}", size)
    except Skip as why:
        figures.append(skipped(BENCH, "DuckDB: read_omop", str(why)))
    try:
        figures += _postgres(data, size)
    except Skip as why:
        figures.append(skipped(BENCH, "PostgreSQL: read_omop", str(why)))
    return figures
