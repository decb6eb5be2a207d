"""OMOP CDM as Spark tables, read by the one OMOP reader through a SQLAlchemy dialect for Spark SQL.

The OMOP adapter (:func:`leopard_etl.sources.omop.read_omop`) already pushes everything heavy into
the database: concept resolution (``concept``, ``concept_ancestor``), the screened persons, the
candidate rows of each table and the per-person activity aggregate are SQL
(``sql/extract/*.sql``, SQLAlchemy Core); only the rows that may be in a code group and one
activity row per person and table leave it, for the pure row code (``rows.py``). So the Spark engine
does not re-implement it: it gives the reader a database that *is* Spark. :class:`SparkDialect` is a
small SQLAlchemy dialect whose DB-API connection runs each statement with ``SparkSession.sql`` (named
parameters are Spark's own ``:name`` markers) — the same SQL text, the same concept set, the same
accounting, with the joins and aggregates distributed by Spark.

What the dialect translates (Spark SQL has no temporary tables, and a few spellings differ):

* ``CREATE TEMPORARY TABLE`` / ``INSERT … VALUES`` / ``INSERT … SELECT`` / ``DROP TABLE IF EXISTS`` on the
  reader's ``leopard_*`` work tables become cached temporary views;
* ``CAST(… AS VARCHAR)`` → ``CAST(… AS STRING)``; ``ESCAPE '\\'`` is written with Spark's escaping;
  identifiers are quoted with backticks; ANSI mode is off during the read (a bad value casts to NULL).

Sources: ``spark:DB`` (a catalog database; ``spark:`` alone uses ``--cdm-schema``), or
``parquet:/path`` — a folder with one folder per table (Parquet, or Delta when the folder holds a
``_delta_log`` and the Delta package is on the session), registered as global temporary views.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import default
from sqlalchemy.sql import compiler

from ...errors import ConfigError, SourceError
from ...events import EventSink
from ...mappings import CodeMatcher
from .session import sql_conf

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["DIALECT_URL", "SparkDialect", "bind_session", "omop_source", "read_omop_spark"]

log = logging.getLogger(__name__)

#: the SQLAlchemy URL of the Spark session bound with :func:`bind_session`
DIALECT_URL = "leopard_spark://"
#: where ``parquet:`` tables are registered (Spark's global temporary views)
GLOBAL_TEMP = "global_temp"

_SESSION: SparkSession | None = None


def bind_session(spark: SparkSession | None) -> None:
    """The session the ``leopard_spark://`` dialect runs its statements on."""
    global _SESSION
    _SESSION = spark


def _session() -> SparkSession:
    if _SESSION is None:
        raise SourceError("no Spark session is bound to the OMOP reader", fix="report this as a bug")
    return _SESSION


# --- DB-API 2.0 over a SparkSession ------------------------------------------------------------------
class Error(Exception):
    pass


class Warning(Exception):  # the DB-API name
    pass


class InterfaceError(Error):
    pass


class DatabaseError(Error):
    pass


class DataError(DatabaseError):
    pass


class OperationalError(DatabaseError):
    pass


class IntegrityError(DatabaseError):
    pass


class InternalError(DatabaseError):
    pass


class ProgrammingError(DatabaseError):
    pass


class NotSupportedError(DatabaseError):
    pass


_CREATE = re.compile(r"^CREATE\s+TEMPORARY\s+TABLE\s+(\w+)\s*\((.*)\)\s*$", re.I | re.S)
_INSERT_VALUES = re.compile(r"^INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*VALUES\s*(.*)$", re.I | re.S)
_INSERT_SELECT = re.compile(r"^INSERT\s+INTO\s+(\w+)\s*\(([^)]*)\)\s*(SELECT\b.*)$", re.I | re.S)
_DROP = re.compile(r"^DROP\s+TABLE\s+IF\s+EXISTS\s+(\w+)\s*$", re.I)
_ANALYZE = re.compile(r"^ANALYZE\b", re.I)
_TYPES = {"BIGINT": "bigint", "INTEGER": "int", "INT": "int", "SMALLINT": "int", "FLOAT": "double"}


