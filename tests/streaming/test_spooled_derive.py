"""A spooled, partitioned derivation is exactly the single-shot one (performance issue, end to end).

The bounded-memory run splits patients into partitions derived one by one with the
data-wide cutoff fixed; any difference from ``cohort.derive`` over the whole frame would
be a silent change of the study result, so every table is compared value by value and
dtype by dtype, with a partition size small enough to force many partitions.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pandas as pd
import pytest

from leopard_etl.cohort import derive
from leopard_etl.cohort.timeline import default_cutoff
from leopard_etl.config import Rules
from leopard_etl.events import (
    QUARANTINE_CSV_COLUMNS,
    Event,
    EventSink,
    PatientRecord,
    Quarantined,
    quarantine_row,
)
from leopard_etl.mappings import CodeMatcher, Mappings, load_mappings
from leopard_etl.partitioned import derive_spooled
from leopard_etl.pipeline import frames
from leopard_etl.sources.fhir import read_fhir
from leopard_etl.spool import EventSpool
from leopard_etl.synth import generate

N_PATIENTS = 400


@pytest.fixture(scope="module")
def mappings() -> Mappings:
    return load_mappings()


@pytest.fixture(scope="module")
def cohort_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("synth") / "fhir"
    generate(patients=N_PATIENTS, seed=7, out=data, fmt="fhir-ndjson")
    return data


def _read_both(data: Path, mappings: Mappings, folder: Path, spill_rows: int) -> tuple[EventSink, EventSpool]:
    plain, spool = EventSink(), EventSpool(folder, spill_rows=spill_rows)
    for sink in (plain, spool):
        read_fhir(str(data), CodeMatcher(mappings), sink)
    spool.close()
    return plain, spool


def test_partitioned_derivation_equals_single_shot(
    cohort_data: Path, mappings: Mappings, tmp_path: Path
) -> None:
    plain, spool = _read_both(cohort_data, mappings, tmp_path / "spool", spill_rows=3_000)
    events, patients, quarantine = frames(plain)
    assert spool.n_events == len(events) > 10_000
    assert spool.stats.as_dict() == plain.stats.as_dict()

    whole = derive(events, patients, Rules(), mappings, "fhir")
    parted = derive_spooled(spool, Rules(), mappings, "fhir", partition_rows=1_500)

    assert parted.cutoff == whole.cutoff == default_cutoff(events, patients, mappings, Rules(), None)
    assert parted.attrition == whole.attrition
    assert whole.attrition[-1][1] > 20  # a real cohort, not an empty comparison
    pd.testing.assert_frame_equal(parted.patients_csv, whole.patients_csv)
    assert list(parted.tables) == list(whole.tables)
    for name, table in whole.tables.items():
        assert len(table) or name == "salvage_therapy", f"{name} is empty: the comparison proves nothing"
        pd.testing.assert_frame_equal(parted.tables[name], table, obj=name)

    # quarantine.csv from the spool is byte-identical to the frame written by pandas
    expected = tmp_path / "quarantine-frame.csv"
    quarantine.reindex(columns=list(QUARANTINE_CSV_COLUMNS)).to_csv(expected, index=False)
    assert len(quarantine) > 0
    assert spool.quarantine_csv.read_bytes() == expected.read_bytes()


def test_many_partitions_really_happen(cohort_data: Path, mappings: Mappings, tmp_path: Path) -> None:
    _, spool = _read_both(cohort_data, mappings, tmp_path / "spool", spill_rows=5_000)
    con = spool.connect()
    try:
        parts = list(spool.partitions(con, partition_rows=1_500))
    finally:
        con.close()
    assert len(parts) >= 8
    ids = [set(ev["patient_id"]) for ev, _ in parts]
    assert sum(len(s) for s in ids) == len(set().union(*ids))  # every patient in exactly one partition
    assert sum(len(ev) for ev, _ in parts) == spool.n_events
    for ev, pt in parts:
        assert set(ev["patient_id"]) <= set(pt["patient_id"])  # every event's patient came along


def _event(pid: str, kind: str, groups: str, start: dt.date, end: dt.date | None = None) -> Event:
    return Event(pid, kind, groups, "http://snomed.info/sct", "1", start, end, "day",
                 None, None, None, None, None, None, None, None, f"fhir:X/{pid}-{kind}-{start}")


def _cutoffs(
    events: list[Event], patients: list[PatientRecord], tmp_path: Path, run_day: dt.date | None
) -> tuple[dt.date, dt.date]:
    from leopard_etl.config import Rules
    from leopard_etl.mappings import load_mappings

    plain, spool = EventSink(), EventSpool(tmp_path, spill_rows=2)
    for sink in (plain, spool):
        for e in events:
            sink.event(e)
        for p in patients:
            sink.patient(p)
    spool.close()
    ev, pt, _ = frames(plain)
    con = spool.connect()
    try:
        return (
            spool.run_cutoff(con, None, run_day=run_day, small_cell_excludes_icd=True),
            default_cutoff(ev, pt, load_mappings(), Rules(), run_day),
        )
    finally:
        con.close()


@pytest.mark.parametrize(
    ("latest", "run_day", "expected"),
    [
        # an activity record (any kind, no code group) of a screened patient moves the cutoff (spec §3.12 v2)
        (_event("p1", "encounter", "", dt.date(2024, 5, 1)), None, dt.date(2024, 5, 1)),
        # a MedicationRequest counts even when an administration shadows it in the rules
        (_event("p1", "drug_request", "durvalumab", dt.date(2024, 5, 1)), None, dt.date(2024, 5, 1)),
        # an end after every start moves the cutoff
        (
            _event("p1", "procedure", "radiotherapy", dt.date(2020, 1, 1), dt.date(2024, 6, 2)),
            None,
            dt.date(2024, 6, 2),
        ),
        # ... unless it lies after the day of the run (then only dates up to that day count)
        (
            _event("p1", "procedure", "radiotherapy", dt.date(2020, 1, 1), dt.date(2024, 6, 2)),
            dt.date(2024, 1, 1),
            dt.date(2023, 3, 3),
        ),
        # records of a patient who is not screened never set the cutoff
        (_event("p2", "condition", "lesion", dt.date(2025, 1, 1)), None, dt.date(2023, 3, 3)),
        # ICD C34 with small-cell histology does not screen a patient in
        (_event("p3", "condition", "nsclc_icd;small_cell", dt.date(2025, 1, 1)), None, dt.date(2023, 3, 3)),
        (_event("p3", "condition", "nsclc_icd", dt.date(2025, 1, 1)), None, dt.date(2025, 1, 1)),
        # a date pandas cannot hold is undated for the rules, so it never moves the cutoff
        (_event("p1", "condition", "lesion", dt.date(2999, 1, 1)), None, dt.date(2023, 3, 3)),
    ],
)
def test_spooled_cutoff_matches_the_cohort_definition(
    latest: Event, run_day: dt.date | None, expected: dt.date, tmp_path: Path
) -> None:
    events = [_event("p1", "condition", "nsclc", dt.date(2021, 1, 1)), latest]
    patients = [
        PatientRecord("p1", None, None, dt.date(2030, 1, 1), "fhir:Patient/p1"),  # superseded below
        PatientRecord("p2", None, None, dt.date(2026, 1, 1), "fhir:Patient/p2"),  # not screened
        PatientRecord("p1", None, None, dt.date(2023, 3, 3), "fhir:Patient/p1"),
    ]
    assert _cutoffs(events, patients, tmp_path, run_day) == (expected, expected)


def test_no_screened_patient_gives_the_run_day(tmp_path: Path) -> None:
    """Spec §5 v2: an input without a screened patient is a valid result; the cutoff only labels it."""
    events = [_event("p2", "condition", "lesion", dt.date(2021, 1, 1))]
    assert _cutoffs(events, [], tmp_path, dt.date(2026, 1, 2)) == (dt.date(2026, 1, 2),) * 2


def test_quarantine_rows_with_commas_and_newlines_round_trip(tmp_path: Path) -> None:
    spool = EventSpool(tmp_path)
    rows = [
        Quarantined("fhir", "a.ndjson:3", "invalid JSON", '{"a": "x,\ny"}'),
        Quarantined("omop", "r", "q", ""),
    ]
    for q in rows:
        spool.quarantine(q)
    spool.close()
    back = pd.read_csv(spool.quarantine_csv, dtype=str, keep_default_na=False)
    assert back.values.tolist() == [list(quarantine_row(q)) for q in rows]
    assert list(back.columns) == ["source_system", "location", "reason", "record_id", "record"]
    assert spool.stats.quarantined == 2
