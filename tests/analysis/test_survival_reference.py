"""Our survival wrappers against R ``survival`` 3.x on public datasets that lifelines ships.

The reference numbers were computed once with R 4.2 / survival (Debian r-cran-survival) on the
same data written to CSV from ``lifelines.datasets``; the tests do not need R. Ties: R ``coxph``
and lifelines ``CoxPHFitter`` both use Efron's method, so the hazard ratios agree to ~1e-6; the
Breslow answer differs by ~6e-4 relative (lung: 0.58837 vs Efron 0.58800), which the 1e-5
tolerance below would catch. KM medians follow lifelines (first time S(t) <= 0.5); R instead
takes the midpoint when S(t) equals 0.5 exactly on a plateau — none of these datasets hits that.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from lifelines.datasets import load_lung, load_rossi, load_waltons

from leopard_etl.analysis.survival import (
    SurvivalSample,
    cox_hazard_ratio,
    km_median,
    logrank,
    reverse_km_median,
)
from leopard_etl.errors import ConfigError


def _lung(sex: int) -> SurvivalSample:
    d = load_lung()
    rows = d[d["sex"] == sex]
    return SurvivalSample.of("male" if sex == 1 else "female", rows["time"], rows["status"] == 1)


def test_lung_km_logrank_cox_match_r() -> None:
    """R::

        d <- read.csv("lung.csv")          # lifelines.datasets.load_lung(); status 1 = dead
        survfit(Surv(time, status) ~ sex, data=d, conf.type="log-log")
          sex=1 median 270 (210, 306); sex=2 median 426 (345, 524)
        survdiff(Surv(time, status) ~ sex, data=d)   # chisq 10.3267419548856, p 0.00131116452035551
        d$female <- as.integer(d$sex == 2)
        coxph(Surv(time, status) ~ female, data=d, ties="efron")
          exp(coef) 0.588002818564, lower .95 0.423717830354, upper .95 0.815984813171
        survfit(Surv(time, 1 - status) ~ 1, data=d, conf.type="log-log")  # median 588 (511, 821)
    """
    male, female = _lung(1), _lung(2)
    m, f = km_median(male), km_median(female)
    assert (m.median, m.lo, m.hi, m.n, m.events) == (270.0, 210.0, 306.0, 138, 112)
    assert (f.median, f.lo, f.hi, f.n, f.events) == (426.0, 345.0, 524.0, 90, 53)

    lr = logrank(male, female)
    assert lr.statistic == pytest.approx(10.3267419548856, rel=1e-6)
    assert lr.p == pytest.approx(0.00131116452035551, rel=1e-6)

    hr = cox_hazard_ratio(reference=male, exposed=female)
    assert hr.hr == pytest.approx(0.588002818564, rel=1e-5)
    assert hr.lo == pytest.approx(0.423717830354, rel=1e-5)
    assert hr.hi == pytest.approx(0.815984813171, rel=1e-5)

    d = load_lung()
    everyone = SurvivalSample.of("all", d["time"], d["status"] == 1)
    fu = reverse_km_median(everyone)
    assert (fu.median, fu.lo, fu.hi) == (588.0, 511.0, 821.0)


def test_waltons_medians_and_hr_match_r() -> None:
    """R::

        d <- read.csv("waltons.csv"); d$group <- factor(d$group, levels=c("control","miR-137"))
        survfit(Surv(T, E) ~ group, data=d, conf.type="log-log")
          control median 58 (56, 60); miR-137 median 26 (19, 29)
        survdiff(Surv(T, E) ~ group, data=d)$chisq            # 122.249125573006
        coxph(Surv(T, E) ~ group, data=d, ties="efron")        # 7.78761891893 (5.08998010334, 11.9149794685)
    """
    d = load_waltons()
    control = d[d["group"] == "control"]
    mir = d[d["group"] == "miR-137"]
    a = SurvivalSample.of("control", control["T"], control["E"] == 1)
    b = SurvivalSample.of("miR-137", mir["T"], mir["E"] == 1)
    assert (km_median(a).median, km_median(a).lo, km_median(a).hi) == (58.0, 56.0, 60.0)
    assert (km_median(b).median, km_median(b).lo, km_median(b).hi) == (26.0, 19.0, 29.0)
    lr = logrank(a, b)
    assert lr.statistic == pytest.approx(122.249125573006, rel=1e-6)
    assert lr.p is not None and lr.p < 1e-16
    hr = cox_hazard_ratio(reference=a, exposed=b)
    assert (hr.hr, hr.lo, hr.hi) == (
        pytest.approx(7.78761891893, rel=1e-5),
        pytest.approx(5.08998010334, rel=1e-5),
        pytest.approx(11.9149794685, rel=1e-5),
    )


def test_rossi_medians_not_reached_are_null() -> None:
    """R::

        r <- read.csv("rossi.csv")
        survfit(Surv(week, arrest) ~ fin, data=r, conf.type="log-log")   # median NA, CI NA NA (both)
        1 - pchisq(survdiff(Surv(week, arrest) ~ fin, data=r)$chisq, 1) # 0.0501161174090057
        coxph(Surv(week, arrest) ~ fin, data=r, ties="efron")
          # exp(coef) 0.691377558363, lower .95 0.476675957446, upper .95 1.00278380049
    """
    r = load_rossi()
    groups = [SurvivalSample.of(f"fin={v}", r.loc[r["fin"] == v, "week"], r.loc[r["fin"] == v, "arrest"] == 1)
              for v in (0, 1)]
    for g in groups:
        est = km_median(g)
        assert (est.median, est.lo, est.hi) == (None, None, None)
        assert est.note is None  # events exist: "not reached" is a result, not a warning
    assert logrank(*groups).p == pytest.approx(0.0501161174090057, rel=1e-6)
    hr = cox_hazard_ratio(reference=groups[0], exposed=groups[1])
    assert hr.hr == pytest.approx(0.691377558363, rel=1e-5)
    assert hr.hi == pytest.approx(1.00278380049, rel=1e-5)


def test_ci_bound_is_null_where_the_curve_reaches_zero() -> None:
    """R survfit(Surv(t, e) ~ 1, conf.type="log-log"): t=c(3,5,9), all events -> median 5, LCL 3, UCL NA.

    lifelines fills the undefined log(-log) interval at S=0 with 0; we report null like R.
    """
    est = km_median(SurvivalSample.of("x", [3.0, 5.0, 9.0], [True, True, True]))
    assert (est.median, est.lo, est.hi) == (5.0, 3.0, None)


def test_thin_groups_give_null_with_a_note_naming_the_group() -> None:
    empty = SurvivalSample.of("poly", [], [])
    oligo = SurvivalSample.of("oligo", [10.0, 20.0], [True, False])
    est = km_median(empty)
    assert est.median is None and est.note is not None and "poly" in est.note
    assert logrank(oligo, empty).p is None
    no_death = SurvivalSample.of("poly", [4.0, 9.0], [False, False])
    hr = cox_hazard_ratio(reference=oligo, exposed=no_death)
    assert hr.hr is None and hr.note is not None and "no events in group 'poly'" in hr.note
    # complete separation (every poly death before any oligo death): R gives HR 9.2e9 (Inf CI)
    separated = cox_hazard_ratio(SurvivalSample.of("oligo", [10, 20, 30, 40], [1, 0, 1, 1]),
                                 SurvivalSample.of("poly", [5, 8], [1, 1]))
    assert separated.hr is None and separated.note is not None and "converge" in separated.note


def test_negative_time_names_the_patient() -> None:
    with pytest.raises(ConfigError, match="p2"):
        SurvivalSample.of("oligo", np.array([1.0, -0.5]), [True, False], ids=["p1", "p2"])
    with pytest.raises(ConfigError):
        SurvivalSample.of("oligo", [1.0, math.nan], [True, False])
