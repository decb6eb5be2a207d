"""Hand-built frames shaped like the schema: events, patients and every derived table.

``variant`` shifts dates and counts so that two datasets differ in every table; the
cohort attrition is the funnel of the patients' exclusion reasons (spec §3.6).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd

from leopard_etl.events import EVENT_COLUMNS, PATIENT_COLUMNS, Event, PatientRecord
from leopard_etl.warehouse.schema import DERIVED_TABLES

REASONS = [None, None, "no_durvalumab", None, "not_stage_iii", None, "no_crt", None]
STEPS = [
    ("nsclc", "nsclc"),
    ("stage_iii", "not_stage_iii"),
    ("crt", "no_crt"),
    ("durvalumab", "no_durvalumab"),
]


def pid(n: int) -> str:
    return f"{1000000 + n}"


def events_frame(numbers: list[int], variant: int = 0) -> pd.DataFrame:
    rows: list[Event] = []
    for n in numbers:
        p = pid(n)
        base = dt.date(2019, 1, 1) + dt.timedelta(days=n + variant)
        rows.append(
            Event(
                p,
                "condition",
                "nsclc",
                "snomed",
                "254637007",
                base,
                None,
                "day",
                None,
                "right",
                None,
                None,
                None,
                None,
                None,
                None,
                f"fhir:Condition/dx-{p}",
            )
        )
        rows.append(
            Event(
                p,
                "procedure",
                "radiotherapy",
                "snomed",
                "1217123003",
                base + dt.timedelta(days=30),
                base + dt.timedelta(days=72),
                "day",
                "lung",
                None,
                "39607008",
                None,
                None,
                None,
                30,
                200.0 + variant,
                f"fhir:Procedure/rt-{p}",
            )
        )
        rows.append(
            Event(
                p,
                "drug_admin",
                "chemo;platinum",
                "rxnorm",
                "2555",
                base + dt.timedelta(days=31),
                None,
                "day",
                None,
                None,
                None,
                None,
                None,
                "cisplatin",
                None,
                None,
                f"fhir:MedicationAdministration/cis-{p}",
            )
        )
        rows.append(
            Event(
                p,
                "condition",
                "lesion",
                "icd10cm",
                "C7931",
                base + dt.timedelta(days=400),
                None,
                "month",
                "brain",
                None,
                None,
                None,
                f"les-{p}",
                None,
                None,
                None,
                f"fhir:Condition/les-{p}",
            )
        )
    return pd.DataFrame.from_records(rows, columns=list(EVENT_COLUMNS))


def patients_frame(numbers: list[int], variant: int = 0) -> pd.DataFrame:
    rows = [
        PatientRecord(
            pid(n),
            dt.date(1950, 1, 1) + dt.timedelta(days=n),
            "female" if n % 2 else "male",
            dt.date(2023, 1, 1) + dt.timedelta(days=variant) if n % 3 == 0 else None,
            f"fhir:Patient/{pid(n)}",
        )
        for n in numbers
    ]
    return pd.DataFrame.from_records(rows, columns=list(PATIENT_COLUMNS))


def attrition(reasons: list[str | None]) -> pd.DataFrame:
    rows = []
    failed: list[str] = []
    for no, (step, reason) in enumerate(STEPS, start=1):
        failed.append(reason)
        rows.append({"step_no": no, "step": step, "n": sum(1 for r in reasons if r not in failed)})
    return pd.DataFrame(rows)


def derived_tables(numbers: list[int], variant: int = 0) -> dict[str, pd.DataFrame]:
    """Every derived table for patients ``numbers``; cohort patients get the whole chain."""
    t: dict[str, list[dict[str, object]]] = {k: [] for k in DERIVED_TABLES if k != "cohort_attrition"}
    reasons = []
    for n in numbers:
        p, reason = pid(n), REASONS[n % len(REASONS)]
        reasons.append(reason)
        d0 = dt.date(2019, 1, 1) + dt.timedelta(days=n + variant)
        prov = {"source_system": "fhir", "source_ids": f"fhir:Condition/dx-{p};fhir:Patient/{p}"}
        t["patient"].append(
            {
                "patient_id": p,
                "birth_date": dt.date(1950, 1, 1),
                "sex": "female",
                "in_cohort": reason is None,
                "exclusion_reason": reason,
                **prov,
            }
        )
        t["diagnosis"].append(
            {
                "patient_id": p,
                "diagnosis_date": d0,
                "date_precision": "day",
                "histology_code": "snomed|254637007",
                "laterality": "right",
                "stage": "IIIA",
                "stage_date": d0,
                "stage_iii": reason != "not_stage_iii",
                **prov,
            }
        )
        t["outcome"].append(
            {
                "patient_id": p,
                "death": n % 3 == 0,
                "death_date": None,
                "last_alive_date": d0 + dt.timedelta(days=900),
                "os_months": 12.34 + n / 7 + variant,
                "prs_months": None if reason else 0.1 + 0.2 + variant,
                "cutoff": dt.date(2024, 6, 30),
                **prov,
            }
        )
        if reason is not None:
            continue
        t["rt_course"].append(
            {
                "patient_id": p,
                "start_date": d0 + dt.timedelta(days=30),
                "end_date": d0 + dt.timedelta(days=72),
                "n_records": 1,
                "field_sites": "lung",
                **prov,
            }
        )
        t["crt_course"].append(
            {
                "patient_id": p,
                "crt_type": "concurrent",
                "crt_start": d0 + dt.timedelta(days=30),
                "crt_end": d0 + dt.timedelta(days=72),
                "first_platinum_date": d0 + dt.timedelta(31),
                "protocol_deviation": None,
                **prov,
            }
        )
        t["durvalumab_course"].append(
            {
                "patient_id": p,
                "first_dose": d0 + dt.timedelta(days=100),
                "last_dose": d0 + dt.timedelta(days=400),
                "n_doses": 20 + variant,
                "days_from_crt_end": 28,
                **prov,
            }
        )
        t["recurrence"].append(
            {
                "patient_id": p,
                "recurrence_date": d0 + dt.timedelta(days=500),
                "pattern": "oligo",
                "n_lesions": 2,
                "sites": "brain;lung",
                "field": "both",
                **prov,
            }
        )
        for site in ("brain", "lung"):
            t["lesion"].append(
                {
                    "patient_id": p,
                    "lesion_key": f"{site}|right|les-{p}-{variant}",
                    "site": site,
                    "laterality": "right",
                    "first_date": d0 + dt.timedelta(days=500),
                    "n_records": 1,
                    "field_relation": "in" if site == "lung" else "out",
                    **prov,
                }
            )
        t["salvage_therapy"].append(
            {
                "patient_id": p,
                "category": "rt",
                "start_date": d0 + dt.timedelta(510),
                "components": "radiotherapy",
                **prov,
            }
        )
    from leopard_etl.warehouse.schema import METADATA

    frames = {
        name: pd.DataFrame(rows, columns=[c.name for c in METADATA.tables[name].columns])
        for name, rows in t.items()
    }
    frames["cohort_attrition"] = attrition(reasons)
    return frames