def spark_sql(sql: str) -> str:
    """The reader's SQL in Spark's spelling (see the module docstring)."""
    sql = re.sub(r"\bAS\s+VARCHAR\b(?!\s*\()", "AS STRING", sql, flags=re.I)
    sql = re.sub(r"\bAS\s+VARCHAR\s*\(\s*\d+\s*\)", "AS STRING", sql, flags=re.I)
    return sql.replace("ESCAPE '\\'", "ESCAPE '\\\\'")


class _WorkTables:
    """The reader's ``leopard_*`` temporary tables as temporary views (per session).

    Rows inserted with VALUES stay on the driver (they are few: concept ids, LIKE patterns, row ids)
    and the view is a local relation of all of them; rows inserted by a SELECT (the screened
    persons) are computed once and cached.
    """

    def __init__(self) -> None:
        self.schemas: dict[str, list[tuple[str, str]]] = {}
        self.values: dict[str, list[tuple[Any, ...]]] = {}
        self.frames: dict[str, DataFrame] = {}

    def create(self, spark: SparkSession, name: str, body: str) -> None:
        columns: list[tuple[str, str]] = []
        for part in body.split(","):
            words = part.split()
            if not words:
                continue
            sql_type = words[1].upper().split("(")[0] if len(words) > 1 else "VARCHAR"
            columns.append((words[0].strip('`"').lower(), _TYPES.get(sql_type, "string")))
        key = name.lower()
        self.drop(spark, name)
        self.schemas[key] = columns
        self.values[key] = []
        spark.createDataFrame([], self._ddl(key)).createOrReplaceTempView(name)

    def _ddl(self, key: str) -> str:
        return ", ".join(f"`{c}` {t}" for c, t in self.schemas[key])

    def insert_values(
        self, spark: SparkSession, name: str, cols: str, values: str, params: Mapping[str, Any]
    ) -> None:
        key = name.lower()
        names = [c.strip().strip('`"').lower() for c in cols.split(",")]
        rows = self.values[key]
        for group in re.findall(r"\(([^()]*)\)", values):
            row = {}
            for col, marker in zip(names, group.split(","), strict=True):
                marker = marker.strip()
                row[col] = params[marker[1:]] if marker.startswith(":") else _literal(marker)
            rows.append(tuple(row.get(c) for c, _ in self.schemas[key]))
        frame = spark.createDataFrame(rows, self._ddl(key))
        if key in self.frames:
            frame = self.frames[key].unionByName(frame)
        frame.createOrReplaceTempView(name)

    def insert_select(
        self, spark: SparkSession, name: str, cols: str, select: str, params: Mapping[str, Any]
    ) -> None:
        from pyspark import StorageLevel

        key = name.lower()
        names = [c.strip().strip('`"').lower() for c in cols.split(",")]
        frame = spark.sql(spark_sql(select), args=dict(params) or None).toDF(*names)
        frame = frame.select(*[frame[c].cast(t) for c, t in self.schemas[key] if c in names])
        if self.values[key]:
            frame = frame.unionByName(spark.createDataFrame(self.values[key], self._ddl(key)))
        if key in self.frames:
            frame = self.frames[key].unionByName(frame)
        frame = frame.persist(StorageLevel.MEMORY_AND_DISK)
        frame.count()
        old = self.frames.get(key)
        self.frames[key] = frame
        frame.createOrReplaceTempView(name)
        if old is not None:
            old.unpersist()

    def drop(self, spark: SparkSession, name: str) -> None:
        key = name.lower()
        spark.catalog.dropTempView(name)
        self.schemas.pop(key, None)
        self.values.pop(key, None)
        old = self.frames.pop(key, None)
        if old is not None:
            old.unpersist()


def _literal(text: str) -> Any:
    if text.upper() == "NULL":
        return None
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    return int(text) if re.fullmatch(r"-?\d+", text) else float(text)


_WORK = _WorkTables()


def _rows(frame: DataFrame) -> Iterator[tuple[Any, ...]]:
    """The rows of a result, fetched only when asked for (a column probe runs no Spark job), one
    partition at a time (a large candidate set never sits whole on the driver)."""
    for row in frame.toLocalIterator(prefetchPartitions=True):
        yield tuple(row)


