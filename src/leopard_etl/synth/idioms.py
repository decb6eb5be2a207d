"""The spec-v2 real-world idioms: what they look like, and which patients carry them.

A deterministic share of patients (every fifth, :data:`SHARE`) carries up to three idioms,
chosen so that each idiom is used about as often as the others among the patients it fits;
an idiom that has not been used yet also goes to the first patient it fits, so that even a
40-patient cohort exercises every idiom the cohort's designs allow. The transformations keep
the design intent (pattern, salvage, CRT type) and, except where an idiom is *about* it
(death with unknown date, laterality lost with ICD-9 / WHO codes), the ground truth of the
patient; ``expected.py`` then applies the v2 rules to whatever the facts became.

:data:`IDIOMS` names each idiom with what it looks like in FHIR and in OMOP (None where the
idiom is about FHIR syntax that OMOP does not have).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import numpy as np

from .calibration import Calibration
from .idiom_facts import APPLIES, APPLY, Context
from .truth import TruthPatient

__all__ = ["IDIOMS", "SHARE", "Idiom", "IdiomAssigner", "renumber"]

#: every SHARE-th patient carries idioms (index % SHARE == 2): 20 %
SHARE = 5
_PER_PATIENT = 3


@dataclass(frozen=True)
class Idiom:
    name: str
    fhir: str
    omop: str | None
    groups: tuple[str, ...] = ()
    weight: float = 1.0


#: name -> how it looks in each rendering (docs/synthetic.md has the same table)
IDIOMS: dict[str, Idiom] = {
    i.name: i
    for i in (
        Idiom(
            "followup_activity",
            "follow-up as Encounters, ECOG/lab Observations, DiagnosticReports, ImagingStudies, "
            "Immunizations, MedicationStatements; a Port-a-Cath Procedure without a code",
            "visit_occurrence, measurement/observation, procedure_occurrence, drug_exposure, device_exposure",
            ("followup",),
            weight=10.0,
        ),
        Idiom(
            "encounter_only_followup",
            "after treatment only Encounters; the last an inpatient stay ending on the last contact",
            "visit_occurrence (+ visit_detail) whose visit_end_date is the last contact",
            ("followup",),
        ),
        Idiom(
            "condition_recorded_later",
            "hypertension Condition with recordedDate years after onsetDateTime",
            "condition_occurrence on the onset, linked to a visit_occurrence on the recorded date",
        ),
        Idiom(
            "after_death_records",
            "Encounter and DiagnosticReport dated after the death",
            "visit_occurrence and observation dated after the death",
            ("death",),
        ),
        Idiom(
            "excluded_activity",
            "planned / cancelled Encounters, entered-in-error Observation, not-done Immunization … "
            "after the last contact",
            None,
        ),
        Idiom(
            "open_end_interval",
            "inpatient Encounter whose period.end is 2099-12-31",
            "visit_occurrence whose visit_end_date is 2099-12-31",
        ),
        Idiom("future_record", "Observation dated decades after the day of the run (quarantined)", None),
        Idiom(
            "statement_end_ignored",
            "MedicationStatement whose effectivePeriod.end is after the last contact (only its start counts)",
            "drug_exposure whose end date is after the last contact (only the start counts)",
        ),
        Idiom(
            "nsclc_encounter_date",
            "NSCLC Condition without onset or recordedDate, dated by Condition.encounter",
            "condition_occurrence linked to its visit_occurrence",
            ("encounter_date",),
        ),
        Idiom(
            "condition_encounter_date",
            "lesion Condition without onset or recordedDate, dated by Condition.encounter",
            "condition_occurrence linked to its visit_occurrence",
            ("encounter_date",),
        ),
        Idiom(
            "procedure_encounter_date",
            "surgery Procedure without performed[x], dated by Procedure.encounter",
            "procedure_occurrence linked to its visit_occurrence",
            ("encounter_date",),
        ),
        Idiom(
            "deceased_boolean",
            "Patient.deceasedBoolean true (no date)",
            "death row with NULL death_date",
            ("death",),
        ),
        Idiom(
            "unscreened_late_activity",
            "a small-cell patient's Encounter later than any screened patient's record (not the cutoff)",
            "the same as a visit_occurrence",
        ),
        Idiom(
            "rxnorm_product",
            "RxNorm clinical/branded drug codes (597195, 1736854, 583214, 1919512 …)",
            "drug_concept_id an RxNorm product concept, concept_ancestor to its ingredient",
            ("drug_code",),
        ),
        Idiom(
            "medication_ingredient",
            "Medication with no code, only Medication.ingredient.itemCodeableConcept",
            "drug_concept_id 0, drug_source_concept_id the ingredient",
            ("drug_code",),
        ),
        Idiom(
            "drug_name_text",
            "drug named only by text or a local coding's display (INN English/Italian, brand)",
            "drug_source_value the name as text (drug_concept_id mapped)",
            ("drug_code",),
        ),
        Idiom(
            "icd9_diagnosis",
            "ICD-9-CM 162.x NSCLC and 196-198 lesions (http://hl7.org/fhir/sid/icd-9-cm)",
            "ICD9CM source concepts; NSCLC as condition_source_value text only",
            ("nsclc_code",),
        ),
        Idiom(
            "icd10_who",
            "WHO ICD-10 C34.x / C78-C79 (http://hl7.org/fhir/sid/icd-10)",
            "ICD10 source concepts",
            ("nsclc_code",),
        ),
        Idiom(
            "icd10_gm",
            "ICD-10-GM C34.x / C78-C79 (bfarm and dimdi URIs)",
            "ICD10GM source concepts",
            ("nsclc_code",),
        ),
        Idiom(
            "system_oid",
            "coding systems written as HL7 OIDs (urn:oid:2.16.840.1.113883.6.x)",
            None,
            ("system",),
        ),
        Idiom("system_version", "coding systems with a |version suffix", None, ("system",)),
        Idiom("snomed_edition", "SNOMED written as an edition URI", None, ("system",)),
        Idiom(
            "stage_snomed_qualifier",
            "stage value SNOMED 261638004 (3A) / 261639007 (3B)",
            "measurement value_as_concept_id the SNOMED qualifier",
            ("stage",),
        ),
        Idiom(
            "stage_display_text",
            "stage value as a local coding's display or text (Stadio IIIA, Stadium IIIB)",
            "measurement value_source_value text, no value concept",
            ("stage",),
        ),
        Idiom(
            "stage_uicc",
            "stage value a UICC TNM code (c3A, p3B …)",
            "measurement value_source_value the UICC code, value concept the Cancer Modifier",
            ("stage",),
        ),
        Idiom(
            "stage_summary",
            "stage only as Condition.stage.summary on the NSCLC Condition",
            "Cancer Modifier stage measurement on the diagnosis date",
            ("stage", "nsclc_code"),
        ),
        Idiom(
            "synthea_stage_condition",
            "Synthea NSCLC stage conditions 424132000 / 425048006 / 423121009",
            "condition_concept_id the SNOMED stage condition",
            ("stage", "nsclc_code"),
        ),
        Idiom(
            "rt_snomed_ebrt",
            "radiotherapy as SNOMED 33195004 / IMRT 441799006",
            "procedure_concept_id the SNOMED concept",
            ("rt_code",),
        ),
        Idiom(
            "rt_ops",
            "radiotherapy as OPS 8-522.d1, with an OPS 8-529 planning record before it",
            "procedure_source_value OPS text (8-522.d1, 8-529), OPS source concept",
            ("rt_code",),
        ),
        Idiom(
            "icd9_procedure",
            "radiotherapy as ICD-9-CM 92.24 (stereotactic 92.39)",
            "ICD9Proc source concepts",
            ("rt_code",),
        ),
        Idiom(
            "chemo_procedure",
            "CRT chemotherapy only as Procedures (367336001 / 99.25 / OPS 8-543), no drug",
            "procedure_occurrence (SNOMED concept, ICD9Proc or OPS source)",
            ("chemo",),
        ),
        Idiom(
            "chemo_procedure_with_drug",
            "no CRT: chemo Procedures plus a paclitaxel drug record in the RT window (not platinum)",
            "the same in procedure_occurrence and drug_exposure",
            ("chemo",),
        ),
        Idiom(
            "salvage_chemo_procedure",
            "salvage chemotherapy only as Procedures",
            "procedure_occurrence",
            ("chemo",),
        ),
        Idiom(
            "lung_body_site_laterality",
            "lung laterality from the body site SNOMED 3341006 / 44029006",
            "lateralised Cancer Modifier (35226292 / 35225630)",
            ("nsclc_code",),
        ),
    )
}


assert set(APPLY) == set(IDIOMS) == set(APPLIES)


def renumber(p: TruthPatient) -> None:
    """Facts sorted by (start, kind) and their refs re-issued, as build_history does."""
    p.facts.sort(key=lambda f: (f.start, f.kind))
    p.facts = [f.evolve(ref=f"{f.kind.replace('_', '-')}-{i + 1}") for i, f in enumerate(p.facts)]


class IdiomAssigner:
    """Chooses and applies each patient's idioms, in patient order (deterministic for a seed)."""

    def __init__(self, rng: np.random.Generator, cal: Calibration) -> None:
        self.rng = rng
        self.cal = cal
        self.counts: Counter[str] = Counter()

    def _choose(self, index: int, c: Context) -> list[str]:
        share = index % SHARE == 2
        candidates = list(IDIOMS) if share else [n for n in IDIOMS if self.counts[n] == 0]
        fits = [name for name in candidates if APPLIES[name](c)]
        chosen: list[str] = []
        used: set[str] = set()

        def take(name: str) -> None:
            chosen.append(name)
            used.update(IDIOMS[name].groups)
            self.counts[name] += 1

        if share:
            ranked = sorted(fits, key=lambda n: (self.counts[n] / IDIOMS[n].weight, list(IDIOMS).index(n)))
            for name in ranked:
                if len(chosen) < _PER_PATIENT and not used & set(IDIOMS[name].groups):
                    take(name)
        elif fits:  # an idiom nobody has yet goes to the first patient it fits
            take(fits[0])
        return [n for n in IDIOMS if n in chosen]  # registry order: the order they are applied in

    def assign(self, index: int, p: TruthPatient) -> None:
        c = Context(p, self.rng, self.cal)
        p.idioms = self._choose(index, c)
        if not p.idioms:
            return
        for name in p.idioms:
            APPLY[name](c)
        renumber(p)
