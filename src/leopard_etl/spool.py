"""Bounded-memory runs: spill what the adapters read to Parquet, then derive patient partition by partition.

The default :class:`~leopard_etl.events.EventSink` keeps every event as a Python object,
so a run's memory grows with the input (10M resources do not fit). :class:`EventSpool` is a
drop-in sink that buffers a fixed number of events and writes them as Arrow record
batches to Parquet files in a scratch folder; quarantined records go straight to a CSV
file. After the read, DuckDB (which itself works within a memory limit and spills) computes
the data-wide default cutoff over the spilled files and splits them by patient into
partitions of a fixed size; :func:`derive_spooled` then runs the unchanged cohort rules on
one partition at a time with that cutoff fixed, and merges the per-partition outputs.
The result is exactly the single-shot :func:`leopard_etl.cohort.derive` — the tests prove it.

Every spilled row carries its arrival number (``seq``) so that a partition sees its
patients' records in the order the adapter produced them, as the single-shot frame does
(ties on a date keep that order in the rules).
"""

from __future__ import annotations

import csv
import datetime as dt
import math
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from .config import Rules
from .errors import SourceError
from .events import (
    EVENT_COLUMNS,
    PATIENT_COLUMNS,
    QUARANTINE_COLUMNS,
    Event,
    EventSink,
    PatientRecord,
    Quarantined,
)
from .mappings import Mappings

__all__ = [
    "EVENT_SCHEMA",
    "PARTITION_ROWS",
    "PATIENT_SCHEMA",
    "SPILL_ROWS",
    "EventSpool",
    "derive_spooled",
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
        self._patient_buf: list[PatientRecord] = []
        self._files = {"events": 0, "patients": 0}
        self.quarantine_csv = self.folder / "quarantine.csv"
        self._qfile: IO[str] | None = self.quarantine_csv.open("w", encoding="utf-8", newline="")
        self._qwriter = csv.writer(self._qfile, lineterminator="\n")
        self._qwriter.writerow(QUARANTINE_COLUMNS)

    # --- the sink ------------------------------------------------------------
    def event(self, e: Event) -> None:
        self._event_buf.append(e)
        if len(self._event_buf) >= self.spill_rows:
            self._spill_events()

    def patient(self, p: PatientRecord) -> None:
        self._patient_buf.append(p)
        if len(self._patient_buf) >= self.spill_rows:
            self._spill_patients()

    def quarantine(self, q: Quarantined) -> None:
        self.stats.quarantined += 1
        if self._qfile is None:
            raise SourceError("quarantine after the spool was closed", fix="report this as a bug")
        self._qwriter.writerow(q)

    def close(self) -> None:
        """Spill what is buffered and close the quarantine file (idempotent)."""
        self._spill_events()
        self._spill_patients()
        if self._qfile is not None:
            self._qfile.close()
            self._qfile = None

    # --- spilling ------------------------------------------------------------
    def _spill_events(self) -> None:
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
        self._files[kind] += 1
        path = self.folder / kind / f"{kind}-{self._files[kind]:06d}.parquet"
        path.parent.mkdir(exist_ok=True)
        pq.write_table(pa.Table.from_arrays(arrays, schema=schema), path, compression="zstd")

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

    def cutoff(self, con: Any, configured: dt.date | None) -> dt.date:
        """The configured cutoff, else the latest start, end or death date of the kept records.

        Exactly :func:`leopard_etl.cohort.timeline.default_cutoff` of the single-shot frames:
        every event counts (MedicationRequests too), ends only of dated events, death dates
        of the last record of each patient.
        """
        if configured is not None:
            return configured
        latest: list[dt.date] = []
        events, patients = self._glob("events"), self._glob("patients")
        if events:
            (row,) = con.sql(
                f"SELECT max(start), max(CASE WHEN \"end\" {_DATED} THEN \"end\" END) "
                f"FROM read_parquet('{_sql_path(events)}') WHERE start {_DATED}"
            ).fetchall()
            latest += [d for d in row if d is not None]
        if patients:
            (row,) = con.sql(
                f"SELECT max(death_date) FROM ({_last_patients(patients)}) WHERE death_date {_DATED}"
            ).fetchall()
            latest += [d for d in row if d is not None]
        if not latest:
            raise SourceError("no dated record in the input", fix="check the source, or set rules.cutoff")
        return max(latest)

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


def derive_spooled(
    spool: EventSpool,
    rules: Rules,
    mappings: Mappings,
    source_system: str,
    *,
    partition_rows: int = PARTITION_ROWS,
    tables: Mapping[str, Sequence[str] | None] | None = None,
) -> Any:
    """The cohort derivation of everything in ``spool``, one patient partition at a time.

    ``tables`` names the derived tables to keep, each with the columns to keep (``None``: all
    columns); ``tables=None`` keeps every table whole. patients.csv and the attrition are always
    complete. Repeated values share one object across partitions, so the held output costs
    little more than its pointers. Returns a :class:`leopard_etl.cohort.Derivation`.
    """
    from .cohort.derive import derive, merge_derivations

    spool.close()
    con = spool.connect()
    shared: dict[tuple[type, object], object] = {}
    try:
        cutoff = spool.cutoff(con, rules.cutoff)
        fixed = rules.model_copy(update={"cutoff": cutoff})
        parts = []
        for events, patients in spool.partitions(con, partition_rows):
            part = derive(events, patients, fixed, mappings, source_system)
            del events, patients
            if tables is not None:
                part.tables = {
                    name: frame if tables[name] is None else frame[list(tables[name] or ())]
                    for name, frame in part.tables.items()
                    if name in tables
                }
            part.tables = {name: _share_values(frame, shared) for name, frame in part.tables.items()}
            part.patients_csv = _share_values(part.patients_csv, shared)
            parts.append(part)
    finally:
        con.close()
    return merge_derivations(parts, cutoff)


def _share_values(frame: pd.DataFrame, shared: dict[tuple[type, object], object]) -> pd.DataFrame:
    """The same frame with equal values of object columns (``'true'``, dates) as one shared object.

    The pool is keyed by (type, value) so that ``True`` and ``1`` never stand for each other.
    """
    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object or name == "patient_id":  # ids are unique: nothing to share
            continue
        values = [v if v is None else shared.setdefault((type(v), v), v) for v in column.to_numpy()]
        frame[name] = pd.Series(np.array(values, dtype=object), index=frame.index, dtype=object)
    return frame
