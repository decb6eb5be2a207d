"""Screening, diagnosis date, primary laterality and stage (spec §3.1–3.2, decisions.md).

Kept apart from the treatment rules because these decide who is screened at all: a C34.*
record only counts when the patient has no small-cell histology, and the stage tie-break
must be deterministic so that FHIR and OMOP renderings of one patient agree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from leopard_etl.config import Rules

from .timeline import NSCLC, STAGE_III, Rec

__all__ = ["STAGE_III", "Diagnosis", "Stage", "diagnose", "nsclc_records", "stage_of"]



@dataclass(frozen=True)
class Diagnosis:
    record: Rec
    laterality: str | None
    laterality_record: Rec | None


@dataclass(frozen=True)
class Stage:
    value: str
    record: Rec

    @property
    def stage_iii(self) -> bool:
        return self.value in STAGE_III


def nsclc_records(records: Sequence[Rec], small_cell: bool, rules: Rules) -> list[Rec]:
    """The nsclc records that count: one in the ``nsclc`` group, or an ICD C34.* one
    (``nsclc_icd``) when the patient has no small-cell histology — decided by the record's
    groups (the union over all its codings), never by which coding happened to come first."""
    if small_cell and rules.small_cell_excludes_icd:
        return [r for r in records if r.bits & NSCLC]
    return list(records)


def diagnose(records: Sequence[Rec], small_cell: bool, rules: Rules) -> Diagnosis | None:
    """Earliest counting nsclc record; laterality of the earliest one that has one."""
    counted = sorted(nsclc_records(records, small_cell, rules), key=lambda r: (r.start, r.source))
    if not counted:
        return None
    lat = next((r for r in counted if r.laterality), None)
    return Diagnosis(counted[0], lat.laterality if lat else None, lat)


def stage_of(records: Sequence[Rec], coded_stage: Callable[[Rec], str | None] | None = None) -> Stage | None:
    """Earliest readable stage; on a tie the value with a letter wins, then the smallest source.

    ``coded_stage`` gives the stage a code states by itself (stage_condition / modifier
    entries) for a record whose ``value`` the adapter left empty.
    """
    best: tuple[int, int, str] | None = None
    chosen: Stage | None = None
    for r in records:
        value = r.value or (coded_stage(r) if coded_stage else None)
        if not value:
            continue
        value = value.strip().upper()
        key = (r.start, 0 if value[-1:] in ("A", "B", "C") else 1, r.source)
        if best is None or key < best:
            best, chosen = key, Stage(value, r)
    return chosen
