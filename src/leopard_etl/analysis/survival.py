"""Kaplan–Meier, log-rank, Cox and reverse Kaplan–Meier (spec §4), guarded against thin groups.

lifelines does the statistics with its defaults (Greenwood variance, log(−log) confidence
interval, Efron ties in Cox — the same as R ``survival``'s ``survfit(conf.type="log-log")`` and
``coxph(ties="efron")``). What this module adds is the input checks: a study cohort can have an
empty group or a group without deaths, and then the statistic is ``None`` with a note naming the
group, instead of an exception or an infinite hazard ratio. Negative or non-finite times are
refused with the patient ids (:class:`~leopard_etl.errors.ConfigError`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from lifelines import CoxPHFitter, KaplanMeierFitter
from lifelines.exceptions import ConvergenceError, ConvergenceWarning
from lifelines.statistics import logrank_test
from lifelines.utils import median_survival_times

from leopard_etl.errors import ConfigError

__all__ = [
    "HazardRatio",
    "KMCurve",
    "LogRank",
    "MedianEstimate",
    "SurvivalSample",
    "at_risk",
    "cox_hazard_ratio",
    "km_curve",
    "km_median",
    "logrank",
    "reverse_km_median",
]


#: lifelines stops Newton–Raphson at a decrement of 1e-7, which on small cohorts leaves the HR
#: ~1e-4 (relative) away from the maximum; 1e-10 reaches R ``coxph``'s answer to ~1e-8.
_COX_FIT = {"precision": 1e-10}


@dataclass(frozen=True)
class SurvivalSample:
    """Times (any unit, here months) and event flags of one group; build with :meth:`of`."""

    group: str
    durations: np.ndarray
    events: np.ndarray

    @classmethod
    def of(
        cls,
        group: str,
        durations: Sequence[float] | np.ndarray | pd.Series,
        events: Sequence[bool] | np.ndarray | pd.Series,
        ids: Sequence[str] | None = None,
    ) -> SurvivalSample:
        t = np.asarray(durations, dtype=float)
        e = np.asarray(events, dtype=bool)
        if t.shape != e.shape or t.ndim != 1:
            raise ConfigError(f"group {group!r}: {t.size} times but {e.size} event flags",
                              fix="pass one time and one event flag per patient")
        bad = ~np.isfinite(t) | (t < 0)
        if bad.any():
            rows = [int(i) for i in np.flatnonzero(bad)]
            names = [str(ids[i]) for i in rows] if ids is not None else [f"row {i}" for i in rows]
            raise ConfigError(
                f"group {group!r}: negative or missing survival time for {', '.join(names[:10])}",
                fix="check death / last-alive dates against the interval start for these patients",
            )
        return cls(group, t, e)

    @property
    def n(self) -> int:
        return int(self.durations.size)

    @property
    def n_events(self) -> int:
        return int(self.events.sum())


@dataclass(frozen=True)
class MedianEstimate:
    """KM median with its 95% CI; ``None`` = not reached (or not estimable, see ``note``)."""

    group: str
    n: int
    events: int
    median: float | None
    lo: float | None
    hi: float | None
    note: str | None = None


@dataclass(frozen=True)
class LogRank:
    statistic: float | None
    p: float | None
    note: str | None = None


@dataclass(frozen=True)
class HazardRatio:
    hr: float | None
    lo: float | None
    hi: float | None
    note: str | None = None


@dataclass(frozen=True)
class KMCurve:
    """Step function of the KM estimate, starting at (0, 1), for plotting."""

    group: str
    times: np.ndarray
    survival: np.ndarray
    lo: np.ndarray
    hi: np.ndarray


def _finite(value: float) -> float | None:
    v = float(value)
    return v if math.isfinite(v) else None


def _defined_bound(kmf: KaplanMeierFitter, time: float) -> float | None:
    """A CI bound of the median, or ``None`` when the CI is undefined where it crosses 0.5.

    The log(−log) interval does not exist where the KM estimate is 0; lifelines fills it with 0,
    which would "cross" 0.5 at the last death. R reports NA there, and so do we.
    """
    t = _finite(time)
    if t is None:
        return None
    return t if float(kmf.survival_function_.iloc[:, 0].loc[t]) > 0.0 else None


def _fit_km(sample: SurvivalSample) -> KaplanMeierFitter:
    return KaplanMeierFitter().fit(sample.durations, sample.events, label=sample.group or "all")


def _median(sample: SurvivalSample, what: str) -> MedianEstimate:
    if sample.n == 0:
        return MedianEstimate(sample.group, 0, 0, None, None, None,
                              f"{what} ({sample.group}): no patients in the group, median is null")
    kmf = _fit_km(sample)
    ci = median_survival_times(kmf.confidence_interval_)
    median = _finite(kmf.median_survival_time_)
    lo, hi = (_defined_bound(kmf, ci.iloc[0, 0]), _defined_bound(kmf, ci.iloc[0, 1]))
    note = None
    if sample.n_events == 0:
        note = f"{what} ({sample.group}): no events among {sample.n} patients, median is null"
    return MedianEstimate(sample.group, sample.n, sample.n_events, median, lo, hi, note)


def km_median(sample: SurvivalSample, *, what: str = "median") -> MedianEstimate:
    """Kaplan–Meier median and log(−log) 95% CI (lifelines defaults = R ``conf.type="log-log"``)."""
    return _median(sample, what)


def reverse_km_median(sample: SurvivalSample, *, what: str = "median follow-up") -> MedianEstimate:
    """Median follow-up: KM with events and censoring swapped (censored patients are the 'events')."""
    swapped = SurvivalSample(sample.group, sample.durations, ~sample.events)
    est = _median(swapped, what)
    if swapped.n and swapped.n_events == 0:
        est = MedianEstimate(est.group, est.n, est.events, None, None, None,
                             f"{what} ({sample.group}): every patient had the event, follow-up is null")
    return est


def logrank(a: SurvivalSample, b: SurvivalSample) -> LogRank:
    """Two-group log-rank test (R ``survdiff``, rho = 0)."""
    label = f"log-rank {a.group} vs {b.group}"
    for s in (a, b):
        if s.n == 0:
            return LogRank(None, None, f"{label}: no patients in group {s.group!r}, p is null")
    if a.n_events + b.n_events == 0:
        return LogRank(None, None, f"{label}: no events in either group, p is null")
    result = logrank_test(a.durations, b.durations, a.events, b.events)
    return LogRank(_finite(result.test_statistic), _finite(result.p_value))


def cox_hazard_ratio(reference: SurvivalSample, exposed: SurvivalSample) -> HazardRatio:
    """HR of ``exposed`` vs ``reference`` with 95% CI: Cox model on one binary covariate, Efron ties."""
    label = f"Cox HR {exposed.group} vs {reference.group}"
    for s in (reference, exposed):
        if s.n == 0:
            return HazardRatio(None, None, None, f"{label}: no patients in group {s.group!r}, HR is null")
        if s.n_events == 0:
            return HazardRatio(None, None, None,
                               f"{label}: no events in group {s.group!r} (n={s.n}), HR is not estimable")
    frame = pd.DataFrame(
        {
            "T": np.concatenate([reference.durations, exposed.durations]),
            "E": np.concatenate([reference.events, exposed.events]).astype(int),
            "exposed": np.r_[np.zeros(reference.n), np.ones(exposed.n)],
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            cph = CoxPHFitter().fit(frame, duration_col="T", event_col="E", fit_options=_COX_FIT)
        except (ConvergenceError, ConvergenceWarning, np.linalg.LinAlgError) as exc:
            return HazardRatio(None, None, None, f"{label}: the model did not converge ({type(exc).__name__};"
                               " the groups may be completely separated), HR is null")
    row = cph.summary.loc["exposed"]
    return HazardRatio(_finite(row["exp(coef)"]), _finite(row["exp(coef) lower 95%"]),
                       _finite(row["exp(coef) upper 95%"]))


def km_curve(sample: SurvivalSample) -> KMCurve:
    """The KM step function with its CI band; an empty group is the single point (0, 1)."""
    if sample.n == 0:
        one = np.array([1.0])
        return KMCurve(sample.group, np.array([0.0]), one, one, one)
    kmf = _fit_km(sample)
    ci = kmf.confidence_interval_
    return KMCurve(
        sample.group,
        kmf.survival_function_.index.to_numpy(dtype=float),
        kmf.survival_function_.iloc[:, 0].to_numpy(dtype=float),
        ci.iloc[:, 0].to_numpy(dtype=float),
        ci.iloc[:, 1].to_numpy(dtype=float),
    )


def at_risk(sample: SurvivalSample, times: Sequence[float]) -> list[int]:
    """Numbers at risk (time ≥ t) at each of ``times``, as printed under KM plots."""
    return [int((sample.durations >= t).sum()) for t in times]
