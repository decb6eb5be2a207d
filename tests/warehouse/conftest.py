"""Warehouse fixtures: a DuckDB file per test and a fresh PostgreSQL database per session.

Every warehouse test runs on both engines (``wh_url`` is parametrised); PostgreSQL
tests get their own schema inside the session database, which is dropped at the end.
"""

from __future__ import annotations

import uuid

import pytest


@pytest.fixture(params=["duckdb", "postgresql"])
def wh_target(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    """(url, schema) of an empty warehouse on the parametrised engine."""
    schema = f"leo_{uuid.uuid4().hex[:8]}"
    if request.param == "duckdb":
        path = tmp_path_factory.mktemp("wh") / "leopard.duckdb"
        return f"duckdb:///{path}", schema
    return request.getfixturevalue("pg_url"), schema
