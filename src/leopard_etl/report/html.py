"""Render report.html: one self-contained offline file (inline CSS, PNG figures as data URIs).

The report is what a study coordinator opens on a locked-down hospital workstation, so it loads
nothing from the network — no CDN, no web fonts, no external images. Headline statistics (OS
medians, log-rank, Cox, follow-up) are taken from ``results`` so the report and results.json can
never disagree; tables and curves are re-aggregated from patients.csv with the small-cell rule.
Jinja2 autoescaping is on: patient-derived strings cannot inject markup.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from leopard_etl.analysis.disclosure import check_small_cell
from leopard_etl.analysis.patients import SALVAGE_CATEGORIES, cohort_frame, ordered
from leopard_etl.analysis.replication import replication_table
from leopard_etl.analysis.results import os_sample, prs_sample
from leopard_etl.analysis.survival import SurvivalSample, km_median
from leopard_etl.errors import ConfigError
from leopard_etl.report.plots import km_figure
from leopard_etl.report.tables import (
    Table,
    attrition_flow,
    baseline_table,
    field_table,
    median_row,
    recurrence_table,
    salvage_table,
    sites_table,
)

__all__ = ["render_report"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("leopard_etl.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_KM_HEADER = ["Group", "n", "Deaths", "Median months (95% CI)"]


def _p(value: float | None) -> str:
    if value is None:
        return "not estimable"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _hr(hr: Mapping[str, float | None]) -> str:
    if hr.get("hr") is None:
        return "not estimable"
    lo, hi = hr.get("lo"), hr.get("hi")
    ci = f"{lo:.2f}–{hi:.2f}" if lo is not None and hi is not None else "CI not estimable"
    return f"{hr['hr']:.2f} ({ci})"


def _km_section(key: str, title: str, samples: list[SurvivalSample], k: int | None,
                xlabel: str) -> dict[str, Any]:
    """A KM figure and its medians table. The report is shareable: a group of fewer than ``k``
    patients is not drawn (no curve, no at-risk row); the table says so under it."""
    from leopard_etl.report.plots import drawn_groups, not_drawn_reason

    rows = [median_row(s.group, km_median(s), k) for s in samples]
    drawn, hidden = drawn_groups(samples, k)
    figure = None
    if any(s.n for s in drawn):
        figure = km_figure(samples, title=title, xlabel=xlabel, small_cell=k)
    notes = [f"{s.group}: {not_drawn_reason(s, k)}" + (" (small-cell rule)" if s.n else "")
             for s in hidden] if any(s.n for s in samples) else []
    if figure is None and any(s.n for s in samples):
        empty = f"No curve drawn: every group has fewer than {k} patients (small-cell rule)."
    else:
        empty = "No patients in this group."
    return {"key": key, "title": title, "figure": figure, "table": Table(key, title, _KM_HEADER, rows, notes),
            "drawn": [s.group for s in drawn] if figure else [], "hidden": [s.group for s in hidden],
            "small_cell": k, "empty": empty}


def _prs_sections(cohort: pd.DataFrame, k: int | None) -> list[dict[str, Any]]:
    sections = []
    rec = cohort[cohort["recurrence"]]
    for pattern in ("oligo", "poly"):
        present = set(rec.loc[rec["pattern"] == pattern, "salvage"])
        salvages = [s for s in ordered(present, SALVAGE_CATEGORIES) if s in present]
        samples = [prs_sample(cohort, pattern, s) for s in salvages]
        samples = [SurvivalSample(name, s.durations, s.events)
                   for name, s in zip(salvages, samples, strict=True)]
        sections.append(_km_section(f"prs_{pattern}", f"Post-recurrence survival by salvage — {pattern}",
                                    samples, k, "Months since recurrence"))
    return sections


#: rows of the unmatched-codes table the report shows (the whole list is unmatched_codes.csv)
UNMATCHED_SHOWN = 25


def _input_section(
    results: Mapping[str, Any], unmatched: pd.DataFrame | None, k: int | None
) -> dict[str, Any]:
    """*(spec v2 §5)* What the input held: record counts, drug match routes and the codes the mappings
    miss — so a site sees at once what its data uses that the mappings do not know. Only codes
    seen in at least ``k`` patients are shown (the report may leave the site)."""
    source = results.get("source") or {}
    routes = results.get("drug_match_routes") or {}
    rows = []
    if unmatched is not None and len(unmatched):
        shown = unmatched[unmatched["n_patients"].astype(int) >= (k or 0)].head(UNMATCHED_SHOWN)
        rows = [
            [r.record_type, r.system, r.code, r.display, int(str(r.n_records)), int(str(r.n_patients))]
            for r in shown.itertuples(index=False)
        ]
    return {
        "source": [[key, source.get(key, 0)] for key in ("read", "in_scope", "quarantined", "out_of_scope")],
        "routes": [[key, routes.get(key, 0)] for key in ("code", "product", "ingredient", "name")],
        "platinum_unverified": results.get("platinum_unverified_n", 0),
        "unmatched": rows,
        "unmatched_total": 0 if unmatched is None else len(unmatched),
    }


def _context(results: Mapping[str, Any], patients_csv: pd.DataFrame,
             tables: Mapping[str, pd.DataFrame] | None, k: int | None, title: str,
             run_info: Mapping[str, str] | None, unmatched: pd.DataFrame | None = None) -> dict[str, Any]:
    try:
        attrition = results["attrition"]
        os_res = results["os"]
    except (KeyError, TypeError):
        raise ConfigError("results lack 'attrition' / 'os'",
                          fix="build them with compute_results()") from None
    cohort = cohort_frame(patients_csv)
    in_cohort = patients_csv["in_cohort"].fillna("").astype(str).str.strip().str.lower() == "true"
    baseline = baseline_table(patients_csv.loc[in_cohort].fillna("").astype(str), tables, k)
    groups = ["oligo", "poly", "none"]
    if (cohort["pattern"] == "unclassified").any():
        groups.append("unclassified")
    os_section = _km_section("os", "Overall survival by recurrence pattern",
                             [os_sample(cohort, g) for g in groups], k, "Months since CRT start")
    follow_up = results.get("follow_up_median_months")
    return {
        "title": title,
        "small_cell": k,
        "flow": attrition_flow(attrition, patients_csv, k),
        "tables": [baseline, recurrence_table(cohort, k), sites_table(cohort, k), field_table(cohort, k),
                   salvage_table(cohort, k)],
        "os": os_section,
        "tests": [
            ["Median follow-up (reverse Kaplan–Meier)",
             "not reached" if follow_up is None else f"{follow_up:.1f} months"],
            ["Log-rank p, oligo vs poly", _p(os_res.get("logrank_p_oligo_vs_poly"))],
            ["Cox hazard ratio, poly vs oligo (95% CI)", _hr(os_res.get("hr_poly_vs_oligo") or {})],
        ],
        "prs": _prs_sections(cohort, k),
        "input": _input_section(results, unmatched, k),
        "replication": replication_table(results, k),
        "empty": len(patients_csv) == 0 or not in_cohort.any(),
        "warnings": list(results.get("warnings") or []) + baseline.notes,
        "run_info": sorted((str(a), str(b)) for a, b in (run_info or {}).items()),
    }


def render_report(
    results: dict[str, Any],
    patients_csv: pd.DataFrame,
    out_path: Path,
    *,
    tables: Mapping[str, pd.DataFrame] | None = None,
    small_cell: int = 5,
    title: str = "LEOPARD cohort report",
    run_info: Mapping[str, str] | None = None,
    unmatched: pd.DataFrame | None = None,
) -> Path:
    """Write the offline HTML report to ``out_path`` (atomically) and return the path.

    ``results`` is the dict of :func:`~leopard_etl.analysis.compute_results` (exact or suppressed);
    ``tables`` the canonical tables by name (``patient`` for age and sex, ``durvalumab_course``);
    ``small_cell`` hides counts below it (``<5``) in every table, legend and at-risk row.
    """
    k = check_small_cell(small_cell)
    html = _ENV.get_template("report.html.j2").render(
        **_context(results, patients_csv, tables, k, title, run_info, unmatched)
    )
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, out_path)
    except OSError as exc:
        raise ConfigError(f"cannot write {out_path}: {exc.strerror or exc}",
                          fix="choose a writable output folder with --out") from None
    return out_path
