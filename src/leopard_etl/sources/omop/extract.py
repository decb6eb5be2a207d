"""Read an OMOP CDM into an EventSink: resolve concepts, push the filter down, stream the rows.

Only rows that can matter leave the database one by one: the concept set goes into a
temporary table, the screened persons (an nsclc-group condition) into another, and each
``sql/extract/<table>.sql`` joins both and flags the rows that may be in a code group
(``candidate``). Those come back in chunks through a server-side cursor
(``stream_results`` / ``yield_per``) and are classified one by one by the pure
:class:`~leopard_etl.sources.omop.rows.RowReader`. *(spec v2)* Every other row of a
screened person is an activity record: it is aggregated in the database (``activity.sql``:
one row per person and table, its latest date ≤ the bound) and counted in
``unmatched_codes`` (``unmatched.sql``), so that out-of-scope rows cost almost nothing.

Column types are not trusted (spec §1): every column goes through a casting expression
(:mod:`~leopard_etl.sources.omop.columns`).

Temporary tables (``CREATE TEMPORARY TABLE``) exist in PostgreSQL, DuckDB, Snowflake,
Oracle 18+ (private temporary tables aside), MySQL and Spark SQL 3 (temporary views);
the SQL otherwise uses only joins, ``IN`` / ``EXISTS`` sub-queries, ``LIKE``, ``CASE``,
``MIN``/``MAX``/``COUNT``/``SUM`` and bound parameters.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Table, column, select, table, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateTable

from ...errors import ConfigError, LeopardError, SourceError
from ...events import Event, EventSink, Quarantined
from ...mappings import CodeMatcher
from ...paths import sql_dir
from .columns import ColumnSql, TableTypes, probe_types
from .concepts import ConceptSet, resolve_concepts
from .connect import (
    CdmLayout,
    check_identifier,
    connect,
    describe_url,
    inspect_cdm,
    open_engine,
    table_prefix,
)
from .rows import (
    NO_DATE,
    RowReader,
    activity_event,
    id_text,
    period_event,
    person_record,
    quarantined,
)

__all__ = ["OmopReadReport", "read_omop"]

#: "No bound" for the activity aggregate and the future-date check: a date every database accepts.
_NO_BOUND = dt.date(9999, 12, 31)
#: Rows per multi-row INSERT into the temporary tables (2–3 parameters each, far below any limit).
_INSERT_ROWS = 500
UNKNOWN_PERSON = "person_id not in the person table"
NO_GROUP = "no code group"

_TEMP = MetaData()
CONCEPT_TMP = Table(
    "leopard_concept",
    _TEMP,
    Column("concept_id", BigInteger, nullable=False),
    Column("nsclc", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
SOURCE_CODE_TMP = Table(
    "leopard_source_code",
    _TEMP,
    Column("record", String(40), nullable=False),
    Column("pattern", String(60), nullable=False),
    Column("nsclc", Integer, nullable=False),
    # the pattern's first character: a hashed IN on it spares most rows the LIKE over every pattern
    Column("lead", String(1), nullable=False),
    prefixes=["TEMPORARY"],
)
#: first characters a source value can start with, for a pattern that starts with a wildcard
_ANY_LEAD = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
PERSON_TMP = Table(
    "leopard_person",
    _TEMP,
    Column("person_id", BigInteger, nullable=False),
    Column("known", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
#: candidate rows the classifier found in no code group: activity rows like the rest
UNGROUPED_TMP = Table(
    "leopard_ungrouped",
    _TEMP,
    Column("record", String(40), nullable=False),
    Column("row_id", BigInteger, nullable=False),
    prefixes=["TEMPORARY"],
)
_TEMP_TABLES = (CONCEPT_TMP, SOURCE_CODE_TMP, PERSON_TMP, UNGROUPED_TMP)

#: Tables read for patient facts or not at all (episode_event links episodes to rows; no rule needs it).
_NOT_EVENTS = ("person", "death", "observation_period", "episode_event")
#: Tables none of whose rows is ever in a code group (spec §1 v2: activity only).
_ACTIVITY_ONLY = frozenset({"visit_occurrence", "visit_detail", "device_exposure"})
#: Tables whose candidate rows come with their value concept (grouped_value.sql).
_VALUE_TABLES = frozenset({"measurement", "observation"})


@dataclass
class OmopReadReport:
    """What one read did, per table: rows held, rows considered (``read``), rows that left the database.

    ``read`` per table is what :attr:`EventSink.stats.read` counts (see docs/omop.md, "Accounting").
    """

    cdm_version: str = ""
    held: dict[str, int] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)
    read: dict[str, int] = field(default_factory=dict)
    concepts: dict[str, int] = field(default_factory=dict)
    screened_persons: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "cdm_version": self.cdm_version,
            "screened_persons": self.screened_persons,
            "concepts": dict(self.concepts),
            "tables": {
                t: {"held": self.held.get(t), "read": self.read.get(t, 0), "left": self.left.get(t, 0)}
                for t in sorted(set(self.held) | set(self.left) | set(self.read))
            },
        }


def load_sql(name: str, **parts: object) -> str:
    """``sql/extract/<name>.sql`` with its ``{…}`` parts filled (validated, quoted identifiers only).

    Whole-line ``--`` comments are dropped first: they document the placeholders, and a
    statement embedded into another (``{rows}``) stays one clean sub-query.
    """
    path = sql_dir() / "extract" / f"{name}.sql"
    try:
        template = path.read_text(encoding="utf-8")
    except OSError:
        raise ConfigError(
            f"SQL file {path} is missing", fix="reinstall leopard-etl or fix LEOPARD_HOME"
        ) from None
    lines = [line for line in template.splitlines() if not line.lstrip().startswith("--")]
    return "\n".join(lines).format(**parts)


def read_omop(
    url: str,
    matcher: CodeMatcher,
    sink: EventSink,
    *,
    cdm_schema: str | None = None,
    vocab_schema: str | None = None,
    chunk_size: int = 50_000,
    since: dt.date | None = None,
    count_held: bool = True,
) -> OmopReadReport:
    """Read the LEOPARD-relevant rows of an OMOP CDM into ``sink``.

    ``vocab_schema`` defaults to ``cdm_schema``. ``since`` keeps clinical rows starting on or
    after that date, and rows without a usable start date (persons and observation periods are
    always read whole). ``count_held`` adds a ``COUNT(*)`` per table to the report (a full scan
    on some databases: turn off on very large instances). ``sink.cutoff`` / ``sink.run_day``
    bound the activity dates and decide what is dated in the future (spec §3.12 v2); the
    unmatched codes go to ``sink.unmatched_codes``. Errors are one-line ConfigError / SourceError.
    """
    cdm = check_identifier(cdm_schema, "CDM schema")
    vocab = check_identifier(vocab_schema, "vocabulary schema") or cdm
    if chunk_size < 1:
        raise ConfigError(f"chunk size {chunk_size} must be positive", fix="use e.g. 50000")
    engine = open_engine(url)
    try:
        with connect(engine) as conn:
            if conn.dialect.name == "postgresql":
                # one snapshot for every statement: the aggregates count the rows the row queries saw
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            layout = inspect_cdm(conn, cdm, vocab)
            try:
                return _read(conn, layout, matcher, sink, chunk_size, since, count_held)
            finally:
                conn.rollback()  # drops nothing persistent: only our temporary tables lived here
    except LeopardError:
        raise
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        raise SourceError(
            f"reading OMOP from {describe_url(engine.url)} failed: {first}",
            fix="check the CDM tables have the v5.3/v5.4 columns and the user may create temporary tables",
        ) from None
    finally:
        engine.dispose()


class _Sql:
    """The statements of one read: schema prefixes and each table's cast-safe column expressions."""

    def __init__(self, conn: Connection, layout: CdmLayout) -> None:
        self.dialect = conn.dialect.name
        self.cdm = table_prefix(conn, layout.cdm_schema)
        self.vocab = table_prefix(conn, layout.vocab_schema)
        self.types: TableTypes | None = probe_types(conn, layout.cdm_schema)
        self.vocab_types: TableTypes | None = (
            self.types if layout.vocab_schema == layout.cdm_schema else probe_types(conn, layout.vocab_schema)
        )
        self._names: dict[str, frozenset[str]] = {}
        self._conn = conn

    def columns(self, table_name: str, alias: str, vocabulary: bool = False) -> ColumnSql:
        types = self.vocab_types if vocabulary else self.types
        if types is not None:
            return ColumnSql(self.dialect, alias, types.get(table_name, {}))
        if vocabulary:  # unknown dialect, vocabulary: trust its columns
            return ColumnSql(self.dialect, alias, None)
        if table_name not in self._names:  # unknown dialect: which columns exist, from an empty result
            probe = f"SELECT * FROM {self.cdm}{table_name} WHERE 1 = 0"
            keys = self._conn.execute(text(probe)).keys()
            self._names[table_name] = frozenset(str(k).lower() for k in keys)
        return ColumnSql(self.dialect, alias, None, self._names[table_name])

    def concept_code_type(self) -> str | None:
        if self.vocab_types is None:
            return None
        return self.vocab_types.get("concept", {}).get("concept_code")

    def rows(self, table_name: str) -> str:
        return load_sql(table_name, cdm=self.cdm, vocab=self.vocab, t=self.columns(table_name, "t"))

    def wrap(self, name: str, table_name: str, since: bool) -> str:
        return load_sql(
            name,
            rows=self.rows(table_name),
            vocab=self.vocab,
            since="\n    AND (a.start_date IS NULL OR a.start_date >= :since)" if since else "",
            vc=self.columns("concept", "vc", vocabulary=True),
            c=self.columns("concept", "c", vocabulary=True),
            sc=self.columns("concept", "sc", vocabulary=True),
        )


