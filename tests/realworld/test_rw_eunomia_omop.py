"""A public OMOP CDM 5.4 sample written by others: OHDSI Eunomia "Synthea27Nj" (27 Synthea persons).

Data: tests/data/realworld/eunomia-synthea27nj/ (NOTICE.md there): the sample's CSVs, gzip,
without CONCEPT_RELATIONSHIP. The vocabulary subset is the sample's own CONCEPT (it holds the
NSCLC concepts) and its CONCEPT_ANCESTOR (empty).

Loaded the way sites load CSVs: pandas `read_csv` type inference, then a table per frame
(DuckDB from the frame, PostgreSQL with `DataFrame.to_sql`). So `condition_source_value` (SNOMED
codes) becomes BIGINT, every date column is text, empty columns are DOUBLE — spec §1: column
types are not trusted, the CDM is read by casting, never by failing.

Expectations, by hand from spec v2 and the CSVs:
* No person has a lung-cancer record (no nsclc concept or source value in
  condition_occurrence; checked below on the raw CSV) → no screened patient → a valid,
  empty result (§5 v2): exit 0, every output written, zero counts, null medians.
* Every row is accounted for: results.json `source` balances (read = in_scope + quarantined +
  out_of_scope), and `read` covers at least every row of the activity tables of §1 (visit_occurrence,
  visit_detail, condition_occurrence, procedure_occurrence, drug_exposure, device_exposure,
  measurement, observation, episode). Every such row carries its start date, none lies in the
  future: nothing is quarantined.

Findings (tool bugs, left as strict xfail for the lead):
* (fixed at f5e9e07, marker removed) DuckDB: `condition_source_value` holds SNOMED codes, so
  pandas infers int64 and the column is BIGINT; the screening SQL applied `LIKE` to it without a
  cast (`No function matches ~~(BIGINT, VARCHAR)`, exit 3).
* (fixed, markers removed) `read` was 0: with no screened person the OMOP reader counted none of
  the CDM's rows; a complete read now counts the other persons' rows out of scope (docs/omop.md).
* (fixed, markers removed) PostgreSQL: the sample's CONCEPT_ANCESTOR is header-only, so pandas
  infers `object` and to_sql creates TEXT columns; the descendant query now casts them.
"""

from __future__ import annotations

import csv
import gzip
import io

import duckdb
import pandas as pd
import pytest
from rw_helpers import DATA, assert_balanced, assert_outputs_exist, run_cli

SRC = DATA / "eunomia-synthea27nj"
SCHEMA = "rw_synthea27nj"
ACTIVITY_TABLES = (
    "visit_occurrence",
    "visit_detail",
    "condition_occurrence",
    "procedure_occurrence",
    "drug_exposure",
    "device_exposure",
    "measurement",
    "observation",
    "episode",
)
# spec §2 nsclc (+ §2.1 Synthea stage codes) and small-cell, as SNOMED codes
NSCLC_SNOMED = {
    "254637007",
    "254626006",
    "254634000",
    "254629004",
    "422968005",
    "424132000",
    "425048006",
    "423121009",
}


def _frames() -> dict[str, pd.DataFrame]:
    frames = {}
    for path in sorted(SRC.glob("*.csv.gz")):
        with gzip.open(path, "rb") as fh:
            frames[path.name.removesuffix(".csv.gz")] = pd.read_csv(fh)  # pandas' own type inference
    return frames


def _raw_rows(table: str) -> list[dict[str, str]]:
    with gzip.open(SRC / f"{table}.csv.gz", "rt", encoding="utf-8") as fh:
        return list(csv.DictReader(io.StringIO(fh.read())))


def test_sample_has_no_lung_cancer_and_types_are_inferred() -> None:
    conditions = _raw_rows("condition_occurrence")
    concepts = {r["concept_id"]: r for r in _raw_rows("concept")}
    nsclc_ids = {
        cid
        for cid, c in concepts.items()
        if c["vocabulary_id"] == "SNOMED" and c["concept_code"] in NSCLC_SNOMED
    }
    assert len(nsclc_ids) >= 4  # the vocabulary subset knows NSCLC ...
    for r in conditions:  # ... but nobody has it
        assert {r["condition_concept_id"], r["condition_source_concept_id"]}.isdisjoint(nsclc_ids)
        source_value = r["condition_source_value"]
        assert source_value not in NSCLC_SNOMED and not source_value.startswith("C34")
    frames = _frames()
    co = frames["condition_occurrence"]
    assert pd.api.types.is_integer_dtype(co["condition_source_value"])  # codes stored as integers
    assert pd.api.types.is_object_dtype(co["condition_start_date"])  # dates stored as text
    assert pd.api.types.is_float_dtype(co["stop_reason"])  # an empty column


