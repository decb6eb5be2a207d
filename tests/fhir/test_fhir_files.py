"""File reading: every FHIR rule of spec §1 on small hand-made resources."""

from __future__ import annotations

import datetime as dt
import gzip
from pathlib import Path

import orjson
import pytest
from fhir_samples import (
    AJCC,
    ICD10CM,
    LOINC,
    SNOMED,
    cc,
    condition,
    med_admin,
    medication,
    patient,
    progression_obs,
    rt_procedure,
    small_cohort,
    stage_obs,
)

from leopard_etl.errors import SourceError
from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.fhir import read_fhir_files
from leopard_etl.sources.fhir.dates import parse_fhir_date


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


def read(matcher: CodeMatcher, *paths: Path) -> EventSink:
    sink = EventSink()
    read_fhir_files(list(paths), matcher, sink)
    assert sink.stats.balanced(), sink.stats
    return sink


def by_source(sink: EventSink) -> dict[str, object]:
    return {e.source: e for e in sink.events}


def test_dates_as_written_and_partial() -> None:
    assert parse_fhir_date("2021-03-01T23:30:00-05:00") == (dt.date(2021, 3, 1), "day")
    assert parse_fhir_date("2021-03") == (dt.date(2021, 3, 15), "month")
    assert parse_fhir_date("2021") == (dt.date(2021, 7, 1), "year")
    for bad in ("2021-13-01", "01/03/2021", "2021-02-30", "", "2021-03-01Tfoo"):
        with pytest.raises(ValueError):
            parse_fhir_date(bad)


def test_cohort_events_fields(matcher: CodeMatcher, tmp_path: Path) -> None:
    sink = read(matcher, write_ndjson(tmp_path / "all.ndjson", small_cohort(2)))
    ev = by_source(sink)
    assert len(sink.patients) == 2 and len(sink.events) == 14
    dx = ev["fhir:Condition/p0-dx"]
    assert (dx.groups, dx.code, dx.laterality, dx.start) == (
        "nsclc_icd",
        "C3411",
        "right",
        dt.date(2020, 1, 10),
    )
    rt = ev["fhir:Procedure/p0-rt"]
    assert (rt.groups, rt.end, rt.fractions, rt.dose_cgy, rt.site, rt.body_site) == (
        "radiotherapy",
        dt.date(2020, 3, 13),
        30,
        6000.0,
        "lung",
        "lung",
    )
    assert ev["fhir:Observation/p0-st"].value == "IIIA"
    durva = ev["fhir:MedicationAdministration/p0-durva"]
    assert (durva.groups, durva.ingredient, durva.kind) == ("durvalumab", "durvalumab", "drug_admin")
    met = ev["fhir:Condition/p1-met"]
    assert (met.site, met.lesion_id, met.start, met.precision) == (
        "brain",
        "lesion-p1",
        dt.date(2021, 2, 15),
        "month",
    )
    assert ev["fhir:Observation/p0-prog"].groups == "progression"
    # spec §1 v2: Encounters are read; undated ones count for nothing
    assert sink.stats.out_of_scope_reasons == {
        "no code group and no date": 2,
        "Medication (resolves medicationReference)": 2,
    }


def test_union_of_codings_and_value_dependent_groups(matcher: CodeMatcher, tmp_path: Path) -> None:
    both = condition(
        "two",
        "a",
        {"coding": [{"system": SNOMED, "code": "94391008"}, {"system": ICD10CM, "code": "C78.02"}]},
    )
    body = condition(
        "b",
        "a",
        cc(SNOMED, "128462008"),
        bodySite=[
            {
                "coding": [{"system": SNOMED, "code": "39607008"}],
                "extension": [
                    {
                        "url": "http://hl7.org/fhir/StructureDefinition/bodySite-laterality",
                        "valueCodeableConcept": cc(SNOMED, "7771000"),
                    }
                ],
            }
        ],
    )
    stable = progression_obs("stable", "a", "2021-01-01", value_code="359746009")
    text_stage = stage_obs("ts", "a", "2020-01-01", text="stage 3b")
    snomed_stage = stage_obs("ss", "a", "2020-01-01", value=cc(SNOMED, "1222806003"))
    st3 = condition("st3", "a", cc(SNOMED, "422968005"))
    sink = read(
        matcher,
        write_ndjson(
            tmp_path / "x.ndjson", [patient("a"), both, body, stable, text_stage, snomed_stage, st3]
        ),
    )
    ev = by_source(sink)
    two = ev["fhir:Condition/two"]
    assert (two.groups, two.site, two.laterality) == ("lesion", "lung", "left")
    assert (ev["fhir:Condition/b"].site, ev["fhir:Condition/b"].laterality) == ("lung", "left")
    # 97509-4 counts only with a progression value; otherwise an activity record (spec §1 v2)
    assert ev["fhir:Observation/stable"].groups == ""
    assert ev["fhir:Observation/ts"].value == "IIIB"
    assert ev["fhir:Observation/ss"].value == "IIIC"
    assert (ev["fhir:Condition/st3"].groups, ev["fhir:Condition/st3"].value) == (
        "nsclc;stage_condition",
        "III",
    )
    assert sink.stats.out_of_scope_reasons == {}  # the stable status is an activity record (v2)