def _bounds(sink: EventSink) -> tuple[dt.date, dt.date]:
    """(bound, future): activity dates count up to ``bound`` (the cutoff, else the day of the run);
    a record starting after ``future`` (the day of the run, only without a cutoff) is quarantined,
    exactly when ``sink.in_future`` says so."""
    bound = sink.cutoff or sink.run_day or _NO_BOUND
    future = sink.run_day if sink.cutoff is None and sink.run_day is not None else _NO_BOUND
    return bound, future


def _skip(sink: EventSink, reason: str, n: int) -> None:
    """``n`` rows read but out of scope, with the reason (ReadStats.skip, n at once)."""
    if n:
        sink.stats.out_of_scope += n
        reasons = sink.stats.out_of_scope_reasons
        reasons[reason] = reasons.get(reason, 0) + n


def _read(
    conn: Connection,
    layout: CdmLayout,
    matcher: CodeMatcher,
    sink: EventSink,
    chunk_size: int,
    since: dt.date | None,
    count_held: bool,
) -> OmopReadReport:
    sql = _Sql(conn, layout)
    report = OmopReadReport(cdm_version="5.4" if layout.has_procedure_end else "5.3")
    concept = table("concept", column("concept_id"), schema=layout.vocab_schema)
    if conn.execute(select(concept.c.concept_id).limit(1)).first() is None:
        where = f"schema {layout.vocab_schema!r}" if layout.vocab_schema else "the default schema"
        raise SourceError(
            f"the concept table in {where} is empty (vocabulary not loaded)",
            fix="load the OHDSI vocabularies from Athena into the vocabulary schema",
        )
    concepts = resolve_concepts(conn, matcher, layout.vocab_schema, sql.concept_code_type())
    report.concepts = dict(concepts.counts)
    _load_temp_tables(conn, concepts)
    conn.execute(
        text(
            load_sql(
                "screened_persons",
                cdm=sql.cdm,
                t=sql.columns("condition_occurrence", "t"),
                p=sql.columns("person", "p"),
            )
        )
    )
    if conn.dialect.name == "postgresql":  # temporary tables are never auto-analysed
        for t in (CONCEPT_TMP, SOURCE_CODE_TMP, PERSON_TMP):
            conn.execute(text(f"ANALYZE {t.name}"))
        # ~40 statements whose cost estimates pass jit_above_cost: compiling each took ~0.25 s,
        # more than running it (this transaction only)
        conn.execute(text("SET LOCAL jit = off"))

    persons = _read_persons(conn, sql, sink, report, chunk_size)
    if getattr(sink, "unmatched_codes", None) is None:  # a sink of another make
        sink.unmatched_codes = []
    bound, future = _bounds(sink)
    params: dict[str, Any] = {"bound": bound, "future": future}
    if since is not None:
        params["since"] = since
    reader = RowReader(concepts, matcher)
    read = _TableRead(conn, sql, sink, report, persons, params, chunk_size, since is not None)
    read.periods()
    for name in (t for t in layout.tables if t not in _NOT_EVENTS):
        if name not in _ACTIVITY_ONLY:
            read.candidates(name, reader)
        read.activity(name)
    if read.latest is not None:
        sink.watermark = read.latest.isoformat()
    if count_held:
        for name in dict.fromkeys(("person", "death", *layout.tables)):
            n = conn.execute(text(load_sql("count_rows", cdm=sql.cdm, table=name))).scalar()
            report.held[name] = int(n or 0)
            # The rows of persons who are not screened never leave the database (push-down), but
            # they are input: a complete read accounts for them as out of scope, so `read` is the
            # CDM's own row count as on the FHIR side (docs/omop.md, "Accounting").
            others = report.held[name] - report.read.get(name, 0)
            if since is None and others > 0 and name != "episode_event":
                sink.stats.read += others
                sink.stats.skip(f"{name}: person not screened", others)
    for t in _TEMP_TABLES:
        conn.execute(text(f"DROP TABLE IF EXISTS {t.name}"))  # fixed names, not input
    return report


