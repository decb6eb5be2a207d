"""Create the warehouse schema, or upgrade it step by step from the version it records.

A site's warehouse outlives the leopard-etl version that created it, so the tool
(not the site's DBA) brings it to :data:`~leopard_etl.warehouse.schema.SCHEMA_VERSION`.
Each step is frozen SQL for exactly one version bump — never the current
``METADATA``, which keeps moving — and runs in the same transaction as the version
row it writes, so an interrupted upgrade leaves the previous version intact.

A warehouse applied from ``sql/ddl/<dialect>/leopard.sql`` of version 1 has an empty
``schema_version`` table (that file did not insert its version); empty means 1.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from sqlalchemy import Connection, inspect

from leopard_etl.errors import ConfigError
from leopard_etl.warehouse.schema import METADATA, SCHEMA_VERSION, schema_version

__all__ = ["MIGRATIONS", "current_version", "migrate_connection"]

Qualify = Callable[[str], str]

_V2_SOURCE_EVENT = """CREATE TABLE {t} (
    source VARCHAR(512) NOT NULL
    , patient_id VARCHAR(128) NOT NULL
    , kind VARCHAR(32) NOT NULL
    , "groups" TEXT NOT NULL
    , "system" TEXT NOT NULL
    , code TEXT NOT NULL
    , "start" DATE NOT NULL
    , "end" DATE
    , "precision" VARCHAR(8) NOT NULL
    , site VARCHAR(32)
    , laterality VARCHAR(16)
    , body_site TEXT
    , "value" TEXT
    , lesion_id TEXT
    , ingredient TEXT
    , fractions INTEGER
    , dose_cgy DOUBLE PRECISION
    , content_hash VARCHAR(64) NOT NULL
    , run_id VARCHAR(64) NOT NULL
    , PRIMARY KEY (source)
)"""

_V2_SOURCE_PATIENT = """CREATE TABLE {t} (
    patient_id VARCHAR(128) NOT NULL
    , birth_date DATE
    , sex VARCHAR(16)
    , death_date DATE
    , source VARCHAR(512) NOT NULL
    , content_hash VARCHAR(64) NOT NULL
    , run_id VARCHAR(64) NOT NULL
    , PRIMARY KEY (patient_id)
)"""


_V2_DERIVE_PENDING = """CREATE TABLE {t} (
    patient_id VARCHAR(128) NOT NULL
    , run_id VARCHAR(64) NOT NULL
    , PRIMARY KEY (patient_id)
)"""


def _v1_to_v2(conn: Connection, q: Qualify) -> None:
    """Event store tables, etl_run counts, and months as double precision (DuckDB FLOAT is 4-byte)."""
    conn.exec_driver_sql(_V2_SOURCE_EVENT.format(t=q("source_event")))
    conn.exec_driver_sql(f"CREATE INDEX ix_source_event_patient ON {q('source_event')} (patient_id)")
    conn.exec_driver_sql(_V2_SOURCE_PATIENT.format(t=q("source_patient")))
    conn.exec_driver_sql(_V2_DERIVE_PENDING.format(t=q("derive_pending")))
    conn.exec_driver_sql(f"ALTER TABLE {q('etl_run')} ADD COLUMN n_in_scope INTEGER")
    conn.exec_driver_sql(f"ALTER TABLE {q('etl_run')} ADD COLUMN out_of_scope_reasons TEXT")
    if conn.dialect.name != "postgresql":  # PostgreSQL FLOAT already is double precision
        for column in ("os_months", "prs_months"):
            conn.exec_driver_sql(f"ALTER TABLE {q('outcome')} ALTER COLUMN {column} SET DATA TYPE DOUBLE")


def _v2_to_v3(conn: Connection, q: Qualify) -> None:
    """Spec v2 columns; stored events get their drug route and deaths their flag on the next full read.

    The event store's content hashes cover the new fields, so a changed record is replaced.
    """
    for table, column, kind in (
        ("source_event", "route", "VARCHAR(16)"),
        ("source_patient", "deceased", "BOOLEAN"),
        ("quarantine", "record_id", "TEXT"),
        ("crt_course", "platinum_unverified", "BOOLEAN"),
        ("outcome", "death_date_unknown", "BOOLEAN"),
    ):
        conn.exec_driver_sql(f"ALTER TABLE {q(table)} ADD COLUMN {column} {kind}")
    # a deceased patient of a version-2 store had a death date
    conn.exec_driver_sql(f"UPDATE {q('source_patient')} SET deceased = (death_date IS NOT NULL)")


#: from-version -> step that brings the warehouse to from-version + 1
MIGRATIONS: dict[int, Callable[[Connection, Qualify], None]] = {1: _v1_to_v2, 2: _v2_to_v3}


def current_version(conn: Connection, schema: str) -> int | None:
    """The warehouse's schema version; None when the schema holds no LEOPARD tables yet."""
    names = set(inspect(conn).get_table_names(schema=schema))
    if "schema_version" not in names:
        ours = names & set(METADATA.tables)
        if ours:
            raise ConfigError(
                f"schema {schema!r} holds LEOPARD tables ({', '.join(sorted(ours))}) but no schema_version",
                fix="point the warehouse at an empty schema or restore its schema_version table",
            )
        return None
    found = conn.execute(schema_version.select().with_only_columns(schema_version.c.version)).scalars().all()
    return max(found) if found else 1


def migrate_connection(conn: Connection, schema: str, q: Qualify, now: dt.datetime) -> tuple[int | None, int]:
    """Bring ``schema`` to SCHEMA_VERSION inside the caller's transaction; returns (from, to)."""
    before = current_version(conn, schema)
    if before is None:
        METADATA.create_all(conn)
        conn.execute(schema_version.insert().values(version=SCHEMA_VERSION, applied_at=now))
        return None, SCHEMA_VERSION
    if before > SCHEMA_VERSION:
        raise ConfigError(
            f"warehouse schema is version {before}, this leopard-etl knows up to {SCHEMA_VERSION}",
            fix="upgrade leopard-etl (the warehouse is never downgraded)",
        )
    for version in range(before, SCHEMA_VERSION):
        MIGRATIONS[version](conn, q)
        conn.execute(schema_version.insert().values(version=version + 1, applied_at=now))
    return before, SCHEMA_VERSION
