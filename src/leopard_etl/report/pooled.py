"""The pooled multi-centre report and the ``leopard-etl pool`` command's work (issue 16).

``write_pooled`` reads the sites' site-summary.json files, refuses incompatible ones (one line,
exit 2), writes the pooled results.json and report.html. The report is one offline file like the
single-site one (inline CSS, PNG figures as data URIs, no external reference): per-site attrition,
a forest plot of the sites' hazard ratios with the fixed- and random-effects estimates, pooled
Kaplan–Meier curves with numbers at risk, and the published LEOPARD figures beside the pooled ones.
Counts below the largest of the sites' thresholds are shown as ``<k``.
"""

from __future__ import annotations

import base64
import io
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2

from leopard_etl.analysis.disclosure import count, percent
from leopard_etl.analysis.patients import FIELD_CATEGORIES, SALVAGE_CATEGORIES, SITE_CATEGORIES, ordered
from leopard_etl.analysis.pooling import (
    Z95,
    Count,
    PooledCurve,
    load_summary,
    pool_summaries,
    pooled_curve,
    site_label,
    sum_counts,
)
from leopard_etl.analysis.replication import replication_table
from leopard_etl.analysis.results import ATTRITION_STEPS, write_results
from leopard_etl.errors import ConfigError
from leopard_etl.report.plots import PALETTE, risk_times, style_at_risk
from leopard_etl.report.tables import Table

__all__ = ["forest_figure", "pooled_km_figure", "render_pooled_report", "write_pooled"]

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("leopard_etl.report", "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def _png(fig: Any, title: str) -> str:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None, "Title": title})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def pooled_km_figure(curves: Sequence[PooledCurve], *, title: str, xlabel: str,
                     small_cell: int | None) -> str:
    """Pooled KM step curves (S at the end of each grid interval) with their 95% band and the pooled
    numbers at risk (rounded; interpolated inside a site's merged interval); base64 PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    longest = max((float(c.times[-1]) for c in curves if c.survival.size), default=12.0)
    times = risk_times(longest)
    fig = plt.figure(figsize=(9.6, 4.6 + 0.28 * len(curves)), dpi=100)
    grid = fig.add_gridspec(2, 1, height_ratios=[4.2, 0.3 + 0.28 * len(curves)], hspace=0.35)
    ax = fig.add_subplot(grid[0])
    table = fig.add_subplot(grid[1], sharex=ax)
    for i, curve in enumerate(curves):
        colour = PALETTE[i % len(PALETTE)]
        x = np.concatenate([[0.0], curve.times])
        y = np.concatenate([[1.0], curve.survival])
        label = f"{curve.group} (n={count(curve.n, small_cell)})"
        ax.step(x, y, where="post", color=colour, lw=1.8, label=label)
        if len(curves) <= 3:
            lo = np.concatenate([[1.0], curve.lower])
            hi = np.concatenate([[1.0], curve.upper])
            ax.fill_between(x, lo, hi, step="post", color=colour, alpha=0.12, lw=0)
        for t in times:
            n = round(curve.at_risk_at(t))
            table.text(t, len(curves) - 1 - i, str(count(n, small_cell)), ha="center", va="center",
                       fontsize=8.5, color=colour)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, times[-1] * 1.02 if times[-1] > 0 else 1.0)
    ax.set_ylabel("Survival probability")
    ax.set_xticks(times)
    ax.grid(alpha=0.25)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    style_at_risk(ax, table, xlabel, [c.group for c in curves], "Number at risk (pooled)")
    return _png(fig, title)


def forest_figure(sites: Sequence[Mapping[str, Any]], fixed: Mapping[str, Any],
                  random: Mapping[str, Any]) -> str | None:
    """Forest plot of the sites' HR poly vs oligo (box area ∝ fixed-effect weight) and the
    fixed- and random-effects diamonds, log scale; ``None`` when no site gave an estimate."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [s for s in sites if s.get("log_hr") is not None and s.get("se") is not None]
    if not rows:
        return None
    n = len(rows) + 2
    fig, ax = plt.subplots(figsize=(8.6, 1.2 + 0.38 * n), dpi=100)
    values = []
    for i, s in enumerate(rows):
        y = n - 1 - i
        b, se = float(s["log_hr"]), float(s["se"])
        lo, hi = math.exp(b - Z95 * se), math.exp(b + Z95 * se)
        values += [lo, hi]
        ax.plot([lo, hi], [y, y], color="#1d2530", lw=1.2)
        size = 4 + 10 * math.sqrt(float(s.get("weight_fixed_pct") or 0.0) / 100.0)
        ax.plot([math.exp(b)], [y], "s", color=PALETTE[0], ms=size)
    labels = [str(s["site"]) for s in rows]
    for y, (_name, est) in zip((1, 0), (("Fixed effect", fixed), ("Random effects", random)), strict=True):
        if est.get("hr") is None:
            continue
        hr, lo, hi = float(est["hr"]), float(est["lo"]), float(est["hi"])
        values += [lo, hi]
        ax.fill([lo, hr, hi, hr], [y, y + 0.25, y, y - 0.25], color=PALETTE[1] if y else PALETTE[2])
    labels += ["Fixed effect", "Random effects (DL)"]
    ax.axvline(1.0, color="#5a6470", lw=1, ls="--")
    ax.set_xscale("log")
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    lo_all, hi_all = min([*values, 1.0]), max([*values, 1.0])
    ax.set_xlim(lo_all / 1.2, hi_all * 1.2)
    ticks = [t for t in (0.1, 0.2, 0.5, 1, 2, 4, 8, 16, 32) if lo_all / 1.2 <= t <= hi_all * 1.2]
    ax.set_xticks(ticks)
    ax.set_yticks(range(n))
    ax.set_yticklabels(list(reversed(labels)))
    ax.set_ylim(-0.7, n - 0.3)
    ax.set_xlabel("Hazard ratio, poly vs oligo (OS), 95% CI, log scale")
    ax.grid(axis="x", alpha=0.25)
    return _png(fig, "Forest plot")


