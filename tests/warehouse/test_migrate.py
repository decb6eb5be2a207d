"""Schema creation and the v1 -> v2 upgrade of a warehouse built from the committed v1 DDL."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from warehouse_frames import derived_tables, events_frame, patients_frame

from leopard_etl.errors import ConfigError
from leopard_etl.warehouse import Warehouse
from leopard_etl.warehouse.schema import SCHEMA_VERSION, render_ddl

V1 = Path(__file__).parent / "data" / "v1"


def _apply(url: str, schema: str, ddl: str) -> None:
    """What a DBA does with sql/ddl/<dialect>/leopard.sql: run it in the target schema."""
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(f'CREATE SCHEMA IF NOT EXISTS "{schema}"')
        conn.exec_driver_sql(
            f'SET search_path = "{schema}"'
            if engine.dialect.name == "postgresql"
            else f"SET schema = '{schema}'"
        )
        for statement in ddl.split(";\n"):
            body = "\n".join(line for line in statement.splitlines() if not line.startswith("--")).strip()
            if body:
                conn.exec_driver_sql(body)
        conn.exec_driver_sql(
            "INSERT INTO etl_run (run_id, started_at, source, source_system, mode, watermark, status)"
            " VALUES ('old', '2024-01-01 00:00:00+00', 'src', 'fhir', 'full', 'w-old', 'ok')"
        )
        conn.exec_driver_sql(
            "INSERT INTO outcome (patient_id, death, os_months, cutoff, source_system, source_ids)"
            " VALUES ('p1', false, 12.5, '2024-01-01', 'fhir', 'fhir:Patient/p1')"
        )
    engine.dispose()


def test_upgrade_from_v1_keeps_data_and_adds_the_event_store(wh_target: tuple[str, str]) -> None:
    url, schema = wh_target
    dialect = "postgresql" if url.startswith("postgresql") else "duckdb"
    _apply(url, schema, (V1 / f"{dialect}.sql").read_text())
    with Warehouse(url, schema) as wh:
        assert wh.version() == 1
        assert wh.migrate() == (1, SCHEMA_VERSION)
        assert wh.version() == SCHEMA_VERSION
        assert wh.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
        assert wh.last_watermark("src") == "w-old"
        assert list(wh.read_table("outcome")["os_months"]) == [12.5]
        # v2 features work on the upgraded warehouse
        run = wh.begin_run("src", "fhir", "incremental")
        assert len(wh.upsert_events(events_frame([1, 2]), patients_frame([1, 2]), run_id=run)) == 2
        frames = derived_tables([1, 2])
        wh.replace_derived(frames)
        wh.end_run(
            run,
            "ok",
            {"read": 9, "in_scope": 8, "quarantined": 1, "out_of_scope_reasons": {"x": 0}},
            watermark="w-new",
        )
        assert wh.runs(1)[0]["n_in_scope"] == 8
        # months are double precision now (DuckDB FLOAT was 4-byte: 12.34 came back as 12.340000152…)
        assert sorted(wh.read_table("outcome")["os_months"]) == sorted(frames["outcome"]["os_months"])


def test_current_ddl_file_records_its_version_and_newer_warehouses_are_refused(
    wh_target: tuple[str, str],
) -> None:
    url, schema = wh_target
    dialect = "postgresql" if url.startswith("postgresql") else "duckdb"
    _apply(url, schema, render_ddl(dialect))
    with Warehouse(url, schema) as wh:
        assert wh.migrate() == (SCHEMA_VERSION, SCHEMA_VERSION)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(f'INSERT INTO "{schema}".schema_version VALUES (:v, :t)'),
            {"v": SCHEMA_VERSION + 1, "t": dt.datetime.now(dt.UTC)},
        )
    engine.dispose()
    with Warehouse(url, schema) as wh, pytest.raises(ConfigError, match="upgrade leopard-etl"):
        wh.migrate()


def test_committed_ddl_matches_the_schema() -> None:
    root = Path(__file__).parents[2]
    for dialect in ("duckdb", "postgresql"):
        assert (root / "sql" / "ddl" / dialect / "leopard.sql").read_text() == render_ddl(dialect)


def test_bad_urls_and_schema_names_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="plain identifier"):
        Warehouse("duckdb:///:memory:", 'x"; DROP TABLE patient; --')
    with pytest.raises(ConfigError, match="unsupported"):
        Warehouse("mysql://u@h/db")
    with pytest.raises(ConfigError, match="not a database URL"):
        Warehouse("not a url")
