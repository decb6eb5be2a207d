"""The per-patient chain of spec §3 rules and the cohort attrition (spec §3.6).

:func:`classify_patient` applies every rule to one :class:`Timeline` and keeps each
intermediate result, so that the tables, patients.csv and ``explain`` all read the
same decisions. Attrition stops at the first failed step; later rules run only for
patients that reached them (decisions.md: attrition-gated outputs).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from leopard_etl.config import Rules

from .courses import (
    Crt,
    DurvalumabCourse,
    RtCourse,
    choose_rt_course,
    crt_type,
    durvalumab_course,
    merge_rt_courses,
)
from .diagnosis import Diagnosis, Stage, diagnose, stage_of
from .field import field_relation, irradiated_field, patient_field
from .outcome import Outcome, outcome
from .recurrence import Lesion, classify_pattern, merge_lesions, recurrence_record
from .salvage import Salvage, salvage
from .timeline import Rec, Timeline

__all__ = ["STEPS", "PatientResult", "attrition_counts", "classify_patient", "steps_passed"]

#: (step passed, exclusion reason when failed), in spec order
STEPS: tuple[tuple[str, str], ...] = (
    ("nsclc", "nsclc"),
    ("stage_iii", "not_stage_iii"),
    ("crt", "no_crt"),
    ("durvalumab", "no_durvalumab"),
)


@dataclass
class PatientResult:
    """Everything decided for one screened patient (None = step not reached / not found)."""

    timeline: Timeline
    diagnosis: Diagnosis
    stage: Stage | None = None
    courses: list[RtCourse] = field(default_factory=list)
    rt: RtCourse | None = None
    crt: Crt | None = None
    durvalumab: DurvalumabCourse | None = None
    exclusion: str | None = None
    recurrence: Rec | None = None
    lesions: list[Lesion] = field(default_factory=list)
    relations: list[str] = field(default_factory=list)
    field_sites: frozenset[str] = frozenset()
    pattern: str | None = None
    field: str | None = None
    salvage: Salvage | None = None
    outcome: Outcome | None = None

    @property
    def in_cohort(self) -> bool:
        return self.exclusion is None


def classify_patient(
    tl: Timeline, rules: Rules, cutoff: int, coded_stage: Callable[[Rec], str | None] | None = None
) -> PatientResult | None:
    """All §3 rules for one patient; None when the patient is not screened."""
    dx = diagnose(tl.nsclc, tl.small_cell, rules)
    if dx is None:
        return None
    res = PatientResult(tl, dx)
    res.stage = stage_of(tl.stage, coded_stage)
    _treatment(res, tl, rules)
    if res.in_cohort and res.crt is not None:
        _recurrence(res, tl, rules)
    res.outcome = outcome(
        tl.death,
        tl.last_alive,
        cutoff,
        rules,
        death_unknown_date=tl.death_unknown_date,
        crt_start=res.crt.start if res.in_cohort and res.crt else None,
        recurrence_day=res.recurrence.start if res.recurrence else None,
    )
    return res


def _treatment(res: PatientResult, tl: Timeline, rules: Rules) -> None:
    if res.stage is None or not res.stage.stage_iii:
        res.exclusion = "not_stage_iii"
        return
    res.courses = merge_rt_courses(tl.rt, rules)
    res.rt = choose_rt_course(res.courses, res.diagnosis.record.start, rules)
    res.crt = crt_type(res.rt, tl.platinum, rules) if res.rt else None
    if res.crt is None:
        res.exclusion = "no_crt"
        return
    res.durvalumab = durvalumab_course(tl.durvalumab, res.crt.end, rules)
    if res.durvalumab is None:
        res.exclusion = "no_durvalumab"


def _recurrence(res: PatientResult, tl: Timeline, rules: Rules) -> None:
    assert res.crt is not None and res.rt is not None
    res.recurrence = recurrence_record(tl.disease, res.crt.end)
    if res.recurrence is None:
        res.pattern, res.field = "none", "none"
        return
    r_day = res.recurrence.start
    res.lesions = merge_lesions(tl.disease, r_day, rules)
    res.pattern = classify_pattern(res.lesions, rules)
    res.field_sites = irradiated_field(res.rt.field_sites, rules)
    res.relations = [
        field_relation(x.site, x.laterality, res.field_sites, res.diagnosis.laterality) for x in res.lesions
    ]
    res.field = patient_field(res.relations)
    res.salvage = salvage(tl.therapy, r_day, rules)


def steps_passed(exclusion: str | None) -> int:
    reasons = [r for _, r in STEPS]
    return len(STEPS) if exclusion is None else reasons.index(exclusion)


def attrition_counts(exclusions: Iterable[str | None]) -> list[tuple[str, int]]:
    """[(step, patients that passed it)] in spec order from each screened patient's exclusion."""
    counts = [0] * len(STEPS)
    for exclusion in exclusions:
        for i in range(steps_passed(exclusion)):
            counts[i] += 1
    return [(step, n) for (step, _), n in zip(STEPS, counts, strict=True)]
