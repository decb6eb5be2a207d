"""The ground truth: spec v2 §3 and docs/decisions.md applied to the latent facts, written as §5 rows.

This is a deliberately separate, small implementation of the rules (it does not import
``leopard_etl.cohort``): the classifier's output on the rendered data is checked against
it. It sees each fact as the records a reader would keep: excluded facts dropped,
MedicationRequests only for ingredients without administrations, a daily-fraction course
as one record per treatment day, partial dates already imputed.

Spec v2: last alive and the default cutoff come from every *activity record* (§1 table: the
dates each record type contributes), whatever its code; a death without date takes the latest
activity date; chemotherapy recorded only as a procedure is a platinum date for CRT when no
chemo drug is recorded around the course, and chemo for salvage.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pandas as pd

from ..cohort.patients_csv import CSV_COLUMNS
from .calibration import MONTH_DAYS
from .truth import RUN_DAY, Fact, TruthPatient

__all__ = ["COLUMNS", "activity_dates", "cutoff_of", "expected_row", "expected_rows", "record_groups"]

#: The output contract (spec §5) is defined once, with the classifier's writer; only the
#: column list is shared — the rules here stay an independent implementation.
COLUMNS = CSV_COLUMNS

_INGREDIENT_GROUPS = {
    "cisplatin": {"platinum", "chemo"},
    "carboplatin": {"platinum", "chemo"},
    "etoposide": {"chemo"},
    "pemetrexed": {"chemo"},
    "paclitaxel": {"chemo"},
    "vinorelbine": {"chemo"},
    "docetaxel": {"chemo"},
    "durvalumab": {"durvalumab"},
    "pembrolizumab": {"immunotherapy"},
    "nivolumab": {"immunotherapy"},
    "osimertinib": {"targeted"},
}
_DEFAULT_FIELD = frozenset({"lung", "lymph_node_thoracic"})
_POLY_SITES = frozenset({"pleura", "meninges", "peritoneum"})
_STAGE_III = frozenset({"III", "IIIA", "IIIB", "IIIC"})
_ICD_ONLY = ("icd_dot:", "icd_nodot:")
_ICD_CODINGS = ("icd9", "who", "gm")  # ICD-9-CM 162.x, WHO / GM C34.x: the small-cell rule applies
_DAILY = ("daily", "sbrt_cpt")


@dataclass(frozen=True)
class _Rec:
    start: dt.date
    end: dt.date
    groups: frozenset[str]
    fact: Fact


def record_groups(f: Fact) -> frozenset[str]:
    """The code groups (mappings/) a rendered record of this fact belongs to."""
    if f.kind == "nsclc":
        return frozenset({"nsclc", "stage_condition"} if f.stage else {"nsclc"})
    if f.kind == "rt":
        stereo = f.stereotactic or (f.fractions is not None and f.fractions <= 8 and (f.dose_cgy or 0) >= 500)
        return frozenset({"radiotherapy", "stereotactic"} if stereo else {"radiotherapy"})
    if f.kind == "combined":
        return frozenset({"radiotherapy", "chemo"})
    if f.kind == "drug":
        return frozenset(_INGREDIENT_GROUPS[f.ingredient or ""])
    if f.kind == "chemo_proc":
        return frozenset({"chemo_procedure"})
    if f.kind == "activity":
        return frozenset()
    return frozenset({f.kind})


def _records(p: TruthPatient, cutoff: dt.date) -> list[_Rec]:
    """Records of the code groups up to the cutoff. A MedicationRequest for an administered
    ingredient is no therapy (spec §1; it still dates the patient, ``activity_dates``)."""
    facts = [f for f in p.facts if not f.excluded and f.kind != "activity" and f.start <= cutoff]
    administered = {f.ingredient for f in facts if f.kind == "drug" and not f.request}
    out: list[_Rec] = []
    for f in facts:
        if f.kind == "drug" and f.request and f.ingredient in administered:
            continue
        groups = record_groups(f)
        if f.kind == "rt" and f.variant in _DAILY:
            out.extend(_Rec(d, d, groups, f) for d in f.days if d <= cutoff)
        else:
            out.append(_Rec(f.start, f.end or f.start, groups, f))
    return out


def _record_dates(f: Fact) -> tuple[dt.date, ...]:
    """The dates one rendered record contributes (spec §1 table). A record dated by its Encounter
    brings the Encounter's start and end; a daily course is one record per treatment day."""
    if f.encounter_end is not None:
        return (f.start, f.encounter_end)
    if f.kind == "rt" and f.variant in _DAILY:
        return f.days
    if f.kind == "activity":
        kind = f.variant.partition(":")[0]
        # Encounter period start/end; Condition onset and recordedDate; MedicationStatement only
        # its effective start; the others one date (effective, else issued; occurrence; started)
        if kind in ("visit", "admission", "hypertension") and f.end:
            return (f.start, f.end)
        return (f.start,)
    # Procedure performedPeriod start/end; Conditions, Observations, drug records one date
    return (f.start, f.end) if f.kind == "rt" and f.end else (f.start,)


