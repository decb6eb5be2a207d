"""The replication table: the published LEOPARD figures beside a results.json (single site or pooled).

The published figures are those of the specification's header (Ciammella et al., Lung Cancer
2025;207:108718: 166 patients, 8 centres). Each row names the results.json value it is compared
with; the salvage survival figures are OS from CRT start (spec v2 §4), read from ``os_by_salvage``.
A pooled results.json may hold a figure only as a range (suppressed site cells,
``pooling.bounds``); the row then carries the range instead of a value.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["PUBLISHED", "Published", "replication_rows"]


@dataclass(frozen=True)
class Published:
    key: str
    label: str
    value: float
    unit: str  # "%", "months" or "patients"
    path: tuple[str, ...]


#: spec header: "recurrence 56%; oligorecurrent 72% of recurrences; oligo sites lung 34%, brain 26%;
#: median OS oligo 41 vs poly 19 months; oligo salvage RT 45%, chemo 35%, CRT 13%; median OS RT alone
#: 25, CRT 30 months; poly salvage chemo 77%, median OS 12 months" (166 patients).
PUBLISHED: tuple[Published, ...] = (
    Published("n_cohort", "Patients in the analysis cohort", 166, "patients", ("n_cohort",)),
    Published("recurrence_pct", "Recurrence (% of cohort)", 56, "%", ("recurrence", "pct")),
    Published("oligo_pct", "Oligorecurrence (% of recurrences)", 72, "%", ("recurrence", "oligo_pct")),
    Published("oligo_site_lung", "Oligo sites: lung (% of oligo)", 34, "%",
              ("recurrence", "sites_oligo_pct", "lung")),
    Published("oligo_site_brain", "Oligo sites: brain (% of oligo)", 26, "%",
              ("recurrence", "sites_oligo_pct", "brain")),
    Published("os_oligo", "Median OS, oligo", 41, "months", ("os", "median_months", "oligo")),
    Published("os_poly", "Median OS, poly", 19, "months", ("os", "median_months", "poly")),
    Published("oligo_salvage_rt", "Oligo salvage: RT alone (% of oligo)", 45, "%",
              ("salvage", "oligo", "rt")),
    Published("oligo_salvage_chemo", "Oligo salvage: chemotherapy (% of oligo)", 35, "%",
              ("salvage", "oligo", "chemo")),
    Published("oligo_salvage_crt", "Oligo salvage: CRT (% of oligo)", 13, "%", ("salvage", "oligo", "crt")),
    Published("os_oligo_rt", "Median OS, oligo with RT alone (from CRT start)", 25, "months",
              ("os_by_salvage", "median_months", "oligo_rt")),
    Published("os_oligo_crt", "Median OS, oligo with CRT (from CRT start)", 30, "months",
              ("os_by_salvage", "median_months", "oligo_crt")),
    Published("poly_salvage_chemo", "Poly salvage: chemotherapy (% of poly)", 77, "%",
              ("salvage", "poly", "chemo")),
    Published("os_poly_chemo", "Median OS, poly with chemotherapy (from CRT start)", 12, "months",
              ("os_by_salvage", "median_months", "poly_chemo")),
)


def _get(data: Mapping[str, Any], path: tuple[str, ...]) -> tuple[bool, Any]:
    cur: Any = data
    for key in path:
        if not isinstance(cur, Mapping) or key not in cur:
            return False, None
        cur = cur[key]
    return True, cur


def replication_rows(results: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per published figure: ``key, label, unit, published, observed, low, high, difference,
    note``. ``observed`` is the number in ``results`` (``None`` when absent, suppressed or not
    reached — ``note`` says which); ``low``/``high`` the range of a pooled figure that only a range
    is known for; ``difference`` = observed − published (not for the cohort size)."""
    bounds = (results.get("pooling") or {}).get("bounds") or {}
    rows = []
    for fig in PUBLISHED:
        present, value = _get(results, fig.path)
        where = ".".join(fig.path)
        low = high = None
        note = None
        observed: float | None = None
        if isinstance(value, bool) or (value is not None and not isinstance(value, int | float | str)):
            present, value = False, None
        if isinstance(value, int | float):
            observed = float(value)
        elif where in bounds:
            low, high = (float(x) for x in bounds[where])
            note = "range only: some sites' cells were suppressed"
        elif isinstance(value, str):  # a suppressed count such as "<5"
            note = f"suppressed ({value})"
        elif not present:
            note = f"not in these results ({where})"
        elif fig.unit == "months":
            note = "not reached or not estimable (see warnings)"
        else:
            note = "not available (suppressed or no patients)"
        rows.append({
            "key": fig.key,
            "label": fig.label,
            "unit": fig.unit,
            "published": fig.value,
            "observed": observed,
            "low": low,
            "high": high,
            "difference": (None if observed is None or fig.unit == "patients"
                           else round(observed - fig.value, 2)),
            "note": note,
        })
    return rows


def replication_table(results: Mapping[str, Any], small_cell: int | None = None) -> list[list[str]]:
    """The replication rows as report cells (figure, published, observed, difference, unit, note).

    A patient count below ``small_cell`` is shown as ``<k`` (the reports may leave the site).
    """
    out = []
    for r in replication_rows(results):
        observed = r["observed"]
        if observed is not None and r["unit"] == "patients":
            shown = f"<{small_cell}" if small_cell and observed < small_cell else f"{observed:.0f}"
        elif observed is not None:
            shown = f"{observed:.1f}"
        elif r["low"] is not None:
            shown = f"{r['low']:.1f}–{r['high']:.1f}"
        else:
            shown = "–"
        difference = "–" if r["difference"] is None else f"{r['difference']:+.1f}"
        out.append([r["label"], f"{r['published']:g}", shown, difference, r["unit"], r["note"] or ""])
    return out
