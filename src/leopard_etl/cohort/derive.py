"""The driver: events in, every derived table + patients.csv + attrition out (spec §3, §5).

Rows are appended per patient as each timeline is classified and then dropped, so that
only the output rows (not the 10M input records as Python objects) stay in memory.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from leopard_etl.config import Rules
from leopard_etl.errors import ConfigError
from leopard_etl.mappings import CodeMatcher, Mappings
from leopard_etl.tables import DERIVED_TABLES, METADATA

from .attrition import PatientResult, attrition_counts, classify_patient
from .patients_csv import CSV_COLUMNS, csv_row, report_sites
from .timeline import Rec, iter_timelines, prepare, to_date

__all__ = [
    "UNMATCHED_COLUMNS",
    "Derivation",
    "RunFacts",
    "coded_stage_lookup",
    "derive",
    "merge_derivations",
    "table_rows",
]

SOURCE_SYSTEMS = ("fhir", "omop")
#: unmatched_codes.csv columns (spec §5 v2)
UNMATCHED_COLUMNS = ("record_type", "system", "code", "display", "n_records", "n_patients")


@dataclass
class RunFacts:
    """*(spec v2 §5)* Counts of a derivation beside the tables: what results.json and the site-only
    files report about the input (they add up over patient partitions)."""

    #: drug events by match route (code, product, ingredient, name)
    drug_routes: dict[str, int] = field(default_factory=dict)
    #: cohort-path patients whose CRT rests on a chemotherapy procedure with no drug named
    platinum_unverified_n: int = 0
    #: screened patients who died with unknown date (site-only: ids)
    death_unknown_ids: list[str] = field(default_factory=list)
    #: codes of the screened patients' records in no code group (UNMATCHED_COLUMNS)
    unmatched: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(UNMATCHED_COLUMNS)))

    def merged(self, other: RunFacts) -> RunFacts:
        routes = dict(self.drug_routes)
        for k, v in other.drug_routes.items():
            routes[k] = routes.get(k, 0) + v
        return RunFacts(
            routes,
            self.platinum_unverified_n + other.platinum_unverified_n,
            self.death_unknown_ids + other.death_unknown_ids,
            _sum_unmatched([self.unmatched, other.unmatched]),
        )


@dataclass
class Derivation:
    tables: dict[str, pd.DataFrame]
    patients_csv: pd.DataFrame
    attrition: list[tuple[str, int]]
    cutoff: dt.date
    facts: RunFacts = field(default_factory=RunFacts)


def _sum_unmatched(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Unmatched-code rows of disjoint patient sets added up (most frequent first)."""
    parts = [f for f in frames if len(f)]
    if not parts:
        return pd.DataFrame(columns=list(UNMATCHED_COLUMNS))
    keys = list(UNMATCHED_COLUMNS[:4])
    total = pd.concat(parts, ignore_index=True).fillna({"display": ""})
    out = total.groupby(keys, as_index=False, sort=False)[["n_records", "n_patients"]].sum()
    order = ["n_records", "n_patients", *keys]
    return out.sort_values(order, ascending=[False, False, *[True] * len(keys)], ignore_index=True)


def unmatched_codes(events: pd.DataFrame, screened: Iterable[str]) -> pd.DataFrame:
    """The codes of the screened patients' activity records (in no code group), counted.

    ``record_type`` is the FHIR resource type / OMOP table named in the event's source reference.
    """
    wanted = set(screened)
    mine = events[(events["groups"].fillna("") == "") & events["patient_id"].astype(str).isin(wanted)]
    if mine.empty:
        return pd.DataFrame(columns=list(UNMATCHED_COLUMNS))
    frame = pd.DataFrame(
        {
            "record_type": mine["source"].astype(str).str.split(":", n=1).str[1].str.split("/", n=1).str[0],
            "system": mine["system"].fillna("").astype(str),
            "code": mine["code"].fillna("").astype(str),
            "display": mine["value"].fillna("").astype(str),
            "patient_id": mine["patient_id"].astype(str),
        }
    )
    frame = frame[frame["code"] != ""]
    keys = list(UNMATCHED_COLUMNS[:4])
    out = frame.groupby(keys, as_index=False, sort=False).agg(
        n_records=("patient_id", "size"), n_patients=("patient_id", "nunique")
    )
    return _sum_unmatched([out])


def _route_counts(events: pd.DataFrame) -> dict[str, int]:
    if "route" not in events.columns or events.empty:
        return {}
    counts = events["route"].dropna().astype(str).value_counts()
    return {str(k): int(v) for k, v in counts.items()}


def coded_stage_lookup(mappings: Mappings) -> Callable[[Rec], str | None]:
    """Stage a code states by itself (422968005 → III) for records the adapter left without value."""
    matcher = CodeMatcher(mappings)

    def lookup(r: Rec) -> str | None:
        return matcher.entry_stage(r.system, r.code) if r.system and r.code else None

    return lookup


def _d(day: int | None) -> dt.date | None:
    return to_date(day) if day is not None else None


