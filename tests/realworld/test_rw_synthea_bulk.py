"""Synthea bulk-export sample written by others (smart-on-fhir/sample-bulk-fhir-datasets).

Data: tests/data/realworld/synthea-bulk-10/ (NOTICE.md there): three patients of the
10-patient export, gzip NDJSON, plus the export client's log.ndjson.

Expectations, worked out by hand from spec v2 and the raw records (dates checked with
`rw_oracle`, which never imports leopard_etl):

* 129c6ac7-… has "Non-small cell lung cancer" (SNOMED 254637007, 1984-10-31) and "NSCLC, TNM
  stage 1" (424132000, 1984-11-01): screened (§2 nsclc, §2.1 adds 424132000); the only stage
  record is 424132000 → I (§2.1 stage (Condition)); stage I is not III → `not_stage_iii`
  (§3.6) and only `stage` of the step columns is filled (§5).
* Patient.deceasedDateTime 1989-05-09T20:35:22-04:00 → death date 1989-05-09 (§1: calendar
  date as written). Died ≤ cutoff → death true, last alive = 1989-05-09 (§3.12).
* Default cutoff (§3.12) = latest activity date of the *screened* patients = 1989-05-14, the
  end of the "Death Certification" Encounter after the death (an activity record whatever its
  code). The other two patients (not screened) have later records (2024) that must not move it.
* `--cutoff 1989-05-08` (the day before death): death false; last alive = 1989-05-07, the end
  of the last "Hospice care" Procedure; the hospice Encounter 1989-04-15 → 1989-05-09 spans the
  cutoff and counts by its start (§3.12), so it does not give 05-08 or 05-09.
* log.ndjson: 4 lines without resourceType → out of scope, never quarantined (§1).
* Nothing is odd in these records: no quarantine.
* unmatched_codes.csv lists the hearing exam (SNOMED 398171003, 221 Procedures: Synthea's
  ototoxicity follow-up of cisplatin) and not the codes that are in groups (703423002, the
  cisplatin / paclitaxel products 1736854 / 583214, 254637007, 424132000).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

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

SRC = DATA / "synthea-bulk-10"
NSCLC = "129c6ac7-8d06-89de-ad63-0204a93e76c3"
OTHERS = {"3af3708d-41f1-cd80-f3dd-ec5ac76072bf", "63ee2253-bdd5-da55-2ad2-b4984d0ad700"}
SCREENED = {NSCLC}  # by hand: the only patient with an nsclc code (checked in test_oracle_agrees)


@pytest.fixture(scope="module")
def records() -> list[oracle.Record]:
    return list(oracle.read_records(SRC))


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("synthea")
    warehouse = f"duckdb:///{tmp / 'wh.duckdb'}"
    return run_cli("--fhir", str(SRC), "--warehouse", warehouse, out=tmp / "out"), tmp / "wh.duckdb"


def test_oracle_agrees_with_the_hand_worked_dates(records: list[oracle.Record]) -> None:
    """The dates written in the expectations, re-read from the raw JSON."""
    facts = oracle.patient_facts(records)
    assert set(facts) == SCREENED | OTHERS
    f = facts[NSCLC]
    assert f.death_date == "1989-05-09"
    today = dt.date.today().isoformat()
    assert oracle.default_cutoff(facts, SCREENED, today) == "1989-05-14"
    assert oracle.last_alive(f, "1989-05-14") == "1989-05-09"
    assert oracle.last_alive(f, "1989-05-08") == "1989-05-07"
    # the unscreened patients are later: a cutoff over everyone would be wrong
    assert max(facts[p].latest() for p in OTHERS) > "2020-01-01"
    # the record after the death that sets the default cutoff
    assert [ref.split("/")[0] for d, ref in f.dates if d == "1989-05-14"] == ["Encounter"]


def test_default_run_patients(default_run) -> None:
    run, _ = default_run
    assert run.returncode == 0, run.describe()
    assert_outputs_exist(run.out)
    patients = run.patients()
    assert set(patients) == SCREENED
    expected = row(
        NSCLC,
        in_cohort="false",
        exclusion_reason="not_stage_iii",
        stage="I",
        death="true",
        last_alive_date="1989-05-09",
    )
    assert not diff_rows(patients[NSCLC], expected), diff_rows(patients[NSCLC], expected)
    results = run.results()
    assert results["n_screened"] == 1
    assert results["n_cohort"] == 0
    attrition = {a["step"]: a["n"] for a in results["attrition"]}
    assert attrition.get("nsclc") == 1 and attrition.get("stage_iii") == 0, results["attrition"]
    assert_shareable_clean(run.out, SCREENED | OTHERS, {"1989-05-09", "1989-05-14", "1984-10-31"})


def test_default_cutoff_is_over_screened_patients_and_includes_the_record_after_death(default_run) -> None:
    run, wh = default_run
    assert run.returncode == 0, run.describe()
    with duckdb.connect(str(wh), read_only=True) as con:
        sql = "SELECT patient_id, cutoff, death, death_date, last_alive_date FROM outcome"
        rows = con.execute(sql).fetchall()
    assert rows == [(NSCLC, dt.date(1989, 5, 14), True, dt.date(1989, 5, 9), dt.date(1989, 5, 9))], rows


def test_default_run_source_balance_and_no_quarantine(default_run, records: list[oracle.Record]) -> None:
    run, _ = default_run
    source = run.results()["source"]
    assert_balanced(source)
    n_resources = len(records)
    n_log = oracle.count_lines(SRC / "log.ndjson")
    assert n_log == 4
    # every line of every file is a record read (the log lines are counted out of scope, §1)
    assert source["read"] == n_resources + n_log, (source, n_resources, n_log)
    assert source["quarantined"] == 0, source
    assert run.quarantine() == []
    # every dated record of a read type that names a patient is an activity record: in scope
    n_activity = sum(1 for r in records if oracle.activity_dates(r))
    assert source["in_scope"] >= n_activity, (source, n_activity)
    # Device (not a read type) and the log lines can only be out of scope
    n_device = sum(1 for r in records if r.type == "Device")
    assert source["out_of_scope"] >= n_log + n_device, source


def test_default_run_unmatched_codes(default_run) -> None:
    run, _ = default_run
    unmatched = run.unmatched()
    by_code = {(u["record_type"], u["system"], u["code"]): u for u in unmatched}
    hearing = by_code.get(("Procedure", "http://snomed.info/sct", "398171003"))
    assert hearing is not None, sorted(by_code)[:40]
    assert (hearing["n_records"], hearing["n_patients"]) == ("221", "1"), hearing
    hospice = by_code.get(("Procedure", "http://snomed.info/sct", "385763009"))
    assert hospice is not None and hospice["n_records"] == "22", hospice
    listed_codes = {u["code"] for u in unmatched}
    for in_a_group in ("703423002", "1736854", "583214", "254637007", "424132000"):
        assert in_a_group not in listed_codes, in_a_group
    # only screened patients' records are counted: 63ee2253's hand laceration is not listed
    assert "284549007" not in listed_codes
    assert all(u["n_patients"] == "1" for u in unmatched), [u for u in unmatched if u["n_patients"] != "1"]


def test_explicit_cutoff_before_death(tmp_path: Path) -> None:
    run = run_cli("--fhir", str(SRC), "--cutoff", "1989-05-08", out=tmp_path / "out")
    assert run.returncode == 0, run.describe()
    patients = run.patients()
    expected = row(
        NSCLC,
        in_cohort="false",
        exclusion_reason="not_stage_iii",
        stage="I",
        death="false",
        last_alive_date="1989-05-07",
    )
    assert not diff_rows(patients[NSCLC], expected), diff_rows(patients[NSCLC], expected)
