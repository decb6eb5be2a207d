"""The event store: normalised source records kept between runs, so runs can be incremental.

Each event is stored under its stable source reference with a sha256 of its content.
Writing a batch tells which patients changed — a new or different event, an event
that moved to another patient, a deleted or entered-in-error record — and only those
patients need re-deriving. In ``full`` mode the batch is the whole source, so stored
records missing from it are deletions; in ``incremental`` mode the batch holds the
changed records only and deletions are passed explicitly (source references of
events, or of patients, whose events go with them).

Changed patients are also recorded in ``derive_pending`` in the same transaction and
cleared when their derived rows are replaced; the set returned includes patients
still pending from an earlier run that died before its derived load committed.

On DuckDB a large read is staged first (:func:`stage_store_batches`) in scratch
tables committed every :data:`STAGE_COMMIT_ROWS` rows: DuckDB holds a transaction's
uncommitted rows in memory beyond its memory limit, so staging millions of events
inside the store transaction made the run's memory grow with the input. The
scratch tables are not part of the store's state — only :func:`write_staged`, which
changes the store and marks patients pending, has to be one transaction.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from typing import Any

import pandas as pd
import pyarrow as pa
from sqlalchemy import Connection, Table, text

from leopard_etl.events import EVENT_COLUMNS, PATIENT_COLUMNS
from leopard_etl.warehouse.bulk import (
    arrow_schema,
    bulk_insert,
    content_hashes,
    drop_stage,
    quote_ident,
    stage,
    to_arrow,
)
from leopard_etl.warehouse.schema import source_event, source_patient

__all__ = [
    "STAGE_COMMIT_ROWS",
    "drop_staged",
    "load_range",
    "load_store",
    "patient_ranges",
    "stage_store_batches",
    "write_staged",
    "write_store",
    "write_store_batches",
    "write_store_staged",
]

Qualify = Callable[[str], str]
Transaction = Callable[[], AbstractContextManager[Connection]]

#: rows staged per committed transaction on DuckDB (it keeps uncommitted rows in memory)
STAGE_COMMIT_ROWS = 250_000
_STAGED = (
    ("_leopard_in_event", source_event, EVENT_COLUMNS),
    ("_leopard_in_patient", source_patient, PATIENT_COLUMNS),
)


def _typed(df: pd.DataFrame, table: Table, key: str, columns: tuple[str, ...]) -> pa.Table:
    """Typed rows of a frame; a key seen twice keeps its last row (later version wins)."""
    if len(df):
        df = df.drop_duplicates(subset=[key], keep="last")
    return to_arrow(df, table, columns)


def _hashed(data: pa.Table, table: Table, columns: tuple[str, ...], run_id: str) -> pa.Table:
    """``data`` typed like ``table``'s ``columns``, with content hash and run id."""
    data = data.select(list(columns)).cast(arrow_schema(table, columns))
    hashes = content_hashes(data)
    data = data.append_column("content_hash", pa.array(hashes, pa.string()))
    return data.append_column("run_id", pa.array([run_id] * data.num_rows, pa.string()))


def _stage_batches(
    conn: Connection,
    name: str,
    batches: Iterable[pa.Table],
    table: Table,
    columns: tuple[str, ...],
    run_id: str,
) -> str:
    """Stage table ``name`` filled batch by batch (one bulk insert each); returns its identifier."""
    ident = stage(conn, name, _hashed(arrow_schema(table, columns).empty_table(), table, columns, run_id))
    for data in batches:
        bulk_insert(conn, ident, _hashed(data, table, columns, run_id))
    return ident


def stage_store_batches(
    tx: Transaction,
    q: Qualify,
    events: Iterable[pa.Table],
    patients: Iterable[pa.Table],
    *,
    run_id: str,
    commit_rows: int = STAGE_COMMIT_ROWS,
) -> tuple[str, str]:
    """Stage a read in scratch tables of the warehouse schema (DuckDB), one ``tx()`` per ``commit_rows``
    rows; returns their identifiers (events, patients) for :func:`write_staged`. A scratch table left by
    a crashed run is replaced; :func:`drop_staged` removes them."""
    idents = []
    for (name, table, columns), batches in zip(_STAGED, (events, patients), strict=True):
        ident = q(name)
        empty = _hashed(arrow_schema(table, columns).empty_table(), table, columns, run_id)
        with tx() as conn:
            _create_like(conn, ident, empty)
        pending = iter(batches)
        exhausted = False
        while not exhausted:
            with tx() as conn:
                rows, exhausted = 0, True
                for data in pending:
                    rows += bulk_insert(conn, ident, _hashed(data, table, columns, run_id))
                    if rows >= commit_rows:
                        exhausted = False
                        break
        idents.append(ident)
    return idents[0], idents[1]


