"""Bounded-memory runs: spill what the adapters read to Parquet, then split it by patient.

The default :class:`~leopard_etl.events.EventSink` keeps every event as a Python object,
so a run's memory grows with the input (10M resources do not fit). :class:`EventSpool` is a
drop-in sink that buffers a fixed number of events and writes them as Arrow record
batches to Parquet files in a scratch folder; quarantined records go straight to a CSV
file. After the read, DuckDB (which itself works within a memory limit and spills) computes
the data-wide default cutoff over the spilled files and splits them by patient into
partitions of a fixed size; :func:`leopard_etl.partitioned.derive_spooled` then runs the
unchanged cohort rules on one partition at a time with that cutoff fixed, and merges the
per-partition outputs. The result is exactly the single-shot :func:`leopard_etl.cohort.derive`
— the tests prove it.

Every spilled row carries its arrival number (``seq``) so that a partition sees its
patients' records in the order the adapter produced them, as the single-shot frame does
(ties on a date keep that order in the rules).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .errors import SourceError
from .events import (
    EVENT_COLUMNS,
    PATIENT_COLUMNS,
    QUARANTINE_CSV_COLUMNS,
    Event,
    EventSink,
    PatientRecord,
    Quarantined,
    quarantine_from_row,
    quarantine_row,
)

__all__ = [
    "EVENT_SCHEMA",
    "PARTITION_ROWS",
    "PATIENT_SCHEMA",
    "SPILL_ROWS",
    "EventSpool",
    "SpooledEvents",
    "cutoff_sql",
    "kept_sources",
    "latest_date",
    "spooled_events",
    "spooled_patients",
    "spooled_quarantine",
]

#: events buffered in memory before a spill (one Parquet file per spill)
SPILL_ROWS = 50_000
#: target events per derivation partition (the working set of one cohort ``derive``)
PARTITION_ROWS = 50_000
#: memory DuckDB may use for the cutoff and the partitioning before it spills to disk
DUCKDB_MEMORY = "128MB"

_TEXT = pa.string()
EVENT_SCHEMA = pa.schema(
    [
        ("patient_id", _TEXT),
        ("kind", _TEXT),
        ("groups", _TEXT),
        ("system", _TEXT),
        ("code", _TEXT),
        ("start", pa.date32()),
        ("end", pa.date32()),
        ("precision", _TEXT),
        ("site", _TEXT),
        ("laterality", _TEXT),
        ("body_site", _TEXT),
        ("value", _TEXT),
        ("lesion_id", _TEXT),
        ("ingredient", _TEXT),
        ("fractions", pa.int64()),
        ("dose_cgy", pa.float64()),
        ("source", _TEXT),
        ("route", _TEXT),
        ("seq", pa.int64()),
    ]
)
PATIENT_SCHEMA = pa.schema(
    [
        ("patient_id", _TEXT),
        ("birth_date", pa.date32()),
        ("sex", _TEXT),
        ("death_date", pa.date32()),
        ("source", _TEXT),
        ("deceased", pa.bool_()),
        ("seq", pa.int64()),
    ]
)
assert tuple(EVENT_SCHEMA.names[:-1]) == EVENT_COLUMNS
assert tuple(PATIENT_SCHEMA.names[:-1]) == PATIENT_COLUMNS

#: the dates pandas can hold (``pd.to_datetime`` makes anything outside undated, so the rules ignore it)
_DATED = "BETWEEN DATE '1677-09-22' AND DATE '2262-04-11'"


class EventSpool(EventSink):
    """An :class:`EventSink` that spills to ``folder``; call :meth:`close` once the read is done.

    ``events``/``patients``/``quarantined`` stay empty; :attr:`n_events`, :attr:`n_patients`
    and the CSV at :attr:`quarantine_csv` (same format as ``DataFrame.to_csv``) hold the counts
    and the quarantine rows.
    """

    def __init__(self, folder: Path, *, spill_rows: int = SPILL_ROWS) -> None:
        super().__init__()
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.spill_rows = max(1, spill_rows)
        self.n_events = 0
        self.n_patients = 0
        self._event_buf: list[Event] = []
        #: Arrow batches (event columns, no ``seq``) waiting for a spill, in arrival order
        self._event_tables: list[pa.Table] = []
        self._event_table_rows = 0
        self._patient_buf: list[PatientRecord] = []
        self._files = {"events": 0, "patients": 0}
        self.quarantine_csv = self.folder / "quarantine.csv"
        self._qfile: IO[str] | None = self.quarantine_csv.open("w", encoding="utf-8", newline="")
        self._qwriter = csv.writer(self._qfile, lineterminator="\n")
        self._qwriter.writerow(QUARANTINE_CSV_COLUMNS)

    # --- the sink ------------------------------------------------------------
    def event(self, e: Event) -> None:
        self._event_buf.append(e)
        if len(self._event_buf) >= self.spill_rows:
            self._spill_events()

    def event_table(self, table: pa.Table) -> None:
        """Take many events at once: an Arrow table with the event columns (``EVENT_SCHEMA`` minus ``seq``).

        Arrival order is kept across :meth:`event` and this method: buffered events go first.
        """
        names = EVENT_SCHEMA.names[:-1]
        if table.column_names != names:
            raise SourceError(
                f"an adapter produced an event table with columns {table.column_names}",
                fix="report this as a bug in the adapter",
            )
        self._tables_from_buffer()
        self._event_tables.append(table)
        self._event_table_rows += table.num_rows
        if self._event_table_rows >= self.spill_rows:
            self._spill_events()

    def _tables_from_buffer(self) -> None:
        if self._event_buf:
            columns = list(zip(*self._event_buf, strict=True))
            self._event_tables.append(_arrow_table(columns, EVENT_SCHEMA.names[:-1], "events"))
            self._event_table_rows += len(self._event_buf)
            self._event_buf = []

    def patient(self, p: PatientRecord) -> None:
        self._patient_buf.append(p)
        if len(self._patient_buf) >= self.spill_rows:
            self._spill_patients()

    def quarantine(self, q: Quarantined) -> None:
        self.stats.quarantined += 1
        if self._qfile is None:
            raise SourceError("quarantine after the spool was closed", fix="report this as a bug")
        self._qwriter.writerow(quarantine_row(q))

    def close(self) -> None:
        """Spill what is buffered and close the quarantine file (idempotent)."""
        self._spill_events()
        self._spill_patients()
        if self._qfile is not None:
            self._qfile.close()
            self._qfile = None

    # --- spilling ------------------------------------------------------------
    def _spill_events(self) -> None:
        if self._event_tables:
            self._tables_from_buffer()
            names = EVENT_SCHEMA.names[:-1]
            try:
                table = pa.concat_tables([t.select(names).cast(_EVENT_BODY) for t in self._event_tables])
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise SourceError(
                    f"an adapter produced an event table of the wrong types ({exc})",
                    fix="report this as a bug in the adapter",
                ) from None
            seq = pa.array(range(self.n_events, self.n_events + table.num_rows), pa.int64())
            self._write_table("events", table.append_column("seq", seq))
            self.n_events += table.num_rows
            self._event_tables, self._event_table_rows = [], 0
        if self._event_buf:
            self._write("events", EVENT_SCHEMA, self._event_buf, self.n_events)
            self.n_events += len(self._event_buf)
            self._event_buf = []

    def _spill_patients(self) -> None:
        if self._patient_buf:
            self._write("patients", PATIENT_SCHEMA, self._patient_buf, self.n_patients)
            self.n_patients += len(self._patient_buf)
            self._patient_buf = []

    def _write(self, kind: str, schema: pa.Schema, rows: list[Any], first_seq: int) -> None:
        columns = list(zip(*rows, strict=True))
        columns.append(tuple(range(first_seq, first_seq + len(rows))))
        try:
            arrays = [pa.array(col, type=f.type) for col, f in zip(columns, schema, strict=True)]
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
            raise SourceError(
                f"an adapter produced a {kind} value of the wrong type ({exc})",
                fix="report this as a bug in the adapter",
            ) from None
        self._write_table(kind, pa.Table.from_arrays(arrays, schema=schema))

    def _write_table(self, kind: str, table: pa.Table) -> None:
        self._files[kind] += 1
        path = self.folder / kind / f"{kind}-{self._files[kind]:06d}.parquet"
        path.parent.mkdir(exist_ok=True)
        pq.write_table(table, path, compression="zstd")

    def _glob(self, kind: str) -> str | None:
        return str(self.folder / kind / "*.parquet") if self._files[kind] else None

    # --- reading back ----------------------------------------------------------
    def connect(self) -> Any:
        """A DuckDB connection limited in memory and threads, spilling into the spool folder."""
        import duckdb

        con = duckdb.connect()
        con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
        con.execute(f"SET temp_directory = '{_sql_path(self.folder / 'duckdb-tmp')}'")
        con.execute("SET preserve_insertion_order = false")
        con.execute("SET threads = 1")
        return con

    def run_cutoff(
        self, con: Any, configured: dt.date | None, *, run_day: dt.date | None, small_cell_excludes_icd: bool
    ) -> dt.date:
        """The configured cutoff, else the spec §3.12 v2 default over the spooled records.

        Exactly :func:`leopard_etl.cohort.timeline.default_cutoff` of the single-shot frames
        (the screened patients' latest start, end or death date ≤ the day of the run).
        """
        if configured is not None:
            return configured
        events, patients = self._glob("events"), self._glob("patients")
        if not events:
            return latest_date([], run_day)
        sql = cutoff_sql(
            f"read_parquet('{_sql_path(events)}')",
            f"({_last_patients(patients)})" if patients else None,
            run_day,
            small_cell_excludes_icd,
        )
        return latest_date(con.sql(sql).fetchall(), run_day)

    def partitions(
        self, con: Any, partition_rows: int = PARTITION_ROWS
    ) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        """(events, patients) frames of disjoint patient sets, each about ``partition_rows`` events.

        Frames have the columns and dtypes of :func:`leopard_etl.pipeline.frames`; a patient's
        records keep their arrival order and patients are deduplicated keeping the last record.
        """
        events, patients = self._glob("events"), self._glob("patients")
        k = max(1, math.ceil(self.n_events / max(1, partition_rows)))
        parts = self.folder / "parts"
        if events:
            _split(con, f"SELECT * FROM read_parquet('{_sql_path(events)}')", k, parts / "events")
        if patients:
            _split(con, _last_patients(patients), k, parts / "patients")
        yielded = False
        for i in range(k):
            folder = parts / "events" / f"part={i}"
            if not folder.is_dir() and (yielded or i < k - 1):
                continue  # no events: its patients have no timeline (their deaths are in the cutoff)
            yielded = True
            patient_folder = parts / "patients" / f"part={i}"
            yield self._part(con, folder, EVENT_SCHEMA), self._part(con, patient_folder, PATIENT_SCHEMA)

    @staticmethod
    def _part(con: Any, folder: Path, schema: pa.Schema) -> pd.DataFrame:
        names = schema.names[:-1]
        if folder.is_dir():
            cols = ", ".join(f'"{c}"' for c in names)
            files = _sql_path(folder / "*.parquet")
            table = con.sql(
                f"SELECT {cols} FROM read_parquet('{files}', hive_partitioning = false) ORDER BY seq"
            ).to_arrow_table()
        else:
            table = pa.Table.from_pylist([], schema=pa.schema([schema.field(c) for c in names]))
        return _records_frame(table.cast(pa.schema([schema.field(c) for c in names])))


class SpooledEvents:
    """A closed spool as a derivation input (the event store's counterpart,
    :class:`leopard_etl.warehouse.runner.StoredEvents`): its cutoff and its patient partitions,
    over one memory-limited DuckDB connection (use as a context manager)."""

    def __init__(self, spool: EventSpool) -> None:
        self.spool = spool
        self._con: Any = None

    def __enter__(self) -> SpooledEvents:
        self.spool.close()
        self._con = self.spool.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def cutoff(
        self, configured: dt.date | None, *, run_day: dt.date | None, small_cell_excludes_icd: bool
    ) -> dt.date:
        return self.spool.run_cutoff(
            self._con, configured, run_day=run_day, small_cell_excludes_icd=small_cell_excludes_icd
        )

    def partitions(self, partition_rows: int) -> Iterator[tuple[pd.DataFrame, pd.DataFrame]]:
        return self.spool.partitions(self._con, partition_rows)


_EVENT_BODY = pa.schema([EVENT_SCHEMA.field(n) for n in EVENT_SCHEMA.names[:-1]])


def _arrow_table(columns: list[tuple[Any, ...]], names: Sequence[str], kind: str) -> pa.Table:
    """Python values by column → an Arrow table of the spool's types (``SourceError`` on a wrong type)."""
    try:
        arrays = [
            pa.array(col, type=_EVENT_BODY.field(n).type) for col, n in zip(columns, names, strict=True)
        ]
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, OverflowError) as exc:
        raise SourceError(
            f"an adapter produced a {kind} value of the wrong type ({exc})",
            fix="report this as a bug in the adapter",
        ) from None
    return pa.Table.from_arrays(arrays, names=list(names))


