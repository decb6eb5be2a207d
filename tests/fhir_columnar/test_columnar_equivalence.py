"""The columnar NDJSON reader gives what the Python reader gives: events, patients, quarantine rows, stats.

Events are compared as multisets (within a chunk the columnar reader emits the lines it hands to
the Python reader first); patients in order (the last record of a patient wins); quarantine rows
(reason, ``file:line``, raw text) as multisets; ReadStats exactly. Known difference, not tested:
an object with a duplicate key (forbidden in FHIR JSON) — DuckDB keeps the first value, orjson the last.
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fhir"))
from fhir_samples import (
    AJCC,
    ICD10CM,
    SNOMED,
    cc,
    condition,
    med_admin,
    medication,
    patient,
    rt_procedure,
    small_cohort,
    stage_obs,
)

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.partitioned import derive_spooled
from leopard_etl.sources.fhir import files
from leopard_etl.sources.fhir.columnar import read_ndjson_columnar
from leopard_etl.spool import EventSpool
from leopard_etl.synth import generate


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


def write_ndjson(path: Path, resources: list[object]) -> Path:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "wb") as fh:
        for r in resources:
            fh.write(r if isinstance(r, bytes) else orjson.dumps(r))
            fh.write(b"\n")
    return path


def python_reader(paths: list[Path], matcher: CodeMatcher, sink: EventSink) -> None:
    """The reference: ``read_fhir_files`` with the columnar dispatch switched off."""
    saved, files.COLUMNAR = files.COLUMNAR, False
    try:
        files.read_fhir_files(paths, matcher, sink)
    finally:
        files.COLUMNAR = saved


def both(matcher: CodeMatcher, paths: list[Path], chunk_bytes: int = 1 << 20) -> tuple[EventSink, EventSink]:
    ref, col = EventSink(), EventSink()
    python_reader(paths, matcher, ref)
    read_ndjson_columnar(paths, matcher, col, chunk_bytes=chunk_bytes)
    return ref, col


def assert_same(ref: EventSink, col: EventSink) -> None:
    assert sorted(col.events, key=repr) == sorted(ref.events, key=repr)
    assert col.patients == ref.patients
    assert sorted(col.quarantined) == sorted(ref.quarantined)
    assert col.stats.as_dict() == ref.stats.as_dict()
    assert col.stats.balanced()


@pytest.mark.parametrize("seed", [1, 7])
def test_synthetic_export_equal(matcher: CodeMatcher, tmp_path: Path, seed: int) -> None:
    generate(patients=300, seed=seed, out=tmp_path, fmt="fhir-ndjson")
    ref, col = both(matcher, [tmp_path])
    assert_same(ref, col)
    assert len(col.events) > 10_000 and len(col.quarantined) >= 3  # malformed lines are in the export
    assert any(q.reason == "invalid JSON" and ".ndjson" in q.location for q in col.quarantined)
    assert (tmp_path / "mixed.ndjson.gz").exists()  # the gzip mixed-type file with late Medications


def test_small_chunks_keep_line_numbers(matcher: CodeMatcher, tmp_path: Path) -> None:
    rows: list[object] = list(small_cohort(30))
    rows[40:40] = [b"{not json", b"   ", b'{"resourceType":"Condition","id":"x",}', b"\t"]
    path = write_ndjson(tmp_path / "all.ndjson", rows)
    ref, col = both(matcher, [path], chunk_bytes=4096)
    assert_same(ref, col)
    locations = {q.location.rsplit(":", 1)[1] for q in col.quarantined}
    assert locations == {"41", "43"}  # the trailing comma is invalid JSON for the Python reader too


def test_hand_made_shapes_equal(matcher: CodeMatcher, tmp_path: Path) -> None:
    odd: list[object] = [
        condition(
            "dx-abs",
            "a",
            cc(ICD10CM, "C34.12"),
            onset="2020-03",
            subject={"reference": "https://h/fhir/Patient/a"},
        ),
        condition("dx-year", "a", cc(ICD10CM, "C34.1"), onset="2019"),
        condition("ref", "a", cc(ICD10CM, "C78.01"), verificationStatus={"coding": [{"code": "refuted"}]}),
        condition("ref-str", "a", cc(ICD10CM, "C78.01"), verificationStatus="refuted"),
        condition(
            "met",
            "a",
            cc(SNOMED, "128462008"),
            bodySite=[cc(SNOMED, "39607008"), cc(SNOMED, "7771000")],
            identifier=[{"value": "L1"}],
        ),
        condition("met-noid", "a", cc(SNOMED, "94225005"), identifier=[{"system": "x"}]),
        condition("met-badid", "a", cc(SNOMED, "94225005"), identifier=["L2"]),
        condition("met-numid", "a", cc(SNOMED, "94225005"), identifier=[{"value": 7}]),
        condition("nosubj", "a", cc(ICD10CM, "C34.1"), subject=None),
        condition("strsubj", "a", cc(ICD10CM, "C34.1"), subject="Patient/a"),
        condition("grpsubj", "a", cc(ICD10CM, "C34.1"), subject={"reference": "Group/g"}),
        condition("ghost", "zz", cc(ICD10CM, "C34.1")),
        condition("tz", "a", cc(ICD10CM, "C34.1"), onset="2021-03-01T23:30:00-05:00"),
        condition("baddate", "a", cc(ICD10CM, "C34.1"), onset="2021-02-30"),
        condition("numdate", "a", cc(ICD10CM, "C34.1"), onset=2021),
        condition("numcode", "a", {"coding": [{"system": ICD10CM, "code": 34}]}),
        condition("listcode", "a", [cc(ICD10CM, "C34.1")]),
        {**condition("numid", "a", cc(ICD10CM, "C34.1")), "id": 5},
        {**condition("esc", "a", cc(ICD10CM, "C34.1")), "id": "esc\u00e9\\n"},
        condition("nullcode", "a", None),
        stage_obs("st1", "a", "2020-01-12", value=cc(AJCC, "3B")),
        stage_obs("st2", "a", "2020-01-12", text="Stage IIIa"),
        stage_obs("st3", "a", "2020-01-12", text=3),
        stage_obs("st-body", "a", "2020-01-12", value=cc(AJCC, "3B"), bodySite=cc(SNOMED, "39607008")),
        rt_procedure("rt", "a", "2020-02-01", "2020-03-13", fractions=30, dose_gy=60, body="39607008"),
        rt_procedure("rt-rev", "a", "2020-03-01", "2020-02-01"),
        rt_procedure("rt-noend", "a", "2020-03-01", "2020-03-01", performedPeriod={"start": "2020-03-01"}),
        rt_procedure("rt-endonly", "a", "x", "x", performedPeriod={"end": "2020-04-01"}),
        rt_procedure("rt-strfr", "a", "2020-02-01", "2020-02-02", fractions="5"),
        rt_procedure("rt-st", "a", "2020-02-01", "2020-02-02", status={"coding": [{"code": "not-done"}]}),
        med_admin("ma-ref", "a", "2020-02-03", med_ref="Medication/late"),
        med_admin("ma-lost", "a", "2020-02-03", med_ref="Medication/never"),
        med_admin("ma-cont", "a", "2020-02-04", med_ref="#m1", contained=[medication("m1", "40048")]),
        med_admin("ma-nocont", "a", "2020-02-04", med_ref="#m2"),
        med_admin("ma-null", "a", "2020-02-04", med_ref="Medication/late", medicationCodeableConcept=None),
        med_admin(
            "ma-period",
            "a",
            "x",
            rxnorm="2555",
            effectiveDateTime=None,
            effectivePeriod={"start": "2020-02-05T10:00:00Z"},
        ),
        {
            "resourceType": "MedicationRequest",
            "id": "mr",
            "status": "draft",
            "subject": {"reference": "Patient/a"},
            "authoredOn": "2020-01-01",
            "medicationCodeableConcept": cc(SNOMED, "1"),
        },
        {"resourceType": "Encounter", "id": "enc"},
        {"resourceType": "Encounter"},
        {"resourceType": 7, "id": "num-type"},
        {"id": "no-type"},
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient("b")}]},
        [1, 2],
        b'{"resourceType":"Condition","id":"trail","code":{"coding":[]} , }',
        medication("late", "1919503"),
        patient("a"),
        patient("b2", deceasedDateTime="2022-05"),
    ]
    path = write_ndjson(tmp_path / "odd.ndjson.gz", odd)
    ref, col = both(matcher, [path])
    assert_same(ref, col)
    reasons = {q.reason for q in col.quarantined}
    assert "reference to unknown Medication/never" in reasons and "reference to unknown Patient/zz" in reasons
    sources = {e.source for e in col.events}
    assert {"fhir:MedicationAdministration/ma-ref", "fhir:Condition/met", "fhir:Procedure/rt"} <= sources
    # a numeric code is not a code (as in the Python reader): a dated record in no group, an activity record
    assert "fhir:Condition/numcode" in sources


def test_spool_receives_arrow_batches_and_derives_the_same(matcher: CodeMatcher, tmp_path: Path) -> None:
    data = tmp_path / "fhir"
    generate(patients=120, seed=5, out=data, fmt="fhir-ndjson")
    rules = __import__("leopard_etl.config", fromlist=["Rules"]).Rules()
    outputs = []
    for name, read in (("py", python_reader), ("col", read_ndjson_columnar)):
        spool = EventSpool(tmp_path / name, spill_rows=2_000)
        spool.event(next(iter(_one_event(matcher, data))))  # a Python-built event first: order is kept
        read([data], matcher, spool)
        spool.close()
        derivation = derive_spooled(spool, rules, matcher.mappings, "fhir", partition_rows=1_500)
        outputs.append((spool.n_events, spool.n_patients, spool.stats.as_dict(), derivation.patients_csv))
    (n_py, p_py, s_py, csv_py), (n_col, p_col, s_col, csv_col) = outputs
    assert n_col == n_py > 3_000 and p_col == p_py and s_col == s_py
    assert csv_col.equals(csv_py)
    assert len(csv_col) > 50


def _one_event(matcher: CodeMatcher, data: Path) -> list[object]:
    sink = EventSink()
    python_reader([data / "Patient.ndjson"], matcher, sink)
    sink2 = EventSink()
    path = data / "Condition.ndjson"
    line = path.read_bytes().split(b"\n", 1)[0]
    one = path.parent.parent / "one.ndjson"
    one.write_bytes(b"\n".join([(data / "Patient.ndjson").read_bytes().split(b"\n", 1)[0], line]))
    python_reader([one], matcher, sink2)
    return list(sink2.events)