def _fmt_count(c: Count, k: int) -> str:
    if c.exact:
        return str(count(c.lo, k))
    return f"{c.lo}–{c.hi}"


def _fmt_n_pct(num: Count, den: Count, k: int) -> str:
    shown = _fmt_count(num, k)
    if num.exact and den.exact and num.lo >= k:
        pct = percent(num.lo, den.lo)
        if pct is not None:
            return f"{shown} ({pct:.1f}%)"
    return shown


def _category_table(key: str, title: str, label: str, summaries: Sequence[Mapping[str, Any]], what: str,
                    canonical: tuple[str, ...], k: int) -> Table:
    cats = {c for s in summaries for g in ("oligo", "poly", "all") for c in (s["counts"][what].get(g) or {})}
    dens = {"oligo": sum_counts(summaries, ("counts", "recurrence", "oligo")),
            "poly": sum_counts(summaries, ("counts", "recurrence", "poly")),
            "all": sum_counts(summaries, ("counts", "recurrence", "n"))}
    rows = []
    for cat in ordered(cats, canonical):
        rows.append([cat] + [_fmt_n_pct(sum_counts(summaries, ("counts", what, g, cat)), dens[g], k)
                             for g in ("oligo", "poly", "all")])
    return Table(key, title, [label, "Oligo n (%)", "Poly n (%)", "All recurrent n (%)"], rows)


def _median_text(curve: PooledCurve) -> str:
    if not curve.sites_used:
        return "no site shared this table"
    med, lo, hi = curve.median()

    def m(v: float | None) -> str:
        return "not reached" if v is None else f"{v:.1f}"

    if med is None:
        return "not reached"
    return f"{med:.1f} ({m(lo)}–{m(hi)})"


