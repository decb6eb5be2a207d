"""Read an OMOP CDM into an EventSink: resolve concepts, push the filter down, stream the rows.

Only rows that can matter leave the database: the concept set goes into a temporary
table, the screened persons (an nsclc-group condition) into another, and each
``sql/extract/<table>.sql`` joins both, so the database does the filtering and the
network carries the cohort's rows only. Rows come back in chunks through a
server-side cursor (``stream_results`` / ``yield_per``) and are classified one by one
by the pure :func:`~leopard_etl.sources.omop.rows.row_event`.

Temporary tables (``CREATE TEMPORARY TABLE``) exist in PostgreSQL, DuckDB, Snowflake,
Oracle 18+ (private temporary tables aside), MySQL and Spark SQL 3 (temporary views);
the SQL otherwise uses only joins, ``IN`` / ``EXISTS`` sub-queries, ``LIKE``,
``MIN``/``COUNT`` and bound parameters.
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
from .rows import RowReader, person_record

__all__ = ["OmopReadReport", "read_omop"]

#: Earliest date every database accepts: "no lower bound" without an ``IS NULL`` on a parameter.
_NO_SINCE = dt.date(1, 1, 1)
#: Rows per multi-row INSERT into the temporary tables (2 parameters each, far below any limit).
_INSERT_ROWS = 500

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
    Column("pattern", String(60), nullable=False),
    Column("nsclc", Integer, nullable=False),
    prefixes=["TEMPORARY"],
)
PERSON_TMP = Table(
    "leopard_person", _TEMP, Column("person_id", BigInteger, nullable=False), prefixes=["TEMPORARY"]
)


@dataclass
class OmopReadReport:
    """What one read did: rows each table holds vs rows that left the database, and the concept set."""

    cdm_version: str = ""
    held: dict[str, int] = field(default_factory=dict)
    left: dict[str, int] = field(default_factory=dict)
    concepts: dict[str, int] = field(default_factory=dict)
    screened_persons: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "cdm_version": self.cdm_version,
            "screened_persons": self.screened_persons,
            "concepts": dict(self.concepts),
            "tables": {
                t: {"held": self.held.get(t), "left": self.left.get(t, 0)}
                for t in sorted(set(self.held) | set(self.left))
            },
        }


def load_sql(name: str, **parts: str) -> str:
    """``sql/extract/<name>.sql`` with its ``{…}`` parts filled (validated, quoted identifiers only)."""
    path = sql_dir() / "extract" / f"{name}.sql"
    try:
        template = path.read_text(encoding="utf-8")
    except OSError:
        raise ConfigError(
            f"SQL file {path} is missing", fix="reinstall leopard-etl or fix LEOPARD_HOME"
        ) from None
    return template.format(**parts)


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
    after that date (persons and observation periods are always read whole). ``count_held``
    adds a ``COUNT(*)`` per table to the report (a full scan on some databases: turn off on
    very large instances). Errors are one-line ConfigError / SourceError.
    """
    cdm = check_identifier(cdm_schema, "CDM schema")
    vocab = check_identifier(vocab_schema, "vocabulary schema") or cdm
    if chunk_size < 1:
        raise ConfigError(f"chunk size {chunk_size} must be positive", fix="use e.g. 50000")
    engine = open_engine(url)
    try:
        with connect(engine) as conn:
            layout = inspect_cdm(conn, cdm, vocab)
            try:
                return _read(conn, layout, matcher, sink, chunk_size, since or _NO_SINCE, count_held)
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


