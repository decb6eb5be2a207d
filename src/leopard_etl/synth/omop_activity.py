"""OMOP rows of the activity records (spec §1 v2), the visits that date records, and the observation period.

Activity records are rows of any concept: visit_occurrence (+ visit_detail for inpatient stays),
measurement / observation (ECOG, labs, reports), condition_occurrence (hypertension),
drug_exposure (immunisation, home medication), procedure_occurrence and device_exposure.
The observation period is read back from the patient's own rows with the OMOP reading of the
spec (drug_exposure by its start only; nothing after the death or after the day of the run), so
that it never reaches past the last date a reader may count.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict

from .idiom_codes import ACTIVITY, OPS_PLANNING
from .truth import RUN_DAY, Fact
from .vocabulary import concept_id

__all__ = ["EHR", "RUN_DAY", "Row", "Tables", "activity_rows", "observation_period", "visit"]

Row = dict[str, object]
EHR = 32817
_VOCAB = {"snomed": "SNOMED", "loinc": "LOINC", "cvx": "CVX", "rxnorm": "RxNorm", "cpt": "CPT4"}
#: (table, date columns a reader counts) — spec §1 OMOP activity records
_DATES = {
    "visit_occurrence": ("visit_start_date", "visit_end_date"),
    "visit_detail": ("visit_detail_start_date", "visit_detail_end_date"),
    "condition_occurrence": ("condition_start_date", "condition_end_date"),
    "procedure_occurrence": ("procedure_date", "procedure_end_date"),
    "drug_exposure": ("drug_exposure_start_date",),
    "device_exposure": ("device_exposure_start_date", "device_exposure_end_date"),
    "measurement": ("measurement_date",),
    "observation": ("observation_date",),
    "episode": ("episode_start_date", "episode_end_date"),
}


class Tables:
    """Rows per table, numbered per table in the order they are added (patient order)."""

    def __init__(self) -> None:
        self.rows: dict[str, list[Row]] = defaultdict(list)

    def add(self, table: str, id_column: str | None, row: Row) -> int:
        rows = self.rows[table]
        row_id = len(rows) + 1
        if id_column:
            row = {id_column: row_id, **row}
        rows.append(row)
        return row_id

    def mark(self) -> dict[str, int]:
        return {t: len(r) for t, r in self.rows.items()}


def _concept(kind: str) -> int:
    system, code, _ = ACTIVITY[kind]
    return concept_id(_VOCAB[system], code)


def visit(t: Tables, pid: int, start: dt.date, end: dt.date, inpatient: bool) -> int:
    """A visit_occurrence (inpatient stays also a visit_detail for the ward); returns its id."""
    vid = t.add(
        "visit_occurrence",
        "visit_occurrence_id",
        {
            "person_id": pid,
            "visit_concept_id": concept_id("Visit", "IP" if inpatient else "OP"),
            "visit_start_date": start,
            "visit_end_date": end,
            "visit_type_concept_id": EHR,
            "visit_source_value": "ricovero" if inpatient else "ambulatorio",
        },
    )
    if inpatient:
        t.add(
            "visit_detail",
            "visit_detail_id",
            {
                "person_id": pid,
                "visit_detail_concept_id": concept_id("Visit", "IP"),
                "visit_detail_start_date": start,
                "visit_detail_end_date": end,
                "visit_detail_type_concept_id": EHR,
                "visit_detail_source_value": "oncologia",
                "visit_occurrence_id": vid,
            },
        )
    return vid


def _result(t: Tables, table: str, pid: int, f: Fact, concept: int, value: float) -> None:
    prefix = "measurement" if table == "measurement" else "observation"
    t.add(
        table,
        f"{prefix}_id",
        {
            "person_id": pid,
            f"{prefix}_concept_id": concept,
            f"{prefix}_date": f.start,
            f"{prefix}_type_concept_id": EHR,
            "value_as_number": value,
            f"{prefix}_source_value": ACTIVITY[f.variant.partition(":")[0]][1],
        },
    )


def _procedure(t: Tables, pid: int, day: dt.date, concept: int, source: int | None, text: str) -> None:
    t.add(
        "procedure_occurrence",
        "procedure_occurrence_id",
        {
            "person_id": pid,
            "procedure_concept_id": concept,
            "procedure_date": day,
            "procedure_type_concept_id": EHR,
            "procedure_source_value": text,
            "procedure_source_concept_id": source,
        },
    )


def _drug(t: Tables, pid: int, f: Fact, kind: str) -> None:
    t.add(
        "drug_exposure",
        "drug_exposure_id",
        {
            "person_id": pid,
            "drug_concept_id": _concept(kind),
            "drug_exposure_start_date": f.start,
            "drug_exposure_end_date": f.end or f.start,
            "drug_type_concept_id": EHR,
            "drug_source_value": ACTIVITY[kind][1],
        },
    )


def activity_rows(t: Tables, pid: int, f: Fact) -> None:
    """The rows of one activity fact (FHIR-only and excluded facts have none)."""
    kind = f.variant.partition(":")[0]
    if f.coding == "fhir_only" or f.excluded:
        return
    if kind in ("visit", "admission"):
        visit(t, pid, f.start, f.end or f.start, kind == "admission")
    elif kind in ("ecog", "lab"):
        table = "observation" if f.coding == "observation" else "measurement"
        _result(t, table, pid, f, _concept(kind), float(f.number % 2) if kind == "ecog" else 12.0)
    elif kind == "report":
        _result(t, "observation", pid, f, _concept(kind), 1.0)
    elif kind == "hypertension":  # onset as the condition, the recording as the visit it was noted at
        vid = visit(t, pid, f.end or f.start, f.end or f.start, False)
        t.add(
            "condition_occurrence",
            "condition_occurrence_id",
            {
                "person_id": pid,
                "condition_concept_id": _concept(kind),
                "condition_start_date": f.start,
                "condition_type_concept_id": EHR,
                "visit_occurrence_id": vid,
                "condition_source_value": "I10",
            },
        )
    elif kind in ("immunization", "statement"):
        _drug(t, pid, f, kind)
    elif kind == "imaging":
        _procedure(t, pid, f.start, _concept(kind), None, ACTIVITY[kind][1])
    elif kind == "port":
        _procedure(t, pid, f.start, 0, None, ACTIVITY["port"][2])
        t.add(
            "device_exposure",
            "device_exposure_id",
            {
                "person_id": pid,
                "device_concept_id": 0,
                "device_exposure_start_date": f.start,
                "device_type_concept_id": EHR,
                "device_source_value": "Port-a-Cath",
            },
        )
    elif kind == "planning":
        _procedure(t, pid, f.start, 0, concept_id("OPS", OPS_PLANNING[0]), OPS_PLANNING[0])
    else:
        raise ValueError(f"unknown activity {f.variant!r}")


def observation_period(
    t: Tables, since: dict[str, int], pid: int, death: dt.date | None
) -> tuple[dt.date, dt.date] | None:
    """First and last date a reader counts among the patient's rows added since ``since``."""
    dates: list[dt.date] = []
    for table, columns in _DATES.items():
        for row in t.rows.get(table, [])[since.get(table, 0) :]:
            start = row.get(columns[0])
            if not isinstance(start, dt.date) or start > RUN_DAY or (death and start > death):
                continue
            dates += [d for c in columns if isinstance(d := row.get(c), dt.date) and d <= RUN_DAY]
    return (min(dates), max(dates)) if dates else None
