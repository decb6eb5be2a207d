"""Build results.json (spec §5) from patients.csv and the attrition list; write it.

Only in-cohort patients enter the analyses (spec §4). Keys are exactly those of spec §5 plus
``warnings`` (statistics that came out null because a group was empty or had no events, and
input inconsistencies) — a reader can always tell a null median that was *not reached* from one
that was *not estimable*. Category keys are always present (spec order, 0 when absent) so two
sites' files line up key for key. ``small_cell=None`` gives exact figures (used internally and by
the report); an integer applies the small-cell rule of :mod:`.disclosure` to every count.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from leopard_etl.analysis.disclosure import check_small_cell, count, shown_percent
from leopard_etl.analysis.patients import (
    FIELD_CATEGORIES,
    SALVAGE_CATEGORIES,
    SITE_CATEGORIES,
    cohort_frame,
    ordered,
    split_sites,
)
from leopard_etl.analysis.survival import (
    HazardRatio,
    LogRank,
    MedianEstimate,
    SurvivalSample,
    cox_hazard_ratio,
    km_median,
    logrank,
    reverse_km_median,
)
from leopard_etl.errors import ConfigError

__all__ = [
    "ATTRITION_STEPS",
    "OS_GROUPS",
    "check_attrition",
    "compute_results",
    "os_salvage_sample",
    "os_sample",
    "prs_groups",
    "prs_sample",
    "write_results",
]

#: Attrition steps of spec §3.6, in order.
ATTRITION_STEPS: tuple[str, ...] = ("nsclc", "stage_iii", "crt", "durvalumab")
#: OS is reported for these patterns (spec §4); ``unclassified`` recurrences are left out there.
OS_GROUPS: tuple[str, ...] = ("oligo", "poly", "none")
#: results.json ``source`` keys (record counts, ``read`` = the sum of the other three; spec §5 v2)
SOURCE_KEYS: tuple[str, ...] = ("read", "in_scope", "quarantined", "out_of_scope")
#: results.json ``drug_match_routes`` keys (leopard_etl.events.ROUTES)
ROUTE_KEYS: tuple[str, ...] = ("code", "product", "ingredient", "name")


def check_attrition(attrition: Sequence[tuple[str, int]]) -> list[tuple[str, int]]:
    """Validate the (step, n) list: known step names in spec order, non-increasing counts ≥ 0."""
    try:
        steps = [(str(step), int(n)) for step, n in attrition]
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"attrition must be a list of (step, n) pairs: {exc}",
            fix="pass e.g. [('nsclc', 120), ('stage_iii', 80), ('crt', 60), ('durvalumab', 50)]",
        ) from None
    names = [s for s, _ in steps]
    if names != list(ATTRITION_STEPS):
        raise ConfigError(
            f"attrition steps are {names}, expected {list(ATTRITION_STEPS)}",
            fix="pass the cohort attrition in spec §3.6 order",
        )
    counts = [n for _, n in steps]
    if any(n < 0 for n in counts) or any(b > a for a, b in itertools.pairwise(counts)):
        raise ConfigError(
            f"attrition counts {counts} must be >= 0 and never increase",
            fix="recompute the attrition from the classified cohort",
        )
    return steps


def os_sample(cohort: pd.DataFrame, group: str) -> SurvivalSample:
    """OS (months from crt_start, event = death) of the cohort patients with this pattern."""
    rows = cohort[(cohort["pattern"] == group) & cohort["os"].notna()]
    return SurvivalSample.of(group, rows["os"], rows["death"], list(rows["patient_id"]))


def os_salvage_sample(cohort: pd.DataFrame, pattern: str, salvage: str) -> SurvivalSample:
    """*(v2 §4)* OS (months from crt_start) of recurrent patients with this pattern and salvage: the
    paper's salvage figures (RT alone 25, CRT 30 months) are OS, not PRS."""
    rows = cohort[
        cohort["recurrence"]
        & (cohort["pattern"] == pattern)
        & (cohort["salvage"] == salvage)
        & cohort["os"].notna()
    ]
    return SurvivalSample.of(f"{pattern}_{salvage}", rows["os"], rows["death"], list(rows["patient_id"]))


