"""Salvage therapy category after recurrence (spec §3.11, decisions.md order).

Durvalumab is consolidation, never salvage, so it is not a therapy record at all here
(its rows are not in the ``therapy`` category of the timeline).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from leopard_etl.config import Rules

from .timeline import (
    CHEMO,
    CHEMO_PROCEDURE,
    IMMUNOTHERAPY,
    RADIOTHERAPY,
    STEREOTACTIC,
    SURGERY,
    TARGETED,
    Rec,
)

__all__ = ["COMPONENTS", "Salvage", "salvage", "salvage_category"]

#: component name -> bits; radiotherapy includes stereotactic records, chemo the chemotherapy
#: administrations with no drug named (chemo_procedure, spec §3.11 v2)
COMPONENTS: tuple[tuple[str, int], ...] = (
    ("radiotherapy", RADIOTHERAPY | STEREOTACTIC),
    ("chemo", CHEMO | CHEMO_PROCEDURE),
    ("immunotherapy", IMMUNOTHERAPY),
    ("targeted", TARGETED),
    ("surgery", SURGERY),
)
_SYSTEMIC = frozenset({"chemo", "immunotherapy", "targeted"})


@dataclass(frozen=True)
class Salvage:
    category: str
    components: frozenset[str]
    records: tuple[Rec, ...]

    @property
    def start(self) -> int | None:
        return min((r.start for r in self.records), default=None)


def salvage_category(groups_present: Iterable[str]) -> str:
    """First matching of crt, rt, chemo, immunotherapy, targeted, surgery, other, none."""
    g = frozenset(groups_present)
    rt, chemo = "radiotherapy" in g, "chemo" in g
    if not g:
        return "none"
    if rt and chemo:
        return "crt"
    if rt and not g & _SYSTEMIC:
        return "rt"
    if chemo and not rt:
        return "chemo"
    for single in ("immunotherapy", "targeted", "surgery"):
        if g == {single}:
            return single
    return "other"


def salvage(therapy: Sequence[Rec], r_day: int, rules: Rules) -> Salvage:
    """Therapies starting in [R, R + N] and their category."""
    window = tuple(r for r in therapy if r_day <= r.start <= r_day + rules.salvage_window_days)
    present = frozenset(name for name, mask in COMPONENTS for r in window if r.bits & mask)
    used = tuple(r for r in window if any(r.bits & mask for _, mask in COMPONENTS))
    return Salvage(salvage_category(present), present, used)