def activity_dates(p: TruthPatient, cutoff: dt.date, *, after_death: bool = False) -> list[dt.date]:
    """Dates ≤ cutoff that the patient's activity records contribute (spec §1, §3.12): excluded
    records never, records dated after the day of the run never (quarantined), records dated
    after a known death never for last alive (``after_death=True`` keeps them: they are activity
    records all the same, for the cutoff)."""
    death = p.death_date if p.death_known and not after_death else None
    out: list[dt.date] = []
    for f in p.facts:
        if f.excluded or f.start > RUN_DAY or (death is not None and f.start > death):
            continue
        out += [d for d in _record_dates(f) if d <= cutoff]
    return out


def _screened(p: TruthPatient) -> bool:
    """Has an NSCLC record (§3.6 screening; ICD C34.* / 162.x only without a small-cell record)."""
    kept = [f for f in p.facts if not f.excluded and f.start <= RUN_DAY]
    small_cell = any(f.kind == "small_cell" for f in kept)
    return any(f.kind == "nsclc" and not (small_cell and _icd_only(f)) for f in kept)


def cutoff_of(truth: Iterable[TruthPatient]) -> dt.date:
    """Default cutoff (spec §3.12 v2): the latest date ≤ the day of the run among the activity
    records and the (dated) deaths of the screened patients."""
    latest = dt.date.min
    for p in truth:
        if not _screened(p):
            continue
        latest = max([latest, *activity_dates(p, RUN_DAY, after_death=True)])
        if p.death_date and p.death_known and p.death_date <= RUN_DAY:
            latest = max(latest, p.death_date)
    return latest


def _icd_only(f: Fact) -> bool:
    """An ICD-coded NSCLC record (C34.*, 162.x), which a small-cell record overrides (spec §2)."""
    return f.variant.startswith(_ICD_ONLY) or f.coding in _ICD_CODINGS


def _courses(recs: Sequence[_Rec]) -> list[tuple[dt.date, dt.date, list[_Rec]]]:
    rt = sorted(
        (r for r in recs if "radiotherapy" in r.groups and "stereotactic" not in r.groups),
        key=lambda r: (r.start, r.end),
    )
    courses: list[tuple[dt.date, dt.date, list[_Rec]]] = []
    for r in rt:
        if courses and (r.start - courses[-1][1]).days <= 14:
            s, e, members = courses[-1]
            courses[-1] = (s, max(e, r.end), [*members, r])
        else:
            courses.append((r.start, r.end, [r]))
    return courses


def _stage(recs: Sequence[_Rec]) -> str:
    # earliest; on a tie the value with a letter, then the smallest source reference
    staged = [
        (r.start, 0 if r.fact.stage[-1] in "ABC" else 1, r.fact.ref, r.fact.stage)
        for r in recs
        if r.fact.stage
    ]
    return min(staged)[3] if staged else ""


def _field(lesions: set[tuple[str, str | None, str]], field: frozenset[str], primary: str | None) -> str:
    calls: list[bool] = []
    for site, lat, _ in lesions:
        if site not in field:
            calls.append(False)
        elif site != "lung":
            calls.append(True)
        elif lat is not None and primary is not None:
            calls.append(lat == primary)
    if not lesions:
        return "none"
    if not calls:
        return "unknown"
    return "in_field" if all(calls) else "out_of_field" if not any(calls) else "both"


def _salvage(therapies: Iterable[frozenset[str]]) -> str:
    g: set[str] = set()
    for t in therapies:
        g |= t
    rt = bool(g & {"radiotherapy", "stereotactic"})
    chemo = bool(g & {"chemo", "chemo_procedure"})  # §3.11: chemo = the chemo group and chemo_procedure
    immuno, targeted, surgery = ("immunotherapy" in g, "targeted" in g, "surgery" in g)
    kinds = [
        k
        for k, on in (
            ("rt", rt),
            ("chemo", chemo),
            ("immunotherapy", immuno),
            ("targeted", targeted),
            ("surgery", surgery),
        )
        if on
    ]
    if rt and chemo:
        return "crt"
    if rt and not (chemo or immuno or targeted):
        return "rt"
    if chemo and not rt:
        return "chemo"
    if len(kinds) == 1:
        return kinds[0]
    return "other" if kinds else "none"


def _months(a: dt.date, b: dt.date) -> str:
    return f"{(b - a).days / MONTH_DAYS:.2f}"


