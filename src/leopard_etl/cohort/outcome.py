"""Death, last alive and survival times (spec §3.12, decisions.md).

The cutoff itself and the last-alive maximum are computed vectorised in
:mod:`.timeline`; this module turns them into the patient's outcome so that the
rule is readable and testable on its own.
"""

from __future__ import annotations

from dataclasses import dataclass

from leopard_etl.config import Rules

__all__ = ["Outcome", "months", "outcome"]


@dataclass(frozen=True)
class Outcome:
    death: bool
    death_day: int | None
    last_alive: int | None
    os_months: float | None
    prs_months: float | None
    #: *(v2)* death known without its date: death_day is the latest activity date ≤ cutoff
    death_date_unknown: bool = False


def months(days: int, rules: Rules) -> float:
    return days / rules.days_per_month


def outcome(
    death_day: int | None,
    last_alive_day: int | None,
    cutoff: int,
    rules: Rules,
    crt_start: int | None = None,
    recurrence_day: int | None = None,
    *,
    death_unknown_date: bool = False,
) -> Outcome:
    """Spec §3.12 (v2): death when dated ≤ cutoff, or known without a date; OS from crt_start, PRS from R.

    Last alive is the death date when the patient died ≤ cutoff (records dated after a death
    never count), else the latest activity date ≤ cutoff (``last_alive_day``, computed over
    every activity record). A death with unknown date is dated on that latest activity date.
    """
    unknown = death_unknown_date and death_day is None
    if unknown:
        death_day = last_alive_day
    dead = unknown or (death_day is not None and death_day <= cutoff)
    last = death_day if dead and death_day is not None else last_alive_day
    end = last
    os_m = months(end - crt_start, rules) if end is not None and crt_start is not None else None
    prs = months(end - recurrence_day, rules) if end is not None and recurrence_day is not None else None
    return Outcome(dead, death_day if dead else None, last, os_m, prs, unknown)