def _ids(recs: Iterable[Rec], *extra: str | None) -> str:
    return ";".join(sorted({r.source for r in recs} | {e for e in extra if e}))


def table_rows(res: PatientResult, mappings: Mappings, cutoff: int) -> dict[str, list[dict[str, Any]]]:
    """The rows this patient contributes to each derived table (without source_system)."""
    tl, dx = res.timeline, res.diagnosis
    pid = tl.patient_id
    out: dict[str, list[dict[str, Any]]] = {}
    out["patient"] = [
        {
            "patient_id": pid,
            "birth_date": tl.birth_date,
            "sex": tl.sex,
            "in_cohort": res.in_cohort,
            "exclusion_reason": res.exclusion,
            "source_ids": _ids([dx.record], tl.death_source),
        }
    ]
    st = res.stage
    dx_recs = (
        [dx.record] + ([dx.laterality_record] if dx.laterality_record else []) + ([st.record] if st else [])
    )
    out["diagnosis"] = [
        {
            "patient_id": pid,
            "diagnosis_date": _d(dx.record.start),
            "date_precision": dx.record.precision or "day",
            "histology_code": f"{dx.record.system}|{dx.record.code}",
            "laterality": dx.laterality,
            "stage": st.value if st else None,
            "stage_date": _d(st.record.start) if st else None,
            "stage_iii": bool(st and st.stage_iii),
            "source_ids": _ids(dx_recs),
        }
    ]
    if res.rt is not None:
        rt = res.rt
        out["rt_course"] = [
            {
                "patient_id": pid,
                "start_date": _d(rt.start),
                "end_date": _d(rt.end),
                "n_records": len(rt.records),
                "field_sites": ";".join(sorted(rt.field_sites)) or None,
                "source_ids": _ids(rt.records),
            }
        ]
    if res.crt is not None and res.rt is not None:
        c = res.crt
        out["crt_course"] = [
            {
                "patient_id": pid,
                "crt_type": c.crt_type,
                "crt_start": _d(c.start),
                "crt_end": _d(c.end),
                "first_platinum_date": _d(c.first_platinum),
                "protocol_deviation": c.protocol_deviation,
                "platinum_unverified": c.platinum_unverified,
                "source_ids": _ids(res.rt.records + c.platinum),
            }
        ]
    if res.durvalumab is not None:
        dv = res.durvalumab
        out["durvalumab_course"] = [
            {
                "patient_id": pid,
                "first_dose": _d(dv.first),
                "last_dose": _d(dv.last),
                "n_doses": dv.n_doses,
                "days_from_crt_end": dv.days_from_crt_end,
                "source_ids": _ids(dv.records),
            }
        ]
    if res.recurrence is not None:
        lesion_recs = [r for x in res.lesions for r in x.records]
        out["recurrence"] = [
            {
                "patient_id": pid,
                "recurrence_date": _d(res.recurrence.start),
                "pattern": res.pattern,
                "n_lesions": len(res.lesions),
                "sites": ";".join(report_sites(res, mappings)) or None,
                "field": res.field,
                "source_ids": _ids([res.recurrence, *lesion_recs]),
            }
        ]
        out["lesion"] = [
            {
                "patient_id": pid,
                "lesion_key": x.key,
                "site": mappings.report_site(x.site),
                "laterality": x.laterality,
                "first_date": _d(x.first_date),
                "n_records": len(x.records),
                "field_relation": rel,
                "source_ids": _ids(x.records),
            }
            for x, rel in zip(res.lesions, res.relations, strict=True)
        ]
        sv = res.salvage
        if sv is not None:
            out["salvage_therapy"] = [
                {
                    "patient_id": pid,
                    "category": sv.category,
                    "start_date": _d(sv.start),
                    "components": ";".join(sorted(sv.components)) or None,
                    "source_ids": _ids([res.recurrence, *sv.records]),
                }
            ]
    o = res.outcome
    if o is not None:
        la_src = tl.last_alive_source if o.last_alive == tl.last_alive else tl.death_source
        drivers = [tl.death_source if o.death else None, la_src]
        out["outcome"] = [
            {
                "patient_id": pid,
                "death": o.death,
                "death_date": _d(o.death_day),
                "last_alive_date": _d(o.last_alive),
                "os_months": o.os_months if res.in_cohort else None,
                "prs_months": o.prs_months if res.in_cohort else None,
                "cutoff": to_date(cutoff),
                "death_date_unknown": o.death_date_unknown,
                "source_ids": _ids([], *drivers),
            }
        ]
    return out


def _frame(name: str, rows: list[dict[str, Any]], source_system: str) -> pd.DataFrame:
    cols = [c.name for c in METADATA.tables[name].columns]
    for r in rows:
        r["source_system"] = source_system
    return pd.DataFrame.from_records(rows, columns=cols) if rows else pd.DataFrame(columns=cols)


