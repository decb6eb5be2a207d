"""The executor half of the Spark FHIR read: NDJSON lines through the one FHIR reader, per Spark task.

Every line goes through :class:`~leopard_etl.sources.fhir.parse.FhirRecordReader` — the rules of
spec §1 have one implementation — in a subclass that knows its Spark task sees only a slice of
the input. The three things the reader can only decide with the *whole* input (a
``medicationReference`` to a Medication defined elsewhere, a Condition / Procedure dated by an
Encounter read elsewhere, an event of a Patient read elsewhere) are never decided inside a task:

* a Medication definition becomes an ``M`` row (its id, codes and position) and a record naming a
  Medication by reference becomes a waiting ``W`` row (its text): the driver collects the
  definitions (few) and a second pass reads the waiting records with all of them known;
* an Encounter start becomes an ``N`` row and an undated record naming an Encounter a ``W`` row:
  the driver collects the starts of the Encounters waited for, and the second pass reads those
  records the same way;
* events are ``E`` rows whatever their patient: the driver keeps those of the Patients that were
  read (``P`` rows) and quarantines the rest with the reader's own reason.

Where a Medication or Encounter id is defined more than once, the one the Python reader would use
is chosen by position (file order of :func:`~leopard_etl.sources.fhir.files.expand_paths`, then
line, then Bundle entry): the latest definition before the record, else the first after it.

Positions and locations: Spark splits a large file between tasks, so a task knows a line only as
(file, byte offset of its split, index in the split). Its location is written
``path:@<split>+<index>`` and the driver turns it into ``path:<line>`` once every split's line
count (``C`` rows) is known. Pure Python and pyarrow: no pyspark import (it runs in the workers).
"""

from __future__ import annotations

import datetime as dt
import gzip
import pickle
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

from ...events import EVENT_COLUMNS, Event, EventSink, PatientRecord, Quarantined
from ...mappings import CodeMatcher
from ...sources.fhir.columnar_rows import BOM
from ...sources.fhir.dates import parse_fhir_date
from ...sources.fhir.files import feed_bundle
from ...sources.fhir.parse import FhirRecordReader, MedicationCodes
from ...sources.fhir.references import UrnIndex

__all__ = [
    "OUT_SCHEMA",
    "DefinitionTable",
    "FileInfo",
    "MedicationTable",
    "TaskSettings",
    "read_documents",
    "read_lines",
    "read_waiting",
    "sub_position",
]

#: one output row per fact; ``tag`` says which columns are filled (see the module docstring)
OUT_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("tag", pa.string()),
    ("rank", pa.int32()),
    ("block", pa.int64()),
    ("line", pa.int64()),
    ("sub", pa.string()),
    ("patient_id", pa.string()),
    ("kind", pa.string()),
    ("groups", pa.string()),
    ("system", pa.string()),
    ("code", pa.string()),
    ("start", pa.date32()),
    ("end", pa.date32()),
    ("precision", pa.string()),
    ("site", pa.string()),
    ("laterality", pa.string()),
    ("body_site", pa.string()),
    ("value", pa.string()),
    ("lesion_id", pa.string()),
    ("ingredient", pa.string()),
    ("fractions", pa.int64()),
    ("dose_cgy", pa.float64()),
    ("source", pa.string()),
    ("route", pa.string()),
    ("birth_date", pa.date32()),
    ("sex", pa.string()),
    ("death_date", pa.date32()),
    ("deceased", pa.bool_()),
    ("location", pa.string()),
    ("reason", pa.string()),
    ("record", pa.string()),
    ("record_id", pa.string()),
    ("key", pa.string()),
    ("text", pa.string()),
    ("urns", pa.string()),
    ("payload", pa.binary()),
    ("n", pa.int64()),
)
OUT_SCHEMA = pa.schema(list(OUT_FIELDS))
_NAMES = [name for name, _ in OUT_FIELDS]
assert all(c in _NAMES for c in EVENT_COLUMNS)

