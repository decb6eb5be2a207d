"""``check`` on the warehouse, DuckDB and the real PostgreSQL: reachable, writable, schema version, lock
free — and the failing variants: lock held (exit 5), schema newer than the tool (exit 2),
unreachable server (exit 3). Read-only: the DuckDB file is byte-identical after a check, no lock
file is created, and PostgreSQL holds exactly the tables it held before."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from check_helpers import folder_state, one

from leopard_etl.check import check_request, verdict
from leopard_etl.errors import EXIT_CONFIG, EXIT_LOCK, EXIT_SOURCE
from leopard_etl.warehouse.lock import advisory_key, file_lock
from leopard_etl.warehouse.schema import SCHEMA_VERSION
from leopard_etl.warehouse.store import Warehouse


@pytest.fixture
def source(fhir_files: Path) -> list[str]:
    return [str(fhir_files)]


def test_duckdb_new_warehouse_is_not_created(tmp_path: Path, source: list[str]) -> None:
    target = tmp_path / "wh" / "leopard.duckdb"
    lines = check_request(fhir=source, warehouse=f"duckdb:///{target}", env={})
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    assert "does not exist yet: the first run creates it" in one(lines, "warehouse").message
    assert one(lines, "warehouse.lock").message == "free"
    assert list(tmp_path.iterdir()) == []  # not even the folder


def test_duckdb_existing_warehouse_untouched(tmp_path: Path, source: list[str]) -> None:
    db = tmp_path / "leopard.duckdb"
    with Warehouse(f"duckdb:///{db}") as wh:
        wh.migrate()
        with wh.lock():  # a previous run: the lock file exists, released
            pass
    before = folder_state(tmp_path)
    lines = check_request(fhir=source, warehouse=f"duckdb:///{db}", env={})
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    messages = [x.message for x in lines if x.part == "warehouse"]
    current = f"schema version {SCHEMA_VERSION} (current)"
    assert messages == [f"DuckDB file {db} exists and is writable", current]
    assert folder_state(tmp_path) == before  # byte-identical database and lock file, nothing added


def test_duckdb_lock_held(tmp_path: Path, source: list[str]) -> None:
    db = tmp_path / "leopard.duckdb"
    with Warehouse(f"duckdb:///{db}") as wh:
        wh.migrate()
    with file_lock(Path(f"{db}.lock")):  # another run holds it (flock conflicts across open files)
        lines = check_request(fhir=source, warehouse=f"duckdb:///{db}", env={})
    line = one(lines, "warehouse.lock", "fail")
    assert line.exit_code == EXIT_LOCK and "held by another run" in line.message
    assert verdict(lines) == EXIT_LOCK
    # released: free again, and the check did not leave it taken
    again = check_request(fhir=source, warehouse=f"duckdb:///{db}", env={})
    assert one(again, "warehouse.lock").status == "ok"


def test_duckdb_newer_schema_refused(tmp_path: Path, source: list[str]) -> None:
    db = tmp_path / "leopard.duckdb"
    with Warehouse(f"duckdb:///{db}") as wh:
        wh.migrate()
    engine = sa.create_engine(f"duckdb:///{db}")
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO main.schema_version VALUES (99, now())")
    engine.dispose()
    lines = check_request(fhir=source, warehouse=f"duckdb:///{db}", env={})
    line = one(lines, "warehouse", "fail")
    assert "schema version 99 is newer" in line.message and line.exit_code == EXIT_CONFIG
    assert verdict(lines) == EXIT_CONFIG


def test_duckdb_location_is_a_file(tmp_path: Path, source: list[str]) -> None:
    (tmp_path / "plain").write_text("not a folder")
    lines = check_request(fhir=source, warehouse=f"duckdb:///{tmp_path / 'plain' / 'leopard.duckdb'}", env={})
    assert "is not a writable folder" in one(lines, "warehouse", "fail").message
    assert verdict(lines) == EXIT_CONFIG


# -- PostgreSQL -------------------------------------------------------------------------------------
def _tables(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT schemaname, tablename FROM pg_tables WHERE schemaname NOT IN "
                    "('pg_catalog', 'information_schema') ORDER BY 1, 2")
        ).all()
        schemas = conn.execute(sa.text("SELECT nspname FROM pg_namespace ORDER BY 1")).scalars().all()
    engine.dispose()
    return [(str(a), str(b)) for a, b in rows] + [("schema", str(s)) for s in schemas]


@pytest.mark.postgres
def test_postgres_new_schema_creates_nothing(pg_url: str, source: list[str]) -> None:
    before = _tables(pg_url)
    lines = check_request(fhir=source, warehouse=pg_url, env={"LEOPARD_WAREHOUSE_SCHEMA": "wh_check_new"})
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    messages = [x.message for x in lines if x.part == "warehouse"]
    writable = "writable: the user may create the schema 'wh_check_new' (absent) (checked, nothing created)"
    assert writable in messages
    new = f"schema 'wh_check_new' holds no LEOPARD tables yet: the first run creates version {SCHEMA_VERSION}"
    assert new in messages
    assert _tables(pg_url) == before


@pytest.mark.postgres
def test_postgres_existing_warehouse_and_lock(pg_url: str, source: list[str]) -> None:
    schema = "wh_check"
    with Warehouse(pg_url, schema) as wh:
        wh.migrate()
    env = {"LEOPARD_WAREHOUSE_SCHEMA": schema}
    before = _tables(pg_url)
    lines = check_request(fhir=source, warehouse=pg_url, env=env)
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    assert f"schema version {SCHEMA_VERSION} (current)" in [x.message for x in lines]
    assert one(lines, "warehouse.lock").status == "ok"
    assert _tables(pg_url) == before
    # another run holds the schema's advisory lock on its own session
    engine = sa.create_engine(pg_url)
    key = {"k": advisory_key(schema)}
    with engine.connect() as holder:
        assert holder.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), key).scalar()
        lines = check_request(fhir=source, warehouse=pg_url, env=env)
        holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), key)
    engine.dispose()
    line = one(lines, "warehouse.lock", "fail")
    assert line.exit_code == EXIT_LOCK and "locked by another run" in line.message
    assert verdict(lines) == EXIT_LOCK


@pytest.mark.postgres
def test_postgres_unreachable(pg_url: str, source: list[str]) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines = check_request(fhir=source, warehouse=f"postgresql+psycopg://etl@127.0.0.1:{port}/leopard", env={})
    line = one(lines, "warehouse", "fail")
    assert line.message.startswith("warehouse unreachable (postgresql+psycopg://etl@127.0.0.1:")
    assert verdict(lines) == EXIT_SOURCE
    unset = {"LEOPARD_WAREHOUSE_PASSWORD_ENV": "NO_SUCH_PW"}
    missing = check_request(fhir=source, warehouse=pg_url, env=unset)
    assert "NO_SUCH_PW" in one(missing, "warehouse", "fail").message and verdict(missing) == EXIT_CONFIG