def derive(
    events: pd.DataFrame,
    patients: pd.DataFrame,
    rules: Rules,
    mappings: Mappings,
    source_system: str,
    run_day: dt.date | None = None,
) -> Derivation:
    """Apply spec §3 to every patient; return the derived tables, patients.csv and attrition.

    ``run_day`` bounds the default cutoff (spec §3.12 v2); the pipeline passes the day of the run.
    """
    if source_system not in SOURCE_SYSTEMS:
        raise ConfigError(
            f"unknown source system {source_system!r}", fix=f"use one of {list(SOURCE_SYSTEMS)}"
        )
    prep = prepare(events, patients, rules, mappings, run_day)
    lookup = coded_stage_lookup(mappings)
    rows: dict[str, list[dict[str, Any]]] = {t: [] for t in DERIVED_TABLES}
    csv: list[dict[str, str]] = []
    exclusions: list[str | None] = []
    facts = RunFacts(drug_routes=_route_counts(events))
    for tl in iter_timelines(prep):
        res = classify_patient(tl, rules, prep.cutoff, lookup)
        if res is None:
            continue
        for name, table in table_rows(res, mappings, prep.cutoff).items():
            rows[name].extend(table)
        csv.append(csv_row(res, mappings))
        exclusions.append(res.exclusion)
        facts.platinum_unverified_n += bool(res.crt is not None and res.crt.platinum_unverified)
        if res.outcome is not None and res.outcome.death_date_unknown:
            facts.death_unknown_ids.append(tl.patient_id)
    attrition = attrition_counts(exclusions)
    rows["cohort_attrition"] = [{"step_no": i + 1, "step": s, "n": n} for i, (s, n) in enumerate(attrition)]
    tables = {
        name: _frame(name, rows[name], source_system)
        if name != "cohort_attrition"
        else pd.DataFrame.from_records(rows[name], columns=["step_no", "step", "n"])
        for name in DERIVED_TABLES
    }
    csv_frame = (
        pd.DataFrame.from_records(csv, columns=list(CSV_COLUMNS))
        if csv
        else pd.DataFrame(columns=list(CSV_COLUMNS))
    )
    facts.unmatched = unmatched_codes(events, csv_frame["patient_id"].astype(str))
    return Derivation(tables, csv_frame, attrition, to_date(prep.cutoff), facts)


def _attrition_table(attrition: list[tuple[str, int]]) -> pd.DataFrame:
    rows = [{"step_no": i + 1, "step": s, "n": n} for i, (s, n) in enumerate(attrition)]
    return pd.DataFrame.from_records(rows, columns=["step_no", "step", "n"])


def _python_values(column: pd.Series) -> list[Any]:
    """The values ``from_records`` saw: NaN of a float column was None."""
    if column.dtype.kind == "f":
        return [None if v != v else v for v in column.tolist()]
    return list(column.tolist() if column.dtype != object else column.to_numpy())


def _concat_rows(frames: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """Row-concatenate per-partition frames, sorted by patient_id, with the dtypes one frame would get.

    Each partition's dtypes were inferred from its own rows (a column all None in one
    partition is ``object``, float with NaN in another); where they disagree the column is
    re-inferred from the Python values, as ``DataFrame.from_records`` over all rows would.
    """
    filled = [f for f in frames if len(f)]
    if not filled:
        return frames[0].iloc[0:0].copy() if frames else pd.DataFrame()
    out = pd.concat(filled, ignore_index=True)
    for name in out.columns:
        if len({f[name].dtype for f in filled}) > 1:
            values = [v for f in filled for v in _python_values(f[name])]
            out[name] = pd.Series(values, index=out.index)
    if "patient_id" in out.columns:
        out = out.sort_values("patient_id", kind="stable", ignore_index=True)
    return out


def merge_derivations(parts: Sequence[Derivation], cutoff: dt.date) -> Derivation:
    """One :class:`Derivation` from derivations of disjoint patient sets under the same cutoff.

    Rows are ordered by patient_id as :func:`derive` orders them; attrition counts add up.
    A table missing from some part (dropped to save memory) is merged from the parts that have it.
    """
    if any(p.cutoff != cutoff for p in parts):
        raise ConfigError("partitions were derived with different cutoffs", fix="derive them with one cutoff")
    steps = [s for s, _ in attrition_counts([])]
    totals = [sum(dict(p.attrition).get(s, 0) for p in parts) for s in steps]
    attrition = list(zip(steps, totals, strict=True))
    names = [n for n in DERIVED_TABLES if n != "cohort_attrition" and any(n in p.tables for p in parts)]
    tables = {n: _concat_rows([p.tables[n] for p in parts if n in p.tables]) for n in names}
    tables["cohort_attrition"] = _attrition_table(attrition)
    tables = {n: tables[n] for n in DERIVED_TABLES if n in tables}
    csv = _concat_rows([p.patients_csv for p in parts]) if parts else pd.DataFrame(columns=list(CSV_COLUMNS))
    facts = RunFacts()
    for p in parts:
        facts = facts.merged(p.facts)
    return Derivation(tables, csv, attrition, cutoff, facts)
