"""The warehouse schema: the canonical derived tables (:mod:`leopard_etl.tables`) plus the run
log and the event store, defined once (SQLAlchemy Core) and rendered per dialect.

``sql/ddl/<dialect>/leopard.sql`` is generated from :data:`METADATA` by
``python -m leopard_etl.warehouse.schema`` and a test fails when the committed
files drift from it. Every derived table carries ``source_system`` and
``source_ids`` (the ``;``-joined source references, e.g.
``fhir:Condition/abc;fhir:Observation/x``) so a clinician can audit any
classification back to the FHIR resources or OMOP rows it came from.

Derived tables are keyed by ``patient_id`` (plus a natural sub-key), which is what
the warehouse swaps or merges on; ``etl_run`` / ``quarantine`` are the run log.
``source_event`` / ``source_patient`` (added in version 2) are the event store: the
normalised events of the last runs, keyed by their source reference with a content
hash, so an incremental run knows which patients changed and derivation can be
re-run from the warehouse without re-reading the source. ``derive_pending`` holds the
patients whose events changed until their derived rows are replaced, so a run that
dies between storing events and loading derived tables is caught up by the next.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sqlalchemy import (
    Boolean,
    Column,
    Date,
    DateTime,
    Double,
    Index,
    Integer,
    String,
    Table,
    Text,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.schema import CreateIndex, CreateTable

from leopard_etl.tables import DERIVED_TABLES, METADATA, SCHEMA_VERSION

__all__ = ["DERIVED_TABLES", "EVENT_STORE_TABLES", "METADATA", "SCHEMA_VERSION", "render_ddl"]

quarantine = Table(
    "quarantine",
    METADATA,
    Column("run_id", String(64), nullable=False),
    Column("source_system", String(16), nullable=False),
    Column("location", Text, nullable=False, comment="file:line, URL, or table/row id"),
    Column("reason", Text, nullable=False),
    Column("record", Text, comment="the offending record, truncated"),
    # version 3
    Column("record_id", Text, comment="Type/id or table/row id of the record, where it has one"),
)

etl_run = Table(
    "etl_run",
    METADATA,
    Column("run_id", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("ended_at", DateTime(timezone=True)),
    Column("source", Text, nullable=False, comment="source URL/path, secrets removed"),
    Column("source_system", String(16), nullable=False),
    Column("mode", String(16), nullable=False, comment="full | incremental"),
    Column("watermark", Text, comment="server time / change marker to resume from"),
    Column("status", String(16), nullable=False, comment="running | ok | failed"),
    Column("n_read", Integer),
    Column("n_events", Integer),
    Column("n_quarantined", Integer),
    Column("n_out_of_scope", Integer),
    Column("n_patients_changed", Integer),
    Column("error", Text),
    # version 2
    Column("n_in_scope", Integer),
    Column("out_of_scope_reasons", Text, comment="JSON object reason -> count"),
)

_HASH = String(64)

source_event = Table(
    "source_event",
    METADATA,
    Column("source", String(512), primary_key=True, comment="fhir:Condition/abc, omop:measurement/42"),
    Column("patient_id", String(128), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("groups", Text, nullable=False),
    Column("system", Text, nullable=False),
    Column("code", Text, nullable=False),
    Column("start", Date, nullable=False),
    Column("end", Date),
    Column("precision", String(8), nullable=False),
    Column("site", String(32)),
    Column("laterality", String(16)),
    Column("body_site", Text),
    Column("value", Text),
    Column("lesion_id", Text),
    Column("ingredient", Text),
    Column("fractions", Integer),
    Column("dose_cgy", Double),
    Column("route", String(16), comment="version 3: drug match route (code|product|ingredient|name)"),
    Column("content_hash", _HASH, nullable=False, comment="sha256 of the event's canonical text"),
    Column("run_id", String(64), nullable=False, comment="run that last wrote the row"),
    comment="Event store (leopard_etl.events.Event), one row per source record",
)
Index("ix_source_event_patient", source_event.c.patient_id)

source_patient = Table(
    "source_patient",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("birth_date", Date),
    Column("sex", String(16)),
    Column("death_date", Date),
    Column("source", String(512), nullable=False),
    Column("deceased", Boolean, comment="version 3: died, with or without a known date"),
    Column("content_hash", _HASH, nullable=False),
    Column("run_id", String(64), nullable=False),
    comment="Event store (leopard_etl.events.PatientRecord)",
)

schema_version = Table(
    "schema_version",
    METADATA,
    Column("version", Integer, primary_key=True, autoincrement=False),
    Column("applied_at", DateTime(timezone=True), nullable=False),
)

derive_pending = Table(
    "derive_pending",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("run_id", String(64), nullable=False, comment="run whose events changed the patient"),
    comment="Patients whose stored events changed but whose derived rows are not yet replaced",
)


#: The event store (normalised source records), keyed by ``source`` / ``patient_id``.
EVENT_STORE_TABLES: tuple[str, ...] = ("source_event", "source_patient", "derive_pending")


def _dialect(name: str) -> Dialect:
    if name == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.dialect()
    if name == "duckdb":
        from duckdb_engine import Dialect as DuckDialect

        return DuckDialect()
    raise ValueError(f"no DDL rendering for dialect {name!r}")


def render_ddl(dialect: str) -> str:
    """CREATE TABLE statements of the whole schema for one dialect, deterministic."""
    d = _dialect(dialect)
    header = f"-- Generated from leopard_etl.warehouse.schema (schema version {SCHEMA_VERSION})"
    parts = [header + "; do not edit.\n"]
    for table in METADATA.sorted_tables:
        ddl = str(CreateTable(table).compile(dialect=d)).strip()
        parts.append(ddl + ";\n")
        for index in sorted(table.indexes, key=lambda i: str(i.name)):
            parts.append(str(CreateIndex(index).compile(dialect=d)).strip() + ";\n")
    # A warehouse created from this file says which version it is (the tool migrates from it).
    parts.append(
        f"INSERT INTO schema_version (version, applied_at) VALUES ({SCHEMA_VERSION}, CURRENT_TIMESTAMP);\n"
    )
    return "\n".join(parts)


def write_ddl(root: Path) -> list[Path]:
    out = []
    for dialect in ("duckdb", "postgresql"):
        path = root / "sql" / "ddl" / dialect / "leopard.sql"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_ddl(dialect), encoding="utf-8")
        out.append(path)
    return out


if __name__ == "__main__":  # pragma: no cover - developer tool
    from leopard_etl.paths import project_root

    for p in write_ddl(project_root()):
        sys.stdout.write(f"wrote {p}\n")
