"""Column types are not trusted (spec §1): read every column through an expression that casts.

A CDM loaded by type inference (pandas ``DataFrame.to_sql``, a CSV loader) stores
``*_source_value`` as BIGINT or DOUBLE, dates as TEXT, concept ids as DOUBLE. The
extraction SQL therefore never names a column directly: ``sql/extract/*.sql`` write
``{t.date[condition_start_date]}``, ``{t.text[condition_source_value]}`` or
``{t.id[person_id]}`` and :class:`ColumnSql` turns that into the expression this
column's actual type needs:

- ``date``: a DATE column as is; a timestamp cast to DATE; anything else (text, numbers)
  parsed only when it starts with a valid ISO ``YYYY-MM-DD`` — a bad value becomes NULL
  (then the row is quarantined or counted, never a database error). DuckDB: a regex
  guard and ``TRY_CAST``; PostgreSQL: a regex guard and a day-of-month check before the
  ``CAST`` (a CASE, so the cast only ever sees valid dates).
- ``text``: a text column as is; an integer as its digits; a DOUBLE without its ``.0``
  when it is integral (``1970.0`` → ``1970``, ``162.3`` → ``162.3``) so that DuckDB and
  PostgreSQL write the same code text.
- ``id``: a number as is (an integer or a DOUBLE compares with BIGINT in both databases);
  text of digits cast, anything else NULL (``'42'`` → 42, ``'12.0'`` / ``'1e3'`` → NULL).

A column the table lacks becomes a typed NULL (v5.3 has no ``procedure_end_date``).
Types come from ``information_schema.columns`` on PostgreSQL and DuckDB; on other
dialects they are unknown and columns are used as they are (the v1 behaviour).
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import text
from sqlalchemy.engine import Connection

__all__ = ["ColumnSql", "TableTypes", "probe_types", "type_class"]

#: table -> column -> type class (``date``, ``timestamp``, ``text``, ``int``, ``float``, ``other``)
TableTypes = dict[str, dict[str, str]]

#: ISO date at the start of the text: year 1000-9999, month 01-12, day 01-31, then no digit.
ISO_DATE = "^[1-9][0-9]{3}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])([^0-9]|$)"
_DIGITS = "^-?[0-9]{1,18}$"
#: dialects whose information_schema.columns we read for the column types
TYPED_DIALECTS = ("postgresql", "duckdb")


def type_class(data_type: str) -> str:
    """The type class of an ``information_schema`` data type (PostgreSQL or DuckDB spelling)."""
    t = data_type.lower()
    if t == "date":
        return "date"
    if "timestamp" in t or "datetime" in t:
        return "timestamp"
    if any(k in t for k in ("char", "text", "string", "clob")):
        return "text"
    if "int" in t:
        return "int"
    if any(k in t for k in ("double", "float", "real", "numeric", "decimal", "number")):
        return "float"
    return "other"


def probe_types(conn: Connection, schema: str | None) -> TableTypes | None:
    """Column type classes of every table of a schema; None where the dialect is not known to us."""
    if conn.dialect.name not in TYPED_DIALECTS:
        return None
    params: dict[str, str] = {}
    if schema and "." in schema:
        catalog, schema_name = schema.split(".", 1)
        where = "c.table_catalog = :catalog AND c.table_schema = :schema"
        params = {"catalog": catalog, "schema": schema_name}
    elif schema:
        where = "c.table_catalog = current_database() AND c.table_schema = :schema"
        params = {"schema": schema}
    else:
        where = "c.table_catalog = current_database() AND c.table_schema = current_schema()"
    sql = f"SELECT c.table_name, c.column_name, c.data_type FROM information_schema.columns c WHERE {where}"
    out: TableTypes = {}
    for table_name, column_name, data_type in conn.execute(text(sql), params):
        out.setdefault(str(table_name).lower(), {})[str(column_name).lower()] = type_class(str(data_type))
    return out


class _Kind:
    """``{t.date[col]}`` / ``{t.text[col]}`` / ``{t.id[col]}`` in a template: one expression per column."""

    def __init__(self, owner: ColumnSql, kind: str) -> None:
        self.owner = owner
        self.kind = kind

    def __getitem__(self, column: str) -> str:
        return self.owner.expression(column, self.kind)


class ColumnSql:
    """Cast-safe SQL for the columns of one table under one alias (see the module docstring).

    ``columns`` maps the table's column names to their type class; ``None`` = types unknown
    (columns are used as they are). ``names`` limits the columns that exist when the types
    are unknown (from a ``SELECT * … WHERE 1 = 0`` probe); ``None`` = assume they exist.
    """

    def __init__(
        self,
        dialect: str,
        alias: str,
        columns: Mapping[str, str] | None,
        names: frozenset[str] | None = None,
    ) -> None:
        self.dialect = dialect
        self.alias = alias
        self.columns = columns
        self.names = names if names is not None else (frozenset(columns) if columns is not None else None)
        self.date = _Kind(self, "date")
        self.text = _Kind(self, "text")
        self.id = _Kind(self, "id")

    def has(self, column: str) -> bool:
        return self.names is None or column in self.names

    def expression(self, column: str, kind: str) -> str:
        col = column.lower()
        if not self.has(col):
            return {"date": "CAST(NULL AS DATE)", "text": "CAST(NULL AS VARCHAR)"}.get(
                kind, "CAST(NULL AS BIGINT)"
            )
        ref = f"{self.alias}.{col}"
        cls = self.columns.get(col) if self.columns is not None else None
        if cls is None:  # type unknown: trust the column
            return ref
        if kind == "date":
            return self._date(ref, cls)
        if kind == "text":
            return self._text(ref, cls)
        return self._id(ref, cls)

    def _as_text(self, ref: str, cls: str) -> str:
        return f"TRIM({ref})" if cls == "text" else f"TRIM(CAST({ref} AS VARCHAR))"

    def _date(self, ref: str, cls: str) -> str:
        if cls == "date":
            return ref
        if cls == "timestamp":
            return f"CAST({ref} AS DATE)"
        s = self._as_text(ref, cls)
        if self.dialect == "duckdb":
            iso = f"CASE WHEN regexp_matches({s}, '{ISO_DATE}') THEN SUBSTRING({s}, 1, 10) END"
            return f"TRY_CAST({iso} AS DATE)"
        if self.dialect == "postgresql":
            # CASE, not AND: PostgreSQL does not promise to evaluate AND operands in order.
            last_day = (
                f"EXTRACT(DAY FROM CAST(SUBSTRING({s}, 1, 8) || '01' AS DATE)"
                " + INTERVAL '1 month' - INTERVAL '1 day')"
            )
            return (
                f"CASE WHEN {s} ~ '{ISO_DATE}' THEN"
                f" CASE WHEN CAST(SUBSTRING({s}, 9, 2) AS INTEGER) <= {last_day}"
                f" THEN CAST(SUBSTRING({s}, 1, 10) AS DATE) END END"
            )
        return f"CAST({ref} AS DATE)"

    def _text(self, ref: str, cls: str) -> str:
        if cls == "text":
            return ref
        if cls == "float":
            # 1970.0 -> '1970' on both databases (DuckDB would write '1970.0', PostgreSQL '1970')
            return (
                f"CASE WHEN {ref} = FLOOR({ref}) AND ABS({ref}) < 1e15"
                f" THEN CAST(CAST({ref} AS BIGINT) AS VARCHAR) ELSE CAST({ref} AS VARCHAR) END"
            )
        return f"CAST({ref} AS VARCHAR)"

    def _id(self, ref: str, cls: str) -> str:
        if cls in ("int", "float"):
            return ref
        s = self._as_text(ref, cls)
        if self.dialect == "duckdb":  # not TRY_CAST alone: it reads '1e3' as 1000, PostgreSQL would not
            return f"CASE WHEN regexp_matches({s}, '{_DIGITS}') THEN TRY_CAST({s} AS BIGINT) END"
        if self.dialect == "postgresql":
            return f"CASE WHEN {s} ~ '{_DIGITS}' THEN CAST({s} AS BIGINT) END"
        return ref