class Cursor:
    """A DB-API cursor: one Spark SQL statement, its rows fetched lazily (``toLocalIterator``)."""

    arraysize = 1000

    def __init__(self) -> None:
        self.description: list[tuple[Any, ...]] | None = None
        self.rowcount = -1
        self._rows: Iterator[Any] = iter(())

    def execute(self, operation: str, parameters: Mapping[str, Any] | Sequence[Any] | None = None) -> None:
        spark = _session()
        params = dict(parameters) if isinstance(parameters, Mapping) else {}
        sql = operation.strip().rstrip(";")
        self.description, self._rows = None, iter(())
        try:
            if m := _CREATE.match(sql):
                _WORK.create(spark, m[1], m[2])
            elif m := _INSERT_VALUES.match(sql):
                _WORK.insert_values(spark, m[1], m[2], m[3], params)
            elif m := _INSERT_SELECT.match(sql):
                _WORK.insert_select(spark, m[1], m[2], m[3], params)
            elif m := _DROP.match(sql):
                _WORK.drop(spark, m[1])
            elif _ANALYZE.match(sql):
                pass
            else:
                log.debug("spark sql: %s", sql[:200])
                frame = spark.sql(spark_sql(sql), args=params or None)
                self.description = [(f.name, None, None, None, None, None, None) for f in frame.schema.fields]
                self._rows = _rows(frame)
        except Exception as exc:
            if isinstance(exc, Error):
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise OperationalError(first) from exc

    def executemany(self, operation: str, seq: Sequence[Mapping[str, Any]]) -> None:
        for params in seq:
            self.execute(operation, params)

    def fetchone(self) -> tuple[Any, ...] | None:
        return next(self._rows, None)

    def fetchmany(self, size: int | None = None) -> list[tuple[Any, ...]]:
        out = []
        for _ in range(size or self.arraysize):
            row = next(self._rows, None)
            if row is None:
                break
            out.append(row)
        return out

    def fetchall(self) -> list[tuple[Any, ...]]:
        return list(self._rows)

    def close(self) -> None:
        self._rows = iter(())


class Connection:
    def cursor(self) -> Cursor:
        return Cursor()

    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


class _DBAPI:
    """The DB-API module the dialect hands SQLAlchemy."""

    paramstyle = "named"
    apilevel = "2.0"
    threadsafety = 1
    Error = Error
    Warning = Warning
    InterfaceError = InterfaceError
    DatabaseError = DatabaseError
    DataError = DataError
    OperationalError = OperationalError
    IntegrityError = IntegrityError
    InternalError = InternalError
    ProgrammingError = ProgrammingError
    NotSupportedError = NotSupportedError

    @staticmethod
    def connect(*_args: Any, **_kwargs: Any) -> Connection:
        return Connection()


# --- the SQLAlchemy dialect ----------------------------------------------------------------------------
class SparkIdentifierPreparer(compiler.IdentifierPreparer):
    def __init__(self, dialect: default.DefaultDialect) -> None:
        super().__init__(dialect, initial_quote="`", final_quote="`", escape_quote="`")


class SparkCompiler(compiler.SQLCompiler):
    def limit_clause(self, select: Any, **kw: Any) -> str:
        text = ""
        if select._limit_clause is not None:
            text += "\n LIMIT " + self.process(select._limit_clause, literal_binds=True, **kw)
        if select._offset_clause is not None:
            text += "\n OFFSET " + self.process(select._offset_clause, literal_binds=True, **kw)
        return text


class SparkDialect(default.DefaultDialect):
    """SQLAlchemy over the bound SparkSession (:func:`bind_session`); enough for the OMOP reader."""

    name = "leopard_spark"
    driver = "pyspark"
    supports_statement_cache = True
    supports_multivalues_insert = True
    supports_native_boolean = True
    supports_sane_rowcount = False
    supports_sane_multi_rowcount = False
    supports_server_side_cursors = False
    default_paramstyle = "named"
    preparer = SparkIdentifierPreparer  # type: ignore[assignment]
    statement_compiler = SparkCompiler

    @classmethod
    def import_dbapi(cls) -> Any:
        return _DBAPI

    def create_connect_args(self, url: Any) -> tuple[list[Any], dict[str, Any]]:
        return [], {}

    def _get_default_schema_name(self, connection: Any) -> str:
        return "default"

    def _get_server_version_info(self, connection: Any) -> tuple[int, ...]:
        return tuple(int(p) for p in re.findall(r"\d+", _session().version)[:3])

    def get_isolation_level(self, dbapi_connection: Any) -> Any:
        return "AUTOCOMMIT"

    def do_begin(self, dbapi_connection: Any) -> None:
        pass

    def do_rollback(self, dbapi_connection: Any) -> None:
        pass

    def do_commit(self, dbapi_connection: Any) -> None:
        pass

    def get_table_names(self, connection: Any, schema: str | None = None, **kw: Any) -> list[str]:
        spark = _session()
        return [t.name for t in spark.catalog.listTables(schema) if t.name]

    def has_table(self, connection: Any, table_name: str, schema: str | None = None, **kw: Any) -> bool:
        return table_name.lower() in {t.lower() for t in self.get_table_names(connection, schema)}


