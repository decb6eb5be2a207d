"""German MII core data set test data written by others (medizininformatik-initiative/mii-testdata).

Data: tests/data/realworld/mii-kds-testdata/ (NOTICE.md there): the three kds-testdata
transaction Bundles that carry a C34 diagnosis, unchanged.

Expectations, by hand from spec v2 and the raw Bundles (dates re-read by `rw_oracle`):

* mii-exa-test-data-patient-2: Condition ICD-10-GM C34.1 (`http://fhir.de/CodeSystem/bfarm/icd-10-gm`,
  §1 system, §2.1 GM = ICD-10 family) + SNOMED 254637007, recorded 2024-03-02 → screened. No
  stage record at all → stage empty → `not_stage_iii` (§3.6). `Patient.deceasedBoolean = true`
  without a date → death true with unknown date, dated on the latest activity date ≤ cutoff
  (§2.1 death, §3.12) = 2024-03-13 (Encounter end, the vital-status Observation, the cause-of-death
  Condition recordedDate) → last_alive_date 2024-03-13; results.json `warnings` counts it.
  Its carboplatin / paclitaxel are MedicationAdministrations whose `medicationReference` is a
  Medication coded ATC L01XA02 / L01CD01 in `http://fhir.de/CodeSystem/bfarm/atc` (§1 alias of ATC).
* mii-exa-test-data-mtb-patient-1: ICD-10-GM C34.1 recorded 2024-01-05 → screened. Its
  "Tumor stage" Observation (SNOMED 371508000) is not a stage_group code and its value
  "Local tumor spread" is no stage → stage empty → `not_stage_iii`. Not deceased. Last alive =
  2024-08-30, the end of the systemic-therapy Procedure's performedPeriod; its follow-up
  ClinicalImpression of 2024-09-15 is not a type the spec reads (§1) and must not count, and its
  MedicationRequests are `draft` (excluded, §1).
* Default cutoff = latest activity date of the screened patients = 2024-08-30 (§3.12).
* mii-exa-test-data-bildgebung-patient-1: its only C34.1 Condition has no onset, no
  recordedDate and no Encounter → a code-group record without a usable date: quarantined with a
  reason (§1), so the patient is not screened. This is the one quarantined record expected.
* Undated records in no code group (the MTB genomics Observations, an undated DiagnosticReport,
  an undated MedicationRequest of dalbavancin) are out of scope, never quarantined (§1).
"""

from __future__ import annotations

import datetime as dt

import duckdb
import pytest
import rw_oracle as oracle
from rw_helpers import (
    DATA,
    assert_balanced,
    assert_outputs_exist,
    assert_shareable_clean,
    diff_rows,
    row,
    run_cli,
)

SRC = DATA / "mii-kds-testdata"
PAT2 = "mii-exa-test-data-patient-2"
MTB = "mii-exa-test-data-mtb-patient-1"
BILD = "mii-exa-test-data-bildgebung-patient-1"
SCREENED = {PAT2, MTB}
QUARANTINED = "Condition/mii-exa-test-data-bildgebung-diagnose-1"


@pytest.fixture(scope="module")
def records() -> list[oracle.Record]:
    return list(oracle.read_records(SRC))


@pytest.fixture(scope="module")
def mii_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("mii")
    run = run_cli("--fhir", str(SRC), "--warehouse", f"duckdb:///{tmp / 'wh.duckdb'}", out=tmp / "out")
    return run, tmp / "wh.duckdb"


def test_oracle_agrees_with_the_hand_worked_dates(records: list[oracle.Record]) -> None:
    facts = oracle.patient_facts(records)
    assert set(facts) == SCREENED | {BILD}
    assert facts[PAT2].latest("2024-03-10") == "2024-03-10"
    assert facts[MTB].latest("2024-03-10") == "2024-01-15"
    assert facts[PAT2].deceased_boolean and facts[PAT2].death_date is None
    assert oracle.default_cutoff(facts, SCREENED, dt.date.today().isoformat()) == "2024-08-30"
    assert facts[PAT2].latest("2024-08-30") == "2024-03-13"
    assert facts[MTB].latest("2024-08-30") == "2024-08-30"
    quarantine_candidates = [r for r in records if r.type == "Condition" and not oracle.activity_dates(r)]
    assert [f"Condition/{r.resource['id']}" for r in quarantine_candidates] == [QUARANTINED]


