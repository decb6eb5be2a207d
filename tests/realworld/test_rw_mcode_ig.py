"""HL7 mCODE STU4 example instances written by others (HL7/fhir-mCODE-ig), as one collection Bundle.

Data: tests/data/realworld/mcode-ig/ (NOTICE.md there). The IG ships its examples as FSH only
(no compiled JSON in the repository, and the IG package is not reachable from here), so the
instances were transcribed by hand, rule by rule, into R4 JSON. Two patients:

* John Anyperson (EX_Basic.fsh): NSCLC (SNOMED 254637007, onset 2019-04-01) with
  `Condition.stage.summary` SNOMED 1222806003 and a TNM clinical stage group Observation
  (SNOMED 399537006) valued 1222806003, both dated 2019-04-01; a brain metastasis; a lobectomy;
  cisplatin (RxNorm 309311, an SCD product) and gefitinib as MedicationRequests; no radiotherapy.
* Jenny M (EX_ExtendedExample.fsh): breast cancer with a stage IIIC summary, a radiotherapy course
  summary (SNOMED 1217123003) and chemotherapy MedicationAdministrations — not a lung cancer.

Expectations, by hand from spec v2:
* Only John is screened (§2 nsclc). Stage: SNOMED 1222806003 → IIIC (§2 stage_group value) from
  the earliest stage record (both 2019-04-01) → stage III; no radiotherapy record of his → no RT
  course (§3.3) → `no_crt` (§3.6); columns up to stage filled (§5).
* Not deceased. Last alive = the latest activity date = 2021-04-01: the example
  "rhabdomyosarcoma risk assessment" Observation the IG attaches to John (an activity record
  whatever its code, §1). The default cutoff is the same date (John is the only screened patient).
* His heart-failure Condition has only an `assertedDate` extension (no onset, no recordedDate):
  no date, in no code group → out of scope, not quarantined (§1). Nothing is quarantined.
* Cisplatin 309311 is an RxNorm product of cisplatin: matched by route `product` (§2.1), both
  requests; gefitinib 349472 is in no group → listed in unmatched_codes.csv.
* Jenny is not screened despite stage IIIC, RT and paclitaxel: she is not in patients.csv.
"""

from __future__ import annotations

import datetime as dt

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

SRC = DATA / "mcode-ig"
JOHN = "cancer-patient-john-anyperson"
JENNY = "cancer-patient-jenny-m"


@pytest.fixture(scope="module")
def records() -> list[oracle.Record]:
    return list(oracle.read_records(SRC))


@pytest.fixture(scope="module")
def mcode_run(tmp_path_factory: pytest.TempPathFactory):
    return run_cli("--fhir", str(SRC), out=tmp_path_factory.mktemp("mcode") / "out")


def test_oracle_agrees_with_the_hand_worked_dates(records: list[oracle.Record]) -> None:
    facts = oracle.patient_facts(records)
    assert set(facts) == {JOHN, JENNY}
    assert oracle.default_cutoff(facts, {JOHN}, dt.date.today().isoformat()) == "2021-04-01"
    assert oracle.last_alive(facts[JOHN], "2021-04-01") == "2021-04-01"
    chf = next(r for r in records if r.resource.get("id") == "john-anyperson-chf")
    assert oracle.activity_dates(chf) == []


def test_patients(mcode_run) -> None:
    run = mcode_run
    assert run.returncode == 0, run.describe()
    assert_outputs_exist(run.out)
    patients = run.patients()
    assert set(patients) == {JOHN}, sorted(patients)
    expected = row(
        JOHN,
        in_cohort="false",
        exclusion_reason="no_crt",
        stage="IIIC",
        death="false",
        last_alive_date="2021-04-01",
    )
    assert not diff_rows(patients[JOHN], expected), diff_rows(patients[JOHN], expected)
    results = run.results()
    assert (results["n_screened"], results["n_cohort"]) == (1, 0)
    attrition = {a["step"]: a["n"] for a in results["attrition"]}
    assert (attrition.get("nsclc"), attrition.get("stage_iii"), attrition.get("crt")) == (1, 1, 0), attrition
    assert_shareable_clean(run.out, {JOHN, JENNY}, {"2021-04-01", "2019-04-01"})


def test_source_balance_and_no_quarantine(mcode_run, records: list[oracle.Record]) -> None:
    run = mcode_run
    source = run.results()["source"]
    assert_balanced(source)
    assert source["quarantined"] == 0, source
    assert run.quarantine() == []
    assert source["read"] >= len(records), (source, len(records))
    n_activity = sum(1 for r in records if oracle.activity_dates(r))
    assert source["in_scope"] >= n_activity, (source, n_activity)


def test_drug_routes_and_unmatched_codes(mcode_run) -> None:
    run = mcode_run
    routes = run.results()["drug_match_routes"]
    assert routes.get("product", 0) == 2, routes  # the two cisplatin 309311 requests of John
    assert routes.get("name", 0) == 0 and routes.get("ingredient", 0) == 0, routes
    assert routes.get("code", 0) in (0, 2), routes  # Jenny's paclitaxel (RxNorm ingredient), if counted
    unmatched = {(u["record_type"], u["system"], u["code"]): u for u in run.unmatched()}
    gefitinib = unmatched.get(("MedicationRequest", "http://www.nlm.nih.gov/research/umls/rxnorm", "349472"))
    assert gefitinib is not None and gefitinib["n_patients"] == "1", sorted(unmatched)
    assert ("Observation", "http://loinc.org", "89247-1") in unmatched  # ECOG
    codes = {c for _, _, c in unmatched}
    for in_a_group in ("309311", "254637007", "94225005", "359615001", "399537006"):
        assert in_a_group not in codes, in_a_group
    for jennys in ("353431000119107", "1217123003", "1790099"):  # not a screened patient's
        assert jennys not in codes, jennys
