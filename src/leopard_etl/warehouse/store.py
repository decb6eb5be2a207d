"""The warehouse: the only writer of LEOPARD data, on DuckDB (default, a file) or PostgreSQL.

One :class:`Warehouse` per run. It creates or migrates the schema, keeps the event
store that makes runs incremental, replaces the derived tables atomically, keeps
the run log, and holds the lock that keeps two runs apart. Every write is one
transaction on a bulk path (``leopard_etl.warehouse.bulk``), so a run killed at any
point leaves the previous complete state visible and the same input loaded twice
gives the same contents.

``checkpoint`` is called with a name at each step of a write (``deleted:lesion``,
``inserted:lesion``, ``commit`` …); it does nothing by default, and crash tests use
it to stop a loading process at a chosen point.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import Connection, Engine, create_engine, exc, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import StaticPool

from leopard_etl.drivers import missing_driver
from leopard_etl.errors import ConfigError, LockHeldError, SourceError
from leopard_etl.events import Quarantined
from leopard_etl.privacy import redact_source
from leopard_etl.spool import cutoff_sql, latest_date
from leopard_etl.warehouse import runs as runlog
from leopard_etl.warehouse.bulk import bulk_insert, drop_stage, quote_ident, stage, to_arrow
from leopard_etl.warehouse.derived import PATIENT_TABLES, recount_attrition, replace_tables
from leopard_etl.warehouse.eventstore import (
    load_range,
    load_store,
    patient_ranges,
    write_store,
    write_store_batches,
    write_store_staged,
)
from leopard_etl.warehouse.lock import file_lock, postgres_lock
from leopard_etl.warehouse.migrate import current_version, migrate_connection
from leopard_etl.warehouse.schema import DERIVED_TABLES, METADATA, quarantine

__all__ = ["Warehouse"]

log = logging.getLogger(__name__)

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_DEFAULT_SCHEMA = {"duckdb": "main", "postgresql": "public"}
_MAX_RECORD = 4000
#: memory a DuckDB warehouse may use before it spills to disk (the event store upsert is the
#: peak). 512MB kept 50k patients at 0.95 GB RSS but ran out of memory committing the
#: source_event indexes at 100k, so the default leaves room (``warehouse_duckdb_memory``).
DUCKDB_MEMORY = "2GB"


def _noop(_point: str) -> None:
    return None


def _unwritable(path: Path, err: OSError) -> ConfigError:
    return ConfigError(
        f"cannot create the warehouse folder for {path} ({err.filename or path}: {err.strerror or err})",
        fix="choose a writable folder for the DuckDB warehouse",
    )


def _parse_url(url: str) -> URL:
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        raise ConfigError(
            f"warehouse URL {redact_source(url)!r} is not a database URL",
            fix="use duckdb:///path/leopard.duckdb or postgresql+psycopg://user@host/db",
        ) from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend != "duckdb":
        raise ConfigError(
            f"unsupported warehouse database {backend!r}", fix="use a duckdb:/// or postgresql+psycopg:// URL"
        )
    return parsed


class Warehouse:
    """LEOPARD warehouse at ``url`` (SQLAlchemy URL), tables in ``schema`` (default: main / public)."""

    def __init__(
        self,
        url: str,
        schema: str | None = None,
        *,
        checkpoint: Callable[[str], None] | None = None,
        duckdb_memory: str = DUCKDB_MEMORY,
    ) -> None:
        parsed = _parse_url(url)
        self.dialect: Literal["duckdb", "postgresql"] = (
            "postgresql" if parsed.get_backend_name() == "postgresql" else "duckdb"
        )
        if schema is not None and not _IDENT.match(schema):
            raise ConfigError(
                f"warehouse schema {schema!r} is not a plain identifier",
                fix="use lower-case letters, digits and _ (at most 63, not starting with a digit)",
            )
        self.schema = schema or _DEFAULT_SCHEMA[self.dialect]
        self.url = parsed
        self._checkpoint = checkpoint or _noop
        self._lock_path: Path | None = None
        if self.dialect == "duckdb":
            db = parsed.database or ":memory:"
            if db != ":memory:":
                try:
                    Path(db).parent.mkdir(parents=True, exist_ok=True)
                except OSError as err:
                    raise _unwritable(Path(db), err) from None
                self._lock_path = Path(db + ".lock")
            # DuckDB's default limit (80% of RAM) lets a large upsert grow the process; within a
            # limit a database file spills to ``<database>.tmp`` and the run's memory stays flat.
            options: dict[str, Any] = (
                {"poolclass": StaticPool}
                if db == ":memory:"
                else {
                    "connect_args": {
                        "config": {"memory_limit": duckdb_memory, "preserve_insertion_order": False}
                    }
                }
            )
            self._engine = self._create(parsed, options)
        else:
            self._engine = self._create(parsed, {"pool_pre_ping": True})

    @staticmethod
    def _create(parsed: URL, options: dict[str, Any]) -> Engine:
        try:
            return create_engine(parsed, **options)
        except ImportError as err:  # the dialect's driver is not installed (no [postgres] extra)
            missing = missing_driver(f"warehouse {redact_source(str(parsed))}", err)
            if missing is None:
                raise
            raise missing from None

    # -- plumbing -------------------------------------------------------------------------------
    def q(self, table: str) -> str:
        """Quoted, schema-qualified table name for raw SQL."""
        return f"{quote_ident(self.schema)}.{quote_ident(table)}"

    def _connect(self) -> Connection:
        try:
            conn = self._engine.connect()
        except exc.DBAPIError as err:
            first = str(err.orig or err).splitlines()[0]
            if self.dialect == "duckdb" and "lock" in first.lower():
                raise LockHeldError(
                    f"warehouse database {self.url.database} is open in another process",
                    fix="wait for the other leopard-etl run to finish",
                ) from None
            if self.dialect == "duckdb" and first.startswith("IO Error"):  # a local file we cannot write
                raise ConfigError(
                    f"cannot open the warehouse file {self.url.database}: {first}",
                    fix="choose a writable folder with free space for the DuckDB warehouse",
                ) from None
            raise SourceError(
                f"warehouse unreachable ({redact_source(str(self.url))}): {first}",
                fix="check --warehouse / LEOPARD_WAREHOUSE and that the database server is up",
            ) from None
        return conn.execution_options(schema_translate_map={None: self.schema})

    @contextlib.contextmanager
    def _tx(self) -> Iterator[Connection]:
        with self._connect() as conn, conn.begin():
            yield conn

    @staticmethod
    def _now() -> dt.datetime:
        return dt.datetime.now(dt.UTC)

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> Warehouse:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- schema and lock ------------------------------------------------------------------------
    def migrate(self) -> tuple[int | None, int]:
        """Create the schema or upgrade it to SCHEMA_VERSION, in one transaction; returns (from, to)."""
        with self._tx() as conn:
            if self.schema != _DEFAULT_SCHEMA[self.dialect]:
                conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(self.schema)}")
            before, after = migrate_connection(conn, self.schema, self.q, self._now())
        if before != after:
            log.info("warehouse schema %s: version %s -> %s", self.schema, before, after)
        return before, after

    def version(self) -> int | None:
        with self._tx() as conn:
            return current_version(conn, self.schema)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive run lock; raises LockHeldError at once when another run holds it."""
        if self.dialect == "postgresql":
            with postgres_lock(self._connect, self.schema):
                yield
        elif self._lock_path is not None:
            with file_lock(self._lock_path):
                yield
        else:  # in-memory DuckDB: private to this process
            yield

    # -- event store ------------------------------------------------------------------------------
    def upsert_events(
        self,
        events: pd.DataFrame,
        patients: pd.DataFrame,
        *,
        run_id: str,
        full: bool = False,
        deleted: Iterable[str] = (),
    ) -> set[str]:
        """Store one read (EVENT_COLUMNS / PATIENT_COLUMNS frames); returns ids of patients that changed.

        ``full``: the frames are the whole source (stored records absent from them are deleted).
        ``deleted``: source references deleted / entered-in-error at the source (events or patients).
        """
        with self._tx() as conn:
            changed = write_store(conn, self.q, events, patients, run_id=run_id, full=full, deleted=deleted)
            self._checkpoint("events:commit")
        log.info("event store: %d events in, %d patients changed", len(events), len(changed))
        return changed

    def upsert_event_batches(
        self,
        events: Iterable[pa.Table],
        patients: Iterable[pa.Table],
        *,
        run_id: str,
        full: bool = False,
        deleted: Iterable[str] = (),
    ) -> set[str]:
        """:meth:`upsert_events` of Arrow batches, one in memory at a time, in the same one transaction.

        Each source reference (events) and patient id must occur once over all batches. DuckDB
        stages them first in scratch tables committed in steps (its uncommitted rows stay in memory);
        the store change and the pending marks are still the one transaction.
        """
        if self.dialect == "duckdb":
            changed = write_store_staged(
                self._tx,
                self.q,
                events,
                patients,
                run_id=run_id,
                full=full,
                deleted=deleted,
                checkpoint=self._checkpoint,
            )
        else:
            with self._tx() as conn:
                changed = write_store_batches(
                    conn, self.q, events, patients, run_id=run_id, full=full, deleted=deleted
                )
                self._checkpoint("events:commit")
        log.info("event store: %d patients changed", len(changed))
        return changed

    def cutoff(
        self,
        configured: dt.date | None,
        *,
        run_day: dt.date | None = None,
        small_cell_excludes_icd: bool = True,
    ) -> dt.date:
        """``configured``, else the spec §3.12 v2 default cutoff of the stored events (the spool's SQL)."""
        if configured is not None:
            return configured
        sql = cutoff_sql(self.q("source_event"), self.q("source_patient"), run_day, small_cell_excludes_icd)
        with self._tx() as conn:
            rows = [tuple(r) for r in conn.exec_driver_sql(sql).all()]
        return latest_date(rows, run_day)

    def event_partitions(self, partition_rows: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        """:meth:`load_events` in ranges of patients of about ``partition_rows`` stored events each."""
        with self._tx() as conn:
            for low, high in patient_ranges(conn, self.q, partition_rows):
                yield load_range(conn, self.q, low, high)

    def load_events(self, patient_ids: Iterable[str] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(events_df, patients_df) from the store, all patients or only ``patient_ids``."""
        with self._tx() as conn:
            return load_store(conn, self.q, patient_ids)

    # -- derived tables ---------------------------------------------------------------------------
    def replace_derived(
        self, tables: Mapping[str, pd.DataFrame], patient_ids: Iterable[str] | None = None
    ) -> dict[str, int]:
        """Full replace of every derived table, or (``patient_ids``) of those patients' rows; atomic."""
        with self._tx() as conn:
            counts = replace_tables(conn, self.q, tables, patient_ids, self._checkpoint)
            self._checkpoint("commit")
        self._checkpoint("committed")
        log.info("derived tables replaced (%s): %s", "full" if patient_ids is None else "incremental", counts)
        return counts

    def replace_derived_batches(
        self, tables: Mapping[str, Iterable[pa.Table]], patient_ids: Iterable[str] | None = None
    ) -> dict[str, int]:
        """:meth:`replace_derived` of Arrow batches typed like the schema (``to_arrow``), one transaction.

        Full: every derived table. ``patient_ids``: the patient tables, of which only those
        patients' rows are written, then ``cohort_attrition`` is recounted. Each iterable is
        consumed once, inside the transaction, so it should read its batches lazily (from disk).
        """
        names = DERIVED_TABLES if patient_ids is None else PATIENT_TABLES
        missing = [n for n in names if n not in tables]
        if missing:
            raise ValueError(f"derived tables missing from the load: {missing}")
        ids = None if patient_ids is None else pa.array(sorted(set(patient_ids)), pa.string())
        with self._tx() as conn:
            chosen, ids_stage = "", None
            if ids is not None:
                ids_stage = stage(conn, "_leopard_changed", pa.table({"patient_id": ids}))
                chosen = f" WHERE patient_id IN (SELECT patient_id FROM {ids_stage})"
            try:
                counts = {}
                for name in names:
                    conn.exec_driver_sql(f"DELETE FROM {self.q(name)}{chosen}")
                    self._checkpoint(f"deleted:{name}")
                    counts[name] = 0
                    for data in tables[name]:
                        if ids is not None:
                            data = data.filter(pc.is_in(data.column("patient_id"), value_set=ids))
                        counts[name] += bulk_insert(conn, self.q(name), data)
                    self._checkpoint(f"inserted:{name}")
                if ids is not None:
                    recount_attrition(conn, self.q)
                    self._checkpoint("inserted:cohort_attrition")
                conn.exec_driver_sql(f"DELETE FROM {self.q('derive_pending')}{chosen}")
            finally:
                if ids_stage is not None:
                    drop_stage(conn, ids_stage)
            self._checkpoint("commit")
        self._checkpoint("committed")
        mode = "full" if patient_ids is None else "incremental"
        log.info("derived tables replaced (%s): %s", mode, counts)
        return counts

    def stored_cutoffs(self) -> set[dt.date | None]:
        """The distinct cutoffs of the stored ``outcome`` rows (one, unless the table is empty)."""
        with self._tx() as conn:
            return {
                row[0] for row in conn.exec_driver_sql(f"SELECT DISTINCT cutoff FROM {self.q('outcome')}")
            }

    def read_table(self, name: str) -> pd.DataFrame:
        """A whole warehouse table, ordered by its primary key (or all columns)."""
        table = METADATA.tables.get(name)
        if table is None:
            raise ValueError(f"no table {name!r} in the LEOPARD schema")
        order = [c.name for c in (table.primary_key.columns or table.columns)]
        cols = ", ".join(quote_ident(c.name) for c in table.columns)
        with self._tx() as conn:
            rows = conn.exec_driver_sql(
                f"SELECT {cols} FROM {self.q(name)} ORDER BY {', '.join(quote_ident(c) for c in order)}"
            ).all()
        return pd.DataFrame.from_records([tuple(r) for r in rows], columns=[c.name for c in table.columns])

    # -- run log ------------------------------------------------------------------------------------
    def begin_run(self, source: str, source_system: str, mode: str) -> str:
        """Open a run (status ``running``); earlier runs still ``running`` are marked failed (abandoned)."""
        if mode not in ("full", "incremental"):
            raise ConfigError(f"run mode {mode!r} is not full or incremental", fix="use full or incremental")
        now = self._now()
        run_id = runlog.new_run_id(now)
        with self._tx() as conn:
            abandoned = runlog.abandon_running(conn, now)
            runlog.insert_run(conn, run_id, redact_source(source), source_system, mode, now)
        if abandoned:
            log.warning("marked %d abandoned run(s) as failed", abandoned)
        log.info("run %s started (%s, %s)", run_id, source_system, mode)
        return run_id

    def end_run(
        self,
        run_id: str,
        status: Literal["ok", "failed"],
        counts: Mapping[str, Any] | None = None,
        watermark: str | None = None,
        n_patients_changed: int | None = None,
        error: str | None = None,
    ) -> None:
        """Close a run with its counts (ReadStats.as_dict() shape, plus ``events``) and watermark."""
        with self._tx() as conn:
            runlog.finish_run(
                conn,
                run_id,
                status=status,
                counts=counts or {},
                watermark=watermark,
                n_patients_changed=n_patients_changed,
                error=error,
                now=self._now(),
            )
        log.info("run %s ended: %s", run_id, status)

    def last_watermark(self, source: str) -> str | None:
        """Watermark of the latest successful run of ``source`` (compared after redaction)."""
        with self._tx() as conn:
            return runlog.last_watermark(conn, redact_source(source))

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        """Latest runs first, as dicts of etl_run columns (for ``leopard-etl status``)."""
        with self._tx() as conn:
            return runlog.list_runs(conn, limit)

    def write_quarantine(self, run_id: str, rows: Iterable[Quarantined | Mapping[str, Any]]) -> int:
        """Append quarantined records of a run (bulk); returns how many."""
        return self.write_quarantine_batches(run_id, [rows])

    def write_quarantine_batches(
        self, run_id: str, batches: Iterable[Iterable[Quarantined | Mapping[str, Any]]]
    ) -> int:
        """:meth:`write_quarantine` of batches (one in memory at a time), in one transaction."""
        with self._tx() as conn:
            n = 0
            for rows in batches:
                data = to_arrow(runlog.quarantine_frame(run_id, rows, _MAX_RECORD), quarantine)
                n += bulk_insert(conn, self.q("quarantine"), data)
            return n

    def ping(self) -> None:
        """Raise SourceError when the warehouse cannot be reached."""
        with self._tx() as conn:
            conn.execute(text("SELECT 1"))
