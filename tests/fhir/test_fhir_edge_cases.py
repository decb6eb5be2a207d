"""FHIR edge cases: reversed periods, Bundle entries without id that wait for their Medication."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import orjson
from fhir_samples import med_admin, medication, patient, rt_procedure

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.fhir import read_fhir_files

MATCHER = CodeMatcher(load_mappings())


def _read(path: Path) -> EventSink:
    sink = EventSink()
    read_fhir_files([path], MATCHER, sink)
    assert sink.stats.balanced(), sink.stats
    return sink


def test_period_ending_before_its_start_ends_on_its_start(tmp_path: Path) -> None:
    """decisions.md: such a record ends on its start (as OMOP rows do); it is not quarantined.
    A partial start (2020-03 → 15 March) after a day-precise end is the common way to get one."""
    path = tmp_path / "p.ndjson"
    rows = [patient("p1"), rt_procedure("rt1", "p1", "2020-03", "2020-03-02")]
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    sink = _read(path)
    assert sink.quarantined == []
    (rt,) = sink.events
    assert (rt.start, rt.end, rt.precision) == (dt.date(2020, 3, 15), None, "month")


def test_bundle_entry_without_id_waiting_for_its_medication(tmp_path: Path) -> None:
    """An entry identified only by its urn:uuid fullUrl keeps that id while it waits."""
    admin = med_admin("ignored", "p1", "2020-02-01", rxnorm=None)
    admin.pop("id")
    admin.pop("medicationCodeableConcept", None)
    admin["medicationReference"] = {"reference": "urn:uuid:22222222-0000-0000-0000-000000000002"}
    admin["subject"] = {"reference": "urn:uuid:11111111-0000-0000-0000-000000000001"}
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:11111111-0000-0000-0000-000000000001", "resource": patient("p1")},
            {"fullUrl": "urn:uuid:33333333-0000-0000-0000-000000000003", "resource": admin},
            {
                "fullUrl": "urn:uuid:22222222-0000-0000-0000-000000000002",
                "resource": medication("m1", "2555"),
            },
        ],
    }
    path = tmp_path / "b.json"
    path.write_bytes(orjson.dumps(bundle))
    sink = _read(path)
    assert sink.quarantined == []
    (e,) = sink.events
    assert (e.patient_id, e.ingredient, e.start) == ("p1", "cisplatin", dt.date(2020, 2, 1))
    assert e.source == "fhir:MedicationAdministration/33333333-0000-0000-0000-000000000003"
