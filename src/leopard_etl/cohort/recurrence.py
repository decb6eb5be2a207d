"""Recurrence date, lesion merging and the oligo/poly pattern (spec §3.7–3.9).

One lesion is often recorded several times (imaging report, MDT note, coded twice);
merging on (site, laterality, lesion id) keeps the lesion count — which decides
oligo vs poly — from counting the same lesion twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from leopard_etl.config import Rules

from .timeline import LESION, Rec

__all__ = ["Lesion", "classify_pattern", "merge_lesions", "recurrence_record"]


@dataclass(frozen=True)
class Lesion:
    site: str  # internal category (peritoneum kept apart, decisions.md)
    laterality: str | None
    lesion_id: str
    records: tuple[Rec, ...]

    @property
    def key(self) -> str:
        return f"{self.site}|{self.laterality or ''}|{self.lesion_id}"

    @property
    def first_date(self) -> int:
        return min(r.start for r in self.records)


def recurrence_record(disease: Sequence[Rec], crt_end: int) -> Rec | None:
    """The record giving R: earliest progression or lesion record strictly after crt_end."""
    later = [r for r in disease if r.start > crt_end]
    return min(later, key=lambda r: (r.start, r.source)) if later else None


def merge_lesions(disease: Sequence[Rec], r_day: int, rules: Rules) -> list[Lesion]:
    """Lesion records dated in [R, R + N] merged on (site, laterality, lesion id)."""
    groups: dict[tuple[str, str | None, str], list[Rec]] = {}
    for r in disease:
        if r.bits & LESION and r_day <= r.start <= r_day + rules.lesion_window_days:
            key = (r.site or "other", r.laterality or None, r.lesion_id or r.source)
            groups.setdefault(key, []).append(r)
    lesions = [Lesion(s, lat, lid, tuple(recs)) for (s, lat, lid), recs in groups.items()]
    return sorted(lesions, key=lambda x: (x.first_date, x.key))


def classify_pattern(lesions: Sequence[Lesion], rules: Rules, recurred: bool = True) -> str:
    """oligo (1..N lesions, none in a non-amenable site), poly, unclassified, or none."""
    if not recurred:
        return "none"
    if not lesions:
        return "unclassified"
    if len(lesions) > rules.oligo_max_lesions or any(x.site in rules.non_amenable_sites for x in lesions):
        return "poly"
    return "oligo"