def _expected_activity_rows() -> int:
    return sum(len(_raw_rows(t)) for t in ACTIVITY_TABLES)


def _check_empty_result(run) -> None:
    assert run.returncode == 0, run.describe()
    assert_outputs_exist(run.out)
    assert run.patients() == {}
    results = run.results()
    assert (results["n_screened"], results["n_cohort"]) == (0, 0), results
    assert all(a["n"] == 0 for a in results["attrition"]), results["attrition"]
    assert results["recurrence"]["n"] == 0
    assert all(v is None for v in results["os"]["median_months"].values()), results["os"]
    source = results["source"]
    assert_balanced(source)
    assert source["quarantined"] == 0, source
    assert run.quarantine() == []
    assert run.unmatched() == []  # counts records of screened patients only (§5)


def _check_every_row_read(run) -> None:
    source = run.results()["source"]
    n_rows = _expected_activity_rows()
    assert source["read"] >= n_rows, (source, n_rows)


@pytest.fixture(scope="module")
def duckdb_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("eunomia-duckdb")
    path = tmp / "cdm.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute(f"CREATE SCHEMA {SCHEMA}")
        for name, frame in _frames().items():
            con.register("frame", frame)
            con.execute(f"CREATE TABLE {SCHEMA}.{name} AS SELECT * FROM frame")
            con.unregister("frame")
        # the inference really happened in the database too
        types = dict(
            con.execute(
                "SELECT column_name, data_type FROM information_schema.columns"
                f" WHERE table_schema = '{SCHEMA}' AND table_name = 'condition_occurrence'"
            ).fetchall()
        )
    assert types["condition_source_value"] == "BIGINT" and types["condition_start_date"] == "VARCHAR", types
    return run_cli(
        "--omop", f"duckdb:///{path}", "--cdm-schema", SCHEMA, "--vocab-schema", SCHEMA, out=tmp / "out"
    )


@pytest.fixture(scope="module")
def postgres_run(pg_url: str, tmp_path_factory: pytest.TempPathFactory):
    import sqlalchemy as sa

    engine = sa.create_engine(pg_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{SCHEMA}"'))
        for name, frame in _frames().items():
            # the table as `DataFrame.to_sql` creates it (its types from pandas' inference); the
            # rows then by COPY of the frame's own values (NaN -> NULL), as to_sql would insert them
            frame.head(0).to_sql(name, engine, schema=SCHEMA, index=False)
            data = frame.to_csv(index=False, header=True)
            raw = engine.raw_connection()
            try:
                with (
                    raw.cursor() as cur,
                    cur.copy(f'COPY "{SCHEMA}"."{name}" FROM STDIN WITH (FORMAT csv, HEADER true)') as copy,
                ):
                    copy.write(data)
                raw.commit()
            finally:
                raw.close()
        with engine.connect() as conn:
            types = dict(
                conn.execute(
                    sa.text(
                        "SELECT column_name, data_type FROM information_schema.columns"
                        " WHERE table_schema = :s AND table_name = 'condition_occurrence'"
                    ),
                    {"s": SCHEMA},
                ).fetchall()
            )
        assert types["condition_source_value"] == "bigint" and types["condition_start_date"] == "text", types
    finally:
        engine.dispose()
    out = tmp_path_factory.mktemp("eunomia-pg") / "out"
    return run_cli("--omop", pg_url, "--cdm-schema", SCHEMA, "--vocab-schema", SCHEMA, out=out)


def test_duckdb_inferred_types_empty_result(duckdb_run) -> None:
    _check_empty_result(duckdb_run)


def test_duckdb_every_row_accounted(duckdb_run) -> None:
    assert duckdb_run.returncode == 0, duckdb_run.describe()
    _check_every_row_read(duckdb_run)


@pytest.mark.postgres
def test_postgres_to_sql_empty_result(postgres_run) -> None:
    _check_empty_result(postgres_run)


@pytest.mark.postgres
def test_postgres_every_row_accounted(postgres_run) -> None:
    assert postgres_run.returncode == 0, postgres_run.describe()
    _check_every_row_read(postgres_run)
