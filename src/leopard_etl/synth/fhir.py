"""FHIR R4 rendering of one latent patient: the idioms readers meet in real exports.

Each fact becomes one resource (a daily-fraction RT course one Procedure per fraction),
coded in the style of the patient's centre: SNOMED vs ICD-10-CM with or without dots,
RxNorm ingredient vs product vs ATC, ``medicationCodeableConcept`` vs a contained or
separate Medication, course-summary vs per-fraction radiotherapy, partial onset dates,
``issued`` instead of ``effectiveDateTime``, entered-in-error / not-done / cancelled
records. Every resource validates against the fhir.resources R4B models.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from .fhir_activity import activity_resource, encounter_resource, respell
from .idiom_codes import (
    CHEMO_PROCEDURE,
    ICD9_LESION,
    ICD9_NSCLC,
    PRODUCTS,
    RT_CODES,
    STAGE_CONDITION,
    STAGE_QUALIFIER,
    WHO_LESION,
    drug_label,
)
from .truth import Fact, TruthPatient
from .vocabulary import (
    ATC,
    INGREDIENT,
    LATERALITY,
    PRECOORDINATED,
    PRODUCT,
    SITE_BODY,
    SYSTEMS,
    icd_lesion_code,
)

__all__ = ["Reference", "fhir_resources", "patient_reference"]

Reference = Callable[[str, str], str]
Resource = dict[str, Any]

_MCODE = "http://hl7.org/fhir/us/mcode/StructureDefinition/"
_LESION_ID_SYSTEM = "urn:leopard:synth:lesion"
_STAGE_AJCC = {"III": "3", "IIIA": "3A", "IIIB": "3B", "IIIC": "3C", "II": "II", "IV": "IV"}
_LAT_DIGIT = {"right": "1", "left": "2", None: "0"}


def _coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    c = {"system": SYSTEMS[system], "code": code}
    if display:
        c["display"] = display
    return c


def _cc(*codings: dict[str, str], text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": list(codings)}
    if text:
        out["text"] = text
    return out


def _date(d: dt.date, precision: str = "day") -> str:
    return {"day": d.isoformat(), "month": d.isoformat()[:7], "year": d.isoformat()[:4]}[precision]


def patient_reference(p: TruthPatient) -> Reference:
    """The reference style of the patient's centre: relative or absolute URLs."""
    if p.style.get("ref") == "absolute":
        base = f"https://fhir.centre{p.centre}.example.org/fhir"
        return lambda rtype, rid: f"{base}/{rtype}/{rid}"
    return lambda rtype, rid: f"{rtype}/{rid}"


