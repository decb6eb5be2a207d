"""Fixtures of the partitioned warehouse run: synthetic FHIR files and empty warehouses on both engines.

PostgreSQL: one fresh database per session (dropped at the end), each warehouse in its
own schema; without a server the PostgreSQL cases skip locally and fail in CI
(tests/conftest.py ``require_service``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from leopard_etl.synth import generate

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

    name = f"leopard_whstream_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def fhir_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two synthetic FHIR NDJSON folders of the same patient ids (seeds differ): a site's data, later."""
    root = tmp_path_factory.mktemp("fhir")
    generate(patients=160, seed=11, out=root / "first", fmt="fhir-ndjson")
    generate(patients=160, seed=12, out=root / "later", fmt="fhir-ndjson")
    return root / "first", root / "later"


@pytest.fixture(params=["duckdb", "postgresql"])
def make_warehouse(
    request: pytest.FixtureRequest, tmp_path: Path, require_service: Callable[..., None]
) -> Callable[[str], tuple[str, str]]:
    """``make_warehouse(name)`` → (url, schema) of an empty warehouse on the parametrised engine."""

    def make(name: str) -> tuple[str, str]:
        schema = f"{name}_{uuid.uuid4().hex[:8]}"
        if request.param == "duckdb":
            return f"duckdb:///{tmp_path / name}.duckdb", schema
        database = request.getfixturevalue("pg_database")
        require_service(database is not None, "PostgreSQL is not reachable on 127.0.0.1:5432")
        return f"postgresql+psycopg://postgres@127.0.0.1:5432/{database}", schema

    return make