def test_status_exclusions(matcher: CodeMatcher, tmp_path: Path) -> None:
    dx = cc(SNOMED, "254637007")
    refuted = condition(
        "r",
        "a",
        dx,
        verificationStatus=cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted"),
    )
    resources = [
        patient("a"),
        refuted,
        rt_procedure("nd", "a", "2020-01-01", "2020-01-02", status="not-done"),
        stage_obs("eie", "a", "2020-01-01", value=cc(AJCC, "3A"), status="entered-in-error"),
        med_admin("ma", "a", "2020-01-01", rxnorm="2555", status="not-done"),
        {
            "resourceType": "MedicationRequest",
            "id": "mr",
            "status": "draft",
            "authoredOn": "2020-01-01",
            "subject": {"reference": "Patient/a"},
            "medicationCodeableConcept": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "2555"),
        },
        {
            "resourceType": "MedicationRequest",
            "id": "ok",
            "status": "active",
            "authoredOn": "2020-01-05",
            "subject": {"reference": "Patient/a"},
            "medicationCodeableConcept": cc("http://www.nlm.nih.gov/research/umls/rxnorm", "40048"),
        },
    ]
    sink = read(matcher, write_ndjson(tmp_path / "x.ndjson", resources))
    assert [(e.source, e.kind, e.ingredient) for e in sink.events] == [
        ("fhir:MedicationRequest/ok", "drug_request", "carboplatin")
    ]
    assert sink.stats.out_of_scope_reasons == {
        "Condition verificationStatus refuted": 1,
        "Procedure status not-done": 1,
        "Observation status entered-in-error": 1,
        "MedicationAdministration status not-done": 1,
        "MedicationRequest status draft": 1,
    }


def test_bad_records_quarantined_with_reason_and_location(matcher: CodeMatcher, tmp_path: Path) -> None:
    dx = cc(SNOMED, "254637007")
    lines: list[object] = [
        patient("a"),
        b'{"resourceType": "Condition", "id": ',  # 2 invalid JSON
        {"id": "x", "code": dx},  # 3 no resourceType
        {"resourceType": "Condition", "id": "nosub", "code": dx, "onsetDateTime": "2020-01-01"},  # 4
        condition("nodate", "a", dx, onset=None),  # 5 no usable date
        condition("baddate", "a", dx, onset="2020-31-01"),  # 6 unparseable
        condition("ghost", "nobody", dx),  # 7 unknown patient
        med_admin("nomed", "a", "2020-01-01", med_ref="Medication/missing"),  # 8 unknown Medication
        patient("b", deceasedDateTime="yesterday"),  # 9 unparseable death
        [1, 2],  # 10 not an object
        {"resourceType": "Condition", "id": "m", "subject": {"reference": "Patient/a"}, "code": "C34"},  # 11
    ]
    path = write_ndjson(tmp_path / "bad.ndjson", lines)
    sink = read(matcher, path)
    got = {q.location.rsplit(":", 1)[1]: q.reason for q in sink.quarantined}
    assert got == {
        "2": "invalid JSON",
        "3": "no resourceType",
        "4": "no subject",
        "5": got["5"],
        "6": got["6"],
        "7": "reference to unknown Patient/nobody",
        "8": "reference to unknown Medication/missing",
        "9": "unparseable deceasedDateTime 'yesterday'",
        "10": "not a JSON object",
        "11": got["11"],
    }
    assert got["5"].startswith("no usable date") and got["6"].startswith("unparseable date onsetDateTime")
    assert got["11"].startswith("malformed resource")
    assert all(q.location.startswith(str(path)) for q in sink.quarantined)
    assert sink.events == [] and sink.stats.read == 11 and sink.stats.quarantined == 10


