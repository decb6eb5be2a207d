"""What each spec-v2 idiom does to a patient's latent facts, and which patients it fits.

``APPLIES[name](context)`` says whether the idiom fits the patient (its design, its records);
``APPLY[name](context)`` rewrites the facts: recodes records (``Fact.coding``), dates them through
an Encounter (``Fact.encounter_end``), or adds activity records (``kind="activity"``, in no code
group) and excluded or post-death ones. The renderers turn those into FHIR and OMOP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np

from .calibration import Calibration
from .idiom_codes import FAR_FUTURE, PRODUCTS, STAGE_CONDITION
from .truth import Fact, TruthPatient

__all__ = ["APPLIES", "APPLY", "Context"]

_D = dt.timedelta
_CHEMO = frozenset(
    {"cisplatin", "carboplatin", "etoposide", "pemetrexed", "paclitaxel", "vinorelbine", "docetaxel"}
)


class Context:
    """One patient being transformed: its facts, with the dates the idioms anchor on."""

    def __init__(self, p: TruthPatient, rng: np.random.Generator, cal: Calibration) -> None:
        self.p = p
        self.rng = rng
        self.cal = cal
        self.end = p.end or max(f.start for f in p.facts)

    def u(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1))

    def of(self, kind: str) -> list[Fact]:
        return [f for f in self.p.facts if f.kind == kind and not f.excluded]

    def replace(self, old: Fact, **kw: object) -> None:
        self.p.facts = [f.evolve(**kw) if f is old else f for f in self.p.facts]

    def drop(self, *facts: Fact) -> None:
        gone = {id(f) for f in facts}
        self.p.facts = [f for f in self.p.facts if id(f) not in gone]

    def add(self, kind: str, start: dt.date, **kw: object) -> None:
        self.p.facts.append(Fact(kind, start, **kw))  # type: ignore[arg-type]

    def activity(self, variant: str, start: dt.date, end: dt.date | None = None, **kw: object) -> None:
        self.add("activity", start, end=end, variant=variant, **kw)

    @property
    def censored(self) -> bool:
        return self.p.death_date is None

    def diagnosis(self) -> Fact | None:
        nsclc = [f for f in self.of("nsclc") if f.variant != "followup"]
        return min(nsclc, key=lambda f: f.start) if nsclc else None

    def course(self) -> Fact | None:
        rt = [f for f in self.of("rt") if not f.stereotactic]
        return min(rt, key=lambda f: f.start) if rt else None

    def recurrence(self) -> dt.date | None:
        dates = [f.start for f in self.p.facts if f.kind in ("progression", "lesion") and not f.excluded]
        course = self.course()
        after = [d for d in dates if course is None or d > (course.end or course.start)]
        return min(after) if after else None

    def screened_design(self) -> bool:
        return self.p.design != "small_cell"


# ---- applicability ------------------------------------------------------------------------------


def _followups(c: Context) -> list[Fact]:
    return sorted((f for f in c.of("nsclc") if f.variant == "followup"), key=lambda f: f.start)


def _chemo_in_course(c: Context) -> list[Fact]:
    course = c.course()
    if course is None:
        return []
    lo, hi = course.start - _D(days=120), course.end or course.start
    return [f for f in c.of("drug") if f.ingredient in _CHEMO and lo <= f.start <= hi]


def _coded_dx(c: Context) -> bool:
    dx = c.diagnosis()
    return c.screened_design() and dx is not None and not dx.variant.startswith("synthea")


APPLIES: dict[str, Callable[[Context], bool]] = {
    "followup_activity": lambda c: c.screened_design() and bool(_followups(c)),
    "encounter_only_followup": lambda c: c.screened_design() and c.censored and len(_followups(c)) > 1,
    "condition_recorded_later": lambda c: c.screened_design() and c.diagnosis() is not None,
    "after_death_records": lambda c: (
        c.screened_design()
        and c.p.death_date is not None
        and c.p.death_date <= c.cal.study_end - _D(days=160)
    ),
    "excluded_activity": lambda c: c.screened_design() and c.censored,
    "open_end_interval": lambda c: c.screened_design() and c.censored,
    "future_record": lambda c: c.screened_design(),
    "statement_end_ignored": lambda c: c.screened_design() and c.censored,
    "nsclc_encounter_date": lambda c: (
        c.screened_design() and (dx := c.diagnosis()) is not None and dx.precision == "day"
    ),
    "condition_encounter_date": lambda c: bool(c.of("lesion")),
    "procedure_encounter_date": lambda c: bool(c.of("surgery")),
    "deceased_boolean": lambda c: c.screened_design() and c.p.death_date is not None,
    "unscreened_late_activity": lambda c: c.p.design == "small_cell",
    "rxnorm_product": lambda c: any(f.ingredient in PRODUCTS for f in c.of("drug")),
    "medication_ingredient": lambda c: bool(c.of("drug")),
    "drug_name_text": lambda c: bool(c.of("drug")),
    "icd9_diagnosis": _coded_dx,
    "icd10_who": _coded_dx,
    "icd10_gm": _coded_dx,
    "system_oid": lambda c: c.screened_design(),
    "system_version": lambda c: c.screened_design(),
    "snomed_edition": lambda c: c.screened_design(),
    "stage_snomed_qualifier": lambda c: any(f.stage in ("IIIA", "IIIB") for f in c.of("stage")),
    "stage_display_text": lambda c: bool(c.of("stage")),
    "stage_uicc": lambda c: bool(c.of("stage")),
    "stage_summary": lambda c: bool(c.of("stage")) and _coded_dx(c),
    "synthea_stage_condition": lambda c: c.p.design == "not_stage_iii" and _coded_dx(c),
    "rt_snomed_ebrt": lambda c: c.course() is not None,
    "rt_ops": lambda c: c.course() is not None,
    "icd9_procedure": lambda c: c.course() is not None,
    "chemo_procedure": lambda c: c.p.design == "cohort" and bool(_chemo_in_course(c)),
    "chemo_procedure_with_drug": lambda c: c.p.design == "no_crt" and c.course() is not None,
    "salvage_chemo_procedure": lambda c: c.p.intent.get("salvage") in ("chemo", "crt"),
    "lung_body_site_laterality": lambda c: any(f.site == "lung" and f.laterality for f in c.of("lesion")),
}


# ---- transformations ----------------------------------------------------------------------------

_FOLLOWUP_TYPES = ("visit", "ecog", "lab", "report", "imaging", "immunization", "lab:issued", "report:issued")


def _followup_activity(c: Context) -> None:
    k = c.u(0, len(_FOLLOWUP_TYPES) - 1)
    followups = _followups(c)
    c.drop(*followups)
    for n, f in enumerate(followups):
        variant = _FOLLOWUP_TYPES[(k + n) % len(_FOLLOWUP_TYPES)]
        c.activity(variant, f.start, end=f.start if variant == "visit" else None)
    dx, course = c.diagnosis(), c.course()
    if dx is not None:
        c.activity("ecog", dx.start + _D(days=c.u(0, 7)), coding="observation" if k % 2 else "")
        start = dx.start + _D(days=c.u(0, 20))
        c.activity("statement", start, end=min(start + _D(days=180), c.end))
    if course is not None:
        c.activity("port", course.start - _D(days=c.u(3, 10)))
        for day in (7, 21):
            c.activity("lab", course.start + _D(days=day))
        restaging = (course.end or course.start) + _D(days=c.u(25, 40))
        if restaging + _D(days=20) < c.end:
            c.activity("imaging", restaging)
            c.activity("report", restaging)
            c.activity("immunization", restaging + _D(days=c.u(1, 20)))


def _encounter_only_followup(c: Context) -> None:
    followups = _followups(c)
    c.drop(*followups)
    for f in followups[:-1]:
        c.activity("visit", f.start, end=f.start)
    last = followups[-1].start
    c.activity("admission", last - _D(days=c.u(2, 9)), end=last)


def _condition_recorded_later(c: Context) -> None:
    dx = c.diagnosis()
    assert dx is not None
    recorded = c.end if c.censored else max(dx.start, c.end - _D(days=c.u(10, 200)))
    c.activity("hypertension", dx.start - _D(days=c.u(300, 3000)), end=recorded)


def _after_death_records(c: Context) -> None:
    death = c.p.death_date
    assert death is not None
    c.activity("report", death + _D(days=c.u(1, 10)))
    day = death + _D(days=c.u(11, 60))
    c.activity("visit", day, end=day)


_EXCLUDED = (
    ("visit", "planned"),
    ("visit", "cancelled"),
    ("lab", "entered-in-error"),
    ("immunization", "not-done"),
    ("report", "cancelled"),
    ("statement", "not-taken"),
    ("imaging", "cancelled"),
    ("admission", "entered-in-error"),
)


def _excluded_activity(c: Context) -> None:
    k = c.u(0, len(_EXCLUDED) - 1)
    for n in range(3):
        variant, status = _EXCLUDED[(k + n) % len(_EXCLUDED)]
        day = c.end + _D(days=c.u(5, 25) if status != "planned" else c.u(30, 90))
        c.activity(
            variant, day, end=day if variant in ("visit", "admission") else None, excluded=True, status=status
        )


def _open_end_interval(c: Context) -> None:
    c.activity("admission", c.end, end=FAR_FUTURE)


def _future_record(c: Context) -> None:
    day = c.end - _D(days=c.u(30, 300))
    c.activity("lab", day.replace(year=day.year + 70, day=min(day.day, 28)), coding="fhir_only")


def _statement_end_ignored(c: Context) -> None:
    start = c.end - _D(days=c.u(20, 60))
    c.activity("statement", start, end=c.end + _D(days=c.u(30, 120)))


def _encounter(c: Context, f: Fact, longest: int) -> None:
    c.replace(f, encounter_end=min(f.start + _D(days=c.u(0, longest)), c.end))


def _nsclc_encounter_date(c: Context) -> None:
    dx = c.diagnosis()
    assert dx is not None
    _encounter(c, dx, 2)


def _condition_encounter_date(c: Context) -> None:
    _encounter(c, min(c.of("lesion"), key=lambda f: f.start), 3)


def _procedure_encounter_date(c: Context) -> None:
    for f in c.of("surgery"):
        _encounter(c, f, 6)


def _deceased_boolean(c: Context) -> None:
    c.p.death_known = False
    death = c.p.death_date
    assert death is not None
    if c.u(0, 2):  # died in hospital: the stay ends on the death (else the date is the last record's)
        c.activity("admission", death - _D(days=c.u(2, 12)), end=death)


def _unscreened_late_activity(c: Context) -> None:
    day = c.cal.study_end + _D(days=c.u(30, 60))
    c.activity("visit", day, end=day)


def _recode_drugs(coding: str) -> Callable[[Context], None]:
    def apply(c: Context) -> None:
        for f in c.of("drug"):
            if coding != "product" or f.ingredient in PRODUCTS:
                c.replace(f, coding=coding)

    return apply


def _recode_diagnoses(coding: str) -> Callable[[Context], None]:
    """NSCLC and lesion Conditions in ICD-9-CM / WHO ICD-10 / ICD-10-GM: no laterality digit."""

    def apply(c: Context) -> None:
        for f in c.of("nsclc"):
            if f.variant != "followup" and not f.variant.startswith("synthea"):
                c.replace(f, coding=coding, laterality=None)
        for f in c.of("lesion"):
            if coding != "icd9" and f.site == "meninges":
                continue  # WHO C79.3 is brain and meninges: keep the ICD-10-CM C79.32
            lat = f.laterality if f.site not in ("lung", "adrenal") else None
            c.replace(f, coding=coding, laterality=lat)

    return apply


def _stage_coding(coding: str, stages: tuple[str, ...] = ()) -> Callable[[Context], None]:
    def apply(c: Context) -> None:
        for f in c.of("stage"):
            if not stages or f.stage in stages:
                c.replace(f, coding=coding)

    return apply


def _stage_summary(c: Context) -> None:
    stages = sorted(c.of("stage"), key=lambda f: f.start)
    dx = c.diagnosis()
    assert dx is not None and stages
    c.drop(*stages)
    c.replace(dx, stage=stages[0].stage, coding="summary")


def _synthea_stage_condition(c: Context) -> None:
    dx = c.diagnosis()
    assert dx is not None
    stage = next((f.stage for f in c.of("stage")), None) or "IV"
    if stage == "II" and c.u(0, 2) == 0:
        stage = "I"
    c.drop(*c.of("stage"))
    c.replace(dx, variant=f"synthea:{STAGE_CONDITION[stage][0]}", stage=stage, laterality=None)


def _rt_coding(coding: str) -> Callable[[Context], None]:
    def apply(c: Context) -> None:
        course = c.course()
        assert course is not None
        code = coding if coding != "ebrt" else ("ebrt", "imrt")[c.u(0, 1)]
        c.replace(course, coding=code)
        if coding == "ops":
            c.activity("planning", course.start - _D(days=c.u(5, 12)))
        if coding == "icd9":
            for f in c.of("rt"):
                if f.stereotactic:
                    c.replace(f, coding="icd9_stereotactic")

    return apply


def _chemo_procedures(c: Context, drugs: list[Fact]) -> None:
    coding = ("snomed", "icd9", "ops")[c.u(0, 2)]
    c.drop(*drugs)
    for day in sorted({f.start for f in drugs}):
        c.add("chemo_proc", day, coding=coding)


def _chemo_procedure(c: Context) -> None:
    _chemo_procedures(c, _chemo_in_course(c))


def _chemo_procedure_with_drug(c: Context) -> None:
    course = c.course()
    assert course is not None
    style = c.p.style
    c.add("drug", course.start + _D(days=7), ingredient="paclitaxel", variant=f"{style['drug_code']}:cc")
    for day in (0, 21):
        c.add("chemo_proc", course.start + _D(days=day), coding="icd9" if day else "snomed")


def _salvage_chemo_procedure(c: Context) -> None:
    r = c.recurrence()
    assert r is not None
    _chemo_procedures(c, [f for f in c.of("drug") if f.ingredient in _CHEMO and f.start >= r])


def _lung_body_site_laterality(c: Context) -> None:
    for f in c.of("lesion"):
        if f.site == "lung" and f.laterality:
            c.replace(f, variant="snomed_site", coding="lateral_body")
    for f in c.of("nsclc"):
        if f.variant.startswith("snomed:") and f.laterality:
            c.replace(f, coding="lateral_body")


def _flag(c: Context) -> None:
    """Idioms the renderers apply from ``p.idioms`` alone (system spellings)."""


APPLY: dict[str, Callable[[Context], None]] = {
    "followup_activity": _followup_activity,
    "encounter_only_followup": _encounter_only_followup,
    "condition_recorded_later": _condition_recorded_later,
    "after_death_records": _after_death_records,
    "excluded_activity": _excluded_activity,
    "open_end_interval": _open_end_interval,
    "future_record": _future_record,
    "statement_end_ignored": _statement_end_ignored,
    "nsclc_encounter_date": _nsclc_encounter_date,
    "condition_encounter_date": _condition_encounter_date,
    "procedure_encounter_date": _procedure_encounter_date,
    "deceased_boolean": _deceased_boolean,
    "unscreened_late_activity": _unscreened_late_activity,
    "rxnorm_product": _recode_drugs("product"),
    "medication_ingredient": _recode_drugs("ingredient"),
    "drug_name_text": _recode_drugs("name"),
    "icd9_diagnosis": _recode_diagnoses("icd9"),
    "icd10_who": _recode_diagnoses("who"),
    "icd10_gm": _recode_diagnoses("gm"),
    "system_oid": _flag,
    "system_version": _flag,
    "snomed_edition": _flag,
    "stage_snomed_qualifier": _stage_coding("snomed_qualifier", ("IIIA", "IIIB")),
    "stage_display_text": _stage_coding("display"),
    "stage_uicc": _stage_coding("uicc"),
    "stage_summary": _stage_summary,
    "synthea_stage_condition": _synthea_stage_condition,
    "rt_snomed_ebrt": _rt_coding("ebrt"),
    "rt_ops": _rt_coding("ops"),
    "icd9_procedure": _rt_coding("icd9"),
    "chemo_procedure": _chemo_procedure,
    "chemo_procedure_with_drug": _chemo_procedure_with_drug,
    "salvage_chemo_procedure": _salvage_chemo_procedure,
    "lung_body_site_laterality": _lung_body_site_laterality,
}
