"""``check`` on an OMOP CDM, in DuckDB and in the real PostgreSQL: CDM version, every table the run
reads, the vocabulary per code group — and the failing variants: a missing table, an empty
vocabulary, an unreachable database. Read-only: the DuckDB file is byte-identical afterwards and
PostgreSQL holds exactly the tables it held before."""

from __future__ import annotations

import shutil
import socket
from pathlib import Path

import pytest
import sqlalchemy as sa
from check_helpers import digest, failures, one, part

from leopard_etl.check import check_request, verdict
from leopard_etl.errors import EXIT_SOURCE
from leopard_etl.sources.omop.connect import REQUIRED_CDM


def _copy(src: Path, tmp_path: Path, name: str) -> Path:
    dest = tmp_path / name
    shutil.copyfile(src, dest)
    return dest


def _duck(path: Path, *statements: str) -> None:
    engine = sa.create_engine(f"duckdb:///{path}")
    with engine.begin() as conn:
        for statement in statements:
            conn.exec_driver_sql(statement)
    engine.dispose()


def test_duckdb_cdm_ok_and_untouched(omop_duckdb: Path, tmp_path: Path) -> None:
    cdm = _copy(omop_duckdb, tmp_path, "omop.duckdb")
    before = digest(cdm)
    lines = check_request(omop=f"duckdb:///{cdm}", cdm_schema="cdm", vocab_schema="vocab", env={})
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    assert "read-only" in one(lines, "omop").message
    assert one(lines, "omop.cdm").message.startswith("CDM v5.4 (schema 'cdm'")
    tables = part(lines, "omop.table")
    for name in REQUIRED_CDM:
        assert any(t.message == f"{name}: present, has rows" for t in tables), name
    groups = one(lines, "omop.vocab", "ok").message
    assert "mapped concepts found:" in groups and "nsclc " in groups and "durvalumab " in groups
    assert digest(cdm) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["omop.duckdb"]  # no .wal, no lock file


def test_duckdb_missing_table(omop_duckdb: Path, tmp_path: Path) -> None:
    cdm = _copy(omop_duckdb, tmp_path, "omop.duckdb")
    _duck(cdm, "DROP TABLE cdm.drug_exposure")
    lines = check_request(omop=f"duckdb:///{cdm}", cdm_schema="cdm", vocab_schema="vocab", env={})
    line = one(lines, "omop.table", "fail")
    assert line.message == "drug_exposure: missing in schema 'cdm'" and line.exit_code == EXIT_SOURCE
    assert verdict(lines) == EXIT_SOURCE


def test_duckdb_empty_vocabulary(omop_duckdb: Path, tmp_path: Path) -> None:
    cdm = _copy(omop_duckdb, tmp_path, "omop.duckdb")
    _duck(cdm, "DELETE FROM vocab.concept", "DELETE FROM vocab.concept_ancestor")
    lines = check_request(omop=f"duckdb:///{cdm}", cdm_schema="cdm", vocab_schema="vocab", env={})
    line = one(lines, "omop.vocab", "fail")
    assert "concept table in schema 'vocab' is empty" in line.message and line.exit_code == EXIT_SOURCE
    assert verdict(lines) == EXIT_SOURCE


def test_duckdb_vocabulary_without_the_nsclc_codes(omop_duckdb: Path, tmp_path: Path) -> None:
    cdm = _copy(omop_duckdb, tmp_path, "omop.duckdb")
    nsclc_vocabularies = "'SNOMED', 'ICD10CM', 'ICD10', 'ICD10GM', 'ICD9CM'"
    _duck(cdm, f"DELETE FROM vocab.concept WHERE vocabulary_id IN ({nsclc_vocabularies})")
    lines = check_request(omop=f"duckdb:///{cdm}", cdm_schema="cdm", vocab_schema="vocab", env={})
    assert "no patient can be screened" in one(lines, "omop.vocab", "fail").message
    assert verdict(lines) == EXIT_SOURCE


