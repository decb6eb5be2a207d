"""``run --engine spark`` against the default engine on the same input (Spark local mode, 2 cores).

The Spark engine must give exactly the default engine's results: the same events, patients,
quarantined records and counts from a FHIR read (also when a file is split between Spark tasks,
with references across files, sources and Bundles), and the same patients.csv, attrition, derived
tables and output files for a FHIR export and an OMOP CDM held as Parquet. Engine against engine,
on data generated here: never against a fixed file.

Needs pyspark and Java 17: without them the module skips locally and fails in CI (CI=true).
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from leopard_etl.config import RunConfig
from leopard_etl.events import EVENT_COLUMNS, PATIENT_COLUMNS, EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
RUN_DAY = dt.date(2026, 11, 30)


def _need(available: bool, reason: str) -> None:
    if available:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def spark() -> Iterator[Any]:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _need(False, "pyspark is not installed (pip install 'leopard-etl[spark]')")
    from leopard_etl.engines.spark.session import find_java_home, spark_session
    from leopard_etl.engines.spark.settings import SparkSettings

    _need(bool(find_java_home() or shutil.which("java")), "no Java runtime for Spark (install Java 17)")
    session = spark_session(
        SparkSettings(
            master="local[2]",
            shuffle_partitions=4,
            driver_java_options="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC",  # a faster JVM start
        )
    )
    yield session
    session.stop()


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same synthetic cohort as FHIR NDJSON, an OMOP DuckDB CDM, and that CDM as Parquet folders."""
    import duckdb

    from leopard_etl.synth import generate

    root = tmp_path_factory.mktemp("synthetic")
    generate(patients=200, seed=11, out=root / "fhir", fmt="fhir-ndjson")
    generate(patients=200, seed=11, out=root / "omop", fmt="omop-duckdb")
    database = next((root / "omop").glob("*.duckdb"))
    parquet = root / "parquet"
    with duckdb.connect(str(database), read_only=True) as con:
        tables = con.sql("SELECT table_schema, table_name FROM information_schema.tables").fetchall()
        for schema, name in tables:
            (parquet / name).mkdir(parents=True)
            con.execute(f"COPY {schema}.{name} TO '{parquet / name / 'part-0.parquet'}' (FORMAT parquet)")
    return {"fhir": root / "fhir", "duckdb": database, "parquet": parquet}


# --- the default engine ---------------------------------------------------------------------------------
def _default_read(sources: list[str], matcher: CodeMatcher) -> EventSink:
    from leopard_etl.sources.fhir import read_fhir

    sink = EventSink()
    sink.run_day = RUN_DAY
    for source in sources:  # as pipeline._read: one read per source, one sink
        read_fhir(source, matcher, sink)
    return sink


def _default_derivation(cfg: RunConfig, matcher: CodeMatcher, tmp: Path) -> Any:
    from leopard_etl.partitioned import derive_partitions
    from leopard_etl.sources.fhir import read_fhir
    from leopard_etl.spool import EventSpool, SpooledEvents

    spool = EventSpool(tmp / "spool")
    spool.run_day = RUN_DAY
    for source in cfg.fhir:
        read_fhir(source, matcher, spool)
    spool.close()
    with SpooledEvents(spool) as source:
        cutoff = source.cutoff(
            None, run_day=RUN_DAY, small_cell_excludes_icd=cfg.rules.small_cell_excludes_icd
        )
        derivation = derive_partitions(source.partitions(2_000), cfg.rules, matcher.mappings, "fhir", cutoff)
    quarantine = pd.read_csv(spool.quarantine_csv, dtype=str, keep_default_na=False)
    return derivation, quarantine, spool.stats


def _tuples(frame: pd.DataFrame) -> list[tuple[Any, ...]]:
    """Rows as plain values (NaN and None alike, 25.0 == 25), in a fixed order."""
    values = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    rows = [
        tuple(float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in r) for r in values
    ]
    return sorted(rows, key=repr)


def _rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(list(frame.columns)).reset_index(drop=True)


# --- a FHIR input with every case the reader decides across the input ---------------------------------
def _res(rtype: str, rid: str, **fields: Any) -> dict[str, Any]:
    return {"resourceType": rtype, "id": rid, **fields}


def _subject(pid: str) -> dict[str, str]:
    return {"reference": f"Patient/{pid}"}


