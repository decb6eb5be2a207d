"""The OMOP rendering of the synthetic cohort: DuckDB and PostgreSQL give the same events; 5.3 works."""

from __future__ import annotations

import csv
import datetime as dt
import importlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import create_engine
from sqlalchemy.engine import Connection, Engine

from leopard_etl.config import Rules
from leopard_etl.events import EVENT_COLUMNS, PATIENT_COLUMNS, EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.omop import read_omop
from leopard_etl.sources.omop.cdm import VOCAB_TABLES, cdm_metadata
from leopard_etl.sources.omop.columns import probe_types

synth = pytest.importorskip("leopard_etl.synth")

PATIENTS, SEED = 200, 7


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


@pytest.fixture(scope="module")
def synth54(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 5.4 rendering of the synthetic cohort for the module: ``duck/omop.duckdb`` and ``csv/``."""
    out = tmp_path_factory.mktemp("synth54")
    synth.generate(PATIENTS, SEED, out / "duck", fmt="omop-duckdb", cdm_version="5.4")
    synth.generate(PATIENTS, SEED, out / "csv", fmt="omop-csv", cdm_version="5.4")
    return out


def _run_day() -> dt.date | None:
    """The day of the run the synthetic ground truth assumes (spec v2), when the generator has one."""
    truth = importlib.import_module("leopard_etl.synth.truth")
    return getattr(truth, "RUN_DAY", None)


def _read(url: str, matcher: CodeMatcher, cdm: str, vocab: str) -> EventSink:
    sink = EventSink()
    sink.run_day = _run_day()
    read_omop(url, matcher, sink, cdm_schema=cdm, vocab_schema=vocab, chunk_size=500)
    assert sink.stats.balanced()
    return sink


def _expected_ids(out: Path) -> set[str]:
    with (out / "expected" / "patients.csv").open(encoding="utf-8") as fh:
        return {row["patient_id"] for row in csv.DictReader(fh)}


@pytest.mark.parametrize("version", ["5.4", "5.3"])
def test_synthetic_duckdb_reads_every_screened_patient(
    tmp_path: Path, matcher: CodeMatcher, version: str, synth54: Path
) -> None:
    if version == "5.4":
        tmp_path = synth54 / "duck"
    else:
        synth.generate(PATIENTS, SEED, tmp_path, fmt="omop-duckdb", cdm_version=version)
    sink = _read(f"duckdb:///{tmp_path / 'omop.duckdb'}", matcher, "cdm", "vocab")
    read = {p.patient_id for p in sink.patients}
    expected = _expected_ids(tmp_path)
    assert expected and expected <= read
    # persons read but not screened by the rules are the C34-with-small-cell ones
    small_cell = {e.patient_id for e in sink.events if "small_cell" in e.groups.split(";")}
    assert read - expected <= small_cell
    assert sink.quarantined == []
    kinds = {e.kind for e in sink.events}
    assert {"condition", "procedure", "drug_admin", "observation", "observation_period"} <= kinds
    if version == "5.3":
        assert "episode" not in kinds
    _derives_expected_patients_csv(sink, tmp_path)


def _derives_expected_patients_csv(sink: EventSink, out: Path) -> None:
    """End to end: the cohort rules on what the adapter read give the generator's ground truth."""
    derive = pytest.importorskip("leopard_etl.cohort.derive").derive
    mappings = load_mappings()
    events = pd.DataFrame.from_records(sink.events, columns=EVENT_COLUMNS)
    patients = pd.DataFrame.from_records(sink.patients, columns=PATIENT_COLUMNS)
    got = derive(events, patients, Rules(), mappings, "omop", _run_day()).patients_csv.astype(str)
    expected = pd.read_csv(out / "expected" / "patients.csv", dtype=str, keep_default_na=False)
    got = got[list(expected.columns)].sort_values("patient_id").reset_index(drop=True)
    expected = expected.sort_values("patient_id").reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected)