def test_patients(mii_run) -> None:
    run, _ = mii_run
    assert run.returncode == 0, run.describe()
    assert_outputs_exist(run.out)
    patients = run.patients()
    assert set(patients) == SCREENED, sorted(patients)
    expected = {
        PAT2: row(
            PAT2,
            in_cohort="false",
            exclusion_reason="not_stage_iii",
            death="true",
            last_alive_date="2024-03-13",
        ),
        MTB: row(
            MTB,
            in_cohort="false",
            exclusion_reason="not_stage_iii",
            death="false",
            last_alive_date="2024-08-30",
        ),
    }
    problems = {pid: diff_rows(patients[pid], exp) for pid, exp in expected.items()}
    assert not any(problems.values()), problems
    results = run.results()
    assert (results["n_screened"], results["n_cohort"]) == (2, 0)
    dates = {"2024-03-13", "2024-08-30", "2024-03-02", "2024-01-05"}
    assert_shareable_clean(run.out, SCREENED | {BILD}, dates)


def test_death_with_unknown_date_and_cutoff(mii_run) -> None:
    run, wh = mii_run
    assert run.returncode == 0, run.describe()
    with duckdb.connect(str(wh), read_only=True) as con:
        rows = con.execute(
            "SELECT patient_id, cutoff, death, death_date, death_date_unknown, last_alive_date"
            " FROM outcome ORDER BY patient_id"
        ).fetchall()
    day = dt.date.fromisoformat
    assert rows == [
        (MTB, day("2024-08-30"), False, None, False, day("2024-08-30")),
        (PAT2, day("2024-08-30"), True, day("2024-03-13"), True, day("2024-03-13")),
    ], rows
    warnings = " | ".join(run.results()["warnings"]).lower()
    assert "unknown" in warnings and "date" in warnings, warnings
    assert PAT2 not in warnings  # never patient ids in results.json (§5)


def test_quarantine_is_the_undated_c34_condition_only(mii_run, records: list[oracle.Record]) -> None:
    run, _ = mii_run
    quarantine = run.quarantine()
    assert [q["record_id"] for q in quarantine] == [QUARANTINED], quarantine
    (q,) = quarantine
    assert "date" in q["reason"].lower(), q
    assert "Bundle-mii-exa-test-data-bundle-bildgebung-1.json" in q["location"], q
    source = run.results()["source"]
    assert_balanced(source)
    assert source["quarantined"] == 1, source
    assert source["read"] >= len(records), (source, len(records))
    n_activity = sum(1 for r in records if oracle.activity_dates(r))
    assert source["in_scope"] >= n_activity, (source, n_activity)


def test_drugs_resolve_through_medication_reference_and_fhir_de_atc(mii_run) -> None:
    """Carboplatin / paclitaxel are matched by their Medication's ATC code (fhir.de alias), not by
    name; nothing is matched by name or by Medication.ingredient (ASK codes, in no group)."""
    run, _ = mii_run
    results = run.results()
    routes = results["drug_match_routes"]
    assert routes.get("name", 0) == 0 and routes.get("ingredient", 0) == 0, routes
    # 2 MedicationAdministrations, and the 2 MedicationRequests if counted as events (§1: a request
    # is used only for an ingredient without administration)
    assert sum(routes.values()) in (2, 4), routes
    unmatched = {(u["record_type"], u["system"], u["code"]): u for u in run.unmatched()}
    codes = {c for _, _, c in unmatched}
    for in_a_group in ("C34.1", "C34.8", "254637007", "L01XA02", "L01CD01"):
        assert in_a_group not in codes, in_a_group
    vital = unmatched.get(("Observation", "http://loinc.org", "67162-8"))
    assert vital is not None and vital["n_patients"] == "1", sorted(unmatched)
    assert ("Observation", "http://loinc.org", "26464-8") in unmatched  # leukocytes


def test_explicit_cutoff_dates_the_unknown_death_and_cuts_spanning_records(tmp_path) -> None:
    """`--cutoff 2024-03-10` (§3.12): patient-2 still died (deceasedBoolean), its death now dated on
    the latest activity date <= the cutoff, 2024-03-10 (the end of the ICU-monitoring Procedure's
    performedPeriod); the 2024-03-13 records are after the cutoff. The MTB patient's last alive is
    2024-01-15, the start of its Encounter (2024-01-15 -> 2024-06-30 spans the cutoff and counts by
    its start); its NGS report (issued 2024-03-15) is after the cutoff."""
    run = run_cli("--fhir", str(SRC), "--cutoff", "2024-03-10", out=tmp_path / "out")
    assert run.returncode == 0, run.describe()
    patients = run.patients()
    assert set(patients) == SCREENED, sorted(patients)
    expected = {
        PAT2: row(PAT2, in_cohort="false", exclusion_reason="not_stage_iii", death="true",
                  last_alive_date="2024-03-10"),
        MTB: row(MTB, in_cohort="false", exclusion_reason="not_stage_iii", death="false",
                 last_alive_date="2024-01-15"),
    }  # fmt: skip
    problems = {pid: diff_rows(patients[pid], exp) for pid, exp in expected.items()}
    assert not any(problems.values()), problems
    assert [q["record_id"] for q in run.quarantine()] == [QUARANTINED]
