# ruff: noqa: E501
"""Throughput of the OMOP adapter on a scaled CDM, in DuckDB and PostgreSQL (run by hand, not by pytest).

    .venv/bin/python tests/omop/bench_omop.py --persons 100000

Builds the hand-made fixture's vocabulary, then ``persons`` synthetic persons with
``generate_series`` (the same SQL runs on both databases): every third person has
NSCLC and ~60 relevant rows (RT fractions, chemo, durvalumab, stage, lesions, episode);
every person has ~20 rows the adapter must leave in the database (diabetes, other
drugs, unrelated measurements): for a screened person those are activity records (spec v2),
aggregated in the database. Prints rows held, read (considered), left, and rows/s.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path

from sqlalchemy import create_engine, insert, text

sys.path.insert(0, str(Path(__file__).parent))
from omop_fixture_cdm import CONCEPTS, _fill

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.omop import read_omop
from leopard_etl.sources.omop.cdm import create_cdm

# {c} = cdm schema prefix; g(i) = 1..persons; r(j) = repeat index
SCALE_SQL = [
    "INSERT INTO {c}person (person_id, gender_concept_id, year_of_birth, race_concept_id, ethnicity_concept_id)"
    " SELECT i, CASE WHEN i % 2 = 0 THEN 8507 ELSE 8532 END, 1950 + i % 20, 0, 0 FROM generate_series(1, {n}) g(i)",
    "INSERT INTO {c}observation_period SELECT i, i, DATE '2018-01-01', DATE '2023-01-01', 0"
    " FROM generate_series(1, {n}) g(i)",
    "INSERT INTO {c}death (person_id, death_date) SELECT i, DATE '2022-12-01' FROM generate_series(1, {n}) g(i)"
    " WHERE i % 5 = 0",
    # noise: 10 diabetes conditions per person
    "INSERT INTO {c}condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,"
    " condition_start_date, condition_type_concept_id) SELECT i * 100 + j, i, 160, DATE '2019-01-01' + CAST(j AS INTEGER), 0"
    " FROM generate_series(1, {n}) g(i), generate_series(1, 10) r(j)",
    # NSCLC (every third person) + 2 lesions
    "INSERT INTO {c}condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,"
    " condition_source_concept_id, condition_source_value, condition_start_date, condition_type_concept_id)"
    " SELECT i * 100 + 50, i, 103, 110, 'C34.11', DATE '2020-01-10', 0 FROM generate_series(1, {n}) g(i)"
    " WHERE i % 3 = 0",
    "INSERT INTO {c}condition_occurrence (condition_occurrence_id, person_id, condition_concept_id,"
    " condition_source_concept_id, condition_start_date, condition_type_concept_id)"
    " SELECT i * 100 + 50 + j, i, 120, 112, DATE '2021-03-01', 0"
    " FROM generate_series(1, {n}) g(i), generate_series(1, 2) r(j) WHERE i % 3 = 0",
    # 30 RT fractions
    "INSERT INTO {c}procedure_occurrence (procedure_occurrence_id, person_id, procedure_concept_id,"
    " procedure_date, procedure_end_date, procedure_type_concept_id, quantity)"
    " SELECT i * 100 + j, i, 140, DATE '2020-02-01' + CAST(j AS INTEGER), DATE '2020-02-01' + CAST(j AS INTEGER), 0, 1"
    " FROM generate_series(1, {n}) g(i), generate_series(1, 30) r(j) WHERE i % 3 = 0",
    # 6 cisplatin product, 20 durvalumab product, 5 noise drugs for everyone
    "INSERT INTO {c}drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,"
    " drug_exposure_end_date, drug_type_concept_id) SELECT i * 100 + j, i, 132, DATE '2020-02-01' + CAST(7 * j AS INTEGER),"
    " DATE '2020-02-01' + CAST(7 * j AS INTEGER), 0 FROM generate_series(1, {n}) g(i), generate_series(1, 6) r(j) WHERE i % 3 = 0",
    "INSERT INTO {c}drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,"
    " drug_exposure_end_date, drug_type_concept_id) SELECT i * 100 + 10 + j, i, 134, DATE '2020-04-20' + CAST(14 * j AS INTEGER),"
    " DATE '2020-04-20' + CAST(14 * j AS INTEGER), 0 FROM generate_series(1, {n}) g(i), generate_series(1, 20) r(j)"
    " WHERE i % 3 = 0",
    "INSERT INTO {c}drug_exposure (drug_exposure_id, person_id, drug_concept_id, drug_exposure_start_date,"
    " drug_exposure_end_date, drug_type_concept_id) SELECT i * 100 + 40 + j, i, 999, DATE '2019-03-01' + CAST(j AS INTEGER),"
    " DATE '2019-03-01' + CAST(j AS INTEGER), 0 FROM generate_series(1, {n}) g(i), generate_series(1, 5) r(j)",
    # stage + 5 noise measurements for everyone
    "INSERT INTO {c}measurement (measurement_id, person_id, measurement_concept_id, measurement_date,"
    " measurement_type_concept_id) SELECT i * 100, i, 2000000010, DATE '2020-01-12', 0"
    " FROM generate_series(1, {n}) g(i) WHERE i % 3 = 0",
    "INSERT INTO {c}measurement (measurement_id, person_id, measurement_concept_id, measurement_date,"
    " measurement_type_concept_id, value_as_number) SELECT i * 100 + j, i, 3004249, DATE '2019-01-01' + CAST(j AS INTEGER), 0, 120"
    " FROM generate_series(1, {n}) g(i), generate_series(1, 5) r(j)",
    "INSERT INTO {c}episode (episode_id, person_id, episode_concept_id, episode_start_date,"
    " episode_object_concept_id, episode_type_concept_id) SELECT i, i, 32677, DATE '2021-02-27', 0, 0"
    " FROM generate_series(1, {n}) g(i) WHERE i % 3 = 0",
]


def build(url: str, persons: int, cdm: str, vocab: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        md = create_cdm(conn, "5.4", cdm, vocab)
        concept = md.tables[f"{vocab}.concept"]
        rows = [
            dict(
                concept_id=i,
                concept_name=n,
                domain_id=d,
                vocabulary_id=v,
                concept_class_id=c,
                concept_code=code,
                valid_start_date="1970-01-01",
                valid_end_date="2099-12-31",
            )
            for i, n, d, v, c, code in CONCEPTS
        ]
        conn.execute(insert(concept), [_fill(concept, r) for r in rows])
        ancestor = md.tables[f"{vocab}.concept_ancestor"]
        conn.execute(
            insert(ancestor),
            [
                dict(
                    ancestor_concept_id=a,
                    descendant_concept_id=d,
                    min_levels_of_separation=1,
                    max_levels_of_separation=1,
                )
                for a, d in [(102, 103), (130, 131), (130, 132), (133, 134)]
            ],
        )
        for sql in SCALE_SQL:
            conn.execute(text(sql.format(c=f"{cdm}.", n=persons)))
    engine.dispose()


def measure(label: str, url: str, cdm: str, vocab: str) -> None:
    matcher = CodeMatcher(load_mappings())
    sink = EventSink()
    t0 = time.perf_counter()
    report = read_omop(url, matcher, sink, cdm_schema=cdm, vocab_schema=vocab, count_held=False)
    seconds = time.perf_counter() - t0
    left = sum(v for k, v in report.left.items() if k != "death")
    considered = sink.stats.read
    activity = sum(1 for e in sink.events if "/latest/" in e.source)
    print(
        f"{label}: {considered:,} rows read (considered) in {seconds:.1f} s = {considered / seconds:,.0f} rows/s; "
        f"{left:,} rows left the database; {len(sink.events):,} events ({activity:,} aggregated activity), "
        f"{len(sink.patients):,} patients, {len(sink.unmatched_codes):,} unmatched-code rows, "
        f"balanced={sink.stats.balanced()}"
    )
    report = read_omop(url, matcher, EventSink(), cdm_schema=cdm, vocab_schema=vocab)
    held = sum(v for k, v in report.held.items() if k != "death")
    print(
        f"{label}: held {held:,} rows; left {left:,} ({100 * left / held:.1f}%); per table {report.as_dict()}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--persons", type=int, default=30_000)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"duckdb:///{tmp}/bench.duckdb"
        t0 = time.perf_counter()
        build(url, args.persons, "cdm", "vocab")
        print(f"duckdb build {time.perf_counter() - t0:.1f} s")
        measure("duckdb", url, "cdm", "vocab")
    admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
    name = f"leopard_omop_bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        url = args.pg.rsplit("/", 1)[0] + f"/{name}"
        t0 = time.perf_counter()
        build(url, args.persons, "cdm", "vocab")
        pg = create_engine(url, isolation_level="AUTOCOMMIT")
        with pg.connect() as conn:  # what a site's CDM has: primary keys / indexes, fresh statistics
            for t, k in (
                ("person", "person_id"),
                ("condition_occurrence", "person_id"),
                ("procedure_occurrence", "person_id"),
                ("drug_exposure", "person_id"),
                ("measurement", "person_id"),
                ("observation_period", "person_id"),
                ("episode", "person_id"),
            ):
                conn.execute(text(f"CREATE INDEX ON cdm.{t} ({k})"))
            conn.execute(text("ANALYZE"))
        pg.dispose()
        print(f"postgres build {time.perf_counter() - t0:.1f} s")
        measure("postgres", url, "cdm", "vocab")
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
