"""Recurrence date, lesion window and merging, pattern, field and salvage (spec §3.7–3.11)."""

from __future__ import annotations

import pytest
from cohort_builder import cohort_patient, ev, lesion, row, run

from leopard_etl.cohort import field_relation, patient_field, salvage_category

CRT_END = 72  # cohort_patient: RT days 30..72
R = 200


def _with(mappings, *extra, **kw):
    return row(run([*cohort_patient("p", **kw), *extra], mappings), "p")


@pytest.mark.parametrize(
    ("when", "recurrence", "date"), [(CRT_END, "false", ""), (CRT_END + 1, "true", "2019-03-15")]
)
def test_recurrence_strictly_after_crt_end(mappings, when, recurrence, date):
    r = _with(mappings, ev("p", when, "progression"))
    assert (r["recurrence"], r["recurrence_date"]) == (recurrence, date)


def test_no_recurrence_row(mappings):
    r = _with(mappings)
    assert {k: r[k] for k in ("recurrence", "pattern", "n_lesions", "field", "sites", "salvage")} == {
        "recurrence": "false",
        "pattern": "none",
        "n_lesions": "0",
        "field": "none",
        "sites": "",
        "salvage": "",
    }


def test_progression_without_lesion_is_unclassified(mappings):
    r = _with(mappings, ev("p", R, "progression"), lesion("p", R + 31, "brain"))
    assert (r["pattern"], r["n_lesions"], r["field"], r["salvage"]) == ("unclassified", "0", "none", "none")


@pytest.mark.parametrize(("offset", "n"), [(30, 2), (31, 1)])
def test_lesion_window_r_to_r_plus_30(mappings, offset, n):
    r = _with(mappings, lesion("p", R, "brain"), lesion("p", R + offset, "liver"))
    assert r["n_lesions"] == str(n)


@pytest.mark.parametrize(("n", "pattern"), [(3, "oligo"), (4, "poly")])
def test_three_lesions_oligo_four_poly(mappings, n, pattern):
    sites = ["brain", "liver", "bone", "adrenal"][:n]
    r = _with(mappings, *(lesion("p", R + i, s) for i, s in enumerate(sites)))
    assert (r["pattern"], r["n_lesions"], r["sites"]) == (pattern, str(n), ";".join(sorted(sites)))


@pytest.mark.parametrize("site", ["pleura", "meninges", "peritoneum"])
def test_single_non_amenable_lesion_is_poly(mappings, site):
    r = _with(mappings, lesion("p", R, site))
    assert (r["pattern"], r["n_lesions"]) == ("poly", "1")
    assert r["sites"] == ("other" if site == "peritoneum" else site)


def test_same_identifier_merges_different_identifiers_do_not(mappings):
    same = [lesion("p", R, "liver", lesion_id="A"), lesion("p", R + 5, "liver", lesion_id="A")]
    d = run([*cohort_patient("p"), *same, lesion("p", R + 6, "liver", lesion_id="B")], mappings)
    les = d.tables["lesion"].sort_values("lesion_key")
    assert list(les["lesion_key"]) == ["liver||A", "liver||B"]
    assert list(les["n_records"]) == [2, 1]
    assert row(d, "p")["n_lesions"] == "2"


def test_same_identifier_other_laterality_is_another_lesion(mappings):
    evs = [
        lesion("p", R, "lung", laterality="left", lesion_id="A"),
        lesion("p", R, "lung", laterality="right", lesion_id="A"),
    ]
    assert _with(mappings, *evs)["n_lesions"] == "2"


@pytest.mark.parametrize(
    ("lesion_lat", "primary_lat", "relation"),
    [
        ("right", "right", "in"),
        ("left", "right", "out"),
        (None, "right", "unknown"),
        ("left", None, "unknown"),
        ("bilateral", "right", "out"),
        ("bilateral", "bilateral", "in"),
    ],
)
def test_lung_field_relation_needs_laterality(lesion_lat, primary_lat, relation):
    assert field_relation("lung", lesion_lat, {"lung", "lymph_node_thoracic"}, primary_lat) == relation


