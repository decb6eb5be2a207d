"""Spec v2 shapes through the columnar reader: activity records decided per distinct value, as parse.py does.

Every test compares the columnar reader with the Python reader (events incl. route, patients,
quarantine rows and reasons, ReadStats): activity records of every type, excluded statuses per
type, Condition onset + recordedDate, periods, undated records (a grouped Condition with only an
Encounter is the Python reader's), dates after the day of the run, ``patient`` instead of
``subject``, a BOM, export logs, OperationOutcome lines and nested Bundles.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fhir"))
from fhir_samples import ICD10CM, LOINC, RXNORM, SNOMED, cc, condition, med_admin, patient, rt_procedure
from test_columnar_equivalence import assert_same, python_reader, write_ndjson

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.fhir import columnar as columnar_module
from leopard_etl.sources.fhir import columnar_codes
from leopard_etl.sources.fhir.columnar import read_ndjson_columnar

Resource = dict[str, Any]
RUN_DAY = dt.date(2024, 6, 30)


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


def both(
    matcher: CodeMatcher, paths: list[Path], *, cutoff: dt.date | None = None, chunk_bytes: int = 1 << 20
) -> tuple[EventSink, EventSink]:
    sinks = []
    for read in (python_reader, read_ndjson_columnar):
        sink = EventSink()
        sink.run_day, sink.cutoff = RUN_DAY, cutoff
        if read is python_reader:
            python_reader(paths, matcher, sink)
        else:
            read_ndjson_columnar(paths, matcher, sink, chunk_bytes=chunk_bytes)
        sinks.append(sink)
    return sinks[0], sinks[1]


def _res(rtype: str, rid: str, pid: str = "a", **extra: Any) -> Resource:
    r: Resource = {"resourceType": rtype, "id": rid, "subject": {"reference": f"Patient/{pid}"}}
    r.update(extra)
    return r


VITAL = cc(LOINC, "8867-4", "Heart rate")
HTN = cc(SNOMED, "38341003", "Hypertension")


def activity_shapes() -> list[Resource]:
    """Records of every read type in no code group, dated in every way the v2 table allows."""
    return [
        # Encounter: period start and end, only an end, cancelled / planned, undated, no type
        _res(
            "Encounter",
            "e1",
            status="finished",
            type=[cc(SNOMED, "185349003", "Check up")],
            period={"start": "2021-01-27T09:00:00+01:00", "end": "2021-01-29"},
        ),
        _res("Encounter", "e2", status="finished", period={"end": "2021-02-03"}),
        _res("Encounter", "e3", status="cancelled", period={"start": "2021-02-03"}),
        _res("Encounter", "e4", status="planned", period={"start": "2021-02-03"}),
        _res("Encounter", "e5", status="entered-in-error", period={"start": "2021-02-03"}),
        _res("Encounter", "e6", status="finished"),
        _res("Encounter", "e7", status="finished", period={"start": "2021-03", "end": "2021-03-02"}),
        _res("Encounter", "e8", status="finished", period="2021-03-01"),
        _res("Encounter", "e9", status="finished", type=[{"text": "visit"}], period={"start": "2021-04-01"}),
        _res("Encounter", "e10", status="finished", period={"start": "2021-04-31"}),
        _res("Encounter", "e11", status="finished", period={"start": "2021-04-01", "end": "nope"}),
        # Observation: vitals in no group, effectivePeriod, issued only, cancelled
        _res("Observation", "o1", status="final", code=VITAL, effectiveDateTime="2021-05-01T10:11:12Z"),
        _res(
            "Observation",
            "o2",
            status="final",
            code=VITAL,
            effectivePeriod={"start": "2021-05-02", "end": "2021-05-09"},
        ),
        _res("Observation", "o3", status="final", code=VITAL, issued="2021-05-03T08:00:00.123Z"),
        _res("Observation", "o4", status="cancelled", code=VITAL, effectiveDateTime="2021-05-04"),
        _res("Observation", "o5", status="final", code=VITAL),
        _res(
            "Observation", "o6", status="final", code=cc("http://local/codes", "X1"), effectiveDateTime="2021"
        ),
        # Condition: onset + recordedDate, onsetPeriod, recordedDate only, refuted, recorded before onset
        _res("Condition", "c1", code=HTN, onsetDateTime="2019-04-02", recordedDate="2019-05-01"),
        _res("Condition", "c2", code=HTN, onsetPeriod={"start": "2019-04"}, recordedDate="2019-06-01"),
        _res("Condition", "c3", code=HTN, recordedDate="2019-07-01"),
        _res(
            "Condition",
            "c4",
            code=HTN,
            onsetDateTime="2019-04-02",
            verificationStatus={"coding": [{"code": "refuted"}]},
        ),
        _res("Condition", "c5", code=HTN, onsetDateTime="2019-04-02", recordedDate="2019-01-01"),
        _res("Condition", "c6", code=HTN),
        _res("Condition", "c7", code=HTN, onsetDateTime="2019-04-02", recordedDate="2019-13-01"),
        # Procedure in no group: performedPeriod with end, not-done, a malformed dose extension (not read)
        _res(
            "Procedure",
            "p1",
            status="completed",
            code=cc(SNOMED, "80146002", "Appendectomy"),
            performedPeriod={"start": "2018-01-01", "end": "2018-01-03"},
            extension=[{"url": 5}],
        ),
        _res(
            "Procedure", "p2", status="not-done", code=cc(SNOMED, "80146002"), performedDateTime="2018-01-01"
        ),
        _res(
            "Procedure",
            "p3",
            status="completed",
            code=cc(SNOMED, "80146002"),
            performedPeriod={"end": "2018-02-01"},
        ),
        # drugs in no group
        _res(
            "MedicationAdministration",
            "ma1",
            status="completed",
            medicationCodeableConcept=cc(RXNORM, "197361", "amlodipine"),
            effectiveDateTime="2020-01-01",
        ),
        _res(
            "MedicationAdministration",
            "ma2",
            status="not-done",
            medicationCodeableConcept=cc(RXNORM, "197361"),
            effectiveDateTime="2020-01-01",
        ),
        _res(
            "MedicationAdministration",
            "ma3",
            status="completed",
            medicationCodeableConcept=cc(RXNORM, "197361"),
            effectivePeriod={"start": "2020-01-02", "end": "2020-01-05"},
        ),
        _res(
            "MedicationRequest",
            "mr1",
            status="active",
            medicationCodeableConcept=cc(RXNORM, "197361"),
            authoredOn="2020-02-01",
        ),
        _res(
            "MedicationRequest",
            "mr2",
            status="draft",
            medicationCodeableConcept=cc(RXNORM, "197361"),
            authoredOn="2020-02-01",
        ),
        # the activity-only types
        _res(
            "MedicationStatement",
            "ms1",
            status="active",
            medicationCodeableConcept=cc(RXNORM, "197361", "amlo"),
            effectivePeriod={"start": "2020-03-01", "end": "2020-04-01"},
        ),
        _res(
            "MedicationStatement",
            "ms2",
            status="not-taken",
            medicationCodeableConcept=cc(RXNORM, "1"),
            effectiveDateTime="2020-03-01",
        ),
        _res("MedicationStatement", "ms3", status="intended", effectiveDateTime="2020-03-01"),
        _res(
            "DiagnosticReport",
            "dr1",
            status="final",
            code=cc(LOINC, "58410-2", "CBC"),
            issued="2020-05-01T00:00:00Z",
        ),
        _res(
            "DiagnosticReport",
            "dr2",
            status="final",
            code=cc(LOINC, "58410-2"),
            effectivePeriod={"start": "2020-05-02"},
        ),
        _res("DiagnosticReport", "dr3", status="cancelled", code=cc(LOINC, "58410-2"), issued="2020-05-01"),
        {
            "resourceType": "Immunization",
            "id": "im1",
            "status": "completed",
            "patient": {"reference": "Patient/a"},
            "vaccineCode": cc("http://hl7.org/fhir/sid/cvx", "140", "Influenza"),
            "occurrenceDateTime": "2020-10-01",
        },
        {
            "resourceType": "Immunization",
            "id": "im2",
            "status": "not-done",
            "patient": {"reference": "Patient/a"},
            "occurrenceDateTime": "2020-10-01",
        },
        {
            "resourceType": "Immunization",
            "id": "im3",
            "status": "completed",
            "patient": {"reference": "Patient/zz"},
            "occurrenceDateTime": "2020-10-01",
        },
        {
            "resourceType": "Immunization",
            "id": "im4",
            "status": "completed",
            "patient": "Patient/a",
            "occurrenceDateTime": "2020-10-01",
        },
        {
            "resourceType": "Immunization",
            "id": "im5",
            "status": "completed",
            "subject": {},
            "patient": {"reference": "Patient/a"},
            "occurrenceDateTime": "2020-10-02",
        },
        _res(
            "ImagingStudy",
            "is1",
            status="available",
            procedureCode=[cc(SNOMED, "169069000", "CT chest")],
            started="2020-11-01T10:00:00",
        ),
        _res("ImagingStudy", "is2", status="cancelled", started="2020-11-01"),
        _res("ImagingStudy", "is3", status="available", started="2020-11-01", pid="b"),
        # no subject at all: dated → quarantined, undated → out of scope
        {
            "resourceType": "Observation",
            "id": "nosub1",
            "status": "final",
            "code": VITAL,
            "effectiveDateTime": "2021-01-01",
        },
        {"resourceType": "Observation", "id": "nosub2", "status": "final", "code": VITAL},
        # a malformed concept in an activity-only record
        _res(
            "Encounter", "bad-type", status="finished", type=[{"coding": 5}], period={"start": "2021-01-01"}
        ),
        _res("Encounter", "bad-type-undated", status="finished", type=[{"coding": 5}]),
    ]


def test_activity_records_of_every_type(matcher: CodeMatcher, tmp_path: Path) -> None:
    rows: list[object] = [patient("a"), patient("b"), *activity_shapes()]
    path = write_ndjson(tmp_path / "act.ndjson", rows)
    ref, col = both(matcher, [path])
    assert_same(ref, col)
    ungrouped = [e for e in col.events if e.groups == ""]
    assert {e.kind for e in ungrouped} >= {
        "encounter",
        "observation",
        "condition",
        "procedure",
        "drug_admin",
        "drug_request",
        "medication_statement",
        "diagnostic_report",
        "immunization",
        "imaging_study",
    }
    by_source = {e.source: e for e in col.events}
    e1 = by_source["fhir:Encounter/e1"]
    assert (e1.start, e1.end, e1.system, e1.code, e1.value) == (
        dt.date(2021, 1, 27),
        dt.date(2021, 1, 29),
        SNOMED,
        "185349003",
        "Check up",
    )
    assert by_source["fhir:Condition/c1"].end == dt.date(2019, 5, 1)
    assert by_source["fhir:Condition/c5"].end is None  # recorded before its onset: ends on its start
    assert by_source["fhir:Immunization/im5"].patient_id == "a"
    reasons = col.stats.out_of_scope_reasons
    assert reasons["no code group and no date"] >= 4 and reasons["Encounter status planned"] == 1


def test_grouped_and_activity_lines_mixed_in_small_chunks(matcher: CodeMatcher, tmp_path: Path) -> None:
    grouped: list[object] = [
        condition("dx", "a", cc(ICD10CM, "C34.12"), onset="2020-03", recordedDate="2020-04-01"),
        condition("dx-enc", "a", cc(ICD10CM, "C34.1"), onset=None, encounter={"reference": "Encounter/e1"}),
        condition(
            "dx-enc-late", "a", cc(ICD10CM, "C34.1"), onset=None, encounter={"reference": "Encounter/e20"}
        ),
        condition(
            "dx-enc-never", "a", cc(ICD10CM, "C34.1"), onset=None, encounter={"reference": "Encounter/e99"}
        ),
        condition("dx-noenc", "a", cc(ICD10CM, "C34.1"), onset=None),
        rt_procedure("rt", "a", "2020-02-01", "2020-03-13", fractions=30, dose_gy=60),
        med_admin("cis", "a", "2020-02-03", rxnorm="2555"),
    ]
    late = [_res("Encounter", "e20", status="finished", period={"start": "2020-06-01"})]
    rows: list[object] = [*grouped, *activity_shapes(), patient("a"), patient("b"), *late]
    path = write_ndjson(tmp_path / "mixed.ndjson", rows)
    ref, col = both(matcher, [path], chunk_bytes=2048)
    assert_same(ref, col)
    by_source = {e.source: e for e in col.events}
    assert by_source["fhir:Condition/dx-enc"].start == dt.date(2021, 1, 27)
    assert by_source["fhir:Condition/dx-enc-late"].start == dt.date(2020, 6, 1)
    assert {"Encounter/e99" in q.reason for q in col.quarantined} == {False, True}


def test_encounter_in_another_file_dates_a_condition(matcher: CodeMatcher, tmp_path: Path) -> None:
    a = write_ndjson(
        tmp_path / "Condition.ndjson",
        [
            condition(
                "dx-enc", "a", cc(ICD10CM, "C34.1"), onset=None, encounter={"reference": "Encounter/e1"}
            ),
        ],
    )
    b = write_ndjson(
        tmp_path / "Encounter.ndjson",
        [
            _res("Encounter", "e1", status="cancelled", period={"start": "2020-06-01"}),  # status aside
            _res("Encounter", "e1", status="finished", period={"start": "2020-06-02"}),
        ],
    )
    c = write_ndjson(tmp_path / "Patient.ndjson", [patient("a")])
    ref, col = both(matcher, [a, b, c])
    assert_same(ref, col)
    # the first version read after the Condition waited (the Python reader resolves it then)
    assert [e.start for e in col.events if e.source == "fhir:Condition/dx-enc"] == [dt.date(2020, 6, 1)]


@pytest.mark.parametrize("cutoff", [None, dt.date(2030, 1, 1)])
def test_dates_after_the_day_of_the_run(matcher: CodeMatcher, tmp_path: Path, cutoff: dt.date | None) -> None:
    rows: list[object] = [
        patient("a"),
        _res("Observation", "fut", status="final", code=VITAL, effectiveDateTime="2025-01-01"),
        _res("Encounter", "fut-enc", status="finished", period={"start": "2024-07-01"}),
        _res("Encounter", "fut-end", status="finished", period={"start": "2024-06-01", "end": "2025-01-01"}),
        condition("fut-dx", "a", cc(ICD10CM, "C34.1"), onset="2026-01-01"),
        _res("Observation", "today", status="final", code=VITAL, effectiveDateTime=RUN_DAY.isoformat()),
    ]
    path = write_ndjson(tmp_path / "future.ndjson", rows)
    ref, col = both(matcher, [path], cutoff=cutoff)
    assert_same(ref, col)
    future = [q for q in col.quarantined if q.reason.startswith("date in the future")]
    assert len(future) == (3 if cutoff is None else 0)


def test_bom_export_log_operation_outcome_and_nested_bundles(matcher: CodeMatcher, tmp_path: Path) -> None:
    data = tmp_path / "export"
    data.mkdir()
    write_ndjson(data / "Patient.ndjson", [patient("a")])
    obs = data / "Observation.ndjson"
    write_ndjson(obs, [_res("Observation", "o1", status="final", code=VITAL, effectiveDateTime="2021-05-01")])
    obs.write_bytes(b"\xef\xbb\xbf" + obs.read_bytes())
    write_ndjson(data / "log.ndjson", [{"level": "info", "msg": "started"}, {"level": "info", "msg": "done"}])
    write_ndjson(
        data / "OperationOutcome.ndjson",
        [
            {"resourceType": "OperationOutcome", "id": "oo1", "issue": [{"severity": "error"}]},
            {"resourceType": "OperationOutcome", "issue": []},
        ],
    )
    inner = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"resource": _res("Encounter", "be1", status="finished", period={"start": "2021-01-01"})},
        ],
    }
    write_ndjson(
        data / "Bundle.ndjson",
        [
            {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": inner}, {"resource": patient("b")}],
            },
        ],
    )
    ref, col = both(matcher, [data])
    assert_same(ref, col)
    reasons = col.stats.out_of_scope_reasons
    assert (
        reasons["export log log.ndjson"] == 2 and reasons["OperationOutcome in OperationOutcome.ndjson"] == 1
    )
    assert "fhir:Observation/o1" in {e.source for e in col.events}
    assert "fhir:Encounter/be1" in {e.source for e in col.events}


def test_lines_without_the_usual_prefix_and_types_not_read(matcher: CodeMatcher, tmp_path: Path) -> None:
    rows: list[object] = [
        b'{"id":"o-first","resourceType":"Observation","status":"final","subject":{"reference":"Patient/a"},'
        b'"code":{"coding":[{"system":"http://loinc.org","code":"8867-4"}]},"effectiveDateTime":"2021-05-01"}',
        b'{ "resourceType" : "Encounter", "id": "spaced", "status": "finished", '
        b'"subject": {"reference": "Patient/a"}, "period": {"start": "2021-01-01"}}',
        {"resourceType": "Practitioner", "id": "dr"},
        {"resourceType": "Practitioner"},
        {"resourceType": "ObservationX", "id": "x"},
        b'{"resourceType":"Observation","id":"dup","resourceType":"Encounter"}',
        patient("a"),
    ]
    path = write_ndjson(tmp_path / "odd.ndjson", rows)
    ref, col = both(matcher, [path])
    assert_same(ref, col)
    assert {"fhir:Observation/o-first", "fhir:Encounter/spaced"} <= {e.source for e in col.events}


def test_bounded_caches_give_the_same_answers(
    matcher: CodeMatcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(columnar_codes, "CACHE_MAX", 3)
    rows: list[object] = [patient("a"), patient("b"), *activity_shapes()]
    path = write_ndjson(tmp_path / "act.ndjson", rows)
    ref, col = both(matcher, [path], chunk_bytes=1024)
    assert_same(ref, col)


def test_small_groups_through_the_python_reader(
    matcher: CodeMatcher, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(columnar_module, "SMALL_GROUP", 10)
    rows: list[object] = [patient("a"), patient("b"), *activity_shapes()]
    path = write_ndjson(tmp_path / "act.ndjson", rows)
    ref, col = both(matcher, [path], chunk_bytes=2048)
    assert_same(ref, col)
