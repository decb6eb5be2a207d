"""Putting the OMOP rows somewhere: a DuckDB file, CSV files, or any SQLAlchemy connection from CSV.

Tables are always created through :func:`leopard_etl.sources.omop.cdm.create_cdm`, so the
column set is the one the adapter expects. Bulk paths: DuckDB inserts from registered
DataFrames, PostgreSQL uses COPY; other dialects fall back to executemany.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pandas as pd
from sqlalchemy import Date, DateTime, Float, Integer, MetaData, Table, create_engine
from sqlalchemy.engine import Connection

from ..errors import SourceError
from ..sources.omop.cdm import cdm_metadata, create_cdm
from .omop import Row

__all__ = ["load_omop_csv", "write_omop_csv", "write_omop_duckdb"]


def _create(conn: Connection, version: str, cdm_schema: str | None, vocab_schema: str | None) -> MetaData:
    """The CDM tables, with ``death.death_date`` nullable: a death with unknown date (spec §1 v2) is a
    row without it, which the official DDL's NOT NULL would refuse."""
    md = create_cdm(conn, version, cdm_schema, vocab_schema)
    death = next((t for t in md.sorted_tables if t.name == "death"), None)
    if (
        death is not None
        and not death.c.death_date.nullable
        and conn.dialect.name in ("duckdb", "postgresql")
    ):
        where = f'"{death.schema}"."death"' if death.schema else '"death"'
        conn.exec_driver_sql(f"ALTER TABLE {where} ALTER COLUMN death_date DROP NOT NULL")
    return md


def _check_tables(md: MetaData, rows: dict[str, list[Row]]) -> None:
    """Every rendered table exists in the CDM definition (rows are never dropped silently)."""
    missing = sorted(t for t, r in rows.items() if r and t not in {x.name for x in md.sorted_tables})
    if missing:
        raise ValueError(f"the CDM definition has no table {', '.join(missing)} for the synthetic rows")


def _frame(table: Table, rows: list[Row]) -> pd.DataFrame:
    names = [c.name for c in table.columns]
    return pd.DataFrame([[r.get(n) for n in names] for r in rows], columns=names, dtype=object)


def write_omop_duckdb(
    rows: dict[str, list[Row]], path: Path, version: str, cdm_schema: str, vocab_schema: str
) -> dict[str, int]:
    """Create the CDM in a (new) DuckDB file and fill it; returns row counts per table."""
    if path.exists():
        path.unlink()
    engine = create_engine(f"duckdb:///{path}")
    counts: dict[str, int] = {}
    try:
        with engine.begin() as conn:
            md = _create(conn, version, cdm_schema, vocab_schema)
            _check_tables(md, rows)
            raw = conn.connection.dbapi_connection
            for table in md.sorted_tables:
                data = rows.get(table.name, [])
                counts[table.name] = len(data)
                if not data:
                    continue
                raw.register("synth_rows", _frame(table, data))  # type: ignore[union-attr]
                cols = ", ".join(f'"{c.name}"' for c in table.columns)
                conn.exec_driver_sql(
                    f'INSERT INTO "{table.schema}"."{table.name}" ({cols}) SELECT {cols} FROM synth_rows'
                )
                raw.unregister("synth_rows")  # type: ignore[union-attr]
    finally:
        engine.dispose()
    return dict(sorted(counts.items()))


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return str(value)


def write_omop_csv(rows: dict[str, list[Row]], folder: Path, version: str) -> dict[str, int]:
    """One ``<table>.csv`` per CDM table (header row, empty = NULL); returns row counts."""
    folder.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    md = cdm_metadata(version)
    _check_tables(md, rows)
    for table in md.sorted_tables:
        names = [c.name for c in table.columns]
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(names)
        data = rows.get(table.name, [])
        for r in data:
            writer.writerow([_text(r.get(n)) for n in names])
        (folder / f"{table.name}.csv").write_text(buf.getvalue(), encoding="utf-8")
        counts[table.name] = len(data)
    return dict(sorted(counts.items()))


def _parse(table: Table, record: dict[str, str]) -> dict[str, object]:
    out: dict[str, object] = {}
    for col in table.columns:
        text = record.get(col.name, "")
        if text == "":
            out[col.name] = None
        elif isinstance(col.type, Integer):
            out[col.name] = int(text)
        elif isinstance(col.type, Float):
            out[col.name] = float(text)
        elif isinstance(col.type, DateTime):
            out[col.name] = dt.datetime.fromisoformat(text)
        elif isinstance(col.type, Date):
            out[col.name] = dt.date.fromisoformat(text)
        else:
            out[col.name] = text
    return out


def load_omop_csv(
    conn: Connection,
    folder: Path,
    cdm_schema: str | None = "cdm",
    vocab_schema: str | None = "vocab",
    cdm_version: str | None = None,
) -> dict[str, int]:
    """Create the CDM tables on ``conn`` and load the CSV files of ``write_omop_csv``.

    The CDM version is read from the files when not given (``episode.csv`` only in 5.4).
    Returns row counts per table. The caller owns the transaction.
    """
    folder = Path(folder)
    if not (folder / "person.csv").is_file():
        raise SourceError(
            f"no OMOP CSV files in {folder}", fix="point at the folder written by 'synth --format omop-csv'"
        )
    version = cdm_version or ("5.4" if (folder / "episode.csv").is_file() else "5.3")
    md = _create(conn, version, cdm_schema, vocab_schema)
    counts: dict[str, int] = {}
    for table in md.sorted_tables:
        path = folder / f"{table.name}.csv"
        if not path.is_file():
            counts[table.name] = 0
            continue
        if conn.dialect.name == "postgresql":
            counts[table.name] = _copy_postgres(conn, table, path)
            continue
        with path.open(encoding="utf-8", newline="") as fh:
            records = [_parse(table, r) for r in csv.DictReader(fh)]
        for start in range(0, len(records), 5000):
            conn.execute(table.insert(), records[start : start + 5000])
        counts[table.name] = len(records)
    return dict(sorted(counts.items()))


def _copy_postgres(conn: Connection, table: Table, path: Path) -> int:
    schema = f'"{table.schema}".' if table.schema else ""
    with path.open(encoding="utf-8") as fh:
        header = fh.readline().strip()
        body = fh.read()
    cols = ", ".join(f'"{c}"' for c in header.split(","))
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    with cursor.copy(f'COPY {schema}"{table.name}" ({cols}) FROM STDIN WITH (FORMAT csv)') as copy:
        copy.write(body)
    return body.count("\n")