def _body_sites(site: str | None, laterality: str | None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for s in (site or "").split(";"):
        if s in SITE_BODY:
            out.append(_cc(_coding("snomed", *SITE_BODY[s])))
    if out and laterality in LATERALITY:
        out.append(_cc(_coding("snomed", *LATERALITY[laterality])))
    return out


def _lobe(f: Fact) -> str:
    kind, _, rest = f.variant.partition(":")
    if kind == "dual":
        return rest.split(":")[1]
    return rest if kind in ("icd_dot", "icd_nodot") else "9"


def _icd_family(coding: str, code: str, f: Fact) -> dict[str, str]:
    """A diagnosis in ICD-9-CM / WHO ICD-10 / ICD-10-GM, with or without its dot (record by record)."""
    if coding == "icd9":
        return _coding("icd9cm", code if f.number % 3 else code.replace(".", ""))
    if coding == "gm":
        return _coding("icd10gm" if f.number % 2 else "icd10gm_dimdi", code)
    return _coding("icd10", code)


_LATERAL_LUNG = {"right": ("3341006", "Right lung structure"), "left": ("44029006", "Left lung structure")}


def _lateral_lung(laterality: str | None) -> list[dict[str, Any]]:
    return [_cc(_coding("snomed", *_LATERAL_LUNG[laterality or "right"]))]


def _nsclc_code(f: Fact) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    kind, _, rest = f.variant.partition(":")
    lat = _LAT_DIGIT[f.laterality]
    if kind == "followup":
        return _cc(_coding("snomed", "254637007", "Non-small cell lung cancer")), []
    if kind == "synthea":
        stage = next(s for s, (c, _) in STAGE_CONDITION.items() if c == rest)
        return _cc(_coding("snomed", *STAGE_CONDITION[stage])), []
    if f.coding == "icd9":
        code, display = ICD9_NSCLC[_lobe(f)]
        return _cc({**_icd_family("icd9", code, f), "display": display}), []
    if f.coding in ("who", "gm"):
        return _cc(_icd_family(f.coding, f"C34.{_lobe(f)}", f)), []
    if kind == "snomed":
        if f.coding == "lateral_body" and f.laterality:
            return _cc(_coding("snomed", rest)), _lateral_lung(f.laterality)
        return _cc(_coding("snomed", rest)), _body_sites("lung", f.laterality)
    if kind == "dual":
        histology, lobe = rest.split(":")
        return _cc(_coding("snomed", histology), _coding("icd10cm", f"C34.{lobe}{lat}")), []
    code = f"C34.{rest}{lat}"
    return _cc(_coding("icd10cm", code if kind == "icd_dot" else code.replace(".", ""))), []


def _lesion_code(f: Fact) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    site = f.site or "other"
    if f.coding == "icd9":
        return _cc(_icd_family("icd9", ICD9_LESION[site], f)), []
    if f.coding in ("who", "gm"):
        return _cc(_icd_family(f.coding, WHO_LESION[site], f)), []
    if f.coding == "lateral_body":
        return (
            _cc(_coding("snomed", "128462008", "Secondary malignant neoplastic disease")),
            _lateral_lung(f.laterality),
        )
    icd = icd_lesion_code(site, f.laterality)
    variant = f.variant
    if variant == "snomed_pre" and site not in PRECOORDINATED:
        variant = "snomed_site"
    if variant == "snomed_site" and site not in SITE_BODY:
        variant = "icd_dot"
    if variant == "snomed_pre":
        code, name, _ = PRECOORDINATED[site]
        codings = [_coding("snomed", code, name)]
        if f.laterality:  # laterality only through the ICD-10-CM 5th character: dual-coded
            codings.append(_coding("icd10cm", icd))
        return _cc(*codings), []
    if variant == "snomed_site":
        return (
            _cc(_coding("snomed", "128462008", "Secondary malignant neoplastic disease")),
            _body_sites(site, f.laterality),
        )
    return _cc(_coding("icd10cm", icd if variant == "icd_dot" else icd.replace(".", ""))), []


def _stage_summary(stage: str) -> dict[str, Any]:
    if stage in STAGE_QUALIFIER:
        return _cc(_coding("snomed", *STAGE_QUALIFIER[stage]))
    return _cc(_coding("ajcc", _STAGE_AJCC.get(stage, stage)), text=f"Stage {stage}")


def _condition(f: Fact, rid: str, subject: str, encounter: str | None = None) -> Resource:
    if f.kind == "lesion":
        code, body = _lesion_code(f)
    elif f.kind == "small_cell":
        code, body = _cc(_coding("snomed", "254632001", "Small cell carcinoma of lung")), []
    else:
        code, body = _nsclc_code(f)
    res: Resource = {"resourceType": "Condition", "id": rid}
    if f.lesion_id:
        res["identifier"] = [{"system": _LESION_ID_SYSTEM, "value": f.lesion_id}]
    if f.excluded:
        status = "entered-in-error"
    else:
        status = "confirmed"
        res["clinicalStatus"] = _cc(
            {"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}
        )
    res["verificationStatus"] = _cc(
        {"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": status}
    )
    res["code"] = code
    if body:
        res["bodySite"] = body
    res["subject"] = {"reference": subject}
    if encounter is not None:  # no date of its own: its Encounter's period.start (spec §1 v2)
        res["encounter"] = {"reference": encounter}
    elif f.variant == "followup":
        res["recordedDate"] = f.start.isoformat()
    else:
        res["onsetDateTime"] = _date(f.start, f.precision)
    if f.coding == "summary" and f.stage:
        res["stage"] = [{"summary": _stage_summary(f.stage)}]
    return res


def _observation(f: Fact, rid: str, subject: str) -> Resource:
    res: Resource = {"resourceType": "Observation", "id": rid, "status": "final"}
    if f.kind == "progression":
        res["code"] = _cc(_coding("loinc", "97509-4", "Cancer disease status"))
        res["subject"] = {"reference": subject}
        if f.variant == "issued":
            res["issued"] = f"{f.start.isoformat()}T09:30:00+01:00"
        else:
            res["effectiveDateTime"] = f.start.isoformat()
        res["valueCodeableConcept"] = _cc(_coding("snomed", "271299001", "Patient's condition worsened"))
        return res
    stage = f.stage or ""
    res["code"] = _cc(
        _coding("loinc", "21908-9", "Stage group.clinical Cancer"),
        _coding("snomed", "399537006", "Clinical TNM stage grouping"),
    )
    res["subject"] = {"reference": subject}
    res["effectiveDateTime"] = f.start.isoformat()
    if f.coding == "snomed_qualifier" and stage in STAGE_QUALIFIER:
        res["valueCodeableConcept"] = _cc(_coding("snomed", *STAGE_QUALIFIER[stage]))
    elif f.coding == "display":  # a local code whose display names the stage, or text alone
        word = ("Stadio", "Stadium")[f.number % 2]
        if f.number % 3 == 0:
            res["valueCodeableConcept"] = {"text": f"{word} {stage}"}
        else:
            res["valueCodeableConcept"] = _cc(
                _coding("local_stage", f"ST-{stage}", f"{word} {stage}"), text=f"{word} {stage}"
            )
    elif f.coding == "uicc":
        arabic = stage.replace("III", "3").replace("IV", "4").replace("II", "2").replace("I", "1")
        res["valueCodeableConcept"] = _cc(_coding("uicc", ("c", "p")[f.number % 2] + arabic))
    elif f.variant == "text":
        res["valueString"] = f"Stage {stage}"
    elif f.variant == "snomed" and stage == "IIIC":
        res["valueCodeableConcept"] = _cc(
            _coding("snomed", "1222806003", "American Joint Committee on Cancer stage IIIC")
        )
    else:
        code = stage if f.variant == "ajcc_roman" else _STAGE_AJCC[stage]
        res["valueCodeableConcept"] = _cc(_coding("ajcc", code))
    return res


def _rt_extensions(f: Fact) -> list[dict[str, Any]]:
    fractions = f.fractions or 1
    total = (f.dose_cgy or 0) * fractions
    return [
        {"url": _MCODE + "mcode-radiotherapy-sessions", "valueUnsignedInt": fractions},
        {
            "url": _MCODE + "mcode-radiotherapy-dose-delivered-to-volume",
            "extension": [
                {
                    "url": "totalDoseDelivered",
                    "valueQuantity": {
                        "value": total,
                        "unit": "cGy",
                        "system": "http://unitsofmeasure.org",
                        "code": "cGy",
                    },
                },
                {"url": "fractionsDelivered", "valueUnsignedInt": fractions},
            ],
        },
    ]


def _procedures(f: Fact, rid: str, subject: str, encounter: str | None = None) -> list[Resource]:
    status = "not-done" if f.excluded else "completed"
    base: Resource = {"resourceType": "Procedure", "status": status}
    if f.kind == "chemo_proc":
        return [
            {
                **base,
                "id": rid,
                "code": _cc(_coding(*CHEMO_PROCEDURE[f.coding])),
                "subject": {"reference": subject},
                "performedDateTime": f.start.isoformat(),
            }
        ]
    if f.kind == "combined":
        return [
            {
                **base,
                "id": rid,
                "code": _cc(_coding("snomed", "703423002", "Combined chemotherapy and radiation therapy")),
                "subject": {"reference": subject},
                "performedDateTime": f.start.isoformat(),
            }
        ]
    if f.kind == "surgery":
        code = (
            _coding("icd10pcs", "0BTC4ZZ")
            if f.variant == "icd10pcs"
            else _coding("snomed", "359615001", "Partial lobectomy of lung")
        )
        surgery: Resource = {**base, "id": rid, "code": _cc(code), "subject": {"reference": subject}}
        if encounter is not None:  # no performed[x]: dated by its Encounter (spec §1 v2)
            surgery["encounter"] = {"reference": encounter}
        else:
            surgery["performedDateTime"] = f.start.isoformat()
        return [surgery]
    body = _body_sites(f.site, None)
    rt_code = _coding(*RT_CODES[f.coding]) if f.coding in RT_CODES else None
    if f.variant in ("daily", "sbrt_cpt"):
        cpt = "77373" if f.variant == "sbrt_cpt" else ("77386" if f.site else "77412")
        out = []
        for k, day in enumerate(f.days, start=1):
            res = {
                **base,
                "id": f"{rid}-{k}",
                "code": _cc(rt_code or _coding("cpt", cpt)),
                "subject": {"reference": subject},
                "performedDateTime": day.isoformat(),
            }
            if body:
                res["bodySite"] = body
            out.append(res)
        return out
    res = {
        **base,
        "id": rid,
        "extension": _rt_extensions(f),
        "code": _cc(rt_code or _coding("snomed", "1217123003", "Radiotherapy course of treatment")),
        "subject": {"reference": subject},
        "performedPeriod": {"start": f.start.isoformat(), "end": (f.end or f.start).isoformat()},
    }
    if body:
        res["bodySite"] = body
    return [res]


def _medication_codes(ingredient: str, code_style: str) -> dict[str, Any]:
    rx, _ = INGREDIENT[ingredient]
    if code_style == "atc":
        return _cc(_coding("atc", ATC[ingredient], ingredient))
    if code_style == "rxnorm_scd" and ingredient in PRODUCT:
        return _cc(_coding("rxnorm", *PRODUCT[ingredient]))
    if code_style == "dual":
        return _cc(_coding("rxnorm", rx, ingredient), _coding("atc", ATC[ingredient]))
    return _cc(_coding("rxnorm", rx, ingredient))


def _drug_name(ingredient: str, f: Fact) -> dict[str, Any]:
    """A drug named only by text or by a local code's display (spec §2.1: INN or brand, whole word)."""
    label = drug_label(ingredient, f.number)
    if f.number % 2:
        return {"text": label}
    local = f"F{sum(map(ord, ingredient)) % 9000 + 1000}"
    return _cc(_coding("local_drugs", local, label.upper()))


def _drug(f: Fact, rid: str, subject: str, ref: Reference, medications: dict[str, Resource]) -> Resource:
    ingredient = f.ingredient or ""
    code_style, _, form = f.variant.partition(":")
    codes = _medication_codes(ingredient, code_style)
    medication: Resource = {"code": codes}
    if f.coding == "product":
        products = PRODUCTS[ingredient]
        codes = _cc(_coding("rxnorm", *products[f.number % len(products)][:2]))
        medication = {"code": codes}
    elif f.coding == "name":
        codes = _drug_name(ingredient, f)
        medication = {"code": codes}
    elif f.coding == "ingredient":  # a Medication with no code, only its ingredient
        medication = {
            "ingredient": [{"itemCodeableConcept": _cc(_coding("rxnorm", INGREDIENT[ingredient][0]))}]
        }
        code_style, form = "ingredient", "reference" if form == "reference" else "contained"
    res: Resource = {
        "resourceType": "MedicationRequest" if f.request else "MedicationAdministration",
        "id": rid,
    }
    if form == "contained":
        res["contained"] = [{"resourceType": "Medication", "id": "med1", **medication}]
    if f.request:
        res["status"] = "cancelled" if f.excluded else "completed"
        res["intent"] = "order"
    else:
        res["status"] = "not-done" if f.excluded else "completed"
    if form == "contained":
        res["medicationReference"] = {"reference": "#med1"}
    elif form == "reference":
        mid = f"med-{ingredient}-{code_style.replace('_', '-')}"
        if f.coding in ("product", "name"):
            mid = f"{rid}-med"  # this record's own Medication
        medications[mid] = {"resourceType": "Medication", "id": mid, **medication}
        res["medicationReference"] = {"reference": ref("Medication", mid)}
    else:
        res["medicationCodeableConcept"] = codes
    res["subject"] = {"reference": subject}
    if f.request:
        res["authoredOn"] = f.start.isoformat()
    elif form == "contained":
        res["effectivePeriod"] = {
            "start": f"{f.start.isoformat()}T10:00:00+01:00",
            "end": f"{f.start.isoformat()}T11:30:00+01:00",
        }
    else:
        res["effectiveDateTime"] = f.start.isoformat()
    return res


def _patient(p: TruthPatient) -> Resource:
    res: Resource = {
        "resourceType": "Patient",
        "id": p.patient_id,
        "identifier": [{"system": "urn:leopard:synth:patient", "value": p.patient_id}],
        "gender": p.sex,
        "birthDate": p.birth_date.isoformat(),
    }
    if p.death_date and not p.death_known:
        res["deceasedBoolean"] = True
    elif p.death_date:
        res["deceasedDateTime"] = p.death_date.isoformat()
    return res


def fhir_resources(p: TruthPatient, reference: Reference | None = None) -> list[Resource]:
    """All resources of one patient: Patient first, Medications it references last.

    ``reference(type, id)`` writes references (default: the centre's style); bundles
    pass one that returns ``urn:uuid:…``.
    """
    ref = reference or patient_reference(p)
    subject = ref("Patient", p.patient_id)
    out: list[Resource] = [_patient(p)]
    medications: dict[str, Resource] = {}
    for f in p.facts:
        rid = f"{p.patient_id}-{f.ref}"
        encounter = None
        if f.encounter_end is not None:
            out.append(
                encounter_resource(f, f"{rid}-encounter", subject, inpatient=f.encounter_end > f.start)
            )
            encounter = ref("Encounter", f"{rid}-encounter")
        if f.kind in ("nsclc", "small_cell", "lesion"):
            out.append(_condition(f, rid, subject, encounter))
        elif f.kind in ("stage", "progression"):
            out.append(_observation(f, rid, subject))
        elif f.kind in ("rt", "combined", "surgery", "chemo_proc"):
            out.extend(_procedures(f, rid, subject, encounter))
        elif f.kind == "drug":
            out.append(_drug(f, rid, subject, ref, medications))
        elif f.kind == "activity":
            out.append(activity_resource(f, rid, subject))
    out.extend(medications[k] for k in sorted(medications))
    return respell(out, p.idioms)
