"""The committed DDL is exactly what the one schema definition renders."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from leopard_etl.paths import sql_dir
from leopard_etl.warehouse.schema import DERIVED_TABLES, METADATA, render_ddl


@pytest.mark.parametrize("dialect", ["duckdb", "postgresql"])
def test_committed_ddl_matches_metadata(dialect: str) -> None:
    committed = (sql_dir() / "ddl" / dialect / "leopard.sql").read_text()
    assert committed == render_ddl(dialect), "run `make ddl` and commit sql/ddl/"


def test_ddl_executes_on_duckdb() -> None:
    engine = sa.create_engine("duckdb:///:memory:")
    with engine.begin() as conn:
        body = "\n".join(line for line in render_ddl("duckdb").splitlines() if not line.startswith("--"))
        for stmt in body.split(";"):
            if stmt.strip():
                conn.exec_driver_sql(stmt)
        names = set(sa.inspect(conn).get_table_names())
    assert set(DERIVED_TABLES) <= names


def test_every_derived_patient_table_has_provenance() -> None:
    for name in DERIVED_TABLES:
        cols = METADATA.tables[name].c
        if "patient_id" in cols:
            assert "source_ids" in cols and "source_system" in cols, name