def expected_row(p: TruthPatient, cutoff: dt.date) -> dict[str, str] | None:
    """The patients.csv row of one patient, or None when the patient is not screened."""
    recs = _records(p, cutoff)
    small_cell = any("small_cell" in r.groups for r in recs)
    nsclc = sorted(
        (r for r in recs if "nsclc" in r.groups and not (small_cell and _icd_only(r.fact))),
        key=lambda r: r.start,
    )
    if not nsclc:
        return None
    row = dict.fromkeys(COLUMNS, "")
    row["patient_id"] = p.patient_id
    diag = nsclc[0].start
    primary = next((r.fact.laterality for r in nsclc if r.fact.laterality), None)
    dates = activity_dates(p, cutoff)
    if p.death_date and not p.death_known:  # death with unknown date: the latest activity date
        death: dt.date | None = max(dates)
    else:
        death = p.death_date if p.death_date and p.death_date <= cutoff else None
    alive = death or max(dates)
    row.update(in_cohort="false", death="true" if death else "false", last_alive_date=alive.isoformat())
    row["stage"] = _stage(recs)
    if row["stage"] not in _STAGE_III:
        row["exclusion_reason"] = "not_stage_iii"
        return row
    course = next((c for c in _courses(recs) if 0 <= (c[0] - diag).days <= 180), None)
    platinum = sorted({r.start for r in recs if "platinum" in r.groups})
    crt: tuple[str, dt.date, dt.date] | None = None
    if course is not None:
        rs, re_, _ = course
        # §2.1 chemo_procedure: a platinum date only without a chemo drug record in [RT start − 120 d, RT end]
        window = rs - dt.timedelta(days=120)
        if not any(r.fact.kind == "drug" and "chemo" in r.groups and window <= r.start <= re_ for r in recs):
            platinum = sorted({*platinum, *(r.start for r in recs if "chemo_procedure" in r.groups)})
        if any(rs <= d <= re_ for d in platinum):
            crt = ("concurrent", rs, re_)
        else:
            before = [d for d in platinum if rs - dt.timedelta(days=120) <= d < rs]
            crt = ("sequential", before[0], re_) if before else None
    if crt is None or course is None:
        row["exclusion_reason"] = "no_crt"
        return row
    crt_type, crt_start, crt_end = crt
    row.update(crt_type=crt_type, crt_start=crt_start.isoformat(), crt_end=crt_end.isoformat())
    doses = sorted({r.start for r in recs if "durvalumab" in r.groups and r.start > crt_end})
    if not doses:
        row["exclusion_reason"] = "no_durvalumab"
        return row
    chain = [doses[0]]
    for d in doses[1:]:
        if (d - chain[-1]).days > 60:
            break
        chain.append(d)
    row.update(in_cohort="true", durvalumab_start=chain[0].isoformat(), durvalumab_doses=str(len(chain)))
    row["os_months"] = _months(crt_start, death or alive)
    events = [r.start for r in recs if r.groups & {"progression", "lesion"} and r.start > crt_end]
    if not events:
        row.update(recurrence="false", pattern="none", n_lesions="0", field="none")
        return row
    rec = min(events)
    window = rec + dt.timedelta(days=30)
    lesions = {
        (r.fact.site or "other", r.fact.laterality, r.fact.lesion_id or r.fact.ref)
        for r in recs
        if "lesion" in r.groups and rec <= r.start <= window
    }
    sites = {s for s, _, _ in lesions}
    if not lesions:
        pattern = "unclassified"
    elif len(lesions) > 3 or sites & _POLY_SITES:
        pattern = "poly"
    else:
        pattern = "oligo"
    field = frozenset(s for r in course[2] for s in (r.fact.site or "").split(";") if s) or _DEFAULT_FIELD
    salvage_end = rec + dt.timedelta(days=90)
    therapies = [
        r.groups
        & {"radiotherapy", "stereotactic", "chemo", "chemo_procedure", "immunotherapy", "targeted", "surgery"}
        for r in recs
        if rec <= r.start <= salvage_end
    ]
    row.update(
        recurrence="true",
        recurrence_date=rec.isoformat(),
        pattern=pattern,
        n_lesions=str(len(lesions)),
        sites=";".join(sorted({"other" if s == "peritoneum" else s for s in sites})),
        field=_field(lesions, field, primary),
        salvage=_salvage(therapies),
        prs_months=_months(rec, death or alive),
    )
    return row


def expected_rows(truth: Sequence[TruthPatient], cutoff: dt.date | None = None) -> pd.DataFrame:
    """patients.csv as a DataFrame of strings, sorted by patient_id (string order)."""
    cut = cutoff or cutoff_of(truth)
    rows = [r for p in truth if (r := expected_row(p, cut)) is not None]
    frame = pd.DataFrame(rows, columns=list(COLUMNS), dtype=str)
    return frame.sort_values("patient_id", kind="stable").reset_index(drop=True)
