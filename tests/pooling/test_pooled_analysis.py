"""Pooled analysis of the 8 synthetic centres against the patient-level analysis of the whole cohort.

* KM medians: within one grid step of the single run when the tables are not merged (threshold 1);
  at the default threshold 5 (deaths merged into sub-intervals of >= 5 per site, placed around their
  mean time) within two grid steps and inside the single run's 95% CI;
* stratified log-rank: equal, to float precision, to the one computed here from the patient-level
  data discretised on the same grid (and each site's term to lifelines' log-rank on that site);
* pooled HR (fixed effect) within 0.05 of a site-stratified Cox fit on the patient-level data.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pytest
from lifelines import CoxPHFitter
from lifelines.statistics import logrank_test
from pooling_cohort import Cohort, K

from leopard_etl.analysis.pooling import check_summaries, meta_analysis, pool_summaries, stratified_logrank
from leopard_etl.analysis.replication import PUBLISHED, replication_rows
from leopard_etl.analysis.site_summary import content_sha256
from leopard_etl.errors import ConfigError

DOCS = Path(__file__).parents[2] / "docs"
RESULTS_SCHEMA = json.loads((DOCS / "results.schema.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def pooled(cohort: Cohort) -> dict[int, dict[str, Any]]:
    return {k: pool_summaries(s) for k, s in cohort.summaries.items()}


def _cohort_rows(cohort: Cohort) -> pd.DataFrame:
    rows = cohort.patients[cohort.patients["in_cohort"] == "true"]
    return rows.assign(t=rows["os_months"].astype(float), dead=rows["death"] == "true")


@pytest.mark.parametrize(("k", "tolerance"), [(1, 1.0), (K, 2.0)])
def test_km_medians_match_the_single_run(cohort: Cohort, pooled: dict[int, dict[str, Any]], k: int,
                                         tolerance: float) -> None:
    single, mine = cohort.single, pooled[k]
    pairs = [(f"os.{g}", single["os"]["median_months"][g], mine["os"]["median_months"][g])
             for g in ("oligo", "poly", "none")]
    pairs.append(("follow-up", single["follow_up_median_months"], mine["follow_up_median_months"]))
    for g in ("oligo", "poly"):
        lo, hi = single["os"]["ci95"][g]
        assert lo <= mine["os"]["median_months"][g] <= hi, g
    if k == 1:  # unmerged: every group with 20+ patients, PRS and OS by salvage too
        rows = _cohort_rows(cohort)
        for endpoint in ("prs", "os_by_salvage"):
            for group, value in single[endpoint]["median_months"].items():
                pattern, salvage = group.split("_", 1)
                if ((rows["pattern"] == pattern) & (rows["salvage"] == salvage)).sum() >= 20:
                    pairs.append((f"{endpoint}.{group}", value, mine[endpoint]["median_months"][group]))
    assert len(pairs) >= 4
    for what, expected, got in pairs:
        if expected is None:
            assert got is None, what
        else:
            assert got is not None and abs(got - expected) <= tolerance, (what, expected, got)


def _reference_logrank(cohort: Cohort, step: float = 1.0) -> tuple[float, list[float]]:
    """Stratified log-rank poly vs oligo from patient-level data on the grid, written out here."""
    rows = _cohort_rows(cohort)
    rows = rows[rows["pattern"].isin(["oligo", "poly"])]
    oe = var = 0.0
    per_site = []
    for _, site in rows.groupby("site"):
        idx = np.rint(site["t"].to_numpy() * 100).astype(np.int64) // round(step * 100)
        poly = (site["pattern"] == "poly").to_numpy()
        dead = site["dead"].to_numpy()
        site_oe = site_var = 0.0
        for j in range(int(idx.max()) + 1):
            at_risk = idx >= j
            n_a, n_b = float((at_risk & ~poly).sum()), float((at_risk & poly).sum())
            d_b = float(((idx == j) & dead & poly).sum())
            d = float(((idx == j) & dead).sum())
            n = n_a + n_b
            if n == 0 or d == 0:
                continue
            site_oe += d_b - d * n_b / n
            if n > 1:
                site_var += d * (n_a / n) * (n_b / n) * (n - d) / (n - 1)
        per_site.append(site_oe * site_oe / site_var)
        oe, var = oe + site_oe, var + site_var
    return oe * oe / var, per_site


def test_stratified_logrank_equals_the_patient_level_one(cohort: Cohort,
                                                         pooled: dict[int, dict[str, Any]]) -> None:
    reference, per_site = _reference_logrank(cohort)
    for k in (1, K):
        chi2 = pooled[k]["pooling"]["logrank_oligo_vs_poly"]["chi2"]
        assert stratified_logrank(cohort.summaries[k]).chi2 == pytest.approx(reference, rel=1e-12, abs=0)
        assert chi2 == pytest.approx(reference, abs=1e-6)  # results.json rounds to 6 decimals
        p = math.erfc(math.sqrt(reference / 2))  # chi-square, 1 df
        assert pooled[k]["os"]["logrank_p_oligo_vs_poly"] == pytest.approx(p, rel=1e-5)
    # each site's term is lifelines' two-group log-rank on that site's discretised times
    rows = _cohort_rows(cohort)
    for s, expected in zip(cohort.summaries[K], per_site, strict=True):
        number = int(s["site"]["name"].split()[-1])
        site = rows[(rows["site"] == number) & rows["pattern"].isin(["oligo", "poly"])]
        grid = np.rint(site["t"].to_numpy() * 100).astype(np.int64) // 100
        poly = (site["pattern"] == "poly").to_numpy()
        dead = site["dead"].to_numpy()
        lr = logrank_test(grid[~poly], grid[poly], dead[~poly], dead[poly])
        terms = s["logrank_oligo_vs_poly"]
        mine = terms["observed_minus_expected_poly"] ** 2 / terms["variance"]
        assert mine == pytest.approx(lr.test_statistic, rel=1e-9)
        assert mine == pytest.approx(expected, rel=1e-12)


def test_pooled_hr_matches_a_stratified_cox_fit(cohort: Cohort, pooled: dict[int, dict[str, Any]]) -> None:
    rows = _cohort_rows(cohort)
    rows = rows[rows["pattern"].isin(["oligo", "poly"])]
    frame = pd.DataFrame({"T": rows["t"], "E": rows["dead"].astype(int),
                          "poly": (rows["pattern"] == "poly").astype(float), "site": rows["site"]})
    cph = CoxPHFitter().fit(frame, "T", "E", strata=["site"], fit_options={"precision": 1e-10})
    stratified = float(cph.summary.loc["poly", "exp(coef)"])
    hr = pooled[K]["os"]["hr_poly_vs_oligo"]
    assert abs(hr["hr"] - stratified) < 0.05
    assert hr["lo"] < stratified < hr["hi"]
    rand = pooled[K]["os"]["hr_poly_vs_oligo_random"]
    assert rand["sites"] == 8 and 0 <= rand["i2"] <= 100 and rand["tau2"] >= 0
    assert rand["lo"] <= hr["hr"] <= rand["hi"]
    poisson = pooled[K]["pooling"]["poisson_hr_poly_vs_oligo"]
    assert abs(math.log(poisson["hr"] / stratified)) < 0.15  # a check, on coarser intervals


def test_meta_analysis_by_hand() -> None:
    """Two sites, log-HR 0 and 1, SE 0.5 and 0.25: FE = 0.8, Q = 3.2, tau² = (3.2-1)/(20-17/5)... by hand."""
    fe, re, w_fe, w_re = meta_analysis([(0.0, 0.5), (1.0, 0.25)])
    w = np.array([4.0, 16.0])
    assert fe.log_hr == pytest.approx(16 / 20) and fe.se == pytest.approx(math.sqrt(1 / 20))
    q = float((w * (np.array([0.0, 1.0]) - 0.8) ** 2).sum())
    tau2 = (q - 1) / (w.sum() - (w**2).sum() / w.sum())
    assert fe.q == pytest.approx(q) and re.tau2 == pytest.approx(tau2)
    assert re.i2 == pytest.approx((q - 1) / q * 100)
    ws = 1 / (np.array([0.25, 0.0625]) + tau2)
    assert re.log_hr == pytest.approx(float((ws * np.array([0.0, 1.0])).sum() / ws.sum()))
    assert w_fe == pytest.approx([20.0, 80.0]) and sum(w_re) == pytest.approx(100.0)
    one_fe, one_re, _, _ = meta_analysis([(0.3, 0.2)])
    assert (one_fe.log_hr, one_fe.se) == (one_re.log_hr, one_re.se) == (0.3, pytest.approx(0.2))


def test_pooled_results_follow_the_results_schema(pooled: dict[int, dict[str, Any]]) -> None:
    """The results.json schema, plus the pooled keys (sites, pooling, os.hr_poly_vs_oligo_random)."""
    schema = copy.deepcopy(RESULTS_SCHEMA)
    schema["properties"]["sites"] = {"type": "array", "minItems": 1}
    schema["properties"]["pooling"] = {"type": "object",
                                       "required": ["n_sites", "logrank_oligo_vs_poly", "bounds"]}
    schema["properties"]["os"]["properties"]["hr_poly_vs_oligo_random"] = {
        "type": "object", "required": ["hr", "lo", "hi", "tau2", "i2", "q", "sites"]}
    for result in pooled.values():
        jsonschema.validate(result, schema)
        assert len(result["sites"]) == 8


def test_counts_add_up(cohort: Cohort, pooled: dict[int, dict[str, Any]]) -> None:
    single, mine = cohort.single, pooled[K]
    assert mine["n_cohort"] == single["n_cohort"] and mine["n_screened"] == single["n_screened"]
    assert mine["attrition"] == single["attrition"]
    assert mine["recurrence"]["oligo_pct"] == single["recurrence"]["oligo_pct"]
    assert mine["recurrence"]["sites_oligo_pct"]["lung"] == single["recurrence"]["sites_oligo_pct"]["lung"]
    # unclassified recurrences are a handful per site: suppressed everywhere, pooled as a range
    lo, hi = mine["pooling"]["bounds"]["recurrence.unclassified_n"]
    assert lo <= single["recurrence"]["unclassified_n"] <= hi
    assert mine["recurrence"]["unclassified_n"] == f"<{hi + 1}"
    exact = pooled[1]
    assert exact["recurrence"]["unclassified_n"] == single["recurrence"]["unclassified_n"]
    assert exact["salvage"] == single["salvage"]


def test_replication_rows(cohort: Cohort, pooled: dict[int, dict[str, Any]]) -> None:
    for results in (cohort.single, pooled[K]):
        rows = replication_rows(results)
        assert [r["key"] for r in rows] == [p.key for p in PUBLISHED]
        by_key = {r["key"]: r for r in rows}
        assert by_key["os_oligo"]["published"] == 41 and by_key["os_poly"]["published"] == 19
        assert by_key["oligo_pct"]["observed"] == pytest.approx(results["recurrence"]["oligo_pct"])
        assert by_key["os_oligo"]["difference"] == pytest.approx(results["os"]["median_months"]["oligo"] - 41,
                                                                 abs=0.01)
    assert replication_rows({})[0]["note"].startswith("not in these results")


def _edited(summary: dict[str, Any], **changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(summary)
    out.update(changes)
    out["content_sha256"] = content_sha256(out)
    return out


def test_refusals(cohort: Cohort) -> None:
    a, b = cohort.summaries[K][0], cohort.summaries[K][1]
    cases = {
        "spec version": [a, _edited(b, spec_version="1")],
        "schema version": [a, _edited(b, schema_version=2)],
        "time grids": [a, _edited(b, grid={**b["grid"], "step": 0.5})],
        "appears twice": [a, _edited(b, site={"name": "Centre 1", "id": "Centre 1"})],
        "same summary": [a, {**a, "site": {"name": "Other", "id": "Other"}}],
    }
    for reason, summaries in cases.items():
        with pytest.raises(ConfigError, match=reason) as err:
            check_summaries(summaries)
        assert "\n" not in str(err.value)
