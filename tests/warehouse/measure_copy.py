"""Rows/s into PostgreSQL: our COPY path vs pandas ``to_sql`` on the same ~200k rows (run by hand).

usage: python tests/warehouse/measure_copy.py [ROWS]   (needs PostgreSQL on 127.0.0.1:5432)
Not a test: timings depend on the machine; the numbers go into the report, not an assertion.
"""

from __future__ import annotations

import sys
import time
import uuid

import psycopg
from sqlalchemy import create_engine
from warehouse_frames import events_frame

from leopard_etl.warehouse import Warehouse
from leopard_etl.warehouse.bulk import bulk_insert, to_arrow
from leopard_etl.warehouse.schema import source_event


def main(n_rows: int) -> None:
    admin = "host=127.0.0.1 user=postgres dbname=postgres"
    db = f"leopard_measure_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{db}"')
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{db}"
    try:
        frame = events_frame(list(range(1, n_rows // 4 + 1)))
        frame["content_hash"] = "0" * 64
        frame["run_id"] = "measure"
        with Warehouse(url, "copy_path") as wh:
            wh.migrate()
            t0 = time.perf_counter()
            data = to_arrow(frame, source_event)
            with wh._tx() as conn:
                bulk_insert(conn, wh.q("source_event"), data)
            copy_s = time.perf_counter() - t0
        with Warehouse(url, "to_sql_path") as wh:
            wh.migrate()
        engine = create_engine(url)
        t0 = time.perf_counter()
        frame.to_sql(
            "source_event", engine, schema="to_sql_path", if_exists="append", index=False, chunksize=10_000
        )
        to_sql_s = time.perf_counter() - t0
        engine.dispose()
        n = len(frame)
        print(f"rows={n}")
        print(f"COPY (arrow->csv->COPY FROM STDIN): {copy_s:.2f} s = {n / copy_s:,.0f} rows/s")
        print(f"pandas to_sql (executemany, chunks of 10k): {to_sql_s:.2f} s = {n / to_sql_s:,.0f} rows/s")
        print(f"ratio: {to_sql_s / copy_s:.1f}x")
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 200_000)
