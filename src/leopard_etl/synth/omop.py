"""OMOP CDM 5.4 / 5.3 rendering of the latent patients (docs/omop-conventions.md).

Rows per table as plain dicts keyed by CDM column name; FHIR-only idioms (entered-in-error,
not-done, cancelled, MedicationRequests the §1 rule ignores) are omitted. In 5.3, which
has no ``procedure_end_date``, every RT course is written one row per fraction so that the
course dates survive; progression is a LOINC 97509-4 measurement (no episode table).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from .idiom_codes import (
    CHEMO_PROCEDURE,
    ICD9_LESION,
    ICD9_NSCLC,
    PRODUCTS,
    RT_CODES,
    STAGE_QUALIFIER,
    WHO_LESION,
    drug_label,
)
from .omop_activity import EHR, Row, Tables, activity_rows, observation_period, visit
from .truth import Fact, TruthPatient
from .vocabulary import (
    ATC,
    CM_LESION,
    CM_STAGE,
    INGREDIENT,
    PRECOORDINATED,
    PRODUCT,
    concept_ancestor_rows,
    concept_id,
    concept_rows,
    icd_lesion_code,
)

__all__ = ["Row", "omop_rows"]

_EHR = EHR
_LAT_DIGIT = {"right": "1", "left": "2", None: "0"}
_Tables = Tables
#: the spec-v2 diagnosis codings: OMOP vocabulary_id
_DX_VOCAB = {"icd9": "ICD9CM", "who": "ICD10", "gm": "ICD10GM"}
_PROC_VOCAB = {"snomed": "SNOMED", "icd9cm": "ICD9Proc", "ops": "OPS"}


def _visit_of(t: _Tables, pid: int, f: Fact) -> int | None:
    """The visit a record is dated by (spec §1 v2: Condition/Procedure.encounter), when it has one."""
    if f.encounter_end is None:
        return None
    return visit(t, pid, f.start, f.encounter_end, f.encounter_end > f.start)


def _condition(
    t: _Tables,
    pid: int,
    day: dt.date,
    concept: int,
    source_concept: int | None = None,
    source_value: str | None = None,
    visit_id: int | None = None,
) -> int:
    return t.add(
        "condition_occurrence",
        "condition_occurrence_id",
        {
            "person_id": pid,
            "condition_concept_id": concept,
            "condition_start_date": day,
            "condition_type_concept_id": _EHR,
            "visit_occurrence_id": visit_id,
            "condition_source_value": source_value,
            "condition_source_concept_id": source_concept,
        },
    )


def _measurement(
    t: _Tables,
    pid: int,
    day: dt.date,
    concept: int,
    value_concept: int | None = None,
    source_value: str | None = None,
    value_text: str | None = None,
) -> None:
    t.add(
        "measurement",
        "measurement_id",
        {
            "person_id": pid,
            "measurement_concept_id": concept,
            "measurement_date": day,
            "measurement_type_concept_id": _EHR,
            "value_as_concept_id": value_concept,
            "measurement_source_value": source_value,
            "value_source_value": value_text,
        },
    )


def _procedure(
    t: _Tables,
    pid: int,
    start: dt.date,
    end: dt.date | None,
    concept: int,
    version: str,
    quantity: int | None = None,
    source_value: str | None = None,
    source_concept: int | None = None,
    visit_id: int | None = None,
) -> None:
    row: Row = {
        "person_id": pid,
        "procedure_concept_id": concept,
        "procedure_date": start,
        "procedure_type_concept_id": _EHR,
        "quantity": quantity,
        "visit_occurrence_id": visit_id,
        "procedure_source_value": source_value,
        "procedure_source_concept_id": source_concept,
    }
    if version == "5.4":
        row["procedure_end_date"] = end
    t.add("procedure_occurrence", "procedure_occurrence_id", row)


def _lobe(f: Fact) -> str:
    kind, _, rest = f.variant.partition(":")
    if kind == "dual":
        return rest.split(":")[1]
    return rest if kind in ("icd_dot", "icd_nodot") else "9"


def _nsclc(t: _Tables, pid: int, f: Fact) -> None:
    kind, _, rest = f.variant.partition(":")
    lat = _LAT_DIGIT[f.laterality]
    vid = _visit_of(t, pid, f)
    if kind == "followup":
        _condition(t, pid, f.start, concept_id("SNOMED", "254637007"))
    elif kind == "synthea":
        _condition(t, pid, f.start, concept_id("SNOMED", rest or "422968005"), visit_id=vid)
    elif f.coding in _DX_VOCAB:  # ICD-9-CM / WHO / GM: unmapped, the code in the source columns
        code = ICD9_NSCLC[_lobe(f)][0] if f.coding == "icd9" else f"C34.{_lobe(f)}"
        text_only = f.coding == "icd9" and f.number % 2 == 1  # the code as text, no source concept
        source = None if text_only else concept_id(_DX_VOCAB[f.coding], code)
        _condition(t, pid, f.start, 0, source, code, visit_id=vid)
    elif kind in ("snomed", "dual"):
        histology, _, lobe = rest.partition(":")
        icd = f"C34.{lobe or '9'}{lat}" if f.laterality else None
        _condition(
            t,
            pid,
            f.start,
            concept_id("SNOMED", histology),
            concept_id("ICD10CM", icd) if icd else None,
            icd,
            visit_id=vid,
        )
    else:  # ICD-10-CM only: no standard mapping, the code lives in the source columns
        icd = f"C34.{rest}{lat}"
        source_value = icd if kind == "icd_dot" else icd.replace(".", "")
        _condition(t, pid, f.start, 0, concept_id("ICD10CM", icd), source_value, visit_id=vid)
    if f.coding == "summary" and f.stage:  # the stage of the diagnosis, as OMOP records it
        _measurement(t, pid, f.start, concept_id("Cancer Modifier", CM_STAGE[f.stage][0]))


def _lesion(t: _Tables, pid: int, f: Fact, style: str) -> None:
    site = f.site or "other"
    cm = CM_LESION.get((site, f.laterality)) or CM_LESION.get((site, None))
    if f.coding == "lateral_body":
        style = "cm"
    elif f.coding or f.encounter_end:
        style = "cond"
    if (
        style == "cm"
        and cm is not None
        and (site not in ("lung", "adrenal") or (site, f.laterality) in CM_LESION)
    ):
        _measurement(t, pid, f.start, cm[0], source_value=f.lesion_id)
        return
    if f.coding in _DX_VOCAB:
        vocab = _DX_VOCAB[f.coding]
        source = concept_id(vocab, (ICD9_LESION if f.coding == "icd9" else WHO_LESION)[site])
    else:
        source = concept_id("ICD10CM", icd_lesion_code(site, f.laterality))
    pre = PRECOORDINATED.get(site)
    standard = concept_id("SNOMED", pre[0]) if pre else concept_id("SNOMED", "128462008")
    _condition(t, pid, f.start, standard, source, f.lesion_id, visit_id=_visit_of(t, pid, f))


def _coded_procedure(system: str, code: str) -> tuple[int, int | None, str | None]:
    """(concept, source concept, source value) of a v2 procedure: SNOMED standard, ICD-9 / OPS as source."""
    vocab = _PROC_VOCAB[system]
    if vocab == "SNOMED":
        return concept_id(vocab, code), None, None
    return 0, concept_id(vocab, code), code


def _rt(t: _Tables, pid: int, f: Fact, version: str) -> None:
    if f.stereotactic:
        code = "77373"
    elif f.site:
        code = "77386"
    else:
        code = "77412"
    per_fraction = version == "5.3" or f.variant in ("daily", "sbrt_cpt")
    if f.coding in RT_CODES:
        concept, source, text = _coded_procedure(*RT_CODES[f.coding][:2])
        if per_fraction:
            for day in f.days:
                _procedure(t, pid, day, day, concept, version, 1, text, source)
        else:
            _procedure(t, pid, f.start, f.end, concept, version, f.fractions, text, source)
    elif per_fraction:
        for day in f.days:
            _procedure(t, pid, day, day, concept_id("CPT4", code), version, 1, code)
    elif f.stereotactic:
        _procedure(t, pid, f.start, f.end, concept_id("CPT4", code), version, f.fractions, code)
    else:
        _procedure(t, pid, f.start, f.end, concept_id("SNOMED", "1217123003"), version, f.fractions)


def _drug(t: _Tables, pid: int, f: Fact) -> None:
    ingredient = f.ingredient or ""
    code_style = f.variant.partition(":")[0]
    rx, ingredient_id = INGREDIENT[ingredient]
    concept, source_concept, source_value = ingredient_id, None, rx
    if f.coding == "product":
        product = PRODUCTS[ingredient][f.number % len(PRODUCTS[ingredient])][0]
        concept, source_value = concept_id("RxNorm", product), product
    elif f.coding == "ingredient":  # unmapped record whose source concept is the ingredient
        concept, source_concept = 0, ingredient_id
    elif f.coding == "name":  # mapped to the ingredient from the name the site wrote
        source_value = drug_label(ingredient, f.number)
    elif code_style == "rxnorm_scd" and ingredient in PRODUCT:
        concept, source_value = concept_id("RxNorm", PRODUCT[ingredient][0]), PRODUCT[ingredient][0]
    elif code_style in ("atc", "dual"):
        source_concept, source_value = concept_id("ATC", ATC[ingredient]), ATC[ingredient]
    t.add(
        "drug_exposure",
        "drug_exposure_id",
        {
            "person_id": pid,
            "drug_concept_id": concept,
            "drug_exposure_start_date": f.start,
            "drug_exposure_end_date": f.start,
            "drug_type_concept_id": _EHR,
            "drug_source_value": source_value,
            "drug_source_concept_id": source_concept,
        },
    )


def _progression(t: _Tables, pid: int, f: Fact, style: str, version: str) -> None:
    if version == "5.4" and style == "episode":
        t.add(
            "episode",
            "episode_id",
            {
                "person_id": pid,
                "episode_concept_id": 32677,
                "episode_start_date": f.start,
                "episode_object_concept_id": concept_id("SNOMED", "254637007"),
                "episode_type_concept_id": _EHR,
                "episode_source_value": "progression",
            },
        )
    else:
        _measurement(t, pid, f.start, concept_id("LOINC", "97509-4"), concept_id("SNOMED", "271299001"))


def _stage(t: _Tables, pid: int, f: Fact, style: str) -> None:
    cm = concept_id("Cancer Modifier", CM_STAGE[f.stage or "III"][0])
    loinc = concept_id("LOINC", "21908-9")
    stage = f.stage or "III"
    if f.coding == "snomed_qualifier" and stage in STAGE_QUALIFIER:
        _measurement(t, pid, f.start, loinc, concept_id("SNOMED", STAGE_QUALIFIER[stage][0]))
    elif f.coding == "display":  # the value as text only
        word = ("Stadio", "Stadium")[f.number % 2]
        _measurement(t, pid, f.start, loinc, value_text=f"{word} {stage}")
    elif f.coding == "uicc":
        arabic = stage.replace("III", "3").replace("IV", "4").replace("II", "2").replace("I", "1")
        _measurement(t, pid, f.start, loinc, cm, value_text=("c", "p")[f.number % 2] + arabic)
    elif style == "loinc":
        _measurement(t, pid, f.start, concept_id("LOINC", "21908-9"), cm)
    else:
        _measurement(t, pid, f.start, cm)


def _kept(p: TruthPatient) -> list[Fact]:
    facts = [f for f in p.facts if not f.excluded]
    administered = {f.ingredient for f in facts if f.kind == "drug" and not f.request}
    return [f for f in facts if not (f.kind == "drug" and f.request and f.ingredient in administered)]


def omop_rows(truth: Sequence[TruthPatient], version: str = "5.4") -> dict[str, list[Row]]:
    """All CDM and vocabulary rows (keys = table names) for the patients."""
    t = _Tables()
    for p in truth:
        since = t.mark()
        pid = int(p.patient_id)
        t.add(
            "person",
            None,
            {
                "person_id": pid,
                "gender_concept_id": 8507 if p.sex == "male" else 8532,
                "year_of_birth": p.birth_date.year,
                "month_of_birth": p.birth_date.month,
                "day_of_birth": p.birth_date.day,
                "race_concept_id": 0,
                "ethnicity_concept_id": 0,
                "person_source_value": p.patient_id,
                "gender_source_value": "M" if p.sex == "male" else "F",
            },
        )
        facts = _kept(p)
        for f in facts:
            if f.kind == "nsclc":
                _nsclc(t, pid, f)
            elif f.kind == "small_cell":
                _condition(t, pid, f.start, concept_id("SNOMED", "254632001"))
            elif f.kind == "stage":
                _stage(t, pid, f, p.style["omop_stage"])
            elif f.kind == "rt":
                _rt(t, pid, f, version)
            elif f.kind == "combined":
                _procedure(t, pid, f.start, f.start, concept_id("SNOMED", "703423002"), version)
            elif f.kind == "surgery":
                concept = (
                    concept_id("ICD10PCS", "0BTC4ZZ")
                    if f.variant == "icd10pcs"
                    else concept_id("SNOMED", "359615001")
                )
                vid = _visit_of(t, pid, f)
                _procedure(t, pid, f.start, f.start, concept, version, visit_id=vid)
            elif f.kind == "chemo_proc":
                system, code, _ = CHEMO_PROCEDURE[f.coding]
                concept, source, text = _coded_procedure(system, code)
                _procedure(t, pid, f.start, f.start, concept, version, None, text, source)
            elif f.kind == "activity":
                activity_rows(t, pid, f)
            elif f.kind == "drug":
                _drug(t, pid, f)
            elif f.kind == "progression":
                _progression(t, pid, f, p.style["omop_prog"], version)
            elif f.kind == "lesion":
                _lesion(t, pid, f, p.style["omop_lesion"])
        period = observation_period(t, since, pid, p.death_date if p.death_known else None)
        if period:
            t.add(
                "observation_period",
                "observation_period_id",
                {
                    "person_id": pid,
                    "observation_period_start_date": period[0],
                    "observation_period_end_date": period[1],
                    "period_type_concept_id": _EHR,
                },
            )
        if p.death_date:  # a death without date (spec §1 v2) is a row with NULL death_date
            death = p.death_date if p.death_known else None
            t.add("death", None, {"person_id": pid, "death_date": death, "death_type_concept_id": _EHR})
    t.rows["concept"] = concept_rows()
    t.rows["concept_ancestor"] = concept_ancestor_rows()
    return dict(t.rows)
