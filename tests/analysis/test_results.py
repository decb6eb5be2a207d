"""results.json on a tiny hand-made cohort whose every figure can be worked out on paper.

tiny_patients.csv: 11 screened, 9 in the cohort. OS (months, † = death):
oligo 10†, 20, 30†, 40† · poly 5†, 8†, 35† · none 50, 60. Excluded p10 (stage IV), p11 (no durvalumab).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from leopard_etl.analysis import compute_results, write_results
from leopard_etl.analysis.patients import cohort_frame
from leopard_etl.errors import ConfigError

DATA = Path(__file__).parent / "data" / "tiny_patients.csv"
SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "results.schema.json").read_text(encoding="utf-8"))
ATTRITION = [("nsclc", 11), ("stage_iii", 10), ("crt", 10), ("durvalumab", 9)]


def tiny() -> pd.DataFrame:
    return pd.read_csv(DATA, dtype=str, keep_default_na=False)


@pytest.fixture(scope="module")
def exact() -> dict[str, Any]:
    return compute_results(tiny(), ATTRITION)


def test_counts_and_percentages(exact: dict[str, Any]) -> None:
    jsonschema.validate(exact, SCHEMA)
    assert (exact["n_screened"], exact["n_cohort"]) == (11, 9)
    assert exact["attrition"] == [{"step": s, "n": n} for s, n in ATTRITION]
    rec = exact["recurrence"]
    # 7 of 9 recur (77.78 -> 77.8); 4 of 7 oligo (57.14 -> 57.1)
    assert (rec["n"], rec["pct"], rec["oligo_n"], rec["poly_n"], rec["unclassified_n"]) == (7, 77.8, 4, 3, 0)
    assert rec["oligo_pct"] == 57.1
    assert rec["sites_oligo_pct"]["lung"] == 75.0  # p01, p02, p04 of 4 oligo
    assert (rec["sites_oligo_pct"]["brain"], rec["sites_oligo_pct"]["bone"]) == (25.0, 25.0)
    assert rec["sites_oligo_pct"]["pleura"] == 0.0  # pleura only in a poly patient
    assert rec["field"] == {"in_field": 2, "out_of_field": 2, "both": 2, "unknown": 1, "none": 0}
    assert exact["salvage"]["oligo"]["rt"] == 50.0
    assert (exact["salvage"]["oligo"]["crt"], exact["salvage"]["oligo"]["none"]) == (25.0, 25.0)
    assert exact["salvage"]["poly"]["chemo"] == 100.0
    assert exact["salvage"]["poly"]["rt"] == 0.0


def test_survival_figures(exact: dict[str, Any]) -> None:
    """Hand KM: oligo S(10)=3/4, S(30)=3/4·1/2=0.375 -> median 30; poly S(5)=2/3, S(8)=1/3 -> 8.

    Reverse KM (censorings are events): at 20 S=4/5, at 50 S=4/5·1/2=0.4 -> follow-up 50.
    Log-rank and Cox from R: survdiff p 0.250539935486; coxph(ties="efron") 2.818003719
    (0.4492760693, 17.67542387). R survfit(conf.type="log-log"): oligo 30 (10, NA), poly 8 (5, NA).
    """
    os_ = exact["os"]
    assert os_["median_months"] == {"oligo": 30.0, "poly": 8.0, "none": None}
    assert os_["ci95"] == {"oligo": [10.0, None], "poly": [5.0, None], "none": [None, None]}
    assert os_["logrank_p_oligo_vs_poly"] == pytest.approx(0.250539935486, rel=1e-5)
    hr = os_["hr_poly_vs_oligo"]
    assert (hr["hr"], hr["lo"], hr["hi"]) == (2.818, 0.4493, 17.6754)
    assert exact["follow_up_median_months"] == 50.0
    # PRS: oligo_rt 4†, 12 -> S(4)=0.5, lifelines' first time <= 0.5 is 4; poly_chemo 2†,3†,28† -> 3
    assert exact["prs"]["median_months"] == {"oligo_crt": 20.0, "oligo_rt": 4.0, "oligo_none": 25.0,
                                             "poly_chemo": 3.0}
    assert exact["warnings"] == ["OS median (none): no events among 2 patients, median is null"]


def test_small_cells_are_suppressed_in_results(tmp_path: Path) -> None:
    res = compute_results(tiny(), ATTRITION, small_cell=5)
    jsonschema.validate(res, SCHEMA)
    rec = res["recurrence"]
    assert (res["n_screened"], res["n_cohort"], rec["n"], rec["pct"]) == (11, 9, 7, 77.8)
    assert (rec["oligo_n"], rec["poly_n"], rec["unclassified_n"]) == ("<5", "<5", "<5")
    assert rec["oligo_pct"] is None
    assert set(rec["field"].values()) == {"<5"}
    assert set(rec["sites_oligo_pct"].values()) == {None}
    assert res["salvage"]["poly"]["chemo"] is None  # 3 patients
    assert res["os"]["median_months"]["oligo"] == 30.0  # survival statistics are not counts
    out = tmp_path / "out" / "results.json"
    write_results(res, out)
    assert json.loads(out.read_text(encoding="utf-8")) == res


def test_negative_time_is_left_out_with_a_warning_counting_the_patient() -> None:
    """A death before crt_start (contradictory source data) must not stop the analysis.

    The warning counts the patients and never names them (spec §5: results files may be shared);
    the id travels in ``warning_patients`` to the site-only warnings-patients.csv.
    """
    frame = tiny()
    frame.loc[frame["patient_id"] == "p03", "os_months"] = "-1.00"
    res = compute_results(frame, ATTRITION)
    jsonschema.validate(res, SCHEMA)
    assert any(w.startswith("negative os_months for 1 patient(s)") for w in res["warnings"])
    assert not any("p03" in w for w in res["warnings"])
    assert cohort_frame(frame).attrs["warning_patients"] == [("p03", "negative os_months")]
    assert res["n_cohort"] == 9  # still counted in the cohort, only not in the survival fits


def test_missing_group_gives_nulls_and_named_warnings() -> None:
    frame = tiny()
    frame = frame[~frame["patient_id"].isin(["p05", "p06", "p07"])]
    res = compute_results(frame, [("nsclc", 8), ("stage_iii", 7), ("crt", 7), ("durvalumab", 6)])
    jsonschema.validate(res, SCHEMA)
    assert res["os"]["median_months"]["poly"] is None
    assert res["os"]["logrank_p_oligo_vs_poly"] is None
    assert res["os"]["hr_poly_vs_oligo"] == {"hr": None, "lo": None, "hi": None}
    assert res["salvage"]["poly"]["chemo"] is None  # 0 of 0
    poly_notes = [w for w in res["warnings"] if "poly" in w]
    assert len(poly_notes) == 3  # median, log-rank, Cox


def test_empty_cohort_does_not_crash() -> None:
    frame = tiny()
    frame["in_cohort"] = "false"
    res = compute_results(frame, [("nsclc", 11), ("stage_iii", 0), ("crt", 0), ("durvalumab", 0)])
    jsonschema.validate(res, SCHEMA)
    assert (res["n_cohort"], res["recurrence"]["n"], res["recurrence"]["pct"]) == (0, 0, None)
    assert res["follow_up_median_months"] is None
    assert res["prs"]["median_months"] == {}


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [("death", "yes", "death"), ("os_months", "", "os_months"), ("pattern", "none", "pattern")],
)
def test_malformed_rows_raise_config_error(column: str, value: str, message: str) -> None:
    frame = tiny()
    frame.loc[frame["patient_id"] == "p01", column] = value
    with pytest.raises(ConfigError, match=message) as err:
        compute_results(frame, ATTRITION)
    assert "p01" in str(err.value)


def test_attrition_out_of_order_is_refused() -> None:
    with pytest.raises(ConfigError, match="expected"):
        compute_results(tiny(), [("stage_iii", 10), ("nsclc", 11), ("crt", 10), ("durvalumab", 9)])