SNOMED = "http://snomed.info/sct"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
NSCLC = {"coding": [{"system": SNOMED, "code": "254637007"}]}


def _condition(rid: str, pid: str, **fields: Any) -> dict[str, Any]:
    return _res("Condition", rid, subject=_subject(pid), code=NSCLC, **fields)


def _admin(rid: str, pid: str, day: str, **fields: Any) -> dict[str, Any]:
    return _res(
        "MedicationAdministration",
        rid,
        subject=_subject(pid),
        status="completed",
        effectiveDateTime=day,
        **fields,
    )


def _medication(mid: str, code: str) -> dict[str, Any]:
    return _res("Medication", mid, code={"coding": [{"system": RXNORM, "code": code}]})


def _lines(path: Path, resources: list[Any], *, bom: bool = False, crlf: bool = False) -> None:
    end = "\r\n" if crlf else "\n"
    text = "".join((r if isinstance(r, str) else json.dumps(r)) + end for r in resources)
    data = (b"\xef\xbb\xbf" if bom else b"") + text.encode()
    if path.name.endswith(".gz"):
        data = gzip.compress(data)
    path.write_bytes(data)


def _tricky_input(root: Path) -> list[str]:
    """Two sources; references across files, Bundles and sources; duplicates; a file split in tasks."""
    a, b = root / "a", root / "source b"  # a space in a path
    (a / "sub").mkdir(parents=True)
    b.mkdir()
    _lines(
        a / "Patient.ndjson",
        [
            _res("Patient", "p1", birthDate="1950-01-01", gender="male"),
            _res("Patient", "p2", birthDate="1951-01-01", gender="female"),
            _res("Patient", "p2", birthDate="1952-02-02", gender="female", deceasedDateTime="2023-05-01"),
            _res("Patient", "p3", birthDate="not a date"),  # quarantined: its events have no patient
            "",
        ],
        bom=True,
    )
    _lines(
        a / "Medication.ndjson",
        [_medication("m-cis", "2555"), _medication("m-dup", "2555"), _medication("m-dup2", "40048")],
        crlf=True,
    )
    contained = _medication("inner", "40048")
    _lines(
        a / "MedicationAdministration.ndjson",
        [
            _admin("ma1", "p1", "2020-02-01", medicationReference={"reference": "Medication/m-cis"}),
            _admin("ma2", "p1", "2020-02-02", medicationReference={"reference": "Medication/m-dup2"}),
            _admin("ma3", "p1", "2020-02-03", medicationReference={"reference": "Medication/m-late"}),
            _admin(
                "ma4", "p2", "2020-02-04", contained=[contained], medicationReference={"reference": "#inner"}
            ),
            _admin("ma5", "p2", "2020-02-05", medicationReference={"reference": "Medication/m-none"}),
            _admin("ma6", "p9", "2020-02-06", medicationReference={"reference": "Medication/m-cis"}),
            "{not json",
            _res("OperationOutcome", "oo1", issue=[]),
        ],
    )
    _lines(
        a / "Condition.ndjson",
        [
            _condition("c1", "p1", onsetDateTime="2019-03-01"),
            _condition("c2", "p2", onsetDateTime="2019-04-01", recordedDate="2019-04-03"),
            _condition("c3", "p3", onsetDateTime="2019-05-01"),
            _condition("c4", "p9", onsetDateTime="2019-06-01"),
            _condition("c5", "p1", encounter={"reference": "Encounter/e1"}),  # dated by its Encounter
            _condition("c6", "p1", encounter={"reference": "Encounter/e-dup"}),
            _condition("c7", "p2", encounter={"reference": "Encounter/e-none"}),
            _condition("c8", "p1", onsetDateTime="2099-01-01"),  # after the day of the run
        ],
    )
    _lines(
        a / "Encounter.ndjson",
        [
            _res(
                "Encounter", "e1", status="finished", subject=_subject("p1"), period={"start": "2019-07-01"}
            ),
            _res(
                "Encounter",
                "e-dup",
                status="finished",
                subject=_subject("p1"),
                period={"start": "2019-08-01"},
            ),
        ],
    )
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {
                "fullUrl": "urn:uuid:med-1",
                "resource": {"resourceType": "Medication", **_medication("bm", "2555")},
            },
            {
                "fullUrl": "urn:uuid:ma-1",
                "resource": _admin(
                    "bma", "p1", "2020-03-01", medicationReference={"reference": "urn:uuid:med-1"}
                ),
            },
            {"resource": _condition("bc", "p2", onsetDateTime="2019-09-01")},
        ],
    }
    (a / "sub" / "bundle.json").write_text(json.dumps(bundle))
    (a / "sub" / "manifest.json").write_text(json.dumps({"transactionTime": "x", "output": []}))
    _lines(a / "sub" / "log.ndjson", [{"event": "started"}, {"event": "done"}])
    _lines(
        a / "sub" / "zz-late.ndjson.gz",
        [
            _medication("m-late", "40048"),
            _medication("m-dup2", "2555"),  # a second definition: later records use it
            _admin("ma7", "p1", "2020-04-01", medicationReference={"reference": "Medication/m-dup2"}),
            _res(
                "Encounter",
                "e-dup",
                status="finished",
                subject=_subject("p1"),
                period={"start": "2019-10-01"},
            ),
            _condition("c9", "p2", encounter={"reference": "Encounter/e-dup"}),
            json.dumps(bundle),  # a Bundle on one line
        ],
    )
    # a large file, split between tasks (maxPartitionBytes is set small for this read)
    many = [
        _res(
            "Observation",
            f"o{i}",
            status="final",
            subject=_subject("p1" if i % 2 else "p2"),
            code={"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            effectiveDateTime=f"2020-{1 + i % 12:02d}-{1 + i % 28:02d}",
        )
        for i in range(400)
    ]
    many[250] = "{broken"  # its line number crosses split boundaries
    _lines(a / "Observation.ndjson", many)
    # source b: p1 is not known there (each source is its own read, as on the default engine)
    _lines(b / "Patient.ndjson", [_res("Patient", "p5", birthDate="1960-01-01")])
    _lines(
        b / "Condition.ndjson",
        [
            _condition("bc1", "p5", onsetDateTime="2019-01-01"),
            _condition("bc2", "p1", onsetDateTime="2019-01-02"),
        ],
    )
    return [str(a), str(b)]


#: records that name an id defined twice with different content (m-dup2, e-dup) after its second
#: definition: the FHIR reader (parse.FhirRecordReader, the readers' contract) uses the latest
#: definition read before the record; the columnar NDJSON path of the default engine currently keeps
#: the first one. The Spark engine follows the contract; these two are compared with it only.
REDEFINED = {"fhir:MedicationAdministration/ma7", "fhir:Condition/c9"}


@pytest.fixture(scope="module")
def tricky(spark: Any, matcher: CodeMatcher, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The tricky input read once on Spark, with files cut into small splits between tasks."""
    from leopard_etl.engines.spark.fhir import read_fhir_spark
    from leopard_etl.engines.spark.session import sql_conf

    sources = _tricky_input(tmp_path_factory.mktemp("tricky"))
    with sql_conf(
        spark, spark__sql__files__maxPartitionBytes="4096", spark__sql__files__openCostInBytes="4096"
    ):
        got = read_fhir_spark(spark, sources, matcher, run_day=RUN_DAY, cutoff=None)
    try:
        events = got.events.select(*EVENT_COLUMNS).toPandas()
        patients = got.patients.select(*PATIENT_COLUMNS).toPandas()
    finally:
        got.release()
    return {"sources": sources, "events": events, "patients": patients, "read": got}


@pytest.mark.parametrize("reader", ["default", "python"])
def test_fhir_read_same_as_default(
    tricky: dict[str, Any], matcher: CodeMatcher, reader: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Events, patients, quarantined records and counts equal the default reader's, record for record
    (``python``: the FHIR reader without the columnar NDJSON path, the contract of both)."""
    import leopard_etl.sources.fhir.files as fhir_files
    from leopard_etl.pipeline import frames

    if reader == "python":
        monkeypatch.setattr(fhir_files, "COLUMNAR", False)
    expected = _default_read(tricky["sources"], matcher)
    got, events = tricky["read"], tricky["events"]
    ev0, pt0, _ = frames(expected)
    if reader == "default":
        events = events[~events["source"].isin(REDEFINED)]
        ev0 = ev0[~ev0["source"].isin(REDEFINED)]
    left, right = _tuples(events[list(EVENT_COLUMNS)]), _tuples(ev0)
    assert len(left) > 400
    assert [r for r in left if r not in right] == []
    assert [r for r in right if r not in left] == []
    assert left == right
    assert _tuples(tricky["patients"][list(PATIENT_COLUMNS)]) == _tuples(pt0)
    q1 = sorted((q.location, q.reason, q.record_id, q.record) for q in got.quarantined)
    assert q1 == sorted((q.location, q.reason, q.record_id, q.record) for q in expected.quarantined)
    assert got.stats.as_dict() == expected.stats.as_dict()
    assert got.stats.balanced()
    reasons = {q.reason for q in got.quarantined}
    assert {
        "reference to unknown Patient/p9",
        "reference to unknown Medication/m-none",
        "invalid JSON",
    } <= reasons
    assert any(q.location.endswith("Observation.ndjson:251") for q in got.quarantined)


def test_fhir_run_same_as_default(
    spark: Any, matcher: CodeMatcher, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """The synthetic export: patients.csv, attrition, every derived table and the run facts are equal."""
    from leopard_etl.engines.spark import SparkSettings, run_spark

    cfg = RunConfig(fhir=[str(synthetic["fhir"])])
    derivation, quarantine, stats = _default_derivation(cfg, matcher, tmp_path)
    result = run_spark(
        cfg,
        matcher,
        workdir=tmp_path / "spark",
        settings=SparkSettings(patients_per_task=60),  # several tasks of patients
        run_day=RUN_DAY,
        spark=spark,
    )
    got = result.derivation
    assert len(got.patients_csv) > 100
    pd.testing.assert_frame_equal(got.patients_csv, derivation.patients_csv)
    assert got.attrition == derivation.attrition
    assert got.cutoff == derivation.cutoff
    for name, frame in derivation.tables.items():
        pd.testing.assert_frame_equal(got.tables[name], frame, obj=name)
    assert got.facts.drug_routes == derivation.facts.drug_routes
    assert got.facts.platinum_unverified_n == derivation.facts.platinum_unverified_n
    assert sorted(got.facts.death_unknown_ids) == sorted(derivation.facts.death_unknown_ids)
    pd.testing.assert_frame_equal(got.facts.unmatched, derivation.facts.unmatched)
    assert result.stats.as_dict() == stats.as_dict()
    assert result.stats.balanced()
    spark_quarantine = pd.read_csv(result.quarantine, dtype=str, keep_default_na=False)
    pd.testing.assert_frame_equal(_rows(spark_quarantine), _rows(quarantine))


def test_omop_parquet_outputs_same_as_default(
    spark: Any, matcher: CodeMatcher, synthetic: dict[str, Path], tmp_path: Path
) -> None:
    """``run --engine spark`` on the OMOP CDM as Parquet folders writes the files the default run
    writes from the DuckDB CDM."""
    from leopard_etl.pipeline import execute_spark, run_spooled

    default_cfg = RunConfig(
        omop=f"duckdb:///{synthetic['duckdb']}",
        cdm_schema="cdm",
        vocab_schema="vocab",
        out=tmp_path / "default",
    )
    spark_cfg = RunConfig.model_validate(
        {
            "omop": f"parquet:{synthetic['parquet']}",
            "out": tmp_path / "spark",
            "engine": "spark",
            "spark": {"patients_per_task": 80},
        }
    )
    expected = run_spooled(default_cfg, matcher)
    got = execute_spark(spark_cfg, matcher)  # the session of this module is the active one
    assert got["screened"] == expected["screened"] > 100
    for key in ("cohort", "recurrences", "cutoff", "quarantined", "events"):
        assert got[key] == expected[key], key
    for key in ("source_read", "source_in_scope", "source_quarantined", "source_out_of_scope"):
        assert got[key] == expected[key], key
    assert got["source_read"] == (
        got["source_in_scope"] + got["source_quarantined"] + got["source_out_of_scope"]
    )
    for name in ("patients.csv", "quarantine.csv", "unmatched_codes.csv"):
        left = (tmp_path / "spark" / name).read_bytes()
        right = (tmp_path / "default" / name).read_bytes()
        assert left == right, name
    results = [json.loads((tmp_path / d / "results.json").read_text()) for d in ("spark", "default")]
    assert results[0] == results[1]
