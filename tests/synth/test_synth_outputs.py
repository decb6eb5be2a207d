"""Determinism of every format, and the OMOP outputs loading into DuckDB (5.4, 5.3) and PostgreSQL."""

from __future__ import annotations

import hashlib
import importlib.util
import socket
import uuid
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from leopard_etl.synth import generate, load_omop_csv, omop_rows, simulate

_spec = importlib.util.spec_from_file_location(
    "leopard_test_policy", Path(__file__).parents[1] / "conftest.py"
)
assert _spec and _spec.loader
_policy = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_policy)
require_service = _policy.require_service


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.mark.parametrize("fmt", ["fhir-ndjson", "fhir-bundle", "omop-csv"])
def test_same_seed_same_bytes_other_seed_differs(tmp_path: Path, fmt: str) -> None:
    a, b, c = (
        generate(30, s, tmp_path / n, fmt) and _digest(tmp_path / n)
        for n, s in (("a", 4), ("b", 4), ("c", 5))
    )
    assert a == b
    assert a != c and a["expected/patients.csv"] != c["expected/patients.csv"]


def _counts(url: str, schema: str, tables: list[str]) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return {
                t: conn.execute(text(f'SELECT count(*) FROM "{schema}"."{t}"')).scalar_one() for t in tables
            }
    finally:
        engine.dispose()


@pytest.mark.parametrize("version", ["5.4", "5.3"])
def test_duckdb_has_the_rows_of_the_rendering(tmp_path: Path, version: str) -> None:
    summary = generate(
        40, 8, tmp_path, "omop-duckdb", cdm_version=version, cdm_schema="cdm_x", vocab_schema="voc"
    )
    expected = {t: len(r) for t, r in omop_rows(simulate(40, 8), version).items()}
    url = f"duckdb:///{tmp_path / 'omop.duckdb'}"
    clinical = [t for t in expected if t not in ("concept", "concept_ancestor")]
    assert _counts(url, "cdm_x", clinical) == {t: expected[t] for t in clinical}
    assert _counts(url, "voc", ["concept"]) == {"concept": expected["concept"]}
    assert summary["rows"]["person"] == 40  # type: ignore[index]
    assert ("episode" in summary["rows"]) == (version == "5.4")  # type: ignore[operator]
    engine = create_engine(url)
    with engine.connect() as conn:  # product -> ingredient through concept_ancestor (cisplatin SCD 1736854)
        ingredient = conn.execute(
            text(
                "SELECT a.ancestor_concept_id FROM voc.concept c JOIN voc.concept_ancestor a "
                "ON a.descendant_concept_id = c.concept_id AND a.min_levels_of_separation = 1 "
                "WHERE c.vocabulary_id = 'RxNorm' AND c.concept_code = '1736854'"
            )
        ).scalar_one()
        alive = conn.execute(
            text(
                "SELECT count(*) FROM cdm_x.observation_period o JOIN cdm_x.death d USING (person_id) "
                "WHERE o.observation_period_end_date > d.death_date"
            )
        ).scalar_one()
    engine.dispose()
    assert ingredient == 1397599 and alive == 0


def test_csv_loads_into_a_fresh_duckdb(tmp_path: Path) -> None:
    summary = generate(25, 9, tmp_path / "csv", "omop-csv")
    engine = create_engine(f"duckdb:///{tmp_path / 'fresh.duckdb'}")
    with engine.begin() as conn:
        loaded = load_omop_csv(conn, tmp_path / "csv")
        deaths = conn.execute(text("SELECT count(*) FROM cdm.death")).scalar_one()
    engine.dispose()
    assert loaded == summary["rows"]
    assert deaths == loaded["death"] > 0


def _postgres_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 5432), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.mark.postgres
def test_csv_loads_into_postgresql(tmp_path: Path) -> None:
    require_service(_postgres_up(), "PostgreSQL is not reachable on 127.0.0.1:5432")
    summary = generate(25, 9, tmp_path, "omop-csv", cdm_version="5.3")
    cdm, voc = f"synth_{uuid.uuid4().hex[:8]}", f"synth_v_{uuid.uuid4().hex[:8]}"
    engine = create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    try:
        with engine.begin() as conn:
            loaded = load_omop_csv(conn, tmp_path, cdm, voc)
            persons = conn.execute(text(f"SELECT count(*) FROM {cdm}.person")).scalar_one()
        assert loaded == summary["rows"] and persons == 25
    finally:
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {cdm} CASCADE"))
            conn.execute(text(f"DROP SCHEMA IF EXISTS {voc} CASCADE"))
        engine.dispose()