def test_duckdb_wrong_schema_and_missing_file(omop_duckdb: Path, tmp_path: Path) -> None:
    lines = check_request(omop=f"duckdb:///{omop_duckdb}", cdm_schema="nope", vocab_schema="vocab", env={})
    assert one(lines, "omop", "fail").message == "no tables in schema 'nope'"
    lines = check_request(omop=f"duckdb:///{tmp_path / 'absent.duckdb'}", env={})
    assert "does not exist" in one(lines, "omop", "fail").message
    assert verdict(lines) == EXIT_SOURCE
    assert not (tmp_path / "absent.duckdb").exists()


# -- PostgreSQL -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pg_cdm(pg_url: str, omop_csv: Path) -> str:
    """The synthetic CDM in schemas cdm_ok / vocab_ok, plus variants built from it:
    cdm_missing (no measurement table) and vocab_empty (empty concept, concept_ancestor)."""
    from leopard_etl.synth.omop_io import load_omop_csv

    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        load_omop_csv(conn, omop_csv, cdm_schema="cdm_ok", vocab_schema="vocab_ok")
        conn.exec_driver_sql("CREATE SCHEMA cdm_missing")
        conn.exec_driver_sql("CREATE SCHEMA vocab_empty")
        names = conn.execute(
            sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'cdm_ok'")
        ).scalars().all()
        for name in names:
            if name != "measurement":
                conn.exec_driver_sql(f"CREATE TABLE cdm_missing.{name} AS TABLE cdm_ok.{name}")
        for name in ("concept", "concept_ancestor"):
            conn.exec_driver_sql(f"CREATE TABLE vocab_empty.{name} AS TABLE vocab_ok.{name} WITH NO DATA")
    engine.dispose()
    return pg_url


def _relations(url: str) -> list[tuple[str, str]]:
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT n.nspname, c.relname FROM pg_class c "
                    "JOIN pg_namespace n ON n.oid = c.relnamespace "
                    "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2")
        ).all()
    engine.dispose()
    return [(str(a), str(b)) for a, b in rows]


@pytest.mark.postgres
def test_postgres_cdm_ok_creates_nothing(pg_cdm: str) -> None:
    before = _relations(pg_cdm)
    lines = check_request(omop=pg_cdm, cdm_schema="cdm_ok", vocab_schema="vocab_ok", env={})
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    assert "(PostgreSQL " in part(lines, "omop")[0].message
    assert one(lines, "omop.cdm").message.startswith("CDM v5.4")
    assert "mapped concepts found" in one(lines, "omop.vocab", "ok").message
    assert any("temporary tables" in x.message and x.status == "ok" for x in part(lines, "omop"))
    assert _relations(pg_cdm) == before


@pytest.mark.postgres
def test_postgres_missing_table_and_empty_vocabulary(pg_cdm: str) -> None:
    lines = check_request(omop=pg_cdm, cdm_schema="cdm_missing", vocab_schema="vocab_ok", env={})
    assert [x.message for x in failures(lines)] == ["measurement: missing in schema 'cdm_missing'"]
    assert verdict(lines) == EXIT_SOURCE
    lines = check_request(omop=pg_cdm, cdm_schema="cdm_ok", vocab_schema="vocab_empty", env={})
    assert len(failures(lines)) == 1 and "is empty (vocabulary not loaded)" in failures(lines)[0].message
    assert verdict(lines) == EXIT_SOURCE


@pytest.mark.postgres
def test_postgres_unreachable(pg_cdm: str) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    lines = check_request(omop=f"postgresql+psycopg://postgres@127.0.0.1:{port}/omop", env={})
    line = one(lines, "omop", "fail")
    assert line.message.startswith("cannot connect to postgresql+psycopg://postgres@127.0.0.1:")
    assert verdict(lines) == EXIT_SOURCE