@pytest.mark.postgres
def test_synthetic_postgres_equals_duckdb(synth54: Path, pg_url: str, matcher: CodeMatcher) -> None:
    tmp_path = synth54
    engine = create_engine(pg_url)
    with engine.begin() as conn:
        synth.load_omop_csv(conn, tmp_path / "csv", cdm_schema="synth_cdm", vocab_schema="synth_vocab")
    engine.dispose()
    pg = _read(pg_url, matcher, "synth_cdm", "synth_vocab")
    duck = _read(f"duckdb:///{tmp_path / 'duck' / 'omop.duckdb'}", matcher, "cdm", "vocab")
    assert len(pg.events) > 1000
    assert sorted(pg.events) == sorted(duck.events)
    assert sorted(pg.patients) == sorted(duck.patients)
    assert pg.stats.as_dict() == duck.stats.as_dict()


def _bulk_insert(
    pd_table: Any, conn: Connection, keys: list[str], data_iter: Iterable[tuple[Any, ...]]
) -> None:
    """``to_sql`` insert method: the table pandas created (its inferred types), filled in bulk.

    Row-by-row or multi-row INSERTs through SQLAlchemy take ~10 s per 1000 rows on DuckDB.
    """
    name = f'"{pd_table.schema}"."{pd_table.name}"' if pd_table.schema else f'"{pd_table.name}"'
    cols = ", ".join(f'"{k}"' for k in keys)
    dbapi: Any = conn.connection.dbapi_connection
    if conn.dialect.name == "duckdb":
        dbapi.register("bulk_rows", pd.DataFrame(list(data_iter), columns=keys, dtype=object))
        conn.exec_driver_sql(f"INSERT INTO {name} ({cols}) SELECT {cols} FROM bulk_rows")
        dbapi.unregister("bulk_rows")
        return
    with dbapi.cursor() as cursor, cursor.copy(f"COPY {name} ({cols}) FROM STDIN") as copy:
        for row in data_iter:
            copy.write_row(row)


def _load_by_inference(engine: Engine, folder: Path, cdm: str, vocab: str) -> None:
    """The synthetic CSV rendering loaded with pandas' type inference (``read_csv`` + ``to_sql``)."""
    with engine.begin() as conn:
        for schema in (cdm, vocab):
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for table in cdm_metadata("5.4").sorted_tables:
        path = folder / f"{table.name}.csv"
        if not path.is_file():
            continue
        schema = vocab if table.name in VOCAB_TABLES else cdm
        frame = pd.read_csv(path)
        frame.to_sql(table.name, engine, schema=schema, index=False, method=_bulk_insert)


@pytest.mark.parametrize("backend", ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_synthetic_cdm_loaded_by_type_inference_equals_typed(
    tmp_path: Path, synth54: Path, matcher: CodeMatcher, backend: str, request: pytest.FixtureRequest
) -> None:
    """Spec §1 v2: column types are not trusted. ``to_sql`` stores the dates as text, numeric
    source values (CPT 77373 beside empty cells) as DOUBLE, concept ids with gaps as DOUBLE: the
    read casts and gives exactly the typed CDM's events."""
    if backend == "duckdb":
        url = f"duckdb:///{tmp_path / 'inferred.duckdb'}"
        cdm, vocab = "cdm", "vocab"
    else:
        url, cdm, vocab = request.getfixturevalue("pg_url"), "inferred_cdm", "inferred_vocab"
    engine = create_engine(url)
    try:
        _load_by_inference(engine, synth54 / "csv", cdm, vocab)
        with engine.connect() as conn:
            types = probe_types(conn, cdm) or {}
    finally:
        engine.dispose()
    assert types["condition_occurrence"]["condition_start_date"] == "text"
    assert types["drug_exposure"]["drug_source_concept_id"] == "float"
    typed = _read(f"duckdb:///{synth54 / 'duck' / 'omop.duckdb'}", matcher, "cdm", "vocab")
    inferred = _read(url, matcher, cdm, vocab)
    assert len(typed.events) > 1000
    assert sorted(inferred.events) == sorted(typed.events)
    assert sorted(inferred.patients) == sorted(typed.patients)
    assert sorted(inferred.quarantined) == sorted(typed.quarantined)
    assert inferred.stats.as_dict() == typed.stats.as_dict()
    key = lambda u: (u["record_type"], u["system"], u["code"])  # noqa: E731
    assert sorted(inferred.unmatched_codes, key=key) == sorted(typed.unmatched_codes, key=key)
