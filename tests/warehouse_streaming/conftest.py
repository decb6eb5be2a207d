"""Fixtures of the partitioned warehouse run: synthetic FHIR files and empty warehouses on both engines.

PostgreSQL: one fresh database per session (dropped at the end), each warehouse in its
own schema; without a server the PostgreSQL cases skip locally and fail in CI
(tests/conftest.py ``require_service``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from leopard_etl.synth import generate


@pytest.fixture(scope="session")
def fhir_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two synthetic FHIR NDJSON folders of the same patient ids (seeds differ): a site's data, later."""
    root = tmp_path_factory.mktemp("fhir")
    generate(patients=160, seed=11, out=root / "first", fmt="fhir-ndjson")
    generate(patients=160, seed=12, out=root / "later", fmt="fhir-ndjson")
    return root / "first", root / "later"


@pytest.fixture(params=["duckdb", "postgresql"])
def make_warehouse(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], tuple[str, str]]:
    """``make_warehouse(name)`` → (url, schema) of an empty warehouse on the parametrised engine."""

    def make(name: str) -> tuple[str, str]:
        schema = f"{name}_{uuid.uuid4().hex[:8]}"
        if request.param == "duckdb":
            return f"duckdb:///{tmp_path / name}.duckdb", schema
        return request.getfixturevalue("pg_url"), schema

    return make