def test_medication_reference_any_order_contained_and_deceased(matcher: CodeMatcher, tmp_path: Path) -> None:
    contained = med_admin("c", "a", "2020-02-01", med_ref="#m1")
    contained["contained"] = [medication("m1", "40048")]
    resources = [
        med_admin("before", "a", "2020-01-01", med_ref="Medication/cis"),  # Medication comes later
        contained,
        medication("cis", "2555"),
        med_admin("after", "a", "2020-03-01", med_ref="https://other.example/fhir/Medication/cis"),
        patient("a", deceasedDateTime="2022-05-03T01:00:00+09:00"),  # Patient last
        patient("b", deceasedBoolean=True),
    ]
    sink = read(matcher, write_ndjson(tmp_path / "x.ndjson", resources))
    assert sorted((e.source, e.ingredient) for e in sink.events) == [
        ("fhir:MedicationAdministration/after", "cisplatin"),
        ("fhir:MedicationAdministration/before", "cisplatin"),
        ("fhir:MedicationAdministration/c", "carboplatin"),
    ]
    deaths = {p.patient_id: p.death_date for p in sink.patients}
    assert deaths == {"a": dt.date(2022, 5, 3), "b": None}


def test_bundles_urn_references_gzip_and_directories(matcher: CodeMatcher, tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {
                "fullUrl": "urn:uuid:0b1c",
                "resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient"},
            },
            {
                "fullUrl": "urn:uuid:77aa",
                "resource": medication("", "2555") | {"id": None},
                "request": {"method": "POST", "url": "Medication"},
            },
            {
                "fullUrl": "urn:uuid:c1",
                "resource": {
                    "resourceType": "Condition",
                    "subject": {"reference": "urn:uuid:0b1c"},
                    "code": cc(SNOMED, "254637007"),
                    "recordedDate": "2019",
                },
                "request": {"method": "POST", "url": "Condition"},
            },
            {
                "resource": med_admin("m", "x", "2020-01-01", med_ref="urn:uuid:77aa")
                | {"subject": {"reference": "urn:uuid:0b1c"}},
                "request": {"method": "PUT", "url": "MedicationAdministration/m"},
            },
        ],
    }
    (tmp_path / "dir" / "sub").mkdir(parents=True)
    (tmp_path / "dir" / "tx.json").write_bytes(orjson.dumps(bundle))
    write_ndjson(
        tmp_path / "dir" / "sub" / "Observation.ndjson.gz",
        [stage_obs("o", "0b1c", "2020-01-01", value=cc(AJCC, "IIIB"))],
    )
    (tmp_path / "dir" / "notes.txt").write_text("ignored")
    sink = read(matcher, tmp_path / "dir")
    assert sorted((e.patient_id, e.source, e.start, e.precision) for e in sink.events) == [
        ("0b1c", "fhir:Condition/c1", dt.date(2019, 7, 1), "year"),
        ("0b1c", "fhir:MedicationAdministration/m", dt.date(2020, 1, 1), "day"),
        ("0b1c", "fhir:Observation/o", dt.date(2020, 1, 1), "day"),
    ]
    assert sink.stats.read == 5 and not sink.quarantined


def test_missing_path_and_truncated_gzip_are_source_errors(matcher: CodeMatcher, tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="does not exist"):
        read_fhir_files([tmp_path / "nope.ndjson"], matcher, EventSink())
    good = write_ndjson(tmp_path / "g.ndjson.gz", small_cohort(3))
    (tmp_path / "t.ndjson.gz").write_bytes(good.read_bytes()[:-20])
    with pytest.raises(SourceError, match="truncated"):
        read_fhir_files([tmp_path / "t.ndjson.gz"], matcher, EventSink())


def test_validate_mode_quarantines_schema_violations(matcher: CodeMatcher, tmp_path: Path) -> None:
    bad = condition("v", "a", cc(SNOMED, "254637007")) | {"onsetDateTime": "2020-01-01", "bogusField": 1}
    sink = EventSink()
    read_fhir_files([write_ndjson(tmp_path / "v.ndjson", [patient("a"), bad])], matcher, sink, validate=True)
    assert [q.reason[:15] for q in sink.quarantined] == ["invalid FHIR R4"] and sink.stats.balanced()
    assert LOINC  # the constants module is shared with the server tests