#: waiting-record kinds (``W`` rows, column ``kind``)
WAIT_MEDICATION, WAIT_ENCOUNTER = "medication", "encounter"
#: ranks of the files of one ``--fhir`` source: rank = source * RANK_BASE + place in its read order
RANK_BASE = 1_000_000
#: rows buffered before a task hands an Arrow batch to Spark
_BATCH_ROWS = 20_000
_ENTRY = re.compile(r"#entry\[(\d+)\]")
_MARKER = re.compile(r":@(\d+)\+(\d+)$")


def sub_position(location: str) -> str:
    """Position inside a line or document from its location: the Bundle entry path, sortable as text.

    ``x.ndjson:7`` → ``""``; ``x.ndjson:7#entry[2]#entry[10]`` → ``"000002.000010"`` (the order in which
    :func:`~leopard_etl.sources.fhir.files.feed_bundle` feeds entries, nested Bundles depth first).
    """
    return ".".join(f"{int(i):06d}" for i in _ENTRY.findall(location))


Position = tuple[int, int, int, str]


@dataclass(frozen=True)
class FileInfo:
    """One input file as the default reader names and orders it."""

    uri: str
    display: str  #: its name in locations (the default reader's ``str(path)``)
    rank: int  #: source * RANK_BASE + its place in the source's read order (Patient*, Medication*, rest)
    kind: str  #: ``ndjson``, ``document`` (``.json``) or ``log`` (an export client's log)
    given: bool = False  #: named on the command line (a ``.json`` found in a folder may be skipped)

    @property
    def name(self) -> str:
        return self.display.replace("\\", "/").rstrip("/").rsplit("/", 1)[-1]


@dataclass(frozen=True)
class TaskSettings:
    """What every task needs, shipped once (a broadcast variable)."""

    matcher: CodeMatcher
    files: Mapping[str, FileInfo]  #: normalised URI → file
    run_day: dt.date | None
    cutoff: dt.date | None
    medications: DefinitionTable | None = None
    #: Encounter id → the JSON of its ``period.start`` (only the ids undated records wait for)
    encounters: DefinitionTable | None = None
    _ranks: dict[str, int] = field(default_factory=dict, compare=False, repr=False)

    def position(self, location: str) -> Position:
        """The position of the record at ``location`` (a marker ``path:@split+index``, ``path:line`` or
        ``path``, each maybe followed by Bundle entries)."""
        if not self._ranks:
            self._ranks.update({f.display: f.rank for f in self.files.values()})
        base, sub = location.split("#", 1)[0], sub_position(location)
        marker = _MARKER.search(base)
        if marker:
            return self._ranks.get(base[: marker.start()], 0), int(marker[1]), int(marker[2]), sub
        if base in self._ranks:
            return self._ranks[base], 0, 0, sub
        path, _, line = base.rpartition(":")
        return self._ranks.get(path, 0), 0, int(line) if line.isdigit() else 0, sub


