"""Column types are not trusted (spec §1): a CDM loaded by pandas type inference reads like the typed one.

``pandas.read_csv`` + ``DataFrame.to_sql`` store dates as text, numeric source values as BIGINT
or DOUBLE (``77373`` → 77373.0 when the column has gaps), concept ids with gaps as DOUBLE. The
reader casts (sources/omop/columns.py) and must give the same events, patients, quarantine,
counts and unmatched codes as on the typed CDM — on DuckDB and on PostgreSQL.
"""

from __future__ import annotations

import csv
import datetime as dt
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from omop_fixture_cdm import RUN_DAY, build_v2_cdm, v2_table_rows
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.omop import read_omop
from leopard_etl.sources.omop.columns import ColumnSql, probe_types
from leopard_etl.sources.omop.connect import table_prefix

D = dt.date
BACKENDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


@pytest.fixture
def engine_of(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], Engine]]:
    """``engine_of(backend)`` → an engine on a fresh DuckDB file or on the session's PostgreSQL database."""
    engines: list[Engine] = []

    def make(backend: str) -> Engine:
        if backend == "duckdb":
            engine = create_engine(f"duckdb:///{tmp_path / f'db{len(engines)}.duckdb'}")
        else:
            engine = create_engine(request.getfixturevalue("pg_url"))
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.dispose()


def _csv_value(value: object) -> str:
    if value is None:
        return ""
    return value.isoformat() if isinstance(value, dt.date) else str(value)


def load_inferred(engine: Engine, folder: Path, cdm: str, vocab: str) -> dict[str, dict[str, str]]:
    """The v2 fixture written to CSV and loaded with pandas' type inference; returns the column types."""
    folder.mkdir(parents=True, exist_ok=True)
    with engine.begin() as conn:
        for schema in (cdm, vocab):
            conn.exec_driver_sql(f"CREATE SCHEMA IF NOT EXISTS {schema}")
    for name, rows in v2_table_rows().items():
        path = folder / f"{name}.csv"
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(list(rows[0]))
            writer.writerows([_csv_value(v) for v in r.values()] for r in rows)
        frame = pd.read_csv(path)  # default inference, as a hurried ETL does
        schema = vocab if name in ("concept", "concept_ancestor") else cdm
        frame.to_sql(name, engine, schema=schema, index=False, if_exists="replace")
    with engine.connect() as conn:
        return probe_types(conn, cdm) or {}


def _outcome(url: str, cdm: str, vocab: str, matcher: CodeMatcher) -> EventSink:
    sink = EventSink()
    sink.run_day = RUN_DAY
    read_omop(url, matcher, sink, cdm_schema=cdm, vocab_schema=vocab, chunk_size=5)
    assert sink.stats.balanced()
    return sink