def write_store_staged(
    tx: Transaction,
    q: Qualify,
    events: Iterable[pa.Table],
    patients: Iterable[pa.Table],
    *,
    run_id: str,
    full: bool,
    deleted: Iterable[str],
    checkpoint: Callable[[str], None],
) -> set[str]:
    """:func:`write_store_batches` for DuckDB: :func:`stage_store_batches`, then :func:`write_staged` in
    one ``tx()`` (``checkpoint("events:commit")`` just before it commits); the scratch tables are dropped."""
    try:
        ev_stage, pt_stage = stage_store_batches(tx, q, events, patients, run_id=run_id)
        with tx() as conn:
            changed = write_staged(conn, q, ev_stage, pt_stage, run_id=run_id, full=full, deleted=deleted)
            checkpoint("events:commit")
    except BaseException:
        with contextlib.suppress(Exception):  # the first error is the one to report
            drop_staged(tx, q)
        raise
    drop_staged(tx, q)
    return changed


def drop_staged(tx: Transaction, q: Qualify) -> None:
    """Remove the scratch tables of :func:`stage_store_batches` (if any)."""
    with tx() as conn:
        for name, _table, _columns in _STAGED:
            conn.exec_driver_sql(f"DROP TABLE IF EXISTS {q(name)}")


def _create_like(conn: Connection, ident: str, shape: pa.Table) -> None:
    """(Re)create table ``ident`` with the columns of the Arrow table ``shape`` (DuckDB)."""
    dbapi = conn.connection.dbapi_connection
    assert dbapi is not None
    view = "_leopard_stage_shape"
    dbapi.register(view, shape)
    try:
        conn.exec_driver_sql(f"CREATE OR REPLACE TABLE {ident} AS SELECT * FROM {view}")
    finally:
        dbapi.unregister(view)


def _ids(conn: Connection, sql: str) -> set[str]:
    return {str(v) for row in conn.exec_driver_sql(sql) for v in row if v is not None}


def _merge(conn: Connection, target: str, key: str, batch: str, cols: list[str]) -> set[str]:
    """Upsert changed/new rows of ``batch`` into ``target``; patient ids touched (old and new owner)."""
    k = quote_ident(key)
    changed = _ids(
        conn,
        f"SELECT DISTINCT s.patient_id, t.patient_id FROM {batch} s LEFT JOIN {target} t ON t.{k} = s.{k}"
        f" WHERE t.{k} IS NULL OR t.content_hash <> s.content_hash",
    )
    conn.exec_driver_sql(
        f"DELETE FROM {target} WHERE EXISTS (SELECT 1 FROM {batch} s"
        f" WHERE s.{k} = {target}.{k} AND s.content_hash <> {target}.content_hash)"
    )
    names = ", ".join(quote_ident(c) for c in cols)
    conn.exec_driver_sql(
        f"INSERT INTO {target} ({names}) SELECT {names} FROM {batch} s"
        f" WHERE NOT EXISTS (SELECT 1 FROM {target} t WHERE t.{k} = s.{k})"
    )
    return changed


def _delete_where(conn: Connection, target: str, condition: str) -> set[str]:
    gone = _ids(conn, f"SELECT DISTINCT patient_id FROM {target} WHERE {condition}")
    if gone:
        conn.exec_driver_sql(f"DELETE FROM {target} WHERE {condition}")
    return gone


def write_store(
    conn: Connection,
    q: Qualify,
    events: pd.DataFrame,
    patients: pd.DataFrame,
    *,
    run_id: str,
    full: bool,
    deleted: Iterable[str],
) -> set[str]:
    """Apply one read to the store inside the caller's transaction; returns the changed patient ids."""
    ev_in = _typed(events, source_event, "source", EVENT_COLUMNS)
    pt_in = _typed(patients, source_patient, "patient_id", PATIENT_COLUMNS)
    return write_store_batches(conn, q, [ev_in], [pt_in], run_id=run_id, full=full, deleted=deleted)


def write_store_batches(
    conn: Connection,
    q: Qualify,
    events: Iterable[pa.Table],
    patients: Iterable[pa.Table],
    *,
    run_id: str,
    full: bool,
    deleted: Iterable[str],
) -> set[str]:
    """:func:`write_store` of Arrow batches (EVENT_COLUMNS / PATIENT_COLUMNS), still one transaction.

    The batches are staged one bulk insert at a time, so only one is in memory; each
    source reference (event) and patient id must occur once over all batches.
    """
    staged: list[str] = []
    try:
        ev_batch = _stage_batches(conn, "_leopard_in_event", events, source_event, EVENT_COLUMNS, run_id)
        staged.append(ev_batch)
        pt_batch = _stage_batches(
            conn, "_leopard_in_patient", patients, source_patient, PATIENT_COLUMNS, run_id
        )
        staged.append(pt_batch)
        return write_staged(conn, q, ev_batch, pt_batch, run_id=run_id, full=full, deleted=deleted)
    finally:
        for ident in staged:
            drop_stage(conn, ident)


