"""Fixtures of the OMOP adapter tests: the hand-made CDM in DuckDB files and in a throw-away PostgreSQL.

PostgreSQL: one fresh database per test session (random name, created and dropped via
the ``postgres`` maintenance database in AUTOCOMMIT); each CDM variant in its own
schemas. Without a server the PostgreSQL tests skip locally and fail in CI
(tests/conftest.py ``require_service``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from omop_fixture_cdm import build_cdm
from sqlalchemy import create_engine

_built: set[tuple[str, str]] = set()


@pytest.fixture(scope="session")
def pg_cdm(pg_url: str) -> Callable[[str], tuple[str, str, str]]:
    """``pg_cdm(version)`` → (url, cdm schema, vocab schema) of the fixture CDM in PostgreSQL."""

    def build(version: str) -> tuple[str, str, str]:
        tag = version.replace(".", "")
        cdm, vocab = f"cdm{tag}", f"vocab{tag}"
        if (pg_url, version) not in _built:
            engine = create_engine(pg_url)
            with engine.begin() as conn:
                build_cdm(conn, version, cdm, vocab)
            engine.dispose()
            _built.add((pg_url, version))
        return pg_url, cdm, vocab

    return build


@pytest.fixture
def duckdb_cdm(tmp_path: Path) -> Callable[..., str]:
    """``duckdb_cdm(version, cdm_schema, vocab_schema, with_concepts=True)`` → URL of a fresh DuckDB file."""

    def build(
        version: str = "5.4",
        cdm_schema: str | None = "cdm",
        vocab_schema: str | None = "vocab",
        with_concepts: bool = True,
    ) -> str:
        path = tmp_path / f"cdm-{uuid.uuid4().hex[:6]}.duckdb"
        engine = create_engine(f"duckdb:///{path}")
        with engine.begin() as conn:
            build_cdm(conn, version, cdm_schema, vocab_schema, with_concepts=with_concepts)
        engine.dispose()
        return f"duckdb:///{path}"

    return build
