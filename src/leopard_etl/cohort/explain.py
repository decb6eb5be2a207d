"""A human-readable account of how spec §3 classified one patient.

Clinicians audit a classification by reading which records drove each decision; this
runs exactly the same rules as :func:`~leopard_etl.cohort.derive.derive` (same cutoff
over the whole input) and prints every intermediate result with its source references.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from leopard_etl.config import Rules
from leopard_etl.errors import ConfigError
from leopard_etl.mappings import Mappings

from .attrition import PatientResult, classify_patient
from .courses import is_stereotactic
from .derive import coded_stage_lookup
from .patients_csv import fmt_day, fmt_months
from .recurrence import Lesion
from .timeline import Rec, Timeline, default_cutoff, iter_timelines, prepare

__all__ = ["explain"]


def _src(recs: tuple[Rec, ...] | list[Rec], limit: int = 6) -> str:
    ids = sorted({r.source for r in recs})
    more = f" … (+{len(ids) - limit})" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more


def explain(
    events: pd.DataFrame,
    patients: pd.DataFrame,
    patient_id: str,
    rules: Rules,
    mappings: Mappings,
    run_day: dt.date | None = None,
) -> str:
    """Timeline of the rule decisions for ``patient_id`` (one string, one fact per line)."""
    cutoff = rules.cutoff or default_cutoff(events, patients, mappings, rules, run_day)
    mine = events["patient_id"].astype(str) == str(patient_id)
    if not mine.any():
        raise ConfigError(f"patient {patient_id!r} has no records in the input", fix="check the patient id")
    pat = patients[patients["patient_id"].astype(str) == str(patient_id)]
    local = rules.model_copy(update={"cutoff": cutoff})
    prep = prepare(events.loc[mine], pat, local, mappings)
    lines = [
        f"patient {patient_id} — cutoff {cutoff.isoformat()}"
        + (" (configured)" if rules.cutoff else " (latest date of the screened patients' records)")
    ]
    if not prep.patient_ids:  # every record after the cutoff: the rules see none of them
        lines.append("not screened: no NSCLC record on or before the cutoff (every record is later)")
        return "\n".join(lines)
    tl = next(iter_timelines(prep, only=[0]))
    res = classify_patient(tl, local, prep.cutoff, coded_stage_lookup(mappings))
    if res is None:
        lines.append(_not_screened(tl))
        return "\n".join(lines)
    lines += _treatment_lines(res, tl, local)
    if res.in_cohort:
        lines += _recurrence_lines(res, mappings)
    lines += _outcome_lines(res)
    return "\n".join(lines)


def _not_screened(tl: Timeline) -> str:
    if tl.nsclc and tl.small_cell:
        return (
            f"not screened: only ICD-10 C34.* records ({_src(tl.nsclc)}) and small-cell histology "
            "is recorded, so C34.* does not count as NSCLC"
        )
    return "not screened: no NSCLC record"


def _treatment_lines(res: PatientResult, tl: Timeline, rules: Rules) -> list[str]:
    dx = res.diagnosis
    out = [
        f"diagnosis {fmt_day(dx.record.start)} ({dx.record.precision}) from {dx.record.source} "
        f"[{dx.record.system} {dx.record.code}]; earliest of {len(tl.nsclc)} NSCLC record(s)"
    ]
    if dx.laterality_record:
        out.append(f"primary laterality {dx.laterality} from {dx.laterality_record.source}")
    else:
        out.append("primary laterality unknown (no NSCLC record states it)")
    if res.stage:
        out.append(
            f"stage {res.stage.value} dated {fmt_day(res.stage.record.start)} from {res.stage.record.source}"
            f" → {'stage III' if res.stage.stage_iii else 'not stage III'}"
        )
    else:
        out.append("stage: no readable stage record → not stage III")
    if res.exclusion == "not_stage_iii":
        out.append("excluded: not_stage_iii")
        return out
    stereo = [r for r in tl.rt if is_stereotactic(r, rules)]
    if stereo:
        out.append(f"{len(stereo)} stereotactic RT record(s) skipped: {_src(stereo)}")
    for c in res.courses:
        delta = c.start - dx.record.start
        chosen = " ← chosen" if c is res.rt else ""
        out.append(
            f"RT course {fmt_day(c.start)}..{fmt_day(c.end)}: {len(c.records)} record(s) merged "
            f"(gaps ≤ {rules.rt_merge_gap_days} d), day {delta} after diagnosis{chosen}"
        )
    if res.rt is None:
        out.append(f"no RT course starting 0–{rules.rt_window_days} days after diagnosis → excluded: no_crt")
        return out
    if res.crt is None:
        out.append(f"no platinum in [RT start − {rules.sequential_window_days} d, RT end] → excluded: no_crt")
        return out
    crt = res.crt
    out.append(
        f"CRT {crt.crt_type}: platinum {fmt_day(crt.first_platinum)} ({_src(crt.platinum)}); "
        f"crt_start {fmt_day(crt.start)}, crt_end {fmt_day(crt.end)}"
        + (f"; protocol deviation {crt.protocol_deviation}" if crt.protocol_deviation else "")
    )
    dv = res.durvalumab
    if dv is None:
        out.append("no durvalumab after crt_end → excluded: no_durvalumab")
        return out
    out.append(
        f"durvalumab {fmt_day(dv.first)}..{fmt_day(dv.last)}: {dv.n_doses} dose(s), "
        f"{dv.days_from_crt_end} d after crt_end (chain gaps ≤ {rules.durvalumab_gap_days} d)"
    )
    out.append("in cohort")
    return out


def _lesion_line(x: Lesion, relation: str, mappings: Mappings) -> str:
    return (
        f"  lesion {x.key}: {mappings.report_site(x.site)}, {len(x.records)} record(s) merged on "
        f"(site, laterality, lesion id) [{_src(x.records)}], field {relation}"
    )


def _recurrence_lines(res: PatientResult, mappings: Mappings) -> list[str]:
    if res.recurrence is None:
        return ["no progression or lesion record after crt_end → no recurrence (pattern none)"]
    r = res.recurrence
    out = [f"recurrence {fmt_day(r.start)} from {r.source} (earliest progression/lesion after crt_end)"]
    out += [_lesion_line(x, rel, mappings) for x, rel in zip(res.lesions, res.relations, strict=True)]
    out.append(
        f"pattern {res.pattern} ({len(res.lesions)} lesion(s)); irradiated field "
        f"{';'.join(sorted(res.field_sites))} → field {res.field}"
    )
    if res.salvage is not None:
        sv = res.salvage
        comps = ";".join(sorted(sv.components)) or "nothing"
        out.append(f"salvage {sv.category}: {comps} starting in the window [{_src(sv.records) or '-'}]")
    return out


def _outcome_lines(res: PatientResult) -> list[str]:
    o = res.outcome
    if o is None:
        return []
    tl = res.timeline
    line = (
        f"outcome: death {fmt_day(o.death_day)} ({tl.death_source})"
        if o.death
        else f"outcome: alive; last alive {fmt_day(o.last_alive)} ({tl.last_alive_source})"
    )
    if res.in_cohort:
        line += f"; OS {fmt_months(o.os_months)} months"
        if o.prs_months is not None:
            line += f", PRS {fmt_months(o.prs_months)} months"
    return [line]