@dataclass
class DefinitionTable:
    """Every definition of an id (Medications: their codes; Encounters: their start) by (source, id),
    in read order. Medications are few; Encounters are kept only for the ids records waited for.

    The default run reads each ``--fhir`` source with its own reader, so a reference resolves only
    to a definition of its own source; the source is ``rank // RANK_BASE``.
    """

    defs: dict[tuple[int, str], list[tuple[Position, Any]]] = field(default_factory=dict)

    def add(self, key: str, pos: Position, value: Any) -> None:
        self.defs.setdefault((pos[0] // RANK_BASE, key), []).append((pos, value))

    def sort(self) -> None:
        for found in self.defs.values():
            found.sort(key=lambda d: d[0])

    def at(self, key: str, pos: Position) -> Any:
        """The definition the Python reader uses for a record at ``pos``: the latest before it, else
        the first after it (the record waited for it); None: never defined."""
        found = self.defs.get((pos[0] // RANK_BASE, key))
        if not found:
            return None
        before = [value for p, value in found if p < pos]
        return before[-1] if before else found[0][1]


#: Medication id → its codes (MedicationCodes)
MedicationTable = DefinitionTable


def norm_uri(uri: str) -> str:
    """A file URI in one spelling (``file:///x``, ``file:/x`` and %-escapes are the same file)."""
    from urllib.parse import unquote

    text = unquote(uri)
    if text.startswith("file:"):
        text = "file:/" + text[len("file:") :].lstrip("/")
    return text


# --- the sink and the reader of one task ----------------------------------------------------------
#: the columns an ``E`` row fills, in the order :meth:`_Rows.event` keeps them
_EVENT_ROW = ("rank", "block", "line", "sub", *EVENT_COLUMNS, "location")


class _Rows:
    """Output rows of a task, flushed as Arrow record batches.

    Events (nearly every row) are kept as plain tuples and turned into columns at the flush; the
    other rows (patients, definitions, waits, counts) go column by column.
    """

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self.columns: dict[str, list[Any]] = {name: [] for name in _NAMES}
        self.n_other = 0

    @property
    def n(self) -> int:
        return len(self.events) + self.n_other

    def event(self, pos: Position, e: Event, location: str) -> None:
        self.events.append((*pos, *e, location))

    def add(self, tag: str, pos: Position, **values: Any) -> None:
        rank, block, line, sub = pos
        cols = self.columns
        for name in _NAMES:
            cols[name].append(values.get(name))
        cols["tag"][-1] = tag
        cols["rank"][-1], cols["block"][-1], cols["line"][-1], cols["sub"][-1] = rank, block, line, sub
        self.n_other += 1

    def batch(self) -> pa.RecordBatch:
        tables = []
        if self.n_other:
            arrays = [pa.array(self.columns[name], type=t) for name, t in OUT_FIELDS]
            tables.append(pa.Table.from_arrays(arrays, schema=OUT_SCHEMA))
        if self.events:
            n = len(self.events)
            by_name = dict(zip(_EVENT_ROW, zip(*self.events, strict=True), strict=True))
            arrays = []
            for name, t in OUT_FIELDS:
                if name == "tag":
                    arrays.append(pa.array(["E"] * n, type=t))
                elif name in by_name:
                    arrays.append(pa.array(by_name[name], type=t))
                else:
                    arrays.append(pa.nulls(n, type=t))
            tables.append(pa.Table.from_arrays(arrays, schema=OUT_SCHEMA))
        self.events = []
        self.columns = {name: [] for name in _NAMES}
        self.n_other = 0
        if not tables:
            return pa.RecordBatch.from_pylist([], schema=OUT_SCHEMA)
        return pa.concat_tables(tables).combine_chunks().to_batches()[0]


class _Sink(EventSink):
    """Events, patients and quarantined records as output rows (the reader's sink in a task)."""

    def __init__(self, rows: _Rows, settings: TaskSettings) -> None:
        super().__init__()
        self.rows = rows
        self.run_day = settings.run_day
        self.cutoff = settings.cutoff
        self.pos: Position = (0, 0, 0, "")

    def event(self, e: Event) -> None:  # events come through _TaskReader._accept with their location
        raise AssertionError("events are emitted by the task reader")

    def patient(self, p: PatientRecord) -> None:
        self.rows.add("P", self.pos, **p._asdict())

    def quarantine(self, q: Quarantined) -> None:
        self.stats.quarantined += 1
        self.rows.add(
            "Q", self.pos, location=q.location, reason=q.reason, record=q.record, record_id=q.record_id
        )


class _Definitions(dict[str, MedicationCodes]):
    """The reader's Medication map inside a task.

    Deferring (the first read): it knows nothing (every reference waits) and turns each definition
    the reader stores into an ``M`` row. Resolving (the waiting records): the definition at the
    record's position, from the :class:`MedicationTable` of the whole input.
    """

    def __init__(self, sink: _Sink, table: DefinitionTable | None) -> None:
        super().__init__()
        self.sink = sink
        self.table = table

    def __setitem__(self, mid: str, codes: MedicationCodes) -> None:
        if self.table is None:
            self.sink.rows.add("M", self.sink.pos, key=mid, payload=pickle.dumps(codes))

    def get(self, mid: str, default: Any = None) -> Any:
        if self.table is None:
            return default
        found = self.table.at(mid, self.sink.pos)
        return default if found is None else found


class _TaskReader(FhirRecordReader):
    """The FHIR reader of one Spark task (see the module docstring for what it leaves to the driver)."""

    def __init__(self, settings: TaskSettings, sink: _Sink, *, resolving: bool = False) -> None:
        super().__init__(settings.matcher, sink, track_touched=False)
        self.settings = settings
        self.task_sink = sink
        self.rows = sink.rows
        self.resolving = resolving
        self._medications = _Definitions(sink, settings.medications if resolving else None)

    def at(self, rank: int, block: int, line: int) -> None:
        """The line about to be fed (its Bundle entries take their sub-position from their locations)."""
        self.task_sink.pos = (rank, block, line, "")

    def feed(
        self, res: Any, location: str, urns: UrnIndex | None = None, fallback_id: str | None = None
    ) -> None:
        rank, block, line, _ = self.task_sink.pos
        self.task_sink.pos = (rank, block, line, sub_position(location))
        super().feed(res, location, urns, fallback_id)

    def _accept(self, e: Event, location: str = "") -> None:
        # every event leaves the task; the driver keeps those of the Patients read anywhere
        self.rows.event(self.task_sink.pos, e, location)

    def encounter_read(self, rid: str, res: dict[str, Any]) -> None:
        """Deferring: the Encounter's start becomes an ``N`` row (the parent's test of a usable start);
        nothing is kept, so undated records always wait and are resolved with the whole input."""
        if self.resolving:
            super().encounter_read(rid, res)
            return
        period = res.get("period")
        raw = period.get("start") if isinstance(period, dict) else None
        if raw is None:
            return
        try:
            parse_fhir_date(raw)
        except ValueError:
            return
        self.rows.add("N", self.task_sink.pos, key=rid, text=orjson.dumps(raw).decode())

    def drain(self) -> None:
        """Hand the records still waiting for a Medication or an Encounter to the driver (``W`` rows).

        They were not counted as read while they waited; the task that reads them again counts them.
        """
        waiting = (
            (WAIT_MEDICATION, self._wait_medication),
            (WAIT_ENCOUNTER, self._wait_encounter),
        )
        for kind, table in waiting:
            for target, items in table.items():
                for text, location, urns in items:
                    self.rows.add(
                        "W",
                        self.settings.position(location),
                        kind=kind,
                        key=target,
                        text=text,
                        location=location,
                        urns=orjson.dumps(urns).decode() if urns else None,
                    )
            table.clear()

    def stats_row(self) -> None:
        self.rows.add("S", (0, 0, 0, ""), payload=pickle.dumps(self.sink.stats))


# --- task entry points (mapInArrow functions) -------------------------------------------------------
def _marker(display: str, block: int, index: int) -> str:
    return f"{display}:@{block}+{index}"


def _feed_line(reader: _TaskReader, line: bytes, location: str) -> None:
    """One NDJSON line, exactly as ``files._feed_lines`` reads it (after its BOM and blank-line checks)."""
    try:
        res = orjson.loads(line)
    except orjson.JSONDecodeError:
        reader.bad_record(location, "invalid JSON", line)
        return
    if isinstance(res, dict) and res.get("resourceType") == "Bundle":
        feed_bundle(reader, res, location)
    else:
        reader.feed(res, location)


def read_lines(batches: Iterable[pa.RecordBatch], settings: TaskSettings) -> Iterator[pa.RecordBatch]:
    """The first read of NDJSON lines: columns ``path`` (URI), ``block`` (split offset), ``line`` (bytes).

    Lines arrive split by split, each split's lines in file order (a Spark file scan), so a
    line's index in its split is counted here; ``C`` rows give each split's line count.
    """
    rows = _Rows()
    reader = _TaskReader(settings, _Sink(rows, settings))
    current: tuple[str, int] | None = None
    info: FileInfo | None = None
    index = 0
    log_lines = 0

    def close_split() -> None:
        nonlocal log_lines
        if current is not None:
            rows.add("C", (info.rank if info else 0, current[1], 0, ""), key=current[0], n=index)
            if info is not None and info.kind == "log" and log_lines:
                stats = reader.sink.stats
                stats.read += log_lines
                stats.out_of_scope += log_lines
                reason = f"export log {info.name}"
                stats.out_of_scope_reasons[reason] = stats.out_of_scope_reasons.get(reason, 0) + log_lines
        log_lines = 0

    for batch in batches:
        paths = batch.column(0).to_pylist()
        blocks = batch.column(1).to_pylist()
        lines = batch.column(2).to_pylist()
        for path, block, line in zip(paths, blocks, lines, strict=True):
            key = (path, block)
            if key != current:
                close_split()
                current, index = key, 0
                info = settings.files.get(norm_uri(path))
                if info is None:
                    raise RuntimeError(f"the Spark scan read a file it was not given: {path}")
            assert info is not None
            index += 1
            if line is None:
                continue
            if block == 0 and index == 1:
                line = line.removeprefix(BOM)
            if not line.strip():
                continue
            if info.kind == "log":
                log_lines += 1
                continue
            location = _marker(info.display, block, index)
            reader.at(info.rank, block, index)
            # the default reader's line still ends with its newline (it shows in an invalid line's record)
            _feed_line(reader, line + b"\n", location)
        if rows.n >= _BATCH_ROWS:
            yield rows.batch()
    close_split()
    reader.drain()
    reader.finish()  # nothing waits any more: a no-op kept for the reader's contract
    reader.stats_row()
    yield rows.batch()


def read_documents(batches: Iterable[pa.RecordBatch], settings: TaskSettings) -> Iterator[pa.RecordBatch]:
    """The first read of ``.json`` documents (Bundles, single resources): columns ``path``, ``content``.

    As ``files._feed_document``: a document that is not JSON but has several lines is read as NDJSON;
    a ``.json`` file found in a folder that is not a FHIR resource is skipped.
    """
    rows = _Rows()
    reader = _TaskReader(settings, _Sink(rows, settings))
    for batch in batches:
        for path, content in zip(batch.column(0).to_pylist(), batch.column(1).to_pylist(), strict=True):
            info = settings.files[norm_uri(path)]
            data = gzip.decompress(content) if info.display.endswith(".gz") else content
            data = data.removeprefix(BOM)
            reader.at(info.rank, 0, 0)
            try:
                doc = orjson.loads(data)
            except orjson.JSONDecodeError:
                if data.count(b"\n") > 1:  # NDJSON written with a .json name
                    for lineno, line in enumerate(data.splitlines(), 1):
                        if lineno == 1:
                            line = line.removeprefix(BOM)
                        if not line.strip():
                            continue
                        location = f"{info.display}:{lineno}"
                        reader.at(info.rank, 0, lineno)
                        _feed_line(reader, line, location)
                else:
                    reader.bad_record(info.display, "invalid JSON", data)
                continue
            if not info.given and not (isinstance(doc, dict) and "resourceType" in doc):
                continue  # a manifest or summary found in a folder: not a resource
            if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
                feed_bundle(reader, doc, info.display)
            else:
                reader.feed(doc, info.display)
        if rows.n >= _BATCH_ROWS:
            yield rows.batch()
    reader.drain()
    reader.finish()
    reader.stats_row()
    yield rows.batch()


def read_waiting(batches: Iterable[pa.RecordBatch], settings: TaskSettings) -> Iterator[pa.RecordBatch]:
    """The second read: the ``W`` rows of the first (records that waited for a Medication or an
    Encounter), with every Medication and the starts of the Encounters they wait for known
    (``settings.medications`` / ``settings.encounters``). What is still unknown is quarantined by the
    reader's ``finish``, with its reason.
    """
    rows = _Rows()
    sink = _Sink(rows, settings)
    encounters = settings.encounters or DefinitionTable()
    for batch in batches:
        for rec in batch.to_pylist():
            if rec["tag"] != "W":
                continue
            # one reader per record: each may see another start of the same Encounter id
            reader = _TaskReader(settings, sink, resolving=True)
            pos = (rec["rank"], rec["block"], rec["line"], rec["sub"] or "")
            sink.pos = pos
            urns = {k: (v[0], v[1]) for k, v in orjson.loads(rec["urns"]).items()} if rec["urns"] else None
            if rec["kind"] == WAIT_ENCOUNTER:
                start = encounters.at(rec["key"], pos)
                if start is not None:
                    reader.encounter_read(rec["key"], {"period": {"start": orjson.loads(start)}})
            reader.feed(orjson.loads(rec["text"]), rec["location"], urns)
            reader.finish()
        if rows.n >= _BATCH_ROWS:
            yield rows.batch()
    rows.add("S", (0, 0, 0, ""), payload=pickle.dumps(sink.stats))
    yield rows.batch()
