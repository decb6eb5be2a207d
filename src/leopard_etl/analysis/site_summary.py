"""site-summary.json: what one centre shares so that several centres can be pooled (issue 16).

A multi-centre study cannot pool ``results.json`` (medians do not add up) and must not move
``patients.csv``. Every site therefore writes a *summary* made only of things that add up across
sites: counts, survival **event tables** on a common time grid, the site's own log-rank terms and
Cox log hazard ratio with its standard error. No patient id, no date. docs/pooling.md explains the
design, docs/site-summary.schema.json the layout.

Small cells follow the site's threshold ``k`` (``small_cell_threshold``):

* **counts** use the convention of :mod:`.disclosure`: a count below ``k`` (zero included) is the
  string ``"<k"``;
* **event tables** stay exact — pooling needs exact tables — so instead of hiding cells, grid
  intervals are merged (rule ``merge-forward-v1``, :func:`merge_group`). Every number a table shows
  (at risk at a block start, censored in a block, events in an event sub-interval) is exact and
  0 or ≥ k; a group of fewer than ``k`` patients is withheld. Mean times of the events of a
  sub-interval and of the censored of a block (means of ≥ k patients, like the report's medians)
  let the pooled curve place them inside a merged interval.
* **model statistics** (the log-rank terms O − E and V on the exact grid table, the Cox log-HR and
  SE) are shared when both groups have at least ``k`` patients and ``k`` deaths.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from leopard_etl.analysis.disclosure import check_small_cell, count
from leopard_etl.analysis.patients import (
    FIELD_CATEGORIES,
    PATTERNS,
    SALVAGE_CATEGORIES,
    SITE_CATEGORIES,
    cohort_frame,
    ordered,
    split_sites,
)
from leopard_etl.analysis.results import check_attrition, prs_groups
from leopard_etl.errors import ConfigError

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "MERGE_RULE",
    "SCHEMA_VERSION",
    "GroupTable",
    "content_sha256",
    "grid_hundredths",
    "logrank_contribution",
    "merge_group",
    "site_summary",
    "write_site_summary",
]

#: file type marker; the pool tool refuses any other JSON
FORMAT = "leopard-site-summary"
#: how the numbers are made (grid discretisation, merge rule, Cox settings); bumps change meaning
FORMAT_VERSION = 1
#: layout of the file, docs/site-summary.schema.json; bumps change keys
SCHEMA_VERSION = 1
MERGE_RULE = "merge-forward-v1"
MERGE_RULE_TEXT = (
    "grid intervals merge into blocks until a block's events and censored are each 0 or >= k and the number"
    " at risk at the next block's start is 0 or >= k; a last block with events below k merges backwards;"
    " while a group's remaining censored are fewer than k (not 0) its table stops at the start of the block"
    " that would hold them (at_risk_stop patients still at risk there, their follow-up not shared); inside a"
    " block, event sub-intervals merge forward until their events are 0 or >= k (the last one backwards);"
    " a group of fewer than k patients is withheld; mean times are of >= k patients"
)
COUNT_RULE_TEXT = "counts below k (zero included) are shown as '<k'; no percentage is given"
#: Cox settings of leopard_etl.analysis.survival (Efron ties, precision 1e-10)
_COX_FIT = {"precision": 1e-10}
_FIX_GRID = "use a grid step in months that is a positive multiple of 0.01, e.g. 1 (the default)"


def grid_hundredths(grid_months: float) -> int:
    """The grid step in hundredths of a month (patients.csv months have two decimals)."""
    if isinstance(grid_months, bool) or not isinstance(grid_months, int | float):
        raise ConfigError(f"grid step must be a number of months, got {grid_months!r}", fix=_FIX_GRID)
    step = float(grid_months)
    g = round(step * 100) if math.isfinite(step) else 0
    if g < 1 or abs(g - step * 100) > 1e-6:
        raise ConfigError(f"grid step {grid_months!r} months is not a positive multiple of 0.01",
                          fix=_FIX_GRID)
    return g


def _hundredths(months: pd.Series | np.ndarray) -> np.ndarray:
    return np.rint(np.asarray(months, dtype=float) * 100).astype(np.int64)


@dataclass(frozen=True)
class _Fine:
    """One group's exact table on the grid (intervals 0..J-1); exposure and time sums in hundredths
    of a month."""

    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    exposure: np.ndarray
    event_time: np.ndarray
    censored_time: np.ndarray

    @classmethod
    def of(cls, t_c: np.ndarray, dead: np.ndarray, g: int, n_intervals: int | None = None) -> _Fine:
        idx = t_c // g
        if n_intervals is None:
            n_intervals = int(idx.max()) + 1 if idx.size else 0
        d = np.bincount(idx[dead], minlength=n_intervals).astype(np.int64)
        c = np.bincount(idx[~dead], minlength=n_intervals).astype(np.int64)
        left = np.concatenate([[0], np.cumsum(d + c)[:-1]]).astype(np.int64)
        n = t_c.size - left
        partial = np.zeros(n_intervals, dtype=np.int64)
        np.add.at(partial, idx, t_c - idx * g)
        exposure = g * (n - d - c) + partial
        td = np.zeros(n_intervals, dtype=np.int64)
        np.add.at(td, idx[dead], t_c[dead])
        tc = np.zeros(n_intervals, dtype=np.int64)
        np.add.at(tc, idx[~dead], t_c[~dead])
        return cls(n.astype(np.int64), d, c, exposure, td, tc)


@dataclass
class GroupTable:
    """A group's shareable table (rule ``merge-forward-v1``).

    ``blocks`` are the merged intervals ``[start, next start)``, the last one ending at ``stop``:
    number at risk at the start, censored and their mean time, exposure (hundredths of a month) —
    and inside each block its event sub-intervals ``(start, events, mean time)``. ``at_risk_stop``
    patients are still at risk at ``stop``, their follow-up beyond is not shared (0: the table
    follows every patient to the end).
    """

    n: int
    blocks: list[dict[str, Any]]
    stop: int
    at_risk_stop: int


def _ok(x: int, k: int) -> bool:
    return x == 0 or x >= k


def merge_group(fine: _Fine, k: int) -> GroupTable | None:
    """Merge one group's grid table by rule ``merge-forward-v1``; ``None`` when the group has < k patients.

    Blocks: consecutive intervals join until the block's censored and events are each 0 or >= k and
    the number at risk at the next start is 0 or >= k. While a group's remaining censored are
    0 < C < k they can never be shown: its follow-up ends at the start of the block that would hold
    the first of them. A last block with events below k merges backwards. Inside a block, event
    sub-intervals join forward until their events are 0 or >= k (the last one backwards): events
    keep the grid's resolution where censoring forces a wide block, and no number at risk inside a
    block is shown, so no censored count below k can be derived.
    """
    n_total = int(fine.at_risk[0]) if fine.at_risk.size else 0
    if n_total < k:
        return None
    n_int = fine.at_risk.size
    cd = np.concatenate([[0], np.cumsum(fine.events)])
    cc = np.concatenate([[0], np.cumsum(fine.censored)])
    ctd = np.concatenate([[0], np.cumsum(fine.event_time)])
    ctc = np.concatenate([[0], np.cumsum(fine.censored_time)])

    def mean(csum: np.ndarray, cnt: np.ndarray, a: int, b: int) -> float | None:
        n = int(cnt[b] - cnt[a])
        return None if n == 0 else round(float(csum[b] - csum[a]) / n / 100, 2)

    def n_at(j: int) -> int:
        return int(fine.at_risk[j]) if j < n_int else 0

    spans: list[list[int]] = []
    end: int | None = None
    s = 0
    while s < n_int:
        rest = int(cc[n_int] - cc[s])
        j = s + 1
        while True:
            if 0 < rest < k and cc[j] - cc[s] > 0:
                end = s
                break
            if j >= n_int:
                break
            if _ok(int(cd[j] - cd[s]), k) and _ok(int(cc[j] - cc[s]), k) and _ok(n_at(j), k):
                break
            j += 1
        if end is not None:
            break
        spans.append([s, j])
        s = j
    if end is None:
        while spans and not _ok(int(cd[spans[-1][1]] - cd[spans[-1][0]]), k):
            if len(spans) > 1:
                spans[-2][1] = spans[-1][1]
                spans.pop()
            else:
                end = spans.pop()[0]
    blocks = []
    for a, b in spans:
        subs: list[list[int]] = []  # event sub-intervals [u, v)
        u = a
        while u < b:
            v = u + 1
            while v < b and not _ok(int(cd[v] - cd[u]), k):
                v += 1
            subs.append([u, v])
            u = v
        while len(subs) > 1 and not _ok(int(cd[subs[-1][1]] - cd[subs[-1][0]]), k):
            subs[-2][1] = subs[-1][1]
            subs.pop()
        blocks.append({
            "start": a,
            "at_risk": n_at(a),
            "censored": int(cc[b] - cc[a]),
            "censored_mean": mean(ctc, cc, a, b),
            "exposure": int(fine.exposure[a:b].sum()),
            "events": [[u, int(cd[v] - cd[u]), mean(ctd, cd, u, v)] for u, v in subs],
        })
    stop = n_int if end is None else end
    return GroupTable(n_total, blocks, stop, n_at(stop))


def _table_json(table: GroupTable | None, n: int, k: int, *, means: bool = True) -> dict[str, Any]:
    if table is None:
        return {"n": count(n, k), "withheld": True}
    blocks = []
    for b in table.blocks:
        block = {**b, "exposure": round(b["exposure"] / 100, 2)}
        if not means:
            block["censored_mean"] = None
            block["events"] = [[u, d, None] for u, d, _ in b["events"]]
        blocks.append(block)
    return {"n": table.n, "blocks": blocks, "stop": table.stop, "at_risk_stop": table.at_risk_stop}


def _sample(rows: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    rows = rows[rows[column].notna()]
    return _hundredths(rows[column]), rows["death"].to_numpy(dtype=bool)


def _tables(samples: Mapping[str, tuple[np.ndarray, np.ndarray]], g: int,
            k: int) -> dict[str, GroupTable | None]:
    return {name: merge_group(_Fine.of(t, e, g), k) for name, (t, e) in samples.items()}


def _survival(cohort: pd.DataFrame, g: int, k: int) -> dict[str, Any]:
    """OS by pattern (four disjoint groups), PRS and OS by pattern × salvage.

    No published table is the union of others except OS by pattern over its OS-by-salvage groups;
    where one of those subgroups is withheld, the pattern's subgroup tables go without mean times,
    so that subtracting them from the pattern's table cannot give a withheld patient's time.
    """
    os_samples = {p: _sample(cohort[cohort["pattern"] == p], "os") for p in PATTERNS}
    os_tables = _tables(os_samples, g, k)
    out: dict[str, Any] = {
        "os": {p: _table_json(os_tables[p], int(os_samples[p][0].size), k) for p in PATTERNS},
        "prs": {},
        "os_by_salvage": {},
    }
    rec = cohort[cohort["recurrence"]]
    groups = prs_groups(cohort)
    prs_samples, os_salvage_samples = {}, {}
    for pattern, salvage in groups:
        rows = rec[(rec["pattern"] == pattern) & (rec["salvage"] == salvage)]
        prs_samples[f"{pattern}_{salvage}"] = _sample(rows, "prs")
        os_salvage_samples[f"{pattern}_{salvage}"] = _sample(rows, "os")
    prs_tables = _tables(prs_samples, g, k)
    salvage_tables = _tables(os_salvage_samples, g, k)
    partial = {p for p, sv in groups if salvage_tables[f"{p}_{sv}"] is None}
    for pattern, salvage in groups:
        name = f"{pattern}_{salvage}"
        out["prs"][name] = _table_json(prs_tables[name], int(prs_samples[name][0].size), k)
        out["os_by_salvage"][name] = _table_json(salvage_tables[name], int(os_salvage_samples[name][0].size),
                                                 k, means=pattern not in partial)
    return out


def _shared_model(n: Mapping[str, int], events: Mapping[str, int], k: int) -> str | None:
    small = [grp for grp in n if n[grp] < k or events[grp] < k]
    if small:
        return f"not shared: fewer than {k} patients or deaths in group(s) {', '.join(small)}"
    return None


def logrank_contribution(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray],
                         g: int) -> tuple[float, float]:
    """This site's log-rank terms for ``b`` vs ``a`` on the exact grid table: (Σ(O_b − E_b), ΣV).

    Per grid interval: ``E_b = D·n_b/N``, ``V = D·(n_a/N)·(n_b/N)·(N−D)/(N−1)`` (R ``survdiff``).
    """
    n_int = max((int(t.max()) // g + 1 for t, _ in (a, b) if t.size), default=0)
    fa, fb = _Fine.of(*a, g, n_int), _Fine.of(*b, g, n_int)
    na, nb = fa.at_risk.astype(float), fb.at_risk.astype(float)
    d_tot = (fa.events + fb.events).astype(float)
    n_tot = na + nb
    use = (n_tot > 0) & (d_tot > 0)
    oe = float((fb.events[use] - d_tot[use] * nb[use] / n_tot[use]).sum())
    many = use & (n_tot > 1)
    v = float((d_tot[many] * (na[many] / n_tot[many]) * (nb[many] / n_tot[many])
               * (n_tot[many] - d_tot[many]) / (n_tot[many] - 1)).sum())
    return oe, v


def _logrank(cohort: pd.DataFrame, g: int, k: int) -> dict[str, Any]:
    oligo = _sample(cohort[cohort["pattern"] == "oligo"], "os")
    poly = _sample(cohort[cohort["pattern"] == "poly"], "os")
    n = {"oligo": int(oligo[0].size), "poly": int(poly[0].size)}
    events = {"oligo": int(oligo[1].sum()), "poly": int(poly[1].sum())}
    out: dict[str, Any] = {"endpoint": "os", "observed_minus_expected_poly": None, "variance": None,
                           "note": _shared_model(n, events, k)}
    if out["note"] is None:
        out["observed_minus_expected_poly"], out["variance"] = logrank_contribution(oligo, poly, g)
    return out


def _cox(cohort: pd.DataFrame, k: int) -> dict[str, Any]:
    """The site's Cox log-HR poly vs oligo (OS) and its SE, as leopard_etl.analysis.survival fits it."""
    from lifelines import CoxPHFitter
    from lifelines.exceptions import ConvergenceError, ConvergenceWarning

    rows = cohort[cohort["pattern"].isin(["oligo", "poly"]) & cohort["os"].notna()]
    poly = (rows["pattern"] == "poly").to_numpy()
    dead = rows["death"].to_numpy(dtype=bool)
    n = {"oligo": int((~poly).sum()), "poly": int(poly.sum())}
    events = {"oligo": int((dead & ~poly).sum()), "poly": int((dead & poly).sum())}
    out: dict[str, Any] = {
        "model": "Cox proportional hazards, OS ~ poly (vs oligo), Efron ties (lifelines CoxPHFitter)",
        "log_hr": None,
        "se": None,
        "n": {g: count(v, k) for g, v in n.items()},
        "events": {g: count(v, k) for g, v in events.items()},
        "note": None,
    }
    out["note"] = _shared_model(n, events, k)
    if out["note"] is not None:
        return out
    frame = pd.DataFrame({"T": rows["os"].to_numpy(dtype=float), "E": dead.astype(int),
                          "poly": poly.astype(float)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", ConvergenceWarning)
        try:
            cph = CoxPHFitter().fit(frame, duration_col="T", event_col="E", fit_options=_COX_FIT)
        except (ConvergenceError, ConvergenceWarning, np.linalg.LinAlgError) as exc:
            out["note"] = f"the model did not converge ({type(exc).__name__})"
            return out
    coef, se = float(cph.summary.loc["poly", "coef"]), float(cph.summary.loc["poly", "se(coef)"])
    if not (math.isfinite(coef) and math.isfinite(se) and se > 0):
        out["note"] = "the model gave no finite estimate"
        return out
    out["log_hr"], out["se"] = round(coef, 8), round(se, 8)
    return out


def _by(rows: pd.DataFrame, column: str, canonical: tuple[str, ...], present: set[str],
        k: int) -> dict[str, int | str]:
    return {c: count(int((rows[column] == c).sum()), k) for c in ordered(present, canonical)}


def _counts(patients_csv: pd.DataFrame, cohort: pd.DataFrame, k: int,
            facts: Mapping[str, Any]) -> dict[str, Any]:
    rec = cohort[cohort["recurrence"]]
    groups = {"oligo": rec[rec["pattern"] == "oligo"], "poly": rec[rec["pattern"] == "poly"],
              "unclassified": rec[rec["pattern"] == "unclassified"], "all": rec}
    all_sites = {s for value in rec["sites"] for s in split_sites(value)}
    sites: dict[str, dict[str, int | str]] = {}
    for name, rows in groups.items():
        seen = [set(split_sites(v)) for v in rows["sites"]]
        sites[name] = {s: count(sum(s in x for x in seen), k) for s in ordered(all_sites, SITE_CATEGORIES)}
    fields, salvages = set(rec["field"]), set(rec["salvage"])
    in_cohort = patients_csv["in_cohort"].fillna("").astype(str).str.strip().str.lower() == "true"
    base = patients_csv.loc[in_cohort].fillna("").astype(str)
    stage = base["stage"].str.strip().replace("", "unknown")
    crt = base["crt_type"].str.strip().replace("", "unknown")
    return {
        "n_screened": count(len(patients_csv), k),
        "n_cohort": count(len(cohort), k),
        "recurrence": {
            "n": count(len(rec), k),
            **{p: count(len(groups[p]), k) for p in ("oligo", "poly", "unclassified")},
        },
        "sites": sites,
        "field": {name: _by(rows, "field", FIELD_CATEGORIES, fields, k) for name, rows in groups.items()},
        "salvage": {name: _by(rows, "salvage", SALVAGE_CATEGORIES, salvages, k)
                    for name, rows in groups.items()},
        "stage": {s: count(int((stage == s).sum()), k)
                  for s in ordered(set(stage), ("IIIA", "IIIB", "IIIC", "III"))},
        "crt_type": {c: count(int((crt == c).sum()), k)
                     for c in ordered(set(crt), ("concurrent", "sequential"))},
        "platinum_unverified_n": count(int(facts.get("platinum_unverified_n", 0) or 0), k),
    }


def _canonical(summary: Mapping[str, Any]) -> bytes:
    body = {key: value for key, value in summary.items() if key not in ("site", "content_sha256")}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.encode("ascii")


def content_sha256(summary: Mapping[str, Any]) -> str:
    """SHA-256 of the summary's content (everything but ``site`` and the hash itself), canonical JSON."""
    return hashlib.sha256(_canonical(summary)).hexdigest()


def _warnings(patients_csv: pd.DataFrame, cohort: pd.DataFrame, k: int,
              steps: Sequence[tuple[str, int]]) -> list[str]:
    notes = []
    for column, label in (("os", "OS"), ("prs", "PRS")):
        raw = pd.to_numeric(patients_csv.loc[
            patients_csv["in_cohort"].fillna("").astype(str).str.strip().str.lower() == "true",
            f"{column}_months"], errors="coerce")
        negative = int((raw < 0).sum())
        if negative:
            notes.append(f"{label}: {count(negative, k)} patient(s) with a negative time left out of the"
                         " tables")
    if steps[0][1] != len(patients_csv) or steps[-1][1] != len(cohort):
        notes.append("the attrition counts do not match patients.csv (screened or cohort rows)")
    return notes


def site_summary(
    patients_csv: pd.DataFrame,
    attrition: Sequence[tuple[str, int]],
    *,
    small_cell: int,
    grid_months: float = 1.0,
    site: str | None = None,
    spec_version: str = "2",
    facts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The shareable site summary (docs/site-summary.schema.json) of one site's patients.csv.

    ``small_cell`` is the site's threshold k (required: a summary is made to leave the site);
    ``grid_months`` the interval of the event tables; ``site`` the site's name from its config
    (its id; without one, the id is a hash of the summary's content); ``facts`` the run facts of
    :func:`~leopard_etl.analysis.results.compute_results` (``source``, ``drug_match_routes``,
    ``platinum_unverified_n``). Raises :class:`ConfigError` on malformed input.
    """
    k = check_small_cell(small_cell)
    if k is None:
        raise ConfigError("a site summary needs a small-cell threshold",
                          fix="set small_cell_threshold (default 5)")
    g = grid_hundredths(grid_months)
    steps = check_attrition(attrition)
    name = None if site is None else str(site).strip()
    if name == "":
        raise ConfigError("the site name is empty", fix="set `site` to a non-empty name, or leave it unset")
    facts = facts or {}
    cohort = cohort_frame(patients_csv)
    from leopard_etl import __version__

    source = facts.get("source") or {}
    routes = facts.get("drug_match_routes") or {}
    summary: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "schema_version": SCHEMA_VERSION,
        "spec_version": str(spec_version),
        "tool": f"leopard-etl {__version__}",
        "site": {"name": name, "id": name},
        "content_sha256": "",
        "grid": {"unit": "month", "step": g / 100, "days_per_month": 30.4375,
                 "interval": "a time t (months, two decimals) is in interval floor(t / step);"
                             " interval i covers [i*step, (i+1)*step)"},
        "small_cell": {"threshold": k, "counts": COUNT_RULE_TEXT, "event_tables": MERGE_RULE,
                       "event_tables_rule": MERGE_RULE_TEXT},
        "attrition": [{"step": s, "n": count(n, k)} for s, n in steps],
        "counts": _counts(patients_csv, cohort, k, facts),
        "source": {key: int(source.get(key, 0) or 0) for key in ("read", "in_scope", "quarantined",
                                                                 "out_of_scope")},
        "drug_match_routes": {key: int(routes.get(key, 0) or 0) for key in ("code", "product", "ingredient",
                                                                            "name")},
        "survival": _survival(cohort, g, k),
        "logrank_oligo_vs_poly": _logrank(cohort, g, k),
        "cox": _cox(cohort, k),
        "warnings": _warnings(patients_csv, cohort, k, steps),
    }
    digest = content_sha256(summary)
    summary["content_sha256"] = digest
    if name is None:
        summary["site"]["id"] = f"sha256:{digest[:16]}"
    return summary


def write_site_summary(summary: Mapping[str, Any], path: Path) -> None:
    """Write site-summary.json (UTF-8, indented, no NaN) atomically."""
    try:
        text = json.dumps(summary, indent=1, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"the site summary is not JSON-serialisable: {exc}",
                          fix="build it with site_summary()") from None
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror or exc}",
                          fix="choose a writable output folder with --out") from None
