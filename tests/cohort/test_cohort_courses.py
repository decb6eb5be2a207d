"""RT course merging, RT window, stereotactic skip, CRT type and durvalumab chain (spec §3.3–3.6)."""

from __future__ import annotations

import pytest
from cohort_builder import cohort_patient, ev, row, run

from leopard_etl.cohort import merge_rt_courses
from leopard_etl.cohort.timeline import RADIOTHERAPY, Rec
from leopard_etl.config import Rules


def _rt(start: int, end: int, **kw: object) -> Rec:
    base = dict(
        start=start,
        end=end,
        bits=RADIOTHERAPY,
        kind="procedure",
        system="snomed",
        code="1217123003",
        site="lung",
        laterality=None,
        value=None,
        lesion_id=None,
        fractions=None,
        dose_cgy=None,
        source=f"s{start}",
        precision="day",
    )
    base.update(kw)
    return Rec(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(("gap", "n_courses"), [(14, 1), (15, 2)])
def test_records_merge_while_gap_at_most_14_days(gap: int, n_courses: int) -> None:
    courses = merge_rt_courses([_rt(0, 10), _rt(10 + gap, 30 + gap)], Rules())
    expected = [(0, 30 + gap)] if n_courses == 1 else [(0, 10), (10 + gap, 30 + gap)]
    assert [(c.start, c.end) for c in courses] == expected


def test_merge_uses_latest_end_so_far_and_fraction_records() -> None:
    # a long record then a short one inside it: the third joins on the long record's end
    courses = merge_rt_courses([_rt(0, 40), _rt(5, 5), _rt(50, 50)], Rules())
    assert [(c.start, c.end, len(c.records)) for c in courses] == [(0, 50, 3)]


def test_fraction_records_make_one_course_in_derive(mappings):
    evs = cohort_patient("p", rt=(30, 30))[:2] + [
        ev("p", 30 + i, "radiotherapy", site="lung") for i in range(0, 42, 2)
    ]
    evs += [ev("p", 31, "chemo;platinum"), ev("p", 90, "durvalumab")]
    d = run(evs, mappings)
    rt = d.tables["rt_course"].iloc[0]
    assert (rt["n_records"], str(rt["start_date"]), str(rt["end_date"])) == (21, "2019-01-31", "2019-03-12")


@pytest.mark.parametrize(("start", "in_cohort", "reason"), [(180, "true", ""), (181, "false", "no_crt")])
def test_rt_course_window_0_to_180_days(mappings, start, in_cohort, reason):
    evs = cohort_patient("p", rt=(start, start + 40), platinum=(start + 1,), durvalumab=(start + 60,))
    r = row(run(evs, mappings), "p")
    assert (r["in_cohort"], r["exclusion_reason"]) == (in_cohort, reason)


def test_rt_course_before_diagnosis_is_not_chosen_but_later_one_is(mappings):
    evs = [*cohort_patient("p"), ev("p", -20, "radiotherapy", end=-10, site="brain")]
    d = run(evs, mappings)
    assert str(d.tables["rt_course"].iloc[0]["start_date"]) == "2019-01-31"


@pytest.mark.parametrize(
    "extra",
    [
        {"groups": "radiotherapy;stereotactic", "code": "77373", "system": "cpt"},
        {"groups": "radiotherapy", "fractions": 5, "dose_cgy": 5000.0},  # 1000 cGy x 5
        {"groups": "radiotherapy", "fractions": 8, "dose_cgy": 4000.0},  # 500 cGy x 8: boundary, stereotactic
    ],
)
def test_stereotactic_course_is_skipped(mappings, extra):
    groups = extra.pop("groups")
    sbrt = ev("p", 20, groups, end=24, site="lung", **extra)
    evs = [*cohort_patient("p"), sbrt]
    d = run(evs, mappings)
    rt = d.tables["rt_course"].iloc[0]
    assert str(rt["start_date"]) == "2019-01-31" and sbrt.source not in rt["source_ids"]


def test_nine_fractions_is_not_stereotactic(mappings):
    conventional = ev("p", 20, "radiotherapy", end=24, site="lung", fractions=9, dose_cgy=4500.0)
    d = run([*cohort_patient("p"), conventional], mappings)
    assert str(d.tables["rt_course"].iloc[0]["start_date"]) == "2019-01-21"


@pytest.mark.parametrize(
    ("platinum", "crt_type", "crt_start"),
    [
        (30, "concurrent", "2019-01-31"),  # RT day 1
        (72, "concurrent", "2019-01-31"),  # RT last day
        (29, "sequential", "2019-01-30"),  # day -1
        (30 - 120, "sequential", "2018-10-03"),  # day -120
    ],
)
def test_crt_type_windows(mappings, platinum, crt_type, crt_start):
    r = row(run(cohort_patient("p", platinum=(platinum,)), mappings), "p")
    assert (r["crt_type"], r["crt_start"], r["crt_end"]) == (crt_type, crt_start, "2019-03-14")


def test_platinum_121_days_before_rt_is_no_crt(mappings):
    r = row(run(cohort_patient("p", platinum=(30 - 121,)), mappings), "p")
    assert (r["exclusion_reason"], r["crt_type"], r["stage"]) == ("no_crt", "", "IIIA")


def test_sequential_crt_is_flagged_protocol_deviation(mappings):
    d = run(cohort_patient("p", platinum=(0, 10)), mappings)
    crt = d.tables["crt_course"].iloc[0]
    assert (crt["crt_type"], crt["protocol_deviation"], str(crt["crt_start"])) == (
        "sequential",
        "sequential_crt",
        "2019-01-01",
    )


def test_durvalumab_chain_breaks_after_60_day_gap(mappings):
    # 72 is crt_end: a dose on crt_end is not after it
    d = run(cohort_patient("p", durvalumab=(72, 80, 140, 200, 200, 261, 300)), mappings)
    dv = d.tables["durvalumab_course"].iloc[0]
    assert (str(dv["first_dose"]), str(dv["last_dose"]), dv["n_doses"], dv["days_from_crt_end"]) == (
        "2019-03-22",
        "2019-07-20",
        3,
        8,
    )  # 80, 140, 200 (twice: one distinct date); 261 is 61 d later


def test_durvalumab_only_on_crt_end_is_no_durvalumab(mappings):
    r = row(run(cohort_patient("p", durvalumab=(72,)), mappings), "p")
    assert (r["exclusion_reason"], r["crt_type"], r["durvalumab_start"]) == (
        "no_durvalumab",
        "concurrent",
        "",
    )


def test_medication_request_counts_only_without_administration(mappings):
    # carboplatin requested during RT, never administered -> counts; cisplatin requested in RT but
    # administered only 121 days before -> the request is ignored, so no CRT
    req = ev("p", 40, "chemo;platinum", kind="drug_request", ingredient="carboplatin")
    ok = [*cohort_patient("p")[:3], req, ev("p", 90, "durvalumab")]
    assert row(run(ok, mappings), "p")["crt_type"] == "concurrent"
    shadowed = [
        *cohort_patient("q", platinum=())[:3],
        ev("q", 40, "chemo;platinum", kind="drug_request", ingredient="cisplatin"),
        ev("q", 30 - 121, "chemo;platinum", ingredient="cisplatin"),
        ev("q", 90, "durvalumab"),
    ]
    assert row(run(shadowed, mappings), "q")["exclusion_reason"] == "no_crt"
