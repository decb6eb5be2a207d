"""Tiny hand-made timelines for the cohort rule tests: days are offsets from BASE."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd

from leopard_etl.cohort import derive
from leopard_etl.cohort.derive import Derivation
from leopard_etl.config import Rules
from leopard_etl.events import EVENT_COLUMNS, PATIENT_COLUMNS, Event, PatientRecord
from leopard_etl.mappings import Mappings

BASE = dt.date(2019, 1, 1)

_KIND = {
    "nsclc": "condition",
    "small_cell": "condition",
    "lesion": "condition",
    "stage_group": "observation",
    "stage_condition": "condition",
    "progression": "observation",
    "surgery": "procedure",
}
_SYSTEM = {
    "nsclc": ("snomed", "254637007"),
    "lesion": ("snomed", "128462008"),
    "stage_group": ("loinc", "21908-9"),
    "radiotherapy": ("snomed", "1217123003"),
}
_counter = [0]


def day(n: int) -> dt.date:
    return BASE + dt.timedelta(days=n)


def ev(pid: str, start: int, groups: str, *, end: int | None = None, **kw: Any) -> Event:
    """One event; ``start``/``end`` are day offsets; unspecified fields get plausible defaults."""
    _counter[0] += 1
    first = groups.split(";")[0]
    kind = (
        kw.pop("kind", None)
        or _KIND.get(first)
        or ("procedure" if "radiotherapy" in groups or "stereotactic" in groups else "drug_admin")
    )
    system, code = _SYSTEM.get(first, ("rxnorm", "0"))
    fields: dict[str, Any] = dict(
        patient_id=pid,
        kind=kind,
        groups=groups,
        system=kw.pop("system", system),
        code=kw.pop("code", code),
        start=day(start),
        end=day(end) if end is not None else None,
        precision="day",
        site=None,
        laterality=None,
        body_site=None,
        value=None,
        lesion_id=None,
        ingredient=None,
        fractions=None,
        dose_cgy=None,
        source=f"fhir:Resource/{pid}-{_counter[0]}",
    )
    fields.update(kw)
    return Event(**fields)


def cohort_patient(
    pid: str,
    *,
    laterality: str | None = "right",
    rt: tuple[int, int] = (30, 72),
    platinum: tuple[int, ...] = (31,),
    durvalumab: tuple[int, ...] = (90, 104, 118),
    stage: str = "IIIA",
    rt_site: str | None = "lung",
) -> list[Event]:
    """A patient who passes every attrition step: diagnosis day 0, CRT days 30–72, durvalumab from 90."""
    out = [
        ev(pid, 0, "nsclc", laterality=laterality),
        ev(pid, 2, "stage_group", value=stage),
        ev(pid, rt[0], "radiotherapy", end=rt[1], site=rt_site, fractions=30, dose_cgy=6000.0),
    ]
    out += [ev(pid, d, "chemo;platinum", ingredient="cisplatin") for d in platinum]
    out += [ev(pid, d, "durvalumab", ingredient="durvalumab") for d in durvalumab]
    return out


def lesion(
    pid: str, start: int, site: str, *, laterality: str | None = None, lesion_id: str | None = None, **kw: Any
) -> Event:
    return ev(
        pid,
        start,
        "lesion",
        site=site,
        laterality=laterality,
        lesion_id=lesion_id or f"L{_counter[0] + 1}",
        **kw,
    )


def run(
    events: list[Event],
    mappings: Mappings,
    rules: Rules | None = None,
    patients: list[PatientRecord] | None = None,
    source_system: str = "fhir",
) -> Derivation:
    frame = pd.DataFrame.from_records(events, columns=list(EVENT_COLUMNS))
    pats = pd.DataFrame.from_records(patients or [], columns=list(PATIENT_COLUMNS))
    return derive(frame, pats, rules or Rules(), mappings, source_system)


def row(d: Derivation, pid: str) -> dict[str, str]:
    hit = d.patients_csv[d.patients_csv["patient_id"] == pid]
    assert len(hit) == 1, f"{pid} not in patients.csv"
    return {k: str(v) for k, v in hit.iloc[0].items()}


def random_timelines(n: int, seed: int) -> tuple[list[Event], list[PatientRecord]]:
    """Random-ish patients around the LEOPARD journey (fractions, doses, lesions, noise)."""
    import random

    rnd = random.Random(seed)
    sites = ["lung", "brain", "bone", "liver", "adrenal", "lymph_node_thoracic", "pleura", "peritoneum", None]
    lats = ["right", "left", "bilateral", None]
    events: list[Event] = []
    patients: list[PatientRecord] = []
    for i in range(n):
        pid = f"{1000000 + i}"
        dx = rnd.randint(0, 700)
        events.append(
            ev(
                pid,
                dx,
                rnd.choice(["nsclc", "nsclc", "nsclc", "lesion"]),
                laterality=rnd.choice(lats),
                system=rnd.choice(["snomed", "icd10cm"]),
            )
        )
        if rnd.random() < 0.1:
            events.append(ev(pid, dx, "small_cell"))
        events.append(
            ev(
                pid,
                dx + rnd.randint(-5, 20),
                "stage_group",
                value=rnd.choice(["IIIA", "IIIB", "III", "IIIA", "II", "IV", None]),
            )
        )
        rt0 = dx + rnd.randint(-10, 200)
        for f in range(rnd.choice([0, 1, 30, 30])):
            events.append(
                ev(
                    pid,
                    rt0 + f + (f // 5) * 2,
                    "radiotherapy",
                    site=rnd.choice(["lung", None]),
                    fractions=1,
                    dose_cgy=200.0,
                )
            )
        for c in range(rnd.randint(0, 4)):
            events.append(
                ev(
                    pid,
                    rt0 + rnd.choice([rnd.randint(-130, 40), rnd.randint(-5, 30)]) + c,
                    "chemo;platinum",
                    kind=rnd.choice(["drug_admin", "drug_request"]),
                    ingredient="cisplatin",
                )
            )
        d0 = rt0 + rnd.randint(30, 100)
        for k in range(rnd.choice([0, 5, 26])):
            events.append(
                ev(pid, d0 + 14 * k + rnd.choice([0, 0, 50]), "durvalumab", ingredient="durvalumab")
            )
        if rnd.random() < 0.6:
            r = d0 + rnd.randint(30, 700)
            for _ in range(rnd.choice([0, 0, 1, 2, 3, 5])):
                events.append(
                    lesion(
                        pid,
                        r + rnd.randint(0, 40),
                        rnd.choice(sites),
                        laterality=rnd.choice(lats),
                        lesion_id=rnd.choice(["A", "B", "C", None]),
                    )
                )
            if rnd.random() < 0.5:
                events.append(ev(pid, r, "progression"))
            for _ in range(rnd.randint(0, 3)):
                g = rnd.choice(
                    ["radiotherapy", "chemo", "immunotherapy", "targeted", "surgery", "durvalumab"]
                )
                events.append(ev(pid, r + rnd.randint(0, 120), g, site="brain"))
        death = dx + rnd.randint(100, 2000) if rnd.random() < 0.5 else None
        patients.append(PatientRecord(pid, None, None, day(death) if death is not None else None, f"p/{pid}"))
    return events, patients


def derive_with_run_day(events: list[Event], mappings: Mappings, run_day: dt.date) -> Derivation:
    """:func:`run` with the day of the run bounding the default cutoff (spec §3.12 v2)."""
    frame = pd.DataFrame.from_records(events, columns=list(EVENT_COLUMNS))
    pats = pd.DataFrame.from_records([], columns=list(PATIENT_COLUMNS))
    return derive(frame, pats, Rules(), mappings, "fhir", run_day)
