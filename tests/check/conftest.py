"""Fixtures of the ``leopard-etl check`` tests: real services only (sekmet, PostgreSQL, DuckDB files).

The sekmet FHIR server is started the way tests/fhir/conftest.py does (its ``start_sekmet``);
without it, or without PostgreSQL, the tests skip locally and fail in CI (tests/conftest.py).
Synthetic data comes from the generator in-process (a few patients: check reads metadata only).
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location(
    "leopard_check_fhir_conftest", Path(__file__).parents[1] / "fhir" / "conftest.py"
)
assert _spec and _spec.loader
_fhir = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _fhir  # its dataclasses look their module up there
_spec.loader.exec_module(_fhir)
start_sekmet = _fhir.start_sekmet


@pytest.fixture(scope="module")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_sekmet(tmp_path_factory.mktemp("sekmet-check"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def fhir_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from leopard_etl.synth import generate

    out = tmp_path_factory.mktemp("fhir-files")
    generate(patients=12, seed=3, out=out, fmt="fhir-ndjson", centres=2)
    return out


@pytest.fixture(scope="session")
def omop_duckdb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A synthetic OMOP CDM 5.4 in a DuckDB file (schemas cdm, vocab); tests copy it before changing it."""
    from leopard_etl.synth import generate

    out = tmp_path_factory.mktemp("omop-duckdb")
    generate(patients=12, seed=3, out=out, fmt="omop-duckdb", centres=2)
    path = next(out.glob("*.duckdb"))
    return path


@pytest.fixture(scope="session")
def omop_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from leopard_etl.synth import generate

    out = tmp_path_factory.mktemp("omop-csv")
    generate(patients=12, seed=3, out=out, fmt="omop-csv", centres=2)
    return out