@pytest.mark.parametrize("backend", BACKENDS)
def test_cdm_loaded_by_type_inference_reads_like_the_typed_one(
    engine_of: Callable[[str], Engine], matcher: CodeMatcher, backend: str, tmp_path: Path
) -> None:
    typed, inferred = engine_of(backend), engine_of(backend)
    suffix = "" if backend == "duckdb" else "_t"
    with typed.begin() as conn:
        build_v2_cdm(conn, f"cdm{suffix}", f"vocab{suffix}")
    types = load_inferred(inferred, tmp_path / "csv", "inf_cdm", "inf_vocab")
    # what pandas made of the columns: the cases the reader must cast
    assert types["condition_occurrence"]["condition_start_date"] == "text"
    assert types["procedure_occurrence"]["procedure_source_value"] == "float"  # 77373.0, 16.22, 92.24
    assert types["condition_occurrence"]["condition_source_concept_id"] == "float"
    assert types["death"]["death_date"] == "text"

    typed.dispose()  # DuckDB: the reader opens the file read-only, alone
    inferred.dispose()
    a = _outcome(typed.url.render_as_string(hide_password=False), f"cdm{suffix}", f"vocab{suffix}", matcher)
    b = _outcome(inferred.url.render_as_string(hide_password=False), "inf_cdm", "inf_vocab", matcher)
    assert len(a.events) > 20
    assert sorted(a.events) == sorted(b.events)
    assert sorted(a.patients) == sorted(b.patients)
    assert sorted(a.quarantined) == sorted(b.quarantined)
    assert a.stats.as_dict() == b.stats.as_dict()
    key = lambda u: (u["record_type"], u["system"], u["code"])  # noqa: E731
    assert sorted(a.unmatched_codes, key=key) == sorted(b.unmatched_codes, key=key)
    sbrt = next(e for e in b.events if e.source == "omop:procedure_occurrence/11")  # CPT as DOUBLE 77373.0
    assert (sbrt.system, sbrt.code, sbrt.groups) == ("cpt", "77373", "radiotherapy;stereotactic")

    # dates that are not dates: a grouped row is quarantined, an ungrouped one counted, never an error
    with inferred.begin() as conn:
        for row_id, value in ((2, "2020-02-30"), (3, "2020-13-01"), (1, "2020-01-10 08:30:00")):
            conn.execute(
                text(
                    "UPDATE inf_cdm.condition_occurrence SET condition_start_date = :v"
                    " WHERE condition_occurrence_id = :i"
                ),
                {"v": value, "i": row_id},
            )
    inferred.dispose()
    c = _outcome(inferred.url.render_as_string(hide_password=False), "inf_cdm", "inf_vocab", matcher)
    bad = {q.record_id: q for q in c.quarantined}["condition_occurrence/2"]
    assert bad.reason == "no usable date" and "2020-02-30" in bad.record
    assert _own_reasons(c.stats.out_of_scope_reasons) == {"no date": 2}  # row 3 now, row 100 as before
    assert next(e for e in c.events if e.source == "omop:condition_occurrence/1").start == D(2020, 1, 10)


@pytest.mark.parametrize("backend", BACKENDS)
def test_column_expressions_cast_without_failing(engine_of: Callable[[str], Engine], backend: str) -> None:
    engine = engine_of(backend)
    values = [
        # text date, double source value, text id
        ("2020-02-29", 1970.0, "42"),
        ("2019-02-29", 162.3, " 7 "),
        ("2020-02-30", 16.22, "x1"),
        ("2021-03-04 10:00:00", 77373.0, "1e3"),
        ("2021-13-01", None, None),
        ("0000-01-01", -3.0, "-5"),
        ("garbage", 1e20, ""),
        ("2020-1-5", 0.5, "12.0"),
    ]
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE SCHEMA coltest")
        conn.exec_driver_sql(
            "CREATE TABLE coltest.t (n INTEGER, d VARCHAR(30), f DOUBLE PRECISION, s VARCHAR(10))"
        )
        for n, (d, f, s) in enumerate(values):
            conn.execute(
                text("INSERT INTO coltest.t VALUES (:n, :d, :f, :s)"), {"n": n, "d": d, "f": f, "s": s}
            )
    with engine.connect() as conn:
        types = probe_types(conn, "coltest")
        assert types is not None and types["t"] == {"n": "int", "d": "text", "f": "float", "s": "text"}
        cols = ColumnSql(conn.dialect.name, "t", types["t"])
        rows = conn.execute(
            text(
                f"SELECT {cols.date['d']}, {cols.text['f']}, {cols.id['s']}, {cols.date['absent']}"
                f" FROM {table_prefix(conn, 'coltest')}t t ORDER BY t.n"
            )
        ).all()
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA coltest CASCADE")
    dates = [
        r[0] if r[0] is None or isinstance(r[0], dt.date) else dt.date.fromisoformat(str(r[0])) for r in rows
    ]
    assert dates == [D(2020, 2, 29), None, None, D(2021, 3, 4), None, None, None, None]
    assert [r[1] for r in rows] == ["1970", "162.3", "16.22", "77373", None, "-3", "1e+20", "0.5"]
    assert [r[2] for r in rows] == [42, 7, None, None, None, -5, None, None]
    assert all(r[3] is None for r in rows)


def _own_reasons(reasons: dict[str, int]) -> dict[str, int]:
    """Out-of-scope reasons without the other persons' rows (counted whole, docs/omop.md)."""
    return {k: v for k, v in reasons.items() if not k.endswith("person not screened")}
