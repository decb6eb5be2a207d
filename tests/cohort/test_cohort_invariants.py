"""Invariants of the classification over a few hundred generated timelines."""

from __future__ import annotations

from cohort_builder import random_timelines, run


def test_invariants_over_random_timelines(mappings):
    events, patients = random_timelines(400, seed=7)
    d = run(events, mappings, patients=patients)
    csv = d.patients_csv
    att = [n for _, n in d.attrition]
    assert att == sorted(att, reverse=True) and att[0] == len(csv)
    assert 0 < att[-1] == (csv["in_cohort"] == "true").sum() < att[0]  # the generator reaches every step
    assert list(csv["patient_id"]) == sorted(csv["patient_id"])
    assert all(isinstance(v, str) for v in csv.to_numpy().ravel())
    assert ((csv["in_cohort"] == "true") == (csv["exclusion_reason"] == "")).all()
    lesions = d.tables["lesion"].groupby("patient_id").size()
    cutoff = d.cutoff.isoformat()
    seen = set()
    for r in csv.to_dict("records"):
        seen.add(r["pattern"])
        n = int(r["n_lesions"] or 0)
        assert n == lesions.get(r["patient_id"], 0)
        assert r["last_alive_date"] <= cutoff
        if r["pattern"] == "oligo":
            assert 1 <= n <= 3 and not {"pleura", "meninges"} & set(r["sites"].split(";"))
        if r["pattern"] == "poly":
            assert n >= 1
        if r["pattern"] in ("unclassified", "none"):
            assert n == 0 and r["field"] == "none"
        if r["in_cohort"] == "true":
            assert r["crt_start"] <= r["crt_end"] < r["durvalumab_start"]
            assert float(r["os_months"]) >= 0
            if r["recurrence"] == "true":
                assert r["recurrence_date"] > r["crt_end"] and r["salvage"] != ""
                assert float(r["prs_months"]) <= float(r["os_months"])
        else:
            assert r["os_months"] == r["prs_months"] == r["pattern"] == ""
    assert {"oligo", "poly", "unclassified", "none"} <= seen
