"""Warehouse load: the bulk path (Arrow → PostgreSQL COPY / DuckDB Arrow scan) against pandas ``to_sql``.

Both paths load the same frame, shaped like the event store (``source_event``), into
the same freshly created table. The bulk path is timed the way the warehouse uses
it: typing the frame into Arrow (``warehouse.bulk.to_arrow``) plus
``bulk_insert`` plus commit. ``to_sql`` (default ``method=None``: executemany) is
row-at-a-time and slow, so it loads a leading slice of the frame once and the two are
compared in rows per second.
"""

from __future__ import annotations

import datetime as dt
import statistics
from typing import Any

from .datasets import Datasets, Size
from .measure import Figure, Skip, need, ratio, skipped, timed
from .postgres import fresh_database

BENCH = "load"


def event_frame(rows: int) -> Any:
    """A deterministic frame with the columns and value shapes of ``source_event``."""
    np = need("numpy")
    pd = need("pandas")
    rng = np.random.default_rng(1)
    kinds = np.array(["condition", "procedure", "drug_admin", "observation"])
    groups = np.array(["lesion", "radiotherapy", "chemo;platinum", "durvalumab", "nsclc", "stage"])
    i = np.arange(rows)
    start = dt.date(2018, 1, 1)
    days = rng.integers(0, 2_000, rows)
    has_end = rng.random(rows) < 0.3
    has_fx = rng.random(rows) < 0.2
    return pd.DataFrame(
        {
            "source": [f"fhir:Resource/{k:09d}" for k in i],
            "patient_id": [f"{k // 40:07d}" for k in i],
            "kind": kinds[i % len(kinds)],
            "groups": groups[i % len(groups)],
            "system": "http://snomed.info/sct",
            "code": [str(100_000_000 + k % 977) for k in i],
            "start": [start + dt.timedelta(days=int(d)) for d in days],
            "end": [
                start + dt.timedelta(days=int(d) + 30) if e else None
                for d, e in zip(days, has_end, strict=True)
            ],
            "precision": "day",
            "site": np.where(i % 3 == 0, "lung", None),
            "laterality": np.where(i % 5 == 0, "left", None),
            "body_site": None,
            "value": np.where(i % 7 == 0, "IIIA", None),
            "lesion_id": None,
            "ingredient": np.where(i % 4 == 2, "cisplatin", None),
            "fractions": pd.Series(np.where(has_fx, 30, 0), dtype="Int64").where(has_fx),
            "dose_cgy": np.where(has_fx, 6000.0, np.nan),
            "route": np.where(i % 4 == 2, "code", None),
            "content_hash": [f"{k:064x}" for k in i],
            "run_id": "bench-run",
        }
    )


def _measure(label: str, url: str, frame: Any, size: Size) -> list[Figure]:
    sqlalchemy = need("sqlalchemy")
    bulk = need("leopard_etl.warehouse.bulk")
    table = need("leopard_etl.warehouse.schema", "source_event")
    engine = sqlalchemy.create_engine(url)
    target = bulk.quote_ident(table.name)
    try:
        with engine.begin() as conn:
            table.create(conn)

        def truncate() -> None:
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DELETE FROM {target}")

        def bulk_load() -> int:
            with engine.begin() as conn:
                return int(bulk.bulk_insert(conn, target, bulk.to_arrow(frame, table)))

        bulk_s: list[float] = []
        loaded = 0
        for _ in range(size.repeats):
            truncate()  # not timed: the DELETE before each load is not loading
            seconds, loaded = timed(bulk_load)
            bulk_s.append(seconds)
        t_bulk = statistics.median(bulk_s)
        truncate()
        part = frame.iloc[: size.to_sql_rows]
        t_sql, _ = timed(
            lambda: part.to_sql(table.name, engine, if_exists="append", index=False, chunksize=10_000)
        )
        with engine.connect() as conn:
            in_table = conn.exec_driver_sql(f"SELECT count(*) FROM {target}").scalar()
        if loaded != len(frame) or in_table != len(part):
            raise Skip(f"{label}: loaded {loaded}/{len(frame)} (bulk), {in_table}/{len(part)} (to_sql)")
        rate_bulk, rate_sql = len(frame) / t_bulk, len(part) / t_sql
        path = "COPY FROM STDIN (csv)" if label == "PostgreSQL" else "Arrow scan INSERT … SELECT"
        return [
            Figure(
                BENCH, f"{label}: bulk_insert ({path}) vs pandas to_sql", rate_bulk, "rows/s", rate_sql,
                "to_sql rows/s", ratio(rate_bulk, rate_sql),
                note=f"bulk: {len(frame)} rows incl. to_arrow, median of {size.repeats} "
                f"(~{t_bulk:.2f} s); to_sql: first {len(part)} rows once ({t_sql:.2f} s)",
                samples={"bulk_s": bulk_s, "to_sql_s": [t_sql]},
            )
        ]
    finally:
        engine.dispose()


def run(data: Datasets, size: Size) -> list[Figure]:
    figures: list[Figure] = []
    try:
        frame = event_frame(size.load_rows)
        need("leopard_etl.warehouse.bulk", "bulk_insert")
    except Skip as why:
        return [skipped(BENCH, "bulk_insert vs to_sql", str(why))]
    try:
        url = f"duckdb:///{data.scratch('load') / 'load.duckdb'}"
        figures += _measure("DuckDB", url, frame, size)
    except Skip as why:
        figures.append(skipped(BENCH, "DuckDB: bulk_insert vs to_sql", str(why)))
    try:
        with fresh_database("load") as url:
            figures += _measure("PostgreSQL", url, frame, size)
    except Skip as why:
        figures.append(skipped(BENCH, "PostgreSQL: bulk_insert vs to_sql", str(why)))
    return figures