def write_staged(
    conn: Connection,
    q: Qualify,
    ev_batch: str,
    pt_batch: str,
    *,
    run_id: str,
    full: bool,
    deleted: Iterable[str],
) -> set[str]:
    """Apply a staged read (tables ``ev_batch`` / ``pt_batch``, rows of :func:`_hashed`) to the store and
    mark the changed patients pending, inside the caller's transaction; returns the changed patient ids."""
    ev, pt = q("source_event"), q("source_patient")
    gone = pa.table({"source": pa.array(sorted(set(deleted)), pa.string())})
    changed: set[str] = set()
    if full:
        # Before the merge: the anti-join then reads committed rows only (DuckDB keeps this transaction's
        # new rows in memory), and the result is the same — the merge touches staged references only.
        changed |= _delete_where(
            conn, ev, f"NOT EXISTS (SELECT 1 FROM {ev_batch} s WHERE s.source = {ev}.source)"
        )
        changed |= _delete_where(
            conn, pt, f"NOT EXISTS (SELECT 1 FROM {pt_batch} s WHERE s.patient_id = {pt}.patient_id)"
        )
    changed |= _merge(conn, ev, "source", ev_batch, [c.name for c in source_event.columns])
    changed |= _merge(conn, pt, "patient_id", pt_batch, [c.name for c in source_patient.columns])
    # Explicit deletions (and in full mode the same: a deleted record may still be in the batch).
    # A failure rolls the transaction back, which removes the stage with it.
    gone_batch = stage(conn, "_leopard_gone", gone)
    gone_patients = f"SELECT p.patient_id FROM {pt} p JOIN {gone_batch} g ON g.source = p.source"
    changed |= _delete_where(
        conn, ev, f"source IN (SELECT source FROM {gone_batch}) OR patient_id IN ({gone_patients})"
    )
    changed |= _delete_where(conn, pt, f"source IN (SELECT source FROM {gone_batch})")
    drop_stage(conn, gone_batch)
    return changed | _mark_pending(conn, q("derive_pending"), changed, run_id)


def _mark_pending(conn: Connection, target: str, changed: set[str], run_id: str) -> set[str]:
    """Record ``changed`` as awaiting derivation; returns every pending patient (earlier runs included)."""
    fresh = pa.table({"patient_id": pa.array(sorted(changed), pa.string())})
    batch = stage(conn, "_leopard_pending", fresh)
    try:
        conn.exec_driver_sql(f"DELETE FROM {target} WHERE patient_id IN (SELECT patient_id FROM {batch})")
        insert = f"INSERT INTO {target} (patient_id, run_id) SELECT patient_id, :run_id FROM {batch}"
        conn.execute(text(insert), {"run_id": run_id})
    finally:
        drop_stage(conn, batch)
    return _ids(conn, f"SELECT patient_id FROM {target}")


def load_store(
    conn: Connection, q: Qualify, patient_ids: Iterable[str] | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(events, patients) frames with EVENT_COLUMNS / PATIENT_COLUMNS, dates as ``datetime.date``."""
    if patient_ids is None:
        return _load(conn, q, "", {})
    ids = pa.table({"patient_id": pa.array(sorted(set(patient_ids)), pa.string())})
    ids_batch = stage(conn, "_leopard_ids", ids)
    try:
        return _load(conn, q, f" WHERE patient_id IN (SELECT patient_id FROM {ids_batch})", {})
    finally:
        drop_stage(conn, ids_batch)


def patient_ranges(conn: Connection, q: Qualify, partition_rows: int) -> list[tuple[str | None, str | None]]:
    """Consecutive ``[low, high)`` ranges of patient ids (None: unbounded), each about ``partition_rows``
    stored events, covering every id; at least one range. Ranges follow the database's own order of
    ids, the order :func:`load_range` compares them in, and use the patient_id index."""
    result = conn.exec_driver_sql(
        f"SELECT patient_id, COUNT(*) FROM {q('source_event')} GROUP BY patient_id ORDER BY patient_id",
        execution_options={"stream_results": True},
    )
    bounds: list[str] = []
    rows = 0
    for patient_id, n in result:
        if rows >= partition_rows:
            bounds.append(str(patient_id))
            rows = 0
        rows += int(n)
    lows: list[str | None] = [None, *bounds]
    highs: list[str | None] = [*bounds, None]
    return list(zip(lows, highs, strict=True))


def load_range(
    conn: Connection, q: Qualify, low: str | None, high: str | None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`load_store` of the patients with ``low <= patient_id < high`` (None: unbounded)."""
    conditions = []
    if low is not None:
        conditions.append("patient_id >= :low")
    if high is not None:
        conditions.append("patient_id < :high")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    return _load(conn, q, where, {"low": low, "high": high})


def _load(
    conn: Connection, q: Qualify, where: str, params: dict[str, Any]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    frames = []
    for target, columns, order in (
        (q("source_event"), EVENT_COLUMNS, "patient_id, source"),
        (q("source_patient"), PATIENT_COLUMNS, "patient_id"),
    ):
        names = ", ".join(quote_ident(c) for c in columns)
        sql = f"SELECT {names} FROM {target}{where} ORDER BY {order}"
        used = {k: v for k, v in params.items() if f":{k}" in where}
        rows = conn.execute(text(sql), used).all() if used else conn.exec_driver_sql(sql).all()
        frames.append(pd.DataFrame.from_records([tuple(r) for r in rows], columns=list(columns)))
    return frames[0], frames[1]
