"""Screening, stage, attrition, outcome, patients.csv and explain (spec §3.1–3.2, 3.6, 3.12, §5)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from cohort_builder import cohort_patient, day, ev, lesion, row, run

from leopard_etl.cohort import CSV_COLUMNS, explain
from leopard_etl.config import Rules
from leopard_etl.errors import ConfigError, SourceError
from leopard_etl.events import EVENT_COLUMNS, PATIENT_COLUMNS, PatientRecord


def _patient(pid: str, death: int | None = None) -> PatientRecord:
    return PatientRecord(
        pid, dt.date(1950, 5, 5), "female", day(death) if death is not None else None, f"fhir:Patient/{pid}"
    )


def test_small_cell_excludes_icd_c34_but_not_snomed_nsclc(mappings):
    icd = dict(system="icd10cm", code="C3411")
    evs = [
        ev("icd_sc", 0, "nsclc_icd", **icd),
        ev("icd_sc", 1, "small_cell"),
        ev("snomed_sc", 0, "nsclc"),
        ev("snomed_sc", 1, "small_cell"),
        ev("icd_only", 0, "nsclc_icd", **icd),
        # one record coded both ways counts whatever coding came first (its groups are the union)
        ev("dual_sc", 0, "nsclc;nsclc_icd", **icd),
        ev("dual_sc", 1, "small_cell"),
        # a small-cell Condition that also carries C34.90 does not screen the patient in
        ev("sc_c34", 0, "nsclc_icd;small_cell", system="snomed", code="254632001"),
    ]
    d = run(evs, mappings)
    assert list(d.patients_csv["patient_id"]) == ["dual_sc", "icd_only", "snomed_sc"]
    assert d.attrition[0] == ("nsclc", 3)


def test_diagnosis_is_earliest_counting_record_with_precision_and_later_laterality(mappings):
    evs = [
        ev("p", 10, "nsclc", precision="month"),
        ev("p", 40, "nsclc", laterality="left"),
        ev("p", 60, "nsclc", laterality="right"),
    ]
    dx = run(evs, mappings).tables["diagnosis"].iloc[0]
    assert (str(dx["diagnosis_date"]), dx["date_precision"], dx["laterality"]) == (
        "2019-01-11",
        "month",
        "left",
    )


@pytest.mark.parametrize(
    ("stages", "expected", "stage_iii"),
    [
        ([(5, "II"), (3, "IIIB")], "IIIB", True),  # earliest wins
        ([(3, "III"), (3, "IIIA")], "IIIA", True),  # tie: the value with a letter
        ([(3, "IV"), (9, "IIIA")], "IV", False),
    ],
)
def test_stage_earliest_then_most_specific(mappings, stages, expected, stage_iii):
    evs = [ev("p", 0, "nsclc")] + [ev("p", d, "stage_group", value=v) for d, v in stages]
    d = run(evs, mappings)
    dx = d.tables["diagnosis"].iloc[0]
    assert (dx["stage"], bool(dx["stage_iii"])) == (expected, stage_iii)
    assert row(d, "p")["stage"] == expected


def test_stage_condition_without_value_reads_its_code(mappings):
    evs = [ev("p", 0, "nsclc;stage_condition", system="snomed", code="422968005", kind="condition")]
    assert row(run(evs, mappings), "p")["stage"] == "III"


def test_attrition_order_and_exclusion_reasons(mappings):
    evs = [
        *cohort_patient("a_cohort"),
        *cohort_patient("b_nodurva", durvalumab=()),
        *cohort_patient("c_nocrt", platinum=()),
        *cohort_patient("d_stage2", stage="II"),
        ev("e_nostage", 0, "nsclc"),
        ev("f_unscreened", 0, "lesion", site="brain"),
    ]
    d = run(evs, mappings)
    assert d.attrition == [("nsclc", 5), ("stage_iii", 3), ("crt", 2), ("durvalumab", 1)]
    reasons = dict(zip(d.patients_csv["patient_id"], d.patients_csv["exclusion_reason"], strict=True))
    assert reasons == {
        "a_cohort": "",
        "b_nodurva": "no_durvalumab",
        "c_nocrt": "no_crt",
        "d_stage2": "not_stage_iii",
        "e_nostage": "not_stage_iii",
    }
    att = d.tables["cohort_attrition"]
    assert list(att["step"]) == ["nsclc", "stage_iii", "crt", "durvalumab"] and list(att["n"]) == [5, 3, 2, 1]
    gated = row(d, "d_stage2")
    assert (gated["stage"], gated["crt_type"], gated["recurrence"], gated["os_months"]) == ("II", "", "", "")
    assert gated["last_alive_date"] != ""


def test_full_patients_csv_row(mappings):
    evs = [
        *cohort_patient("1000001", durvalumab=(90, 104, 118)),
        lesion("1000001", 200, "lung", laterality="left"),
        lesion("1000001", 210, "peritoneum"),
        ev("1000001", 215, "radiotherapy;stereotactic", site="brain"),
        ev("1000001", 220, "chemo"),
    ]
    d = run(evs, mappings, patients=[_patient("1000001", death=400)])
    assert list(d.patients_csv.columns) == list(CSV_COLUMNS)
    line = d.patients_csv.to_csv(index=False, lineterminator="\n").splitlines()[1]
    # OS: 2019-01-31 -> 2020-02-05 = 370 d = 12.16 months; PRS: 2019-07-20 -> 200 d = 6.57
    assert line == (
        "1000001,true,,IIIA,concurrent,2019-01-31,2019-03-14,2019-04-01,3,true,2019-07-20,poly,2,"
        "lung;other,out_of_field,crt,true,2020-02-05,12.16,6.57"
    )
    assert all(isinstance(v, str) for v in d.patients_csv.iloc[0])


def test_death_after_cutoff_is_not_death_nor_last_alive(mappings):
    rules = Rules(cutoff=day(300))
    evs = [
        *cohort_patient("p"),
        ev("p", 250, "progression"),
        ev("p", 301, "chemo"),
        ev("p", 280, "radiotherapy", end=320),
    ]
    d = run(evs, mappings, rules=rules, patients=[_patient("p", death=350)])
    r = row(d, "p")
    assert (r["death"], r["last_alive_date"]) == (
        "false",
        "2019-10-08",
    )  # day 280: the end 320 is past cutoff
    assert d.cutoff == day(300)
    out = d.tables["outcome"].iloc[0]
    assert (bool(out["death"]), out["death_date"], str(out["cutoff"])) == (False, None, "2019-10-28")


def test_default_cutoff_is_latest_date_incl_ends_and_death(mappings):
    d = run(
        [*cohort_patient("p"), ev("p", 100, "radiotherapy", end=500)],
        mappings,
        patients=[_patient("p", death=450)],
    )
    assert d.cutoff == day(500)
    r = row(d, "p")
    # spec v2 §3.12: died ≤ cutoff → last alive is the death date (records after a death never count)
    assert (r["death"], r["last_alive_date"]) == ("true", "2020-03-26")


def test_tables_have_schema_columns_and_provenance(mappings):
    from leopard_etl.warehouse.schema import DERIVED_TABLES, METADATA

    d = run([*cohort_patient("p"), lesion("p", 200, "brain")], mappings, source_system="omop")
    for name in DERIVED_TABLES:
        assert list(d.tables[name].columns) == [c.name for c in METADATA.tables[name].columns], name
        if name != "cohort_attrition":
            assert len(d.tables[name]) == 1 and set(d.tables[name]["source_system"]) == {"omop"}, name
    crt = d.tables["crt_course"].iloc[0]["source_ids"].split(";")
    assert len(crt) == 2 and crt == sorted(crt)


def test_bad_input_raises_one_line_errors(mappings):
    with pytest.raises(ConfigError):
        run(cohort_patient("p"), mappings, source_system="csv")
    # spec §5 v2: an input without a screened patient is a valid (empty) result, not an error
    empty = run([], mappings)
    assert len(empty.patients_csv) == 0 and [n for _, n in empty.attrition] == [0, 0, 0, 0]
    from leopard_etl.cohort import derive

    with pytest.raises(SourceError):
        derive(
            pd.DataFrame({"patient_id": []}),
            pd.DataFrame(columns=list(PATIENT_COLUMNS)),
            Rules(),
            mappings,
            "fhir",
        )


def test_datetime64_columns_are_accepted(mappings):
    frame = pd.DataFrame.from_records(cohort_patient("p"), columns=list(EVENT_COLUMNS))
    frame["start"] = pd.to_datetime(frame["start"])
    frame["end"] = pd.to_datetime(frame["end"])
    from leopard_etl.cohort import derive

    d = derive(frame, pd.DataFrame(columns=list(PATIENT_COLUMNS)), Rules(), mappings, "fhir")
    assert row(d, "p")["crt_start"] == "2019-01-31"


def test_explain_tells_each_decision(mappings):
    evs = [
        *cohort_patient("p"),
        ev("p", 20, "radiotherapy;stereotactic", site="lung"),
        lesion("p", 200, "liver", lesion_id="A"),
        lesion("p", 203, "liver", lesion_id="A"),
        ev("p", 210, "chemo"),
        ev("q", 900, "progression"),
    ]
    frame = pd.DataFrame.from_records(evs, columns=list(EVENT_COLUMNS))
    text = explain(frame, pd.DataFrame(columns=list(PATIENT_COLUMNS)), "p", Rules(), mappings)
    # spec §3.12 v2: only the screened patients' records set the default cutoff (q is not screened)
    assert "cutoff 2019-07-30" in text
    assert "1 stereotactic RT record(s) skipped" in text
    assert "CRT concurrent" in text and "3 dose(s)" in text
    assert "lesion liver||A: liver, 2 record(s) merged" in text
    assert "pattern oligo (1 lesion(s))" in text and "salvage chemo" in text
    assert "not screened: no NSCLC record" in explain(
        frame, pd.DataFrame(columns=list(PATIENT_COLUMNS)), "q", Rules(), mappings
    )
    with pytest.raises(ConfigError):
        explain(frame, pd.DataFrame(columns=list(PATIENT_COLUMNS)), "nobody", Rules(), mappings)