def _sql_path(path: Path | str) -> str:
    return str(path).replace("'", "''")


def _split(con: Any, query: str, k: int, folder: Path) -> None:
    """Write the rows of ``query`` into ``k`` folders ``part=i`` by a hash of patient_id (one pass)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    con.execute(
        f"COPY (SELECT *, hash(patient_id) % {k} AS part FROM ({query})) "
        f"TO '{_sql_path(folder)}' (FORMAT parquet, PARTITION_BY (part), OVERWRITE_OR_IGNORE)"
    )


def _last_patients(glob: str) -> str:
    """The last spilled record of each patient (``frames`` drops duplicates keeping the last)."""
    return (
        f"SELECT * FROM read_parquet('{_sql_path(glob)}') "
        "QUALIFY row_number() OVER (PARTITION BY patient_id ORDER BY seq DESC) = 1"
    )


def _records_frame(table: pa.Table) -> pd.DataFrame:
    """The frame ``DataFrame.from_records`` would build from the same Python values.

    Arrow already gives objects for dates and strings, int64 / float64 NaN for numbers;
    only an all-null numeric column (and an empty frame) differ: from_records keeps objects.
    """
    if table.num_rows == 0:
        return pd.DataFrame(columns=table.column_names)
    frame = table.to_pandas(date_as_object=True)
    for name in frame.columns:
        column = table.column(name)
        numeric = pa.types.is_integer(column.type) or pa.types.is_floating(column.type)
        if numeric and column.null_count == len(column):
            frame[name] = pd.Series([None] * len(column), dtype=object, index=frame.index)
    return frame


# --- shared with the warehouse run (leopard_etl.warehouse.runner) ----------------------------------
def _has_group(group: str) -> str:
    # position(), not LIKE '%…%': a driver that formats parameters (psycopg) reads % as a placeholder
    return f"""bool_or(position(';{group};' in (';' || e."groups" || ';')) > 0)"""


def cutoff_sql(
    events: str, patients: str | None, run_day: dt.date | None, small_cell_excludes_icd: bool
) -> str:
    """SQL (DuckDB and PostgreSQL) of the spec §3.12 v2 default cutoff's candidates.

    The one SQL text of :func:`leopard_etl.cohort.timeline.default_cutoff`: the screened patients
    (an nsclc record, or ICD C34 without small-cell histology) among records starting ≤ the day
    of the run; their latest start, latest end ≤ that day, and latest death ≤ that day. Dates
    pandas cannot hold are left out as the rules leave them out. ``run_day`` is a date, written
    as a literal (never input text).
    """
    bound = f" AND {{col}} <= DATE '{run_day.isoformat()}'" if run_day is not None else ""
    icd = _has_group("nsclc_icd")
    if small_cell_excludes_icd:
        icd = f"({icd} AND NOT {_has_group('small_cell')})"
    screened = (
        f"SELECT e.patient_id FROM {events} AS e WHERE e.start {_DATED}{bound.format(col='e.start')} "
        f"GROUP BY e.patient_id HAVING {_has_group('nsclc')} OR {icd}"
    )
    end_col = 'e."end"'
    end_ok = f"{end_col} {_DATED}{bound.format(col=end_col)}"
    sql = (
        f"WITH s AS ({screened}) "
        f'SELECT max(e.start), max(CASE WHEN {end_ok} THEN e."end" END) '
        f"FROM {events} AS e JOIN s ON s.patient_id = e.patient_id "
        f"WHERE e.start {_DATED}{bound.format(col='e.start')}"
    )
    if patients is not None:
        sql += (
            f" UNION ALL SELECT max(p.death_date), NULL FROM {patients} AS p "
            f"JOIN s ON s.patient_id = p.patient_id WHERE p.death_date {_DATED}"
            f"{bound.format(col='p.death_date')}"
        )
    return sql


def latest_date(rows: Iterable[Sequence[dt.date | None]], run_day: dt.date | None) -> dt.date:
    """The latest date of the rows of :func:`cutoff_sql`; without any (no screened patient: an
    empty cohort, a valid result, spec §5 v2) the day of the run, which only labels the result."""
    latest = [d for row in rows for d in row if d is not None]
    if not latest:
        return run_day or dt.date.today()
    return max(latest)


def spooled_events(spool: EventSpool, con: Any, batch_rows: int = SPILL_ROWS) -> Iterator[pa.Table]:
    """The spooled events in batches, one row per source reference (the last read wins), no ``seq``.

    The event store keys events by source reference and keeps the later version of a
    reference read twice (``DataFrame.drop_duplicates(keep="last")`` in arrival order).
    """
    glob = spool._glob("events")
    if glob:
        cols = ", ".join(f'"{c}"' for c in EVENT_COLUMNS)
        yield from _batches(
            con,
            f"SELECT {cols} FROM read_parquet('{_sql_path(glob)}') "
            "QUALIFY row_number() OVER (PARTITION BY source ORDER BY seq DESC) = 1",
            batch_rows,
        )


def spooled_patients(spool: EventSpool, con: Any, batch_rows: int = SPILL_ROWS) -> Iterator[pa.Table]:
    """The last spooled record of each patient, in batches (the frames of :func:`pipeline.frames`)."""
    glob = spool._glob("patients")
    if glob:
        cols = ", ".join(f'"{c}"' for c in PATIENT_COLUMNS)
        yield from _batches(con, f"SELECT {cols} FROM ({_last_patients(glob)})", batch_rows)


def _batches(con: Any, query: str, batch_rows: int) -> Iterator[pa.Table]:
    for batch in con.sql(query).to_arrow_reader(max(1, batch_rows)):
        if batch.num_rows:
            yield pa.Table.from_batches([batch])


def kept_sources(spool: EventSpool, con: Any, refs: Iterable[str]) -> set[str]:
    """Those of ``refs`` that are the source of a spooled event or of a patient's last record."""
    wanted = pa.table({"ref": pa.array(sorted(set(refs)), pa.string())})
    relations = []
    if spool._glob("events"):
        relations.append(f"SELECT source FROM read_parquet('{_sql_path(spool._glob('events') or '')}')")
    if spool._glob("patients"):
        relations.append(f"SELECT source FROM ({_last_patients(spool._glob('patients') or '')})")
    if not relations or not wanted.num_rows:
        return set()
    con.register("_leopard_refs", wanted)
    try:
        union = " UNION ALL ".join(relations)
        rows = con.sql(f"SELECT DISTINCT r.ref FROM _leopard_refs r JOIN ({union}) s ON s.source = r.ref")
        return {str(ref) for (ref,) in rows.fetchall()}
    finally:
        con.unregister("_leopard_refs")


def spooled_quarantine(spool: EventSpool, batch_rows: int = SPILL_ROWS) -> Iterator[list[Quarantined]]:
    """The quarantined records of a closed spool, in batches, as the adapters gave them."""
    with spool.quarantine_csv.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        next(reader, None)
        batch: list[Quarantined] = []
        for row in reader:
            batch.append(quarantine_from_row(row))
            if len(batch) >= batch_rows:
                yield batch
                batch = []
        if batch:
            yield batch
