"""Open an OMOP CDM database and check that it holds what the adapter reads.

Everything that can go wrong before the first row leaves the database ends here in
one line with the fix (ConfigError for what the user typed, SourceError for what
the database lacks): unknown driver, bad URL, bad schema name, unreachable server,
missing DuckDB file, missing tables, empty vocabulary. Schema names are the only
text ever spliced into SQL, so they are validated against a strict identifier
pattern and then quoted by the dialect's own preparer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError, SQLAlchemyError

from ...drivers import missing_driver
from ...errors import ConfigError, SourceError
from .cdm import CDM_TABLES, VOCAB_TABLES

__all__ = [
    "ACTIVITY_ONLY",
    "CdmLayout",
    "check_identifier",
    "describe_url",
    "inspect_cdm",
    "open_engine",
    "table_prefix",
]

#: A plain SQL identifier; ``catalog.schema`` (SQL Server, Databricks) is two of them.
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")

#: Tables spec §1 needs in the CDM schema (episode tables are optional, v5.4; the activity-only
#: tables of spec v2 are read when present).
ACTIVITY_ONLY = ("visit_occurrence", "visit_detail", "device_exposure")
OPTIONAL_CDM = ("episode", "episode_event", *ACTIVITY_ONLY)
REQUIRED_CDM = tuple(t for t in CDM_TABLES if t not in OPTIONAL_CDM)
REQUIRED_VOCAB = VOCAB_TABLES


def check_identifier(name: str | None, what: str) -> str | None:
    """Return the schema name unchanged if it is a safe identifier (or dotted pair), else ConfigError."""
    if name is None or name == "":
        return None
    parts = name.split(".")
    if len(parts) > 2 or not all(_IDENTIFIER.match(p) for p in parts):
        raise ConfigError(
            f"{what} {name!r} is not a valid schema name",
            fix="use letters, digits and _ only (optionally catalog.schema), e.g. --cdm-schema cdm",
        )
    return name


def describe_url(url: URL) -> str:
    """The URL as it may appear in messages and logs: never with the password."""
    return url.render_as_string(hide_password=True)


def open_engine(url: str) -> Engine:
    """An engine for a SQLAlchemy URL; DuckDB files open read-only and must exist."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"{url!r} is not a database URL",
            fix="use e.g. duckdb:///path/cdm.duckdb or postgresql+psycopg://user@host:5432/db",
        ) from None
    connect_args: dict[str, object] = {}
    if parsed.get_backend_name() == "duckdb":
        database = parsed.database or ""
        if database and database != ":memory:" and not Path(database).is_file():
            raise SourceError(
                f"DuckDB file {database} does not exist", fix="check the path in the --omop URL"
            )
        if database and database != ":memory:":
            connect_args["read_only"] = True
    try:
        return create_engine(parsed, connect_args=connect_args)
    except NoSuchModuleError:
        raise ConfigError(
            f"no SQLAlchemy driver for {parsed.drivername!r}",
            fix="use duckdb:/// or postgresql+psycopg://, or install the dialect package for your database",
        ) from None
    except (ArgumentError, ImportError) as exc:
        # The dialect is known but its DBAPI driver is not installed: say which package brings it.
        missing = missing_driver(describe_url(parsed), exc)
        if missing is not None:
            raise missing from None
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ConfigError(f"cannot use {describe_url(parsed)}: {first}", fix="check the --omop URL") from None


def connect(engine: Engine) -> Connection:
    """Open a connection or say in one line why the database cannot be reached."""
    try:
        return engine.connect()
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None) or exc
        first = (str(orig).strip().splitlines() or [type(orig).__name__])[0]
        raise SourceError(
            f"cannot connect to {describe_url(engine.url)}: {first}",
            fix="check host, port, database name and credentials, and that the server is running",
        ) from None


def table_prefix(conn: Connection, schema: str | None) -> str:
    """``"schema".`` quoted for this dialect (empty without a schema), to put before a table name."""
    if not schema:
        return ""
    preparer = conn.dialect.identifier_preparer
    return ".".join(preparer.quote(p) for p in schema.split(".")) + "."


@dataclass(frozen=True)
class CdmLayout:
    """What this CDM instance offers: its schemas, optional episode tables, 5.3 or 5.4 columns."""

    cdm_schema: str | None
    vocab_schema: str | None
    has_episodes: bool
    has_procedure_end: bool
    #: episode_event is only counted (no rule needs it); episodes are read without it
    has_episode_event: bool = False
    #: the activity-only tables (visit_occurrence, visit_detail, device_exposure) this CDM has
    activity_only: tuple[str, ...] = ()

    @property
    def tables(self) -> tuple[str, ...]:
        """The clinical tables read, in reading order."""
        optional = (("episode",) if self.has_episodes else ()) + (
            ("episode_event",) if self.has_episode_event else ()
        )
        return REQUIRED_CDM + optional + self.activity_only


def _tables(conn: Connection, schema: str | None, what: str) -> set[str]:
    try:
        return {t.lower() for t in inspect(conn).get_table_names(schema=schema)}
    except SQLAlchemyError as exc:
        first = (str(getattr(exc, "orig", exc)).strip().splitlines() or ["error"])[0]
        raise SourceError(
            f"cannot list the tables of {what} schema {schema!r}: {first}",
            fix=f"check the {what} schema name and the user's rights on it",
        ) from None


def inspect_cdm(conn: Connection, cdm_schema: str | None, vocab_schema: str | None) -> CdmLayout:
    """Check the required tables exist (SourceError naming the missing ones) and detect the version."""
    cdm_tables = _tables(conn, cdm_schema, "CDM")
    vocab_tables = cdm_tables if vocab_schema == cdm_schema else _tables(conn, vocab_schema, "vocabulary")
    where_cdm = f"schema {cdm_schema!r}" if cdm_schema else "the default schema"
    where_vocab = f"schema {vocab_schema!r}" if vocab_schema else "the default schema"
    if not cdm_tables:
        raise SourceError(
            f"no tables in {where_cdm} of the OMOP database",
            fix="pass --cdm-schema with the schema that holds person, condition_occurrence, …",
        )
    missing = [t for t in REQUIRED_CDM if t not in cdm_tables]
    if missing:
        raise SourceError(
            f"OMOP table(s) {', '.join(missing)} missing in {where_cdm}",
            fix="load the full CDM (v5.3 or v5.4) or pass the right --cdm-schema",
        )
    missing_vocab = [t for t in REQUIRED_VOCAB if t not in vocab_tables]
    if missing_vocab:
        raise SourceError(
            f"vocabulary table(s) {', '.join(missing_vocab)} missing in {where_vocab}",
            fix="load the OHDSI vocabularies (Athena) or pass the right --vocab-schema",
        )
    has_episodes = "episode" in cdm_tables
    # Column names from an empty result, not the inspector: portable, and it cannot abort the transaction
    # (duckdb-engine's get_columns queries pg_catalog tables DuckDB lacks).
    probe = f"SELECT * FROM {table_prefix(conn, cdm_schema)}procedure_occurrence WHERE 1 = 0"
    columns = {str(k).lower() for k in list(conn.execute(text(probe)).keys())}
    return CdmLayout(
        cdm_schema,
        vocab_schema,
        has_episodes,
        "procedure_end_date" in columns,
        has_episode_event="episode_event" in cdm_tables,
        activity_only=tuple(t for t in ACTIVITY_ONLY if t in cdm_tables),
    )