def _read_persons(
    conn: Connection, sql: _Sql, sink: EventSink, report: OmopReadReport, chunk_size: int
) -> set[str]:
    """Screened persons with a person row → PatientRecords; their death rows count as read too."""
    persons: set[str] = set()
    left = deaths = death_rows = 0
    statement = load_sql(
        "person",
        cdm=sql.cdm,
        p=sql.columns("person", "p"),
        d=sql.columns("death", "d"),
    )
    for row in _stream(conn, statement, {}, chunk_size):
        left += 1
        record = person_record(row)
        n_death = int(row.get("n_death") or 0)
        sink.stats.read += 1 + n_death
        sink.stats.in_scope += 1 + n_death
        persons.add(record.patient_id)
        deaths += record.deceased
        death_rows += n_death
        sink.patient(record)
    report.left["person"] = left
    report.left["death"] = deaths  # travels aggregated onto its person row
    report.read["person"] = left
    report.read["death"] = death_rows
    report.screened_persons = len(persons)
    return persons


class _TableRead:
    """Reads one table after the other into the sink, with the accounting of docs/omop.md."""

    def __init__(
        self,
        conn: Connection,
        sql: _Sql,
        sink: EventSink,
        report: OmopReadReport,
        persons: set[str],
        params: dict[str, Any],
        chunk_size: int,
        since: bool,
    ) -> None:
        self.conn = conn
        self.sql = sql
        self.sink = sink
        self.report = report
        self.persons = persons
        self.params = params
        self.chunk_size = chunk_size
        self.since = since
        #: the latest start of the clinical events read (sink.watermark)
        self.latest: dt.date | None = None
        #: no start on or before this day is in the future (spares a call per row)
        self.future: dt.date = params["future"]

    def _count(self, name: str, read: int, left: int) -> None:
        self.report.read[name] = self.report.read.get(name, 0) + read
        self.report.left[name] = self.report.left.get(name, 0) + left

    def _use(self, table_name: str, row: Mapping[str, Any], event: Event) -> None:
        """A dated row of a known person: its event, or quarantined when dated in the future."""
        if event.patient_id not in self.persons:
            self.sink.quarantine(quarantined(table_name, row, UNKNOWN_PERSON))
        elif event.start > self.future and self.sink.in_future(event.start):
            self.sink.quarantine(quarantined(table_name, row, self.sink.future_reason(event.start)))
        else:
            self.sink.stats.in_scope += 1
            self.sink.event(event)
            if table_name != "observation_period" and (self.latest is None or event.start > self.latest):
                self.latest = event.start

    def periods(self) -> None:
        """observation_period rows one by one (about one per person): start and end are alive dates."""
        n = 0
        for row in _stream(self.conn, self.sql.rows("observation_period"), {}, self.chunk_size):
            n += 1
            self.sink.stats.read += 1
            event = period_event(row)
            if event is None:
                if id_text(row.get("person_id")) not in self.persons:
                    self.sink.quarantine(quarantined("observation_period", row, UNKNOWN_PERSON))
                else:
                    self.sink.stats.skip(NO_DATE)
                continue
            self._use("observation_period", row, event)
        self._count("observation_period", n, n)

    def candidates(self, name: str, reader: RowReader) -> None:
        """The rows that may be in a code group, classified one by one; the ones in no group are
        remembered (leopard_ungrouped) and counted with the table's activity."""
        statement = self.sql.wrap("grouped_value" if name in _VALUE_TABLES else "grouped", name, self.since)
        left = read = 0
        ungrouped: list[dict[str, Any]] = []
        for row in _stream(self.conn, statement, self.params, self.chunk_size):
            left += 1
            outcome = reader.event(name, row)
            if outcome is None:
                row_id = _row_id(row.get("row_id"))
                if row_id is not None:
                    ungrouped.append({"record": name, "row_id": row_id})
                    continue
                read += 1  # no row id to find it again in activity.sql: counted here, out of scope
                self.sink.stats.read += 1
                self.sink.stats.skip(NO_GROUP)
                continue
            read += 1
            self.sink.stats.read += 1
            if isinstance(outcome, Quarantined):
                self.sink.quarantine(outcome)
            else:
                self._use(name, row, outcome)
        _insert(self.conn, UNGROUPED_TMP, ungrouped)
        self._count(name, read, left)

    def activity(self, name: str) -> None:
        """The table's activity rows, aggregated per person (activity.sql); exceptions one by one."""
        params = {**self.params, "record": name}
        statement = self.sql.wrap("activity", name, self.since)
        left = read = 0
        exceptions = False
        for row in _stream(self.conn, statement, params, self.chunk_size):
            left += 1
            n_rows = int(row["n_rows"] or 0)
            read += n_rows
            self.sink.stats.read += n_rows
            if not int(row["known"] or 0) or id_text(row["person_id"]) not in self.persons:
                exceptions = exceptions or n_rows > 0
                continue
            n_undated = int(row["n_undated"] or 0)
            n_future = int(row["n_future"] or 0)
            exceptions = exceptions or n_future > 0
            _skip(self.sink, NO_DATE, n_undated)
            self.sink.stats.in_scope += n_rows - n_undated - n_future
            latest = row["latest"]
            if latest is not None:
                event = activity_event(name, row["person_id"], _as_day(latest))
                self.sink.event(event)
                if self.latest is None or event.start > self.latest:
                    self.latest = event.start
        if exceptions:
            rows_sql = self.sql.wrap("activity_rows", name, self.since)
            for row in _stream(self.conn, rows_sql, params, self.chunk_size):
                left += 1
                known = int(row["known"] or 0) and id_text(row["person_id"]) in self.persons
                start = row["start_date"]
                if not known:
                    self.sink.quarantine(quarantined(name, row, UNKNOWN_PERSON))
                else:
                    day = _as_day(start)
                    self.sink.quarantine(quarantined(name, row, self.sink.future_reason(day)))
        self._count(name, read, left)
        self._unmatched(name, params)

    def _unmatched(self, name: str, params: dict[str, Any]) -> None:
        """unmatched_codes.csv rows of the table (spec §5 v2), computed in the database."""
        statement = self.sql.wrap("unmatched", name, self.since)
        out: list[dict[str, object]] = self.sink.unmatched_codes
        for row in _stream(self.conn, statement, params, self.chunk_size):
            out.append(
                {
                    "record_type": name,
                    "system": str(row["code_system"] or ""),
                    "code": str(row["code"] or ""),
                    "display": row["display"],
                    "n_records": int(row["n_records"]),
                    "n_patients": int(row["n_patients"]),
                }
            )