def _read(
    conn: Connection,
    layout: CdmLayout,
    matcher: CodeMatcher,
    sink: EventSink,
    chunk_size: int,
    since: dt.date,
    count_held: bool,
) -> OmopReadReport:
    cdm = table_prefix(conn, layout.cdm_schema)
    vocab = table_prefix(conn, layout.vocab_schema)
    report = OmopReadReport(cdm_version="5.4" if layout.has_procedure_end else "5.3")
    concept = table("concept", column("concept_id"), schema=layout.vocab_schema)
    if conn.execute(select(concept.c.concept_id).limit(1)).first() is None:
        where = f"schema {layout.vocab_schema!r}" if layout.vocab_schema else "the default schema"
        raise SourceError(
            f"the concept table in {where} is empty (vocabulary not loaded)",
            fix="load the OHDSI vocabularies from Athena into the vocabulary schema",
        )
    concepts = resolve_concepts(conn, matcher, layout.vocab_schema)
    report.concepts = dict(concepts.counts)
    _load_temp_tables(conn, concepts)
    conn.execute(text(load_sql("screened_persons", cdm=cdm)))
    if conn.dialect.name == "postgresql":  # temporary tables are never auto-analysed
        for t in (CONCEPT_TMP, SOURCE_CODE_TMP, PERSON_TMP):
            conn.execute(text(f"ANALYZE {t.name}"))

    persons: set[str] = set()
    left = deaths = 0
    for row in _stream(conn, load_sql("person", cdm=cdm), {}, chunk_size):
        left += 1
        sink.stats.read += 1
        record = person_record(row)
        persons.add(record.patient_id)
        deaths += record.death_date is not None
        sink.stats.in_scope += 1
        sink.patient(record)
    report.left["person"] = left
    report.left["death"] = deaths  # travels joined to its person row, one per person at most
    report.screened_persons = len(persons)

    latest: dt.date | None = None
    reader = RowReader(concepts, matcher)
    for name in ("observation_period", *[t for t in layout.tables if t not in _NOT_EVENTS]):
        sql = load_sql(
            name,
            cdm=cdm,
            vocab=vocab,
            procedure_end="t.procedure_end_date" if layout.has_procedure_end else "NULL",
        )
        left = 0
        for row in _stream(conn, sql, {"since": since}, chunk_size):
            left += 1
            sink.stats.read += 1
            outcome = reader.event(name, row)
            if isinstance(outcome, str):
                sink.stats.skip(outcome)
            elif isinstance(outcome, Quarantined):
                sink.quarantine(outcome)
            elif outcome.patient_id not in persons:
                sink.quarantine(
                    Quarantined(
                        "omop",
                        outcome.source,
                        "person_id not in the person table",
                        f"person_id={outcome.patient_id}",
                    )
                )
            else:
                _emit(sink, outcome)
                if name != "observation_period" and (latest is None or outcome.start > latest):
                    latest = outcome.start
        report.left[name] = left
    if latest is not None:
        sink.watermark = latest.isoformat()
    if count_held:
        for name in ("person", "death", *layout.tables):
            n = conn.execute(text(load_sql("count_rows", cdm=cdm, table=name))).scalar()
            report.held[name] = int(n or 0)
    for t in (PERSON_TMP, SOURCE_CODE_TMP, CONCEPT_TMP):
        conn.execute(text(f"DROP TABLE IF EXISTS {t.name}"))  # fixed names, not input
    return report


#: Tables read for patient facts or not at all (episode_event links episodes to rows; no rule needs it).
_NOT_EVENTS = ("person", "death", "observation_period", "episode_event")


def _emit(sink: EventSink, event: Event) -> None:
    sink.stats.in_scope += 1
    sink.event(event)


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
    for t in (CONCEPT_TMP, SOURCE_CODE_TMP, PERSON_TMP):
        conn.execute(text(f"DROP TABLE IF EXISTS {t.name}"))  # fixed names, not input
        conn.execute(CreateTable(t))
    rows = [{"concept_id": cid, "nsclc": int(cid in concepts.nsclc)} for cid in sorted(concepts.codings)]
    _insert(conn, CONCEPT_TMP, rows)
    _insert(conn, SOURCE_CODE_TMP, [{"pattern": p, "nsclc": int(n)} for p, n in concepts.source_patterns])


def _insert(conn: Connection, target: Table, rows: list[dict[str, Any]]) -> None:
    """Multi-row INSERT … VALUES in slices: fast on every driver, unlike row-by-row executemany."""
    for i in range(0, len(rows), _INSERT_ROWS):
        conn.execute(target.insert().values(rows[i : i + _INSERT_ROWS]))
