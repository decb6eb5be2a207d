"""Bulk paths into the warehouse: frames become typed Arrow tables, then one set-based write.

Row-by-row INSERTs are what makes loaders slow, so every write goes through one of
two bulk paths on the connection of the current transaction: DuckDB scans a
registered Arrow table (``INSERT … SELECT``), PostgreSQL reads CSV through
``COPY … FROM STDIN`` (psycopg 3). Both see the same Arrow table, typed from the
schema's SQLAlchemy columns, so a frame holding dates as ``datetime.date``,
``datetime64`` or ISO strings loads the same, and the content hash of the event
store does not depend on pandas dtypes.
"""

from __future__ import annotations

import hashlib
import io
import itertools
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
from sqlalchemy import Boolean, Connection, Date, DateTime, Float, Integer, Table

if TYPE_CHECKING:
    import psycopg

__all__ = ["arrow_schema", "bulk_insert", "content_hashes", "drop_stage", "quote_ident", "stage", "to_arrow"]

_COPY_CHUNK = 1 << 20
_stage_names = itertools.count()


def quote_ident(name: str) -> str:
    """Double-quoted SQL identifier (both engines); names come from our schema or a validated config."""
    return '"' + name.replace('"', '""') + '"'


def _arrow_type(column_type: object) -> pa.DataType:
    if isinstance(column_type, Boolean):
        return pa.bool_()
    if isinstance(column_type, DateTime):
        return pa.timestamp("us", tz="UTC")
    if isinstance(column_type, Date):
        return pa.date32()
    if isinstance(column_type, Integer):
        return pa.int64()
    if isinstance(column_type, Float):
        return pa.float64()
    return pa.string()


def arrow_schema(table: Table, columns: Sequence[str] | None = None) -> pa.Schema:
    names = list(columns) if columns is not None else [c.name for c in table.columns]
    return pa.schema([pa.field(n, _arrow_type(table.c[n].type)) for n in names])


def _column(values: pd.Series, target: pa.DataType, name: str) -> pa.Array:
    try:
        return pa.array(values, type=target, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError):
        pass
    try:  # ISO strings, datetime64 with a time part, numeric strings …
        return pa.array(values, from_pandas=True).cast(target, safe=False)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise ValueError(f"column {name!r}: cannot convert values to {target}: {err}") from None


def to_arrow(df: pd.DataFrame, table: Table, columns: Sequence[str] | None = None) -> pa.Table:
    """``df`` typed like ``table`` (all its columns, or ``columns``); a missing column is an error."""
    schema = arrow_schema(table, columns)
    if len(df) == 0:
        return schema.empty_table()
    missing = [n for n in schema.names if n not in df.columns]
    if missing:
        raise ValueError(f"frame for table {table.name!r} lacks columns {missing}")
    arrays = [_column(df[f.name], f.type, f.name) for f in schema]
    return pa.Table.from_arrays(arrays, schema=schema)


def content_hashes(data: pa.Table) -> list[str]:
    """sha256 (hex) of each row's canonical text: typed values joined by U+001F, null as U+0000."""
    if data.num_rows == 0:
        return []
    parts = [pc.fill_null(pc.cast(col, pa.string()), "\x00") for col in data.columns]
    joined = pc.binary_join_element_wise(*parts, "\x1f")
    return [hashlib.sha256(s.encode("utf-8")).hexdigest() for s in joined.to_pylist()]


def _insert_duckdb(conn: Connection, target: str, data: pa.Table) -> None:
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    view = f"_leopard_stage_{next(_stage_names)}"
    dbapi.register(view, data)
    try:
        cols = ", ".join(quote_ident(n) for n in data.schema.names)
        conn.exec_driver_sql(f"INSERT INTO {target} ({cols}) SELECT {cols} FROM {view}")
    finally:
        dbapi.unregister(view)


def _insert_postgresql(conn: Connection, target: str, data: pa.Table) -> None:
    buf = io.BytesIO()
    # all_valid quotes every value, so "" is an empty string and an unquoted empty field is NULL.
    pacsv.write_csv(data, buf, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    payload = buf.getbuffer()
    cols = ", ".join(quote_ident(n) for n in data.schema.names)
    dbapi = cast("psycopg.Connection[Any]", conn.connection.dbapi_connection)
    with dbapi.cursor() as cur, cur.copy(f"COPY {target} ({cols}) FROM STDIN (FORMAT csv)") as copy:
        for start in range(0, len(payload), _COPY_CHUNK):
            copy.write(payload[start : start + _COPY_CHUNK])


def bulk_insert(conn: Connection, target: str, data: pa.Table) -> int:
    """Append ``data`` to the (already quoted, qualified) ``target`` inside the caller's transaction."""
    if data.num_rows == 0:
        return 0
    if conn.dialect.name == "postgresql":
        _insert_postgresql(conn, target, data)
    else:
        _insert_duckdb(conn, target, data)
    return data.num_rows


_SQL_TYPES = {
    pa.string(): "TEXT",
    pa.date32(): "DATE",
    pa.int64(): "BIGINT",
    pa.float64(): "DOUBLE PRECISION",
    pa.bool_(): "BOOLEAN",
    pa.timestamp("us", tz="UTC"): "TIMESTAMP WITH TIME ZONE",
}


def stage(conn: Connection, name: str, data: pa.Table) -> str:
    """Temporary table ``name`` holding ``data`` for set-based SQL; gone at the end of the transaction
    (PostgreSQL ``ON COMMIT DROP``; DuckDB: the caller drops it, and a rollback removes it)."""
    ident = quote_ident(name)
    if conn.dialect.name == "postgresql":
        cols = ", ".join(f"{quote_ident(f.name)} {_SQL_TYPES[f.type]}" for f in data.schema)
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS pg_temp.{ident}")
        conn.exec_driver_sql(f"CREATE TEMP TABLE {ident} ({cols}) ON COMMIT DROP")
        if data.num_rows:
            _insert_postgresql(conn, ident, data)
        return ident
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    view = f"_leopard_stage_{next(_stage_names)}"
    dbapi.register(view, data)
    try:
        conn.exec_driver_sql(f"CREATE OR REPLACE TEMP TABLE {ident} AS SELECT * FROM {view}")
    finally:
        dbapi.unregister(view)
    return ident


def drop_stage(conn: Connection, ident: str) -> None:
    if conn.dialect.name != "postgresql":
        conn.exec_driver_sql(f"DROP TABLE IF EXISTS {ident}")