def _register() -> None:
    from sqlalchemy.dialects import registry

    registry.register("leopard_spark", __name__, "SparkDialect")


# --- sources -------------------------------------------------------------------------------------------
def omop_source(spark: SparkSession, source: str, cdm_schema: str | None) -> str | None:
    """Make ``spark:DB`` / ``parquet:/path`` readable; returns the CDM schema to read from.

    ``parquet:/path`` registers each sub-folder as a global temporary view (Delta when it holds a
    ``_delta_log``); ``spark:DB`` names a catalog database (``spark:`` alone: ``--cdm-schema``).
    """
    kind, _, where = source.partition(":")
    if kind == "spark":
        return where or cdm_schema
    if kind != "parquet" or not where:
        raise ConfigError(
            f"the Spark engine reads OMOP as spark:DATABASE or parquet:/folder, not {source!r}",
            fix="use --omop spark:cdm or --omop parquet:/data/omop (one folder per table)",
        )
    for name, uri, fmt in _table_folders(spark, where):
        reader = spark.read.format(fmt)
        try:
            frame = reader.load(uri)
        except Exception as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            fix = (
                "add the Delta package to the session (spark.jars.packages)"
                if fmt == "delta"
                else "check the folder"
            )
            raise SourceError(f"cannot read OMOP table {name} at {uri}: {first[:200]}", fix=fix) from None
        frame.toDF(*[c.lower() for c in frame.columns]).createOrReplaceGlobalTempView(name.lower())
    return GLOBAL_TEMP


def _table_folders(spark: SparkSession, where: str) -> list[tuple[str, str, str]]:
    """(table name, URI, format) of the sub-folders (or ``*.parquet`` files) of ``where``."""
    jvm: Any = getattr(spark.sparkContext, "_jvm")  # noqa: B009 (py4j gateway)
    conf = getattr(spark.sparkContext, "_jsc").hadoopConfiguration()  # noqa: B009
    root = jvm.org.apache.hadoop.fs.Path(where)
    try:
        fs = root.getFileSystem(conf)
        entries = fs.listStatus(root)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(
            f"OMOP folder {where} cannot be read: {first[:200]}", fix="check the --omop path"
        ) from None
    out = []
    for status in entries:
        path = status.getPath()
        name = path.getName()
        if name.startswith((".", "_")):
            continue
        if status.isDirectory():
            delta = fs.exists(jvm.org.apache.hadoop.fs.Path(path, "_delta_log"))
            out.append((name, path.toString(), "delta" if delta else "parquet"))
        elif name.endswith(".parquet"):
            out.append((name.removesuffix(".parquet"), path.toString(), "parquet"))
    return out


def read_omop_spark(
    spark: SparkSession,
    source: str,
    matcher: CodeMatcher,
    sink: EventSink,
    *,
    cdm_schema: str | None = None,
    vocab_schema: str | None = None,
) -> Any:
    """:func:`leopard_etl.sources.omop.read_omop` on Spark tables (see the module docstring)."""
    from ...sources.omop import read_omop

    cdm = omop_source(spark, source, cdm_schema)
    vocab = vocab_schema or cdm
    if source.startswith("parquet:"):
        vocab = GLOBAL_TEMP
    _register()
    bind_session(spark)
    try:
        with sql_conf(spark, spark__sql__ansi__enabled="false"):
            # count_held=False: the per-table COUNT(*) only feeds a report this run does not keep
            return read_omop(DIALECT_URL, matcher, sink, cdm_schema=cdm, vocab_schema=vocab, count_held=False)
    finally:
        for name in list(_WORK.schemas):
            _WORK.drop(spark, name)
        bind_session(None)
