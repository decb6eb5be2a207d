"""The synthetic cohort of the scheduled-run tests and the changes a site's data goes through.

Version 1 is the first ``N`` patients of one simulation; version 2 adds the next
patient, moves one lesion three days later and withdraws another lesion
(entered-in-error in FHIR; the row deleted in OMOP). Resource ids and OMOP row ids
of unchanged records stay the same between versions, as at a real site.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from leopard_etl.synth import TruthPatient, fhir_resources, simulate

N = 20
SEED = 23
CENTRES = 4
MOVE_DAYS = 3


@dataclass(frozen=True)
class Changes:
    new_patient: str
    moved: tuple[str, str]  # (patient id, fact ref)
    withdrawn: tuple[str, str]


def truth() -> list[TruthPatient]:
    """N + 1 latent patients; version 1 holds the first N."""
    return simulate(N + 1, SEED, CENTRES)


def _lesions(patients: list[TruthPatient]) -> Iterator[tuple[TruthPatient, int]]:
    for p in patients:
        for i, f in enumerate(p.facts):
            if f.kind == "lesion" and not f.excluded and f.precision == "day":
                yield p, i
                break


def changed(patients: list[TruthPatient]) -> tuple[list[TruthPatient], Changes]:
    """Version 2 of ``patients`` (all N + 1, with one lesion moved and one withdrawn)."""
    (mp, mi), (wp, wi) = list(_lesions(patients[:N]))[:2]
    out = []
    for p in patients:
        facts = list(p.facts)
        if p is mp:
            facts[mi] = dataclasses.replace(facts[mi], start=facts[mi].start + dt.timedelta(days=MOVE_DAYS))
        if p is wp:
            facts[wi] = dataclasses.replace(facts[wi], excluded=True)
        out.append(dataclasses.replace(p, facts=facts))
    changes = Changes(
        patients[N].patient_id, (mp.patient_id, mp.facts[mi].ref), (wp.patient_id, wp.facts[wi].ref)
    )
    return out, changes


def resource(patients: list[TruthPatient], patient_id: str, ref: str) -> dict[str, Any]:
    """The FHIR resource of one fact, as the generator renders it."""
    p = next(p for p in patients if p.patient_id == patient_id)
    rid = f"{patient_id}-{ref}"
    return next(r for r in fhir_resources(p) if r["id"] == rid)


def server_resources(patients: list[TruthPatient]) -> list[dict[str, Any]]:
    """Every resource of ``patients`` for a transaction (shared Medications once)."""
    seen: set[tuple[str, str]] = set()
    out = []
    for p in patients:
        for r in fhir_resources(p):
            key = (r["resourceType"], r["id"])
            if key not in seen:
                seen.add(key)
                out.append(r)
    return out
