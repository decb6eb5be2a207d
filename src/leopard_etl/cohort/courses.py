"""Treatment courses: RT course merging, CRT type and the durvalumab chain (spec §3.3–3.5).

RT arrives either as one course summary or as one record per fraction; merging over the
whole history (decisions.md) makes both shapes give the same course. Windows are
inclusive as decisions.md reads them; all thresholds come from :class:`Rules`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from leopard_etl.config import Rules

from .timeline import CHEMO, CHEMO_PROCEDURE, DRUG_KINDS, PLATINUM, STEREOTACTIC, Rec

__all__ = [
    "Crt",
    "DurvalumabCourse",
    "RtCourse",
    "choose_rt_course",
    "crt_type",
    "durvalumab_course",
    "is_stereotactic",
    "merge_rt_courses",
]


@dataclass(frozen=True)
class RtCourse:
    start: int
    end: int
    records: tuple[Rec, ...]

    @property
    def field_sites(self) -> frozenset[str]:
        # a record irradiating several body sites carries their categories ';'-joined
        return frozenset(s for r in self.records if r.site for s in r.site.split(";") if s)


@dataclass(frozen=True)
class Crt:
    crt_type: str  # concurrent | sequential
    start: int
    end: int
    first_platinum: int
    platinum: tuple[Rec, ...]  # the platinum records in the deciding window
    #: *(v2 §2.1)* the platinum date came from a chemo_procedure record (no drug named)
    platinum_unverified: bool = False

    @property
    def protocol_deviation(self) -> str | None:
        return "sequential_crt" if self.crt_type == "sequential" else None


@dataclass(frozen=True)
class DurvalumabCourse:
    first: int
    last: int
    n_doses: int
    days_from_crt_end: int
    records: tuple[Rec, ...]


def _number(x: object) -> float | None:
    if x is None or isinstance(x, bool):
        return None
    try:
        v = float(x)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if v != v else v  # NaN from a float column


def is_stereotactic(rec: Rec, rules: Rules) -> bool:
    """Stereotactic by code, or ≤ N fractions of ≥ M cGy each (spec §2)."""
    if rec.bits & STEREOTACTIC:
        return True
    fractions, dose = _number(rec.fractions), _number(rec.dose_cgy)
    if fractions is None or dose is None or fractions <= 0:
        return False
    return (
        fractions <= rules.stereotactic_max_fractions
        and dose / fractions >= rules.stereotactic_min_cgy_per_fraction
    )


def merge_rt_courses(records: Iterable[Rec], rules: Rules) -> list[RtCourse]:
    """Non-stereotactic RT records merged into courses over the whole history.

    A record joins the current course while it starts ≤ gap days after the course's latest
    end so far (a record without end ends on its start).
    """
    recs = sorted(
        (r for r in records if not is_stereotactic(r, rules)), key=lambda r: (r.start, r.end, r.source)
    )
    courses: list[RtCourse] = []
    current: list[Rec] = []
    end = 0
    for r in recs:
        if current and r.start - end <= rules.rt_merge_gap_days:
            current.append(r)
            end = max(end, r.end)
            continue
        if current:
            courses.append(RtCourse(current[0].start, end, tuple(current)))
        current, end = [r], r.end
    if current:
        courses.append(RtCourse(current[0].start, end, tuple(current)))
    return courses


def choose_rt_course(courses: Sequence[RtCourse], diagnosis_day: int, rules: Rules) -> RtCourse | None:
    """The first course starting 0..window days after diagnosis (both inclusive)."""
    for c in courses:
        if 0 <= c.start - diagnosis_day <= rules.rt_window_days:
            return c
    return None


def crt_type(course: RtCourse, chemo: Sequence[Rec], rules: Rules) -> Crt | None:
    """Concurrent when platinum lies in [RT start, RT end], else sequential in [start − N, start).

    ``chemo`` holds the patient's platinum, chemo-group and chemo_procedure records. *(v2 §2.1)*
    A chemo_procedure record (chemotherapy with no drug named) counts as a platinum date only
    when no chemo-group *drug* record lies in [RT start − N, RT end]; a CRT decided by one is
    flagged ``platinum_unverified``.
    """
    lo = course.start - rules.sequential_window_days
    drugs = any(
        r.bits & CHEMO and r.kind in DRUG_KINDS and lo <= r.start <= course.end for r in chemo
    )
    dated = [r for r in chemo if r.bits & PLATINUM or (not drugs and r.bits & CHEMO_PROCEDURE)]
    during = sorted((r for r in dated if course.start <= r.start <= course.end), key=lambda r: r.start)
    if during:
        first = during[0].start
        return Crt("concurrent", course.start, course.end, first, tuple(during), _unverified(during))
    before = sorted((r for r in dated if lo <= r.start < course.start), key=lambda r: r.start)
    if before:
        return Crt(
            "sequential", before[0].start, course.end, before[0].start, tuple(before), _unverified(before)
        )
    return None


def _unverified(records: Sequence[Rec]) -> bool:
    """No platinum drug among the records that decided the CRT: only chemo procedures."""
    return not any(r.bits & PLATINUM for r in records)


def durvalumab_course(records: Sequence[Rec], crt_end: int, rules: Rules) -> DurvalumabCourse | None:
    """First chain of doses (gaps ≤ N days) starting at the first dose strictly after crt_end."""
    after = sorted((r for r in records if r.start > crt_end), key=lambda r: (r.start, r.source))
    if not after:
        return None
    chain = [after[0]]
    for r in after[1:]:
        if r.start - chain[-1].start > rules.durvalumab_gap_days:
            break
        chain.append(r)
    days = {r.start for r in chain}
    first, last = chain[0].start, chain[-1].start
    return DurvalumabCourse(first, last, len(days), first - crt_end, tuple(chain))