def _km_section(key: str, title: str, curves: list[PooledCurve], k: int, xlabel: str) -> dict[str, Any]:
    shown = [c for c in curves if c.sites_used]
    def sites(c: PooledCurve) -> str:
        notes = [f"{len(c.sites_ended)} stop early"] if c.sites_ended else []
        notes += [f"{len(c.sites_withheld)} withheld"] if c.sites_withheld else []
        return f"{len(c.sites_used)}" + (f" ({', '.join(notes)})" if notes else "")

    rows = [[c.group, str(count(c.n, k)), str(count(round(c.n_events), k)), _median_text(c), sites(c)]
            for c in curves]
    figure = pooled_km_figure(shown, title=title, xlabel=xlabel, small_cell=k) if shown else None
    notes = ["Deaths within the follow-up the sites shared. A site's table stops early where its remaining"
             " censored patients are fewer than its threshold; a group of fewer patients is withheld."]
    table = Table(key, title, ["Group", "n", "Deaths", "Median months (95% CI)", "Sites"], rows, notes)
    return {"key": key, "title": title, "figure": figure, "table": table}


def _salvage_sections(summaries: Sequence[Mapping[str, Any]], endpoint: str, k: int,
                      what: str, xlabel: str) -> list[dict[str, Any]]:
    sections = []
    names = {g for s in summaries for g in ((s.get("survival") or {}).get(endpoint) or {})}
    for pattern in ("oligo", "poly"):
        mine = {n[len(pattern) + 1:] for n in names if n.startswith(pattern + "_")}
        salvages = [sv for sv in ordered(mine, SALVAGE_CATEGORIES) if sv in mine]
        if not salvages:
            continue
        curves = []
        for sv in salvages:
            c = pooled_curve(summaries, endpoint, f"{pattern}_{sv}")
            c.group = sv
            curves.append(c)
        sections.append(_km_section(f"{endpoint}_{pattern}", f"{what} by salvage — {pattern}", curves, k,
                                    xlabel))
    return sections


def _p(value: float | None) -> str:
    if value is None:
        return "not estimable"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _hr(hr: Mapping[str, Any]) -> str:
    if hr.get("hr") is None:
        return "not estimable"
    return f"{hr['hr']:.2f} ({hr['lo']:.2f}–{hr['hi']:.2f})"


