"""The report's aggregate tables, already formatted and small-cell suppressed (pure: frames in, text out).

Every count passes through :func:`~leopard_etl.analysis.disclosure.count` and every percentage
through :func:`~leopard_etl.analysis.disclosure.shown_percent`, so no cell of the report can show a
count below the threshold, nor a percentage computed from one. Continuous summaries (median, IQR)
of fewer patients than the threshold are hidden too: with two patients the "median" is a patient.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from leopard_etl.analysis.disclosure import count, is_suppressed, shown_percent
from leopard_etl.analysis.patients import (
    FIELD_CATEGORIES,
    SALVAGE_CATEGORIES,
    SITE_CATEGORIES,
    ordered,
    split_sites,
)
from leopard_etl.analysis.survival import MedianEstimate

__all__ = [
    "FlowStep",
    "Table",
    "attrition_flow",
    "baseline_table",
    "field_table",
    "fmt_count",
    "median_row",
    "recurrence_table",
    "salvage_table",
    "sites_table",
]

HIDDEN = "–"


@dataclass(frozen=True)
class Table:
    """A titled table of display strings (autoescaped by the template)."""

    key: str
    title: str
    header: list[str]
    rows: list[list[str]]
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FlowStep:
    label: str
    n: str
    excluded: str | None = None
    reason: str | None = None


def fmt_count(value: int | str, k: int | None) -> str:
    """A count for display; strings (already suppressed upstream) pass through."""
    return value if isinstance(value, str) else str(count(value, k))


def fmt_n_pct(n: int, denominator: int, k: int | None) -> str:
    pct = shown_percent(n, denominator, k)
    shown = fmt_count(n, k)
    return shown if pct is None else f"{shown} ({pct:.1f}%)"


def _months(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.1f}"


def median_row(label: str, est: MedianEstimate, k: int | None) -> list[str]:
    """Group | n | deaths | median (95% CI) in months."""
    if est.n == 0:
        return [label, fmt_count(0, k), fmt_count(0, k), "no patients"]
    ci = f"{_months(est.lo)}–{_months(est.hi)}" if (est.lo, est.hi) != (None, None) else "not estimable"
    median = "not reached" if est.median is None else f"{est.median:.1f} ({ci})"
    return [label, fmt_count(est.n, k), fmt_count(est.events, k), median]


def attrition_flow(attrition: Sequence[Mapping[str, int | str]], patients_csv: pd.DataFrame,
                   k: int | None) -> list[FlowStep]:
    """screened → stage III → CRT → durvalumab → cohort, with the exclusions between the boxes."""
    labels = {"nsclc": "Screened (NSCLC)", "stage_iii": "Stage III", "crt": "Chemoradiotherapy",
              "durvalumab": "Durvalumab"}
    reasons = {"stage_iii": "not_stage_iii", "crt": "no_crt", "durvalumab": "no_durvalumab"}
    shown = {"not_stage_iii": "not stage III", "no_crt": "no CRT", "no_durvalumab": "no durvalumab"}
    excluded = patients_csv["exclusion_reason"].fillna("").astype(str).str.strip().value_counts()
    steps = []
    for item in attrition:
        step = str(item["step"])
        reason = reasons.get(step)
        n_excl = fmt_count(int(excluded.get(reason, 0)), k) if reason else None
        steps.append(FlowStep(labels.get(step, step), fmt_count(item["n"], k), n_excl,
                              shown[reason] if reason else None))
    in_cohort = int((patients_csv["in_cohort"].astype(str).str.strip().str.lower() == "true").sum())
    steps.append(FlowStep("Analysis cohort", fmt_count(in_cohort, k)))
    return steps


def _median_iqr(values: Iterable[float], k: int | None, unit: str) -> str:
    arr = np.asarray([v for v in values if v is not None and np.isfinite(v)], dtype=float)
    if arr.size == 0:
        return "not available"
    if is_suppressed(int(arr.size), k):
        return f"hidden (n {fmt_count(int(arr.size), k)})"
    q1, med, q3 = np.percentile(arr, [25, 50, 75])
    return f"{med:.1f} ({q1:.1f}–{q3:.1f}) {unit}"


def _dates(values: pd.Series) -> pd.Series:
    return pd.to_datetime(values.replace("", None), errors="coerce")


def _category_rows(label: str, values: pd.Series, order: Sequence[str], k: int | None) -> list[list[str]]:
    vals = values.fillna("").astype(str).str.strip().replace("", "unknown")
    n = len(vals)
    cats = [c for c in ordered(set(vals), tuple(order)) if (vals == c).any()]
    return [[f"{label}: {c}", fmt_n_pct(int((vals == c).sum()), n, k)] for c in cats]


def baseline_table(cohort_csv: pd.DataFrame, tables: Mapping[str, pd.DataFrame] | None,
                   k: int | None) -> Table:
    """Age at CRT start, sex, stage, CRT type, CRT end → durvalumab days, durvalumab doses."""
    tables = tables or {}
    notes: list[str] = []
    ids = cohort_csv["patient_id"].astype(str)
    rows = [["Patients", fmt_count(len(cohort_csv), k)]]
    patient = tables.get("patient")
    if patient is not None and {"patient_id", "birth_date"} <= set(patient.columns):
        births = patient.assign(patient_id=patient["patient_id"].astype(str)).set_index("patient_id")
        birth = pd.to_datetime(births["birth_date"].reindex(ids).astype("string").fillna(""), errors="coerce")
        crt = _dates(cohort_csv["crt_start"].astype(str)).set_axis(ids)
        age = ((crt - birth).dt.days / 365.25).dropna()
        rows.append(["Age at CRT start, median (IQR)", _median_iqr(age, k, "years")])
        if "sex" in patient.columns:
            sex = births["sex"].reindex(ids).astype("string").fillna("")
            rows += _category_rows("Sex", pd.Series(list(sex)), ("female", "male"), k)
    else:
        notes.append("Age and sex not shown: the canonical patient table was not supplied.")
    rows += _category_rows("Stage", cohort_csv["stage"], ("IIIA", "IIIB", "IIIC", "III"), k)
    rows += _category_rows("CRT", cohort_csv["crt_type"], ("concurrent", "sequential"), k)
    durva = tables.get("durvalumab_course")
    if durva is not None and "days_from_crt_end" in durva.columns:
        days = pd.to_numeric(durva.loc[durva["patient_id"].astype(str).isin(set(ids)), "days_from_crt_end"],
                             errors="coerce")
    else:
        start = _dates(cohort_csv["durvalumab_start"].astype(str))
        days = (start - _dates(cohort_csv["crt_end"].astype(str))).dt.days
    rows.append(["Days CRT end → first durvalumab, median (IQR)", _median_iqr(days, k, "days")])
    doses = pd.to_numeric(cohort_csv["durvalumab_doses"], errors="coerce")
    rows.append(["Durvalumab doses, median (IQR)", _median_iqr(doses, k, "doses")])
    return Table("baseline", "Baseline characteristics (analysis cohort)", ["Characteristic", "Value"], rows,
                 notes)


def recurrence_table(cohort: pd.DataFrame, k: int | None) -> Table:
    rec = cohort[cohort["recurrence"]]
    n_rec = len(rec)
    rows = [["Recurrence (of cohort)", fmt_n_pct(n_rec, len(cohort), k)]]
    for pattern in ("oligo", "poly", "unclassified"):
        n = int((rec["pattern"] == pattern).sum())
        rows.append([f"{pattern} (of recurrences)", fmt_n_pct(n, n_rec, k)])
    return Table("recurrence", "Recurrence pattern", ["", "n (%)"], rows)


def sites_table(cohort: pd.DataFrame, k: int | None) -> Table:
    """Patients with ≥1 lesion at each site, as % of their pattern (one patient counts once per site)."""
    rec = cohort[cohort["recurrence"]]
    groups = {"oligo": rec[rec["pattern"] == "oligo"], "poly": rec[rec["pattern"] == "poly"], "all": rec}
    sets = {g: [set(split_sites(s)) for s in rows["sites"]] for g, rows in groups.items()}
    seen = {s for ss in sets["all"] for s in ss}
    rows = []
    for site in ordered(seen, SITE_CATEGORIES):
        rows.append([site] + [fmt_n_pct(sum(site in ss for ss in sets[g]), len(sets[g]), k) for g in groups])
    return Table("sites", "Recurrence sites (patients with ≥1 lesion there)",
                 ["Site", "Oligo n (%)", "Poly n (%)", "All recurrent n (%)"], rows)


def _by_pattern(cohort: pd.DataFrame, column: str, order: Sequence[str], k: int | None) -> list[list[str]]:
    rec = cohort[cohort["recurrence"]]
    groups = {"oligo": rec[rec["pattern"] == "oligo"], "poly": rec[rec["pattern"] == "poly"], "all": rec}
    rows = []
    for cat in ordered(set(rec[column]), tuple(order)):
        rows.append([cat] + [fmt_n_pct(int((g[column] == cat).sum()), len(g), k) for g in groups.values()])
    return rows


def field_table(cohort: pd.DataFrame, k: int | None) -> Table:
    return Table("field", "Relation of recurrence to the irradiated field",
                 ["Field", "Oligo n (%)", "Poly n (%)", "All recurrent n (%)"],
                 _by_pattern(cohort, "field", FIELD_CATEGORIES, k))


def salvage_table(cohort: pd.DataFrame, k: int | None) -> Table:
    return Table("salvage", "Salvage treatment within 90 days of recurrence",
                 ["Salvage", "Oligo n (%)", "Poly n (%)", "All recurrent n (%)"],
                 _by_pattern(cohort, "salvage", SALVAGE_CATEGORIES, k))
