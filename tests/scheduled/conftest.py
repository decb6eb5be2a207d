"""Fixtures of the scheduled-run tests: warehouses on DuckDB and PostgreSQL, and the sekmet FHIR server.

PostgreSQL: one fresh database per session (dropped at the end), each warehouse in
its own schema of it, chosen through ``LEOPARD_WAREHOUSE_SCHEMA`` as a site would.
The sekmet server is started the way tests/fhir does it (its helper is loaded by
path). Without a service the tests that need it skip locally and fail in CI
(tests/conftest.py ``require_service``).
"""

from __future__ import annotations

import importlib.util
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from scheduled_cli import Target

TESTS = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def make_target(tmp_path: Path, request: pytest.FixtureRequest) -> Callable[[str, str], Target]:
    """``make_target(engine, name)`` → an empty warehouse on ``duckdb`` or ``postgresql``."""

    def make(engine: str, name: str) -> Target:
        if engine == "duckdb":
            return Target(f"duckdb:///{tmp_path / name}.duckdb", None)
        url = request.getfixturevalue("pg_url")
        return Target(url, f"{name}_{uuid.uuid4().hex[:8]}")

    return make


@pytest.fixture(scope="module")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A sekmet server for the module (tests/fhir/conftest.py ``start_sekmet``)."""
    fhir_fixtures = _load("leopard_scheduled_sekmet", TESTS / "fhir" / "conftest.py")
    server = fhir_fixtures.start_sekmet(tmp_path_factory.mktemp("sekmet"))
    try:
        yield server
    finally:
        server.stop()