def _context(pooled: Mapping[str, Any], summaries: Sequence[Mapping[str, Any]], title: str) -> dict[str, Any]:
    pooling = pooled["pooling"]
    k = max(int(x) for x in pooling["small_cell_thresholds"])
    sites = pooled["sites"]
    site_rows = []
    for s in sites:
        site_rows.append([
            str(s["site"]), str(s["content_sha256"])[:12], str(s["small_cell_threshold"]),
            str(s["n_screened"]), str(s["n_cohort"]), _hr(s["hr_poly_vs_oligo"]) if s["log_hr"] is not None
            else f"not shared ({s.get('cox_note') or 'no estimate'})",
            "–" if s["weight_fixed_pct"] is None else f"{s['weight_fixed_pct']:.1f}%",
            "–" if s["weight_random_pct"] is None else f"{s['weight_random_pct']:.1f}%",
        ])
    site_table = Table("sites", "Sites", ["Site", "Summary SHA-256", "k", "Screened", "Cohort",
                                          "HR poly vs oligo (95% CI)", "Weight FE", "Weight RE"], site_rows)
    attr_rows = []
    for i, step in enumerate(ATTRITION_STEPS):
        cells = []
        for s in summaries:
            item = next((x for x in s["attrition"] if x.get("step") == step), {"n": 0})
            cells.append(str(item["n"]))
        bound = pooling["bounds"].get(f"attrition.{i}.n")
        pooled_n = pooled["attrition"][i]["n"]
        cells.append(f"{bound[0]}–{bound[1]}" if bound else str(count(int(pooled_n), k)))
        attr_rows.append([step, *cells])
    attrition = Table("attrition", "Cohort attrition by site",
                      ["Step"] + [site_label(s) for s in summaries] + ["Pooled"], attr_rows)
    rec_n = sum_counts(summaries, ("counts", "recurrence", "n"))
    cohort_n = sum_counts(summaries, ("counts", "n_cohort"))
    recurrence = Table("recurrence", "Recurrence pattern (pooled)", ["", "n (%)"], [
        ["Recurrence (of cohort)", _fmt_n_pct(rec_n, cohort_n, k)],
        *[[f"{p} (of recurrences)", _fmt_n_pct(sum_counts(summaries, ("counts", "recurrence", p)), rec_n, k)]
          for p in ("oligo", "poly", "unclassified")],
    ])
    tables = [
        attrition,
        recurrence,
        _category_table("sites-table", "Recurrence sites (patients with ≥1 lesion there, pooled)", "Site",
                        summaries, "sites", SITE_CATEGORIES, k),
        _category_table("field", "Relation of recurrence to the irradiated field (pooled)", "Field",
                        summaries, "field", FIELD_CATEGORIES, k),
        _category_table("salvage", "Salvage treatment within 90 days of recurrence (pooled)", "Salvage",
                        summaries, "salvage", SALVAGE_CATEGORIES, k),
    ]
    os_curves = [pooled_curve(summaries, "os", g) for g in ("oligo", "poly", "none")]
    os_section = _km_section("os", "Overall survival by recurrence pattern (pooled)", os_curves, k,
                             "Months since CRT start")
    lr = pooling["logrank_oligo_vs_poly"]
    rand = pooled["os"]["hr_poly_vs_oligo_random"]
    poisson = pooling["poisson_hr_poly_vs_oligo"]
    follow = pooled.get("follow_up_median_months")
    tests = [
        ["Median follow-up (reverse Kaplan–Meier, pooled)",
         "not reached" if follow is None else f"{follow:.1f} months"],
        ["Log-rank oligo vs poly, stratified by site",
         "not estimable" if lr["chi2"] is None else f"χ² = {lr['chi2']:.2f} (1 df), p {_p(lr['p'])}"],
        ["Cox HR poly vs oligo, fixed effect (inverse variance)", _hr(pooled["os"]["hr_poly_vs_oligo"])],
        ["Cox HR poly vs oligo, random effects (DerSimonian–Laird)",
         _hr(rand) + ("" if rand.get("i2") is None
                      else f"; I² = {rand['i2']:.0f}%, τ² = {rand['tau2']:.4f}")],
        ["Rate ratio poly vs oligo, piecewise-exponential model stratified by site (check)", _hr(poisson)],
    ]
    replication = replication_table(pooled)
    return {
        "title": title,
        "small_cell": k,
        "n_sites": len(summaries),
        "spec_version": pooling["spec_version"],
        "grid": pooling["grid_months"],
        "site_table": site_table,
        "forest": forest_figure(sites, pooled["os"]["hr_poly_vs_oligo"], rand),
        "tables": tables,
        "os": os_section,
        "tests": tests,
        "prs": _salvage_sections(summaries, "prs", k, "Post-recurrence survival", "Months since recurrence"),
        "os_salvage": _salvage_sections(summaries, "os_by_salvage", k, "Overall survival",
                                        "Months since CRT start"),
        "replication": replication,
        "warnings": list(pooled.get("warnings") or []),
    }


def render_pooled_report(pooled: Mapping[str, Any], summaries: Sequence[Mapping[str, Any]], out_path: Path,
                         *, title: str = "LEOPARD pooled multi-centre report") -> Path:
    """Write the pooled report.html (atomically) from :func:`pool_summaries`' result and the summaries."""
    html = _ENV.get_template("pooled.html.j2").render(**_context(pooled, summaries, title))
    tmp = out_path.with_name(out_path.name + ".tmp")
    try:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(html, encoding="utf-8")
        os.replace(tmp, out_path)
    except OSError as exc:
        raise ConfigError(f"cannot write {out_path}: {exc.strerror or exc}",
                          fix="choose a writable output folder with --out") from None
    return out_path


def write_pooled(paths: Sequence[Path], out: Path) -> dict[str, Any]:
    """``leopard-etl pool``: read and check the summaries, write ``out``/results.json and report.html."""
    summaries = [load_summary(Path(p)) for p in paths]
    pooled = pool_summaries(summaries)
    out = Path(out)
    write_results(dict(pooled), out / "results.json")
    render_pooled_report(pooled, summaries, out / "report.html")
    hr = pooled["os"]["hr_poly_vs_oligo"]
    medians = pooled["os"]["median_months"]
    return {
        "sites": len(summaries),
        "cohort": pooled["n_cohort"],
        "median OS oligo / poly": f"{medians['oligo']} / {medians['poly']}",
        "HR poly vs oligo (FE)": hr["hr"],
        "out": str(out),
    }
