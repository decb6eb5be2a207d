"""Warehouse fixtures: a DuckDB file per test and a fresh PostgreSQL database per session.

Every warehouse test runs on both engines (``wh_url`` is parametrised); PostgreSQL
tests get their own schema inside the session database, which is dropped at the end.
"""

from __future__ import annotations

import importlib.util
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

# tests/conftest.py's policy (skip locally, fail in CI), loaded by path:
# a nested conftest cannot import it by name.
_spec = importlib.util.spec_from_file_location(
    "leopard_warehouse_test_policy", Path(__file__).parents[1] / "conftest.py"
)
assert _spec and _spec.loader
_policy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_policy)
require_service = _policy.require_service

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres connect_timeout=3"


def _pg_available() -> bool:
    try:
        import psycopg

        with psycopg.connect(PG_ADMIN):
            return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str | None]:
    """Name of a fresh database on the local server (None when the server is unreachable)."""
    if not _pg_available():
        yield None
        return
    import psycopg

    name = f"leopard_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["duckdb", "postgresql"])
def wh_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(url, schema) of an empty warehouse on the parametrised engine."""
    schema = f"leo_{uuid.uuid4().hex[:8]}"
    if request.param == "duckdb":
        path = tmp_path_factory.mktemp("wh") / "leopard.duckdb"
        return f"duckdb:///{path}", schema
    database = request.getfixturevalue("pg_database")
    require_service(database is not None, "PostgreSQL is not reachable on 127.0.0.1:5432")
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}", schema
