"""Spec v2 rules at their boundaries, on hand-made timelines (days are offsets from 2019-01-01).

Expected values follow the spec's text: §3.12 (last alive from every activity record, death
with unknown date, the default cutoff over the screened patients), §2.1 chemo_procedure and
§3.11 (chemo procedures count as chemo for salvage).
"""

from __future__ import annotations

import datetime as dt

from cohort_builder import cohort_patient, day, derive_with_run_day, ev, lesion, row, run

from leopard_etl.config import Rules
from leopard_etl.events import Event, PatientRecord


def activity(pid: str, start: int, *, end: int | None = None, kind: str = "encounter") -> Event:
    return ev(pid, start, "", kind=kind, end=end, system="http://snomed.info/sct", code="185347001")


def _patient(pid: str, death: int | None = None, *, deceased: bool = False) -> PatientRecord:
    return PatientRecord(
        pid, None, None, day(death) if death is not None else None, f"fhir:Patient/{pid}", deceased
    )


def test_last_alive_comes_from_any_activity_record(mappings):
    d = run([*cohort_patient("p"), activity("p", 400), activity("p", 700, kind="observation")], mappings)
    assert row(d, "p")["last_alive_date"] == day(700).isoformat()
    assert d.cutoff == day(700)
    assert row(d, "p")["os_months"] == f"{(700 - 30) / 30.4375:.2f}"


def test_an_interval_spanning_the_cutoff_counts_by_its_start(mappings):
    rules = Rules(cutoff=day(500))
    d = run([*cohort_patient("p"), activity("p", 450, end=520)], mappings, rules=rules)
    assert row(d, "p")["last_alive_date"] == day(450).isoformat()
    d = run([*cohort_patient("p"), activity("p", 450, end=500)], mappings, rules=rules)
    assert row(d, "p")["last_alive_date"] == day(500).isoformat()  # an end on the cutoff counts


def test_records_after_a_death_never_count_for_last_alive(mappings):
    d = run(
        [*cohort_patient("p"), activity("p", 600)], mappings, patients=[_patient("p", death=500)]
    )
    r = row(d, "p")
    assert (r["death"], r["last_alive_date"]) == ("true", day(500).isoformat())
    assert d.cutoff == day(600)  # ... but they are activity records for the cutoff


def test_death_with_unknown_date_is_dated_on_the_latest_activity(mappings):
    d = run(
        [*cohort_patient("p"), activity("p", 610), *cohort_patient("q"), activity("q", 800)],
        mappings,
        patients=[_patient("p", deceased=True), _patient("q")],
    )
    p, q = row(d, "p"), row(d, "q")
    assert (p["death"], p["last_alive_date"]) == ("true", day(610).isoformat())
    assert p["os_months"] == f"{(610 - 30) / 30.4375:.2f}"
    assert (q["death"], q["last_alive_date"]) == ("false", day(800).isoformat())
    assert d.facts.death_unknown_ids == ["p"]
    assert bool(d.tables["outcome"].set_index("patient_id").loc["p", "death_date_unknown"])


def test_the_default_cutoff_ignores_unscreened_patients_and_the_future(mappings):
    d = run([*cohort_patient("p"), activity("p", 300), activity("x", 900)], mappings)
    assert d.cutoff == day(300)  # x has no NSCLC record
    # an end after the day of the run is ignored (the record still counts by its start)
    evs = [*cohort_patient("p"), activity("p", 300, end=900)]
    assert derive_with_run_day(evs, mappings, day(600)).cutoff == day(300)


def _crt(pid: str, chemo_events: list[Event]) -> list[Event]:
    """A cohort patient whose only chemo is given by ``chemo_events`` (RT days 30–72)."""
    return [*cohort_patient(pid, platinum=()), *chemo_events]


def test_a_chemo_procedure_is_a_platinum_date_only_without_chemo_drugs(mappings):
    proc = ev("p", 40, "chemo_procedure", kind="procedure")
    d = run(_crt("p", [proc]), mappings)
    r = row(d, "p")
    assert (r["in_cohort"], r["crt_type"], r["crt_start"]) == ("true", "concurrent", day(30).isoformat())
    crt = d.tables["crt_course"].set_index("patient_id").loc["p"]
    assert bool(crt["platinum_unverified"]) and d.facts.platinum_unverified_n == 1


def test_a_chemo_drug_in_the_window_makes_the_procedure_not_count(mappings):
    # a non-platinum chemo drug 100 days before RT (inside RT start − 120 d): no CRT by the procedure
    drug = ev("q", -70, "chemo", ingredient="etoposide", kind="drug_admin")
    d = run(_crt("q", [ev("q", 40, "chemo_procedure", kind="procedure"), drug]), mappings)
    assert row(d, "q")["exclusion_reason"] == "no_crt"
    # the same drug 121 days before RT start is outside the window: the procedure counts
    drug = ev("r", 30 - 121, "chemo", ingredient="etoposide", kind="drug_admin")
    d = run(_crt("r", [ev("r", 40, "chemo_procedure", kind="procedure"), drug]), mappings)
    assert row(d, "r")["crt_type"] == "concurrent"


def test_a_combined_chemo_rt_procedure_is_not_a_drug_record(mappings):
    combined = ev("s", 35, "chemo;radiotherapy", kind="procedure", code="703423002", system="snomed")
    d = run(_crt("s", [combined, ev("s", 40, "chemo_procedure", kind="procedure")]), mappings)
    assert row(d, "s")["crt_type"] == "concurrent"


def test_chemo_procedures_count_as_chemo_for_salvage(mappings):
    evs = [
        *cohort_patient("p"),
        lesion("p", 300, "brain"),
        ev("p", 310, "radiotherapy;stereotactic", kind="procedure"),
        ev("p", 320, "chemo_procedure", kind="procedure"),
    ]
    assert row(run(evs, mappings), "p")["salvage"] == "crt"
    evs = [*cohort_patient("p"), lesion("p", 300, "brain"), ev("p", 320, "chemo_procedure", kind="procedure")]
    assert row(run(evs, mappings), "p")["salvage"] == "chemo"


def test_an_input_without_screened_patients_is_an_empty_result(mappings):
    d = run([activity("x", 10)], mappings)
    assert len(d.patients_csv) == 0 and d.attrition[0] == ("nsclc", 0)
    assert isinstance(d.cutoff, dt.date)