def test_non_lung_field_relation():
    field = {"lung", "lymph_node_thoracic"}
    assert field_relation("lymph_node_thoracic", "left", field, "right") == "in"
    assert field_relation("brain", None, field, "right") == "out"
    assert [patient_field(x) for x in (["in", "unknown"], ["out"], ["in", "out"], ["unknown"], [])] == [
        "in_field",
        "out_of_field",
        "both",
        "unknown",
        "none",
    ]


@pytest.mark.parametrize(
    ("lat", "field"), [("right", "in_field"), ("left", "out_of_field"), (None, "unknown")]
)
def test_patient_field_contralateral_vs_ipsilateral_lung(mappings, lat, field):
    r = _with(mappings, lesion("p", R, "lung", laterality=lat), laterality="right")
    assert r["field"] == field


def test_default_field_when_course_names_no_site(mappings):
    d = run([*cohort_patient("p", rt_site=None), lesion("p", R, "lymph_node_thoracic")], mappings)
    assert (row(d, "p")["field"], d.tables["lesion"].iloc[0]["field_relation"]) == ("in_field", "in")


def test_course_with_several_body_sites(mappings):
    r = _with(mappings, lesion("p", R, "lymph_node_thoracic"), rt_site="lung;lymph_node_thoracic")
    assert r["field"] == "in_field"


def test_course_body_site_defines_field(mappings):
    r = _with(mappings, lesion("p", R, "lymph_node_thoracic"), rt_site="lung")
    assert r["field"] == "out_of_field"


@pytest.mark.parametrize(("offset", "salvage"), [(90, "rt"), (91, "none")])
def test_salvage_window_r_to_r_plus_90(mappings, offset, salvage):
    r = _with(
        mappings, lesion("p", R, "brain"), ev("p", R + offset, "radiotherapy;stereotactic", site="brain")
    )
    assert r["salvage"] == salvage


def test_durvalumab_after_recurrence_is_not_salvage(mappings):
    r = _with(mappings, lesion("p", R, "brain"), ev("p", R + 10, "durvalumab"), durvalumab=(90, 104, R + 10))
    assert (r["salvage"], r["durvalumab_doses"]) == ("none", "2")


@pytest.mark.parametrize(
    ("groups", "category"),
    [
        (["radiotherapy", "chemo;platinum"], "crt"),
        (["radiotherapy;chemo"], "crt"),  # SNOMED 703423002 combined chemo-RT
        (["radiotherapy"], "rt"),
        (["radiotherapy", "surgery"], "rt"),
        (["chemo"], "chemo"),
        (["chemo", "immunotherapy"], "chemo"),
        (["immunotherapy"], "immunotherapy"),
        (["targeted"], "targeted"),
        (["surgery"], "surgery"),
        (["radiotherapy", "immunotherapy"], "other"),
        (["surgery", "targeted"], "other"),
        ([], "none"),
    ],
)
def test_salvage_categories(mappings, groups, category):
    therapies = [ev("p", R + 5 + i, g, site="brain") for i, g in enumerate(groups)]
    r = _with(mappings, lesion("p", R, "brain"), *therapies)
    assert r["salvage"] == category


def test_salvage_category_pure():
    assert salvage_category({"radiotherapy", "chemo", "surgery"}) == "crt"
    assert salvage_category({"immunotherapy", "targeted"}) == "other"
    assert salvage_category(set()) == "none"


def test_salvage_request_shadowed_by_administration(mappings):
    # pemetrexed administered long before (no salvage) shadows the pemetrexed request in the window
    r = _with(
        mappings,
        lesion("p", R, "brain"),
        ev("p", 10, "chemo", ingredient="pemetrexed"),
        ev("p", R + 3, "chemo", kind="drug_request", ingredient="pemetrexed"),
    )
    assert r["salvage"] == "none"
    r = _with(mappings, lesion("p", R, "brain"), ev("p", R + 3, "chemo", kind="drug_request", ingredient="x"))
    assert r["salvage"] == "chemo"
