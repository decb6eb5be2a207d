"""FHIR resources of the activity records (spec §1 v2): records in no code group that still date the patient.

Encounters (visits, inpatient stays, the Encounter a Condition or Procedure is dated by), ECOG
and lab Observations, DiagnosticReports, Immunizations, MedicationStatements, ImagingStudies and
uncoded Procedures; plus the spellings of the coding systems (OIDs, ``|version``, SNOMED edition).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from .idiom_codes import ACTIVITY, FAR_FUTURE, OID_ICD9, OIDS, OPS_PLANNING, SNOMED_EDITION, VERSIONS
from .truth import Fact
from .vocabulary import SYSTEMS

__all__ = ["activity_resource", "encounter_resource", "respell"]

Resource = dict[str, Any]
_UCUM = "http://unitsofmeasure.org"


def _cc(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    coding = {"system": SYSTEMS[system], "code": code}
    if display:
        coding["display"] = display
    return {"coding": [coding]}


def _instant(d: dt.date) -> str:
    return f"{d.isoformat()}T09:30:00+01:00"


def encounter_resource(f: Fact, rid: str, subject: str, inpatient: bool | None = None) -> Resource:
    """An Encounter: a visit, an inpatient stay, or the Encounter that dates a Condition / Procedure."""
    end = f.end if f.kind == "activity" else f.encounter_end
    inpatient = f.variant == "admission" if inpatient is None else inpatient
    status = f.status if f.excluded else ("in-progress" if end == FAR_FUTURE else "finished")
    cls = ("IMP", "inpatient encounter") if inpatient else ("AMB", "ambulatory")
    res: Resource = {
        "resourceType": "Encounter",
        "id": rid,
        "status": status,
        "class": {"system": SYSTEMS["actcode"], "code": cls[0], "display": cls[1]},
        "type": [_cc(*ACTIVITY["admission" if inpatient else "visit"])],
        "subject": {"reference": subject},
        "period": {"start": f.start.isoformat()},
    }
    if end is not None:
        res["period"]["end"] = end.isoformat()
    return res


def _observation(f: Fact, rid: str, subject: str) -> Resource:
    kind, _, form = f.variant.partition(":")
    res: Resource = {
        "resourceType": "Observation",
        "id": rid,
        "status": f.status if f.excluded else "final",
        "code": _cc(*ACTIVITY[kind]),
        "subject": {"reference": subject},
    }
    if form == "issued":  # no effective[x]: the date is the issued instant
        res["issued"] = _instant(f.start)
    else:  # issued the next day does not count (spec §1: effective[x], else issued)
        res["effectiveDateTime"] = f.start.isoformat()
        res["issued"] = _instant(f.start + dt.timedelta(days=1))
    if kind == "ecog":
        res["valueInteger"] = f.number % 2
    else:
        value = 11.0 + (f.start.toordinal() % 40) / 10
        res["valueQuantity"] = {"value": value, "unit": "g/dL", "system": _UCUM, "code": "g/dL"}
    return res


def _report(f: Fact, rid: str, subject: str) -> Resource:
    res: Resource = {
        "resourceType": "DiagnosticReport",
        "id": rid,
        "status": f.status if f.excluded else "final",
        "code": _cc(*ACTIVITY["report"]),
        "subject": {"reference": subject},
    }
    if f.variant.endswith(":issued"):
        res["issued"] = _instant(f.start)
    else:
        res["effectiveDateTime"] = f.start.isoformat()
        res["issued"] = _instant(f.start + dt.timedelta(days=1))
    return res


def activity_resource(f: Fact, rid: str, subject: str) -> Resource:
    """The FHIR resource of an activity fact (``variant`` = visit, admission, ecog, lab, …)."""
    kind = f.variant.partition(":")[0]
    if kind in ("visit", "admission"):
        return encounter_resource(f, rid, subject)
    if kind in ("ecog", "lab"):
        return _observation(f, rid, subject)
    if kind == "report":
        return _report(f, rid, subject)
    if kind == "hypertension":
        return {
            "resourceType": "Condition",
            "id": rid,
            "clinicalStatus": {
                "coding": [
                    {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
                ]
            },
            "verificationStatus": {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/condition-ver-status",
                        "code": "confirmed",
                    }
                ]
            },
            "code": _cc(*ACTIVITY["hypertension"]),
            "subject": {"reference": subject},
            "onsetDateTime": f.start.isoformat(),
            "recordedDate": (f.end or f.start).isoformat(),
        }
    if kind == "immunization":
        return {
            "resourceType": "Immunization",
            "id": rid,
            "status": f.status if f.excluded else "completed",
            "vaccineCode": _cc(*ACTIVITY["immunization"]),
            "patient": {"reference": subject},
            "occurrenceDateTime": f.start.isoformat(),
        }
    if kind == "statement":
        period = {"start": f.start.isoformat()}
        if f.end:
            period["end"] = f.end.isoformat()
        return {
            "resourceType": "MedicationStatement",
            "id": rid,
            "status": f.status if f.excluded else "active",
            "medicationCodeableConcept": _cc(*ACTIVITY["statement"]),
            "subject": {"reference": subject},
            "effectivePeriod": period,
        }
    if kind == "imaging":
        return {
            "resourceType": "ImagingStudy",
            "id": rid,
            "status": f.status if f.excluded else "available",
            "modality": [{"system": SYSTEMS["dicom"], "code": "CT"}],
            "subject": {"reference": subject},
            "started": f"{f.start.isoformat()}T08:15:00+01:00",
            "procedureCode": [_cc(*ACTIVITY["imaging"])],
        }
    if kind == "port":  # a Procedure named only by text
        code: dict[str, Any] = {"text": ACTIVITY["port"][2]}
    elif kind == "planning":
        code = _cc("ops", *OPS_PLANNING)
    else:
        raise ValueError(f"unknown activity {f.variant!r}")
    return {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "code": code,
        "subject": {"reference": subject},
        "performedDateTime": f.start.isoformat(),
    }


def _respell_system(system: str, rtype: str, how: str) -> str:
    if how == "system_oid":
        if system == SYSTEMS["icd9cm"]:
            return OID_ICD9.get(rtype, system)
        return OIDS.get(system, system)
    if how == "system_version":
        return f"{system}|{VERSIONS[system]}" if system in VERSIONS else system
    return SNOMED_EDITION if system == SYSTEMS["snomed"] else system


def _walk(node: Any, rtype: str, how: str) -> Any:
    if isinstance(node, dict):
        out = {k: _walk(v, rtype, how) for k, v in node.items()}
        if isinstance(out.get("system"), str) and "code" in out:
            out["system"] = _respell_system(out["system"], rtype, how)
        return out
    if isinstance(node, list):
        return [_walk(v, rtype, how) for v in node]
    return node


def respell(resources: list[Resource], idioms: list[str]) -> list[Resource]:
    """The coding systems as the patient's site writes them (spec §1 Aliases), Medications shared by
    patients left alone (one id, one spelling)."""
    how = next((i for i in idioms if i in ("system_oid", "system_version", "snomed_edition")), None)
    if how is None:
        return resources
    return [r if r["resourceType"] == "Medication" else _walk(r, r["resourceType"], how) for r in resources]
