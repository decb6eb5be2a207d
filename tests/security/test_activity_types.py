"""Spec v2 §1: REST and Bulk read the activity resource types (the list comes from parse.READ_TYPES)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_fhir import CAPABILITY, FakeServer, Reply, Seen, bundle

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher
from leopard_etl.sources.fhir import FhirRestClient, bulk_export
from leopard_etl.sources.fhir.parse import READ_TYPES
from leopard_etl.sources.fhir.rest import ACTIVITY_ELEMENTS

ACTIVITY = ("Encounter", "MedicationStatement", "DiagnosticReport", "Immunization", "ImagingStudy")
NSCLC = {"coding": [{"system": "http://snomed.info/sct", "code": "254637007"}]}
SUBJECT = {"subject": {"reference": "Patient/p1"}}
RECORDS: dict[str, dict[str, Any]] = {
    "Encounter": {**SUBJECT, "status": "finished", "period": {"start": "2022-03-01", "end": "2022-03-04"}},
    "MedicationStatement": {**SUBJECT, "status": "active", "effectiveDateTime": "2022-04-01"},
    "DiagnosticReport": {**SUBJECT, "status": "final", "issued": "2022-05-01T10:00:00Z"},
    "Immunization": {
        "patient": {"reference": "Patient/p1"},
        "status": "completed",
        "occurrenceDateTime": "2022-06-01",
    },
    "ImagingStudy": {**SUBJECT, "status": "available", "started": "2022-07-01"},
}


def test_activity_types_are_in_the_read_list() -> None:
    assert set(ACTIVITY) <= set(READ_TYPES) and set(ACTIVITY) == set(ACTIVITY_ELEMENTS)


def test_rest_reads_activity_types_of_screened_patients_with_elements(
    origins: tuple[FakeServer, Any], matcher: CodeMatcher
) -> None:
    server, _ = origins

    def route(fake: FakeServer, seen: Seen) -> Reply:
        rtype = seen.path.rsplit("/", 1)[1]
        if rtype == "metadata":
            return 200, {}, CAPABILITY
        if rtype == "Patient" and seen.query.get("_summary") == ["count"]:
            return 200, {}, bundle([], meta={"lastUpdated": "2024-05-01T10:00:00Z"})
        if rtype == "Patient":
            return 200, {}, bundle([{"resourceType": "Patient", "id": "p1"}])
        if rtype == "Condition":
            dx = {"resourceType": "Condition", "id": "c1", **SUBJECT, "code": NSCLC}
            return 200, {}, bundle([dx | {"onsetDateTime": "2020-01-10"}])
        if rtype in RECORDS:
            return 200, {}, bundle([{"resourceType": rtype, "id": f"{rtype[:3].lower()}1", **RECORDS[rtype]}])
        return 200, {}, bundle([])

    server.route = route
    sink = EventSink()
    with FhirRestClient(server.base) as client:
        client.read(matcher, sink)
    searched = {s.path.rsplit("/", 1)[1]: s.query for s in server.seen if "patient" in s.query}
    assert set(searched) == set(READ_TYPES) - {"Patient", "Medication"}
    for rtype in ACTIVITY:
        assert searched[rtype]["patient"] == ["p1"]
        elements = set(searched[rtype]["_elements"][0].split(","))
        assert {"status"} <= elements and ({"subject"} <= elements or {"patient"} <= elements)
    assert {"period"} <= set(searched["Encounter"]["_elements"][0].split(","))
    assert {"occurrenceDateTime"} <= set(searched["Immunization"]["_elements"][0].split(","))
    assert {"started"} <= set(searched["ImagingStudy"]["_elements"][0].split(","))
    assert "_elements" not in searched["Condition"]  # clinical types are read whole
    read = {e.source.split(":", 1)[1].split("/")[0] for e in sink.events}
    assert set(ACTIVITY) <= read, read


def test_bulk_asks_for_the_activity_types(origins: tuple[FakeServer, Any], tmp_path: Path) -> None:
    server, _ = origins

    def route(fake: FakeServer, seen: Seen) -> Reply:
        if seen.path.endswith("/$export"):
            return 202, {"Content-Location": f"{fake.base}/status/1"}, b""
        return 200, {}, {"transactionTime": "2024-05-01T10:00:00Z", "output": [], "error": []}

    server.route = route
    bulk_export(server.base, tmp_path, sleep=lambda s: None)
    asked = server.seen[0].query["_type"][0].split(",")
    assert set(asked) == set(READ_TYPES) and set(ACTIVITY) <= set(asked)