def _row_id(value: Any) -> int | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if number.is_integer() else None


def _as_day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _stream(
    conn: Connection, sql: str, params: dict[str, Any], chunk_size: int
) -> Iterator[Mapping[str, Any]]:
    """Rows of a query in chunks through a server-side cursor (never the whole result in memory)."""
    options = {"stream_results": True, "yield_per": chunk_size}  # per statement: conn-level would stick
    result = conn.execute(text(sql), params, execution_options=options)
    keys = list(result.keys())
    for part in result.partitions():
        for values in part:  # plain dicts: RowMapping.get of an absent key costs an exception
            yield dict(zip(keys, values, strict=True))


def _load_temp_tables(conn: Connection, concepts: ConceptSet) -> None:
    for t in _TEMP_TABLES:
        conn.execute(text(f"DROP TABLE IF EXISTS {t.name}"))  # fixed names, not input
        conn.execute(CreateTable(t))
    rows = [{"concept_id": cid, "nsclc": int(cid in concepts.nsclc)} for cid in sorted(concepts.codings)]
    _insert(conn, CONCEPT_TMP, rows)
    codes: list[dict[str, Any]] = []
    for record, pattern, nsclc in concepts.source_patterns:
        upper = pattern.upper()  # matched against UPPER(source value): ICD codes in either case
        leads = _ANY_LEAD if upper[:1] in ("", "_", "%") else upper[:1]
        codes.extend({"record": record, "pattern": upper, "nsclc": int(nsclc), "lead": c} for c in leads)
    _insert(conn, SOURCE_CODE_TMP, codes)


def _insert(conn: Connection, target: Table, rows: list[dict[str, Any]]) -> None:
    """Multi-row INSERT … VALUES in slices: fast on every driver, unlike row-by-row executemany."""
    for i in range(0, len(rows), _INSERT_ROWS):
        conn.execute(target.insert().values(rows[i : i + _INSERT_ROWS]))
