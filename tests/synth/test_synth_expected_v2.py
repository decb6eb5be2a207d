"""Spec v2 rules of the ground truth on hand-made histories: activity records, death without date,
chemotherapy recorded only as a procedure."""

from __future__ import annotations

import datetime as dt

from leopard_etl.synth import Fact, TruthPatient
from leopard_etl.synth.expected import cutoff_of, expected_row
from leopard_etl.synth.truth import weekdays_from

D = dt.date
CUTOFF = D(2024, 6, 30)
RT = weekdays_from(D(2020, 1, 6), 30)  # 2020-01-06 .. 2020-02-14


def _patient(facts: list[Fact], death: D | None = None, death_known: bool = True) -> TruthPatient:
    base = [
        Fact("nsclc", D(2019, 12, 2), variant="snomed:254637007", laterality="right", ref="nsclc-1"),
        Fact("stage", D(2019, 12, 3), variant="ajcc", stage="IIIA", ref="stage-2"),
        Fact("rt", RT[0], end=RT[-1], variant="summary", fractions=30, dose_cgy=200.0, days=RT, ref="rt-3"),
        Fact("drug", D(2020, 3, 2), ingredient="durvalumab", variant="rxnorm_in:cc", ref="drug-4"),
    ]
    refs = [f if f.ref else f.evolve(ref=f"{f.kind}-{i + 10}") for i, f in enumerate(facts)]
    return TruthPatient(
        "1000001", 1, "male", D(1950, 1, 1), death, "cohort", [*base, *refs], death_known=death_known
    )


def _row(p: TruthPatient) -> dict[str, str]:
    row = expected_row(p, CUTOFF)
    assert row is not None
    return row


def test_chemotherapy_recorded_only_as_a_procedure() -> None:
    procedures = [Fact("chemo_proc", D(2020, 1, 6), coding="snomed"), Fact("chemo_proc", D(2020, 1, 27))]
    row = _row(_patient(procedures))
    assert (row["crt_type"], row["crt_start"], row["in_cohort"]) == ("concurrent", "2020-01-06", "true")
    # a chemo drug in [RT start - 120 d, RT end] (not platinum): the procedures are no platinum date
    paclitaxel = Fact("drug", D(2020, 1, 13), ingredient="paclitaxel", variant="rxnorm_in:cc")
    assert _row(_patient([*procedures, paclitaxel]))["exclusion_reason"] == "no_crt"
    # a chemo drug outside that window does not stop them
    earlier = paclitaxel.evolve(start=D(2019, 8, 1))
    assert _row(_patient([*procedures, earlier]))["crt_type"] == "concurrent"
    # before RT start only: sequential from the first procedure
    before = [Fact("chemo_proc", D(2019, 11, 4), coding="ops"), Fact("chemo_proc", D(2019, 11, 25))]
    row = _row(_patient(before))
    assert (row["crt_type"], row["crt_start"]) == ("sequential", "2019-11-04")


def test_salvage_chemotherapy_as_a_procedure() -> None:
    r = D(2021, 3, 1)
    facts = [
        Fact("chemo_proc", D(2020, 1, 6)),
        Fact("progression", r, variant="effective"),
        Fact("lesion", r, variant="icd_dot", site="bone", lesion_id="L1"),
        Fact("chemo_proc", r + dt.timedelta(days=20), coding="icd9"),
    ]
    row = _row(_patient(facts))
    assert (row["pattern"], row["salvage"]) == ("oligo", "chemo")


def test_last_alive_from_activity_records() -> None:
    facts = [
        Fact("activity", D(2022, 5, 2), end=D(2022, 5, 9), variant="admission"),  # its end counts
        Fact("activity", D(2022, 5, 1), end=D(2023, 1, 1), variant="statement"),  # only its start
        Fact(
            "activity", D(2022, 6, 1), end=D(2022, 6, 1), variant="visit", excluded=True, status="cancelled"
        ),
        Fact("activity", D(2093, 1, 1), variant="lab", coding="fhir_only"),  # quarantined: in the future
        Fact("activity", D(2012, 1, 1), end=D(2021, 7, 1), variant="hypertension"),
    ]
    p = _patient(facts)
    row = _row(p)
    assert (row["death"], row["last_alive_date"]) == ("false", "2022-05-09")
    assert cutoff_of([p]) == D(2022, 5, 9)
    # an open stay (end after the cutoff) counts by its start
    row = _row(_patient([*facts, Fact("activity", D(2023, 3, 3), end=D(2099, 12, 31), variant="admission")]))
    assert row["last_alive_date"] == "2023-03-03"
    # a Condition dated by its Encounter brings the Encounter's end
    lesion = Fact(
        "lesion", D(2022, 8, 1), variant="icd_dot", site="bone", lesion_id="L", encounter_end=D(2022, 8, 4)
    )
    assert _row(_patient([*facts, lesion]))["last_alive_date"] == "2022-08-04"


def test_death_dates_and_records_after_the_death() -> None:
    after = Fact("activity", D(2021, 9, 20), end=D(2021, 9, 20), variant="visit")
    carboplatin = Fact("drug", RT[0], ingredient="carboplatin", variant="rxnorm_in:cc")
    p = _patient([carboplatin, Fact("activity", D(2021, 8, 1), variant="lab"), after], death=D(2021, 9, 1))
    row = _row(p)
    assert (row["death"], row["last_alive_date"]) == ("true", "2021-09-01")
    assert row["os_months"] == f"{(D(2021, 9, 1) - RT[0]).days / 30.4375:.2f}"
    assert cutoff_of([p]) == D(2021, 9, 20)  # an activity record all the same
    # deceasedBoolean: death true, dated by the latest activity record (never by one after the latent date)
    p = _patient([Fact("activity", D(2021, 8, 1), variant="lab")], death=D(2021, 9, 1), death_known=False)
    row = _row(p)
    assert (row["death"], row["last_alive_date"]) == ("true", "2021-08-01")
    assert cutoff_of([p]) == D(2021, 8, 1)
