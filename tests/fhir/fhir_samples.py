"""Hand-made synthetic FHIR resources for the adapter tests (no real patient data)."""

from __future__ import annotations

from typing import Any

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
LOINC = "http://loinc.org"
RXNORM = "http://www.nlm.nih.gov/research/umls/rxnorm"
CPT = "http://www.ama-assn.org/go/cpt"
AJCC = "http://cancerstaging.org"
MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"

Resource = dict[str, Any]


def cc(system: str, code: str, text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": [{"system": system, "code": code}]}
    if text:
        out["text"] = text
    return out


def patient(pid: str, **extra: Any) -> Resource:
    return {"resourceType": "Patient", "id": pid, "gender": "female", "birthDate": "1955-04-02", **extra}


def condition(
    rid: str, pid: str, code: dict[str, Any], onset: str | None = "2020-01-10", **extra: Any
) -> Resource:
    r: Resource = {
        "resourceType": "Condition",
        "id": rid,
        "subject": {"reference": f"Patient/{pid}"},
        "code": code,
    }
    if onset:
        r["onsetDateTime"] = onset
    r.update(extra)
    return r


def rt_procedure(
    rid: str,
    pid: str,
    start: str,
    end: str,
    *,
    fractions: int | None = None,
    dose_gy: float | None = None,
    body: str | None = None,
    **extra: Any,
) -> Resource:
    r: Resource = {
        "resourceType": "Procedure",
        "id": rid,
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "code": cc(SNOMED, "1217123003"),
        "performedPeriod": {"start": start, "end": end},
    }
    ext: list[dict[str, Any]] = []
    if fractions is not None:
        ext.append({"url": MCODE + "mcode-radiotherapy-sessions", "valueUnsignedInt": fractions})
    if dose_gy is not None:
        ext.append(
            {
                "url": MCODE + "mcode-radiotherapy-dose-delivered-to-volume",
                "extension": [
                    {
                        "url": "totalDoseDelivered",
                        "valueQuantity": {"value": dose_gy, "unit": "Gy", "code": "Gy"},
                    }
                ],
            }
        )
    if ext:
        r["extension"] = ext
    if body:
        r["bodySite"] = [cc(SNOMED, body)]
    r.update(extra)
    return r


def med_admin(
    rid: str, pid: str, when: str, rxnorm: str | None = None, med_ref: str | None = None, **extra: Any
) -> Resource:
    r: Resource = {
        "resourceType": "MedicationAdministration",
        "id": rid,
        "status": "completed",
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
    }
    if rxnorm:
        r["medicationCodeableConcept"] = cc(RXNORM, rxnorm)
    if med_ref:
        r["medicationReference"] = {"reference": med_ref}
    r.update(extra)
    return r


def medication(rid: str, rxnorm: str) -> Resource:
    return {"resourceType": "Medication", "id": rid, "code": cc(RXNORM, rxnorm)}


def stage_obs(
    rid: str, pid: str, when: str, value: dict[str, Any] | None = None, text: str | None = None, **extra: Any
) -> Resource:
    r: Resource = {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": cc(LOINC, "21908-9"),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
    }
    if value:
        r["valueCodeableConcept"] = value
    if text:
        r["valueString"] = text
    r.update(extra)
    return r


def progression_obs(rid: str, pid: str, when: str, value_code: str = "271299001") -> Resource:
    return {
        "resourceType": "Observation",
        "id": rid,
        "status": "final",
        "code": cc(LOINC, "97509-4"),
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "valueCodeableConcept": cc(SNOMED, value_code),
    }


def small_cohort(n: int, prefix: str = "p") -> list[Resource]:
    """``n`` patients, each with an NSCLC diagnosis, a stage, RT, cisplatin, durvalumab and a lesion."""
    out: list[Resource] = []
    for i in range(n):
        pid = f"{prefix}{i}"
        out += [
            patient(pid),
            condition(f"{pid}-dx", pid, cc(ICD10CM, "C34.11"), onset="2020-01-10"),
            stage_obs(f"{pid}-st", pid, "2020-01-12", value=cc(AJCC, "3A")),
            rt_procedure(
                f"{pid}-rt", pid, "2020-02-01", "2020-03-13", fractions=30, dose_gy=60, body="39607008"
            ),
            med_admin(f"{pid}-cis", pid, "2020-02-03", rxnorm="2555"),
            med_admin(f"{pid}-durva", pid, "2020-04-01", med_ref=f"Medication/durva-{pid}"),
            medication(f"durva-{pid}", "1919503"),
            condition(
                f"{pid}-met",
                pid,
                cc(ICD10CM, "C79.31"),
                onset="2021-0" + str(1 + i % 9),
                identifier=[{"value": f"lesion-{pid}"}],
            ),
            progression_obs(f"{pid}-prog", pid, "2021-01-20"),
            {"resourceType": "Encounter", "id": f"{pid}-enc", "subject": {"reference": f"Patient/{pid}"}},
        ]
    return out