def prs_sample(cohort: pd.DataFrame, pattern: str, salvage: str) -> SurvivalSample:
    """PRS (months from recurrence, event = death) of recurrent patients with this pattern and salvage."""
    rows = cohort[
        cohort["recurrence"]
        & (cohort["pattern"] == pattern)
        & (cohort["salvage"] == salvage)
        & cohort["prs"].notna()
    ]
    return SurvivalSample.of(f"{pattern}_{salvage}", rows["prs"], rows["death"], list(rows["patient_id"]))


def _months(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _recurrence(cohort: pd.DataFrame, k: int | None) -> dict[str, Any]:
    rec = cohort[cohort["recurrence"]]
    n_rec = len(rec)
    by_pattern = {p: int((rec["pattern"] == p).sum()) for p in ("oligo", "poly", "unclassified")}
    oligo = rec[rec["pattern"] == "oligo"]
    oligo_sites = [set(split_sites(s)) for s in oligo["sites"]]
    all_sites = {s for value in rec["sites"] for s in split_sites(value)}
    sites_pct = {
        site: shown_percent(sum(site in seen for seen in oligo_sites), len(oligo), k)
        for site in ordered(all_sites, SITE_CATEGORIES)
    }
    field = {
        cat: count(int((rec["field"] == cat).sum()), k)
        for cat in ordered(set(rec["field"]), FIELD_CATEGORIES)
    }
    return {
        "n": count(n_rec, k),
        "pct": shown_percent(n_rec, len(cohort), k),
        "oligo_n": count(by_pattern["oligo"], k),
        "poly_n": count(by_pattern["poly"], k),
        "unclassified_n": count(by_pattern["unclassified"], k),
        "oligo_pct": shown_percent(by_pattern["oligo"], n_rec, k),
        "sites_oligo_pct": sites_pct,
        "field": field,
    }


def _salvage(cohort: pd.DataFrame, k: int | None) -> dict[str, dict[str, float | None]]:
    rec = cohort[cohort["recurrence"]]
    categories = ordered(set(rec["salvage"]), SALVAGE_CATEGORIES)
    out: dict[str, dict[str, float | None]] = {}
    for pattern in ("oligo", "poly"):
        rows = rec[rec["pattern"] == pattern]
        out[pattern] = {c: shown_percent(int((rows["salvage"] == c).sum()), len(rows), k) for c in categories}
    return out


def prs_groups(cohort: pd.DataFrame) -> list[tuple[str, str]]:
    """(pattern, salvage) pairs with ≥1 recurrent patient, in pattern then salvage order."""
    rec = cohort[cohort["recurrence"]]
    present = set(zip(rec["pattern"], rec["salvage"], strict=True))
    patterns = ("oligo", "poly", "unclassified")
    salvages = ordered({s for _, s in present}, SALVAGE_CATEGORIES)
    return [(p, s) for p in patterns for s in salvages if (p, s) in present]


def compute_results(
    patients_csv: pd.DataFrame,
    attrition: Sequence[tuple[str, int]],
    *,
    small_cell: int | None = None,
    facts: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """results.json content (spec §5 keys + ``warnings``) from the patients.csv frame.

    ``facts`` holds what the input said beyond patients.csv (spec §5 v2): ``source`` (record
    counts), ``drug_match_routes``, ``platinum_unverified_n`` and ``death_unknown_n``.
    Raises :class:`ConfigError` on malformed input (missing columns or an attrition list out of
    spec order); negative times are left out of the fits with a warning that counts the patients
    (the ids go to the site-only warnings-patients.csv).
    """
    facts = facts or {}
    k = check_small_cell(small_cell)
    steps = check_attrition(attrition)
    cohort = cohort_frame(patients_csv)
    notes: list[str] = list(cohort.attrs.get("warnings", []))
    n_screened, n_cohort = len(patients_csv), len(cohort)
    if steps[0][1] != n_screened:
        notes.append(f"attrition step nsclc = {steps[0][1]} but patients.csv has {n_screened} screened rows")
    if steps[-1][1] != n_cohort:
        notes.append(
            f"attrition step durvalumab = {steps[-1][1]} but patients.csv has {n_cohort} cohort rows"
        )

    timed = cohort[cohort["os"].notna()]
    everyone = SurvivalSample.of("cohort", timed["os"], timed["death"], list(timed["patient_id"]))
    follow_up = reverse_km_median(everyone, what="median follow-up (reverse KM on OS)")
    os_est: dict[str, MedianEstimate] = {
        g: km_median(os_sample(cohort, g), what="OS median") for g in OS_GROUPS
    }
    oligo, poly = os_sample(cohort, "oligo"), os_sample(cohort, "poly")
    lr = logrank(oligo, poly)
    hr = cox_hazard_ratio(reference=oligo, exposed=poly)
    groups = prs_groups(cohort)
    prs_est = [km_median(prs_sample(cohort, p, s), what="PRS median") for p, s in groups]
    os_salvage = [km_median(os_salvage_sample(cohort, p, s), what="OS median") for p, s in groups]
    estimates: list[MedianEstimate | LogRank | HazardRatio] = [
        follow_up, *os_est.values(), lr, hr, *prs_est, *os_salvage
    ]
    notes += [x.note for x in estimates if x.note]
    unknown = int(facts.get("death_unknown_n", 0) or 0)
    if unknown:
        notes.append(
            f"{unknown} patient(s) died with unknown date (deceasedBoolean / death row without date): the "
            "death date is their latest activity date ≤ cutoff (spec §3.12; ids in warnings-patients.csv)"
        )
    source = facts.get("source") or {}
    routes = facts.get("drug_match_routes") or {}

    return {
        "n_screened": count(n_screened, k),
        "n_cohort": count(n_cohort, k),
        "attrition": [{"step": s, "n": count(n, k)} for s, n in steps],
        "follow_up_median_months": _months(follow_up.median),
        "recurrence": _recurrence(cohort, k),
        "salvage": _salvage(cohort, k),
        "os": {
            "median_months": {g: _months(e.median) for g, e in os_est.items()},
            "ci95": {g: [_months(e.lo), _months(e.hi)] for g, e in os_est.items()},
            "logrank_p_oligo_vs_poly": None if lr.p is None else float(f"{lr.p:.6g}"),
            "hr_poly_vs_oligo": {
                "hr": None if hr.hr is None else round(hr.hr, 4),
                "lo": None if hr.lo is None else round(hr.lo, 4),
                "hi": None if hr.hi is None else round(hr.hi, 4),
            },
        },
        "prs": {"median_months": {e.group: _months(e.median) for e in prs_est}},
        "os_by_salvage": {"median_months": {e.group: _months(e.median) for e in os_salvage}},
        "warnings": notes,
        "source": {key: int(source.get(key, 0) or 0) for key in SOURCE_KEYS},
        "drug_match_routes": {key: int(routes.get(key, 0) or 0) for key in ROUTE_KEYS},
        "platinum_unverified_n": count(int(facts.get("platinum_unverified_n", 0) or 0), k),
    }


def write_results(results: dict[str, Any], path: Path) -> None:
    """Write results.json (UTF-8, indented, no NaN) atomically: a reader never sees half a file."""
    try:
        text = json.dumps(results, indent=2, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"results are not JSON-serialisable: {exc}", fix="build them with compute_results()"
        ) from None
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(text + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {path}: {exc.strerror or exc}", fix="choose a writable output folder with --out"
        ) from None
