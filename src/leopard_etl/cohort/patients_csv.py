"""The patients.csv row of one screened patient (spec §5, decisions.md conventions).

Every value is a string ('' when empty) so that the file is byte-identical whatever
writes it; columns are filled only up to the step where the patient left the cohort.
"""

from __future__ import annotations

from leopard_etl.mappings import Mappings

from .attrition import PatientResult
from .timeline import to_date

__all__ = ["CSV_COLUMNS", "csv_row", "fmt_bool", "fmt_day", "fmt_months", "report_sites"]

CSV_COLUMNS: tuple[str, ...] = (
    "patient_id",
    "in_cohort",
    "exclusion_reason",
    "stage",
    "crt_type",
    "crt_start",
    "crt_end",
    "durvalumab_start",
    "durvalumab_doses",
    "recurrence",
    "recurrence_date",
    "pattern",
    "n_lesions",
    "sites",
    "field",
    "salvage",
    "death",
    "last_alive_date",
    "os_months",
    "prs_months",
)


def fmt_day(day: int | None) -> str:
    return to_date(day).isoformat() if day is not None else ""


def fmt_bool(b: bool) -> str:
    return "true" if b else "false"


def fmt_months(m: float | None) -> str:
    return f"{m:.2f}" if m is not None else ""


def report_sites(res: PatientResult, mappings: Mappings) -> list[str]:
    return sorted({mappings.report_site(x.site) for x in res.lesions})


def csv_row(res: PatientResult, mappings: Mappings) -> dict[str, str]:
    """One row, attrition-gated: excluded patients get what they reached, cohort gets all."""
    row = dict.fromkeys(CSV_COLUMNS, "")
    row["patient_id"] = res.timeline.patient_id
    row["in_cohort"] = fmt_bool(res.in_cohort)
    row["exclusion_reason"] = res.exclusion or ""
    row["stage"] = res.stage.value if res.stage else ""
    if res.exclusion in (None, "no_durvalumab") and res.crt is not None:
        row["crt_type"] = res.crt.crt_type
        row["crt_start"] = fmt_day(res.crt.start)
        row["crt_end"] = fmt_day(res.crt.end)
    if res.in_cohort and res.durvalumab is not None:
        row["durvalumab_start"] = fmt_day(res.durvalumab.first)
        row["durvalumab_doses"] = str(res.durvalumab.n_doses)
        row["recurrence"] = fmt_bool(res.recurrence is not None)
        row["pattern"] = res.pattern or ""
        row["n_lesions"] = str(len(res.lesions))
        row["field"] = res.field or ""
        if res.recurrence is not None:
            row["recurrence_date"] = fmt_day(res.recurrence.start)
            row["sites"] = ";".join(report_sites(res, mappings))
            row["salvage"] = res.salvage.category if res.salvage else "none"
    out = res.outcome
    if out is not None:
        row["death"] = fmt_bool(out.death)
        row["last_alive_date"] = fmt_day(out.last_alive)
        if res.in_cohort:
            row["os_months"] = fmt_months(out.os_months)
            row["prs_months"] = fmt_months(out.prs_months)
    return row
