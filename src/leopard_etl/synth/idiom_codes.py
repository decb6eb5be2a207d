"""Codes of the spec-v2 real-world idioms (spec §1 aliases, §2.1; codes.md), each table with its source.

The renderers write these; ``vocabulary.py`` adds the OMOP concepts that resolve them. Codes that
are in no code group (the activity records: a visit, an ECOG score, a blood count …) are real
codes too, so that an export of the synthetic cohort looks like a hospital's.
"""

from __future__ import annotations

import datetime as dt

__all__ = [
    "ACTIVITY",
    "CHEMO_PROCEDURE",
    "DRUG_NAMES",
    "FAR_FUTURE",
    "ICD9_LESION",
    "ICD9_NSCLC",
    "OIDS",
    "OID_ICD9",
    "OPS_PLANNING",
    "PRODUCTS",
    "RT_CODES",
    "SNOMED_EDITION",
    "STAGE_CONDITION",
    "STAGE_QUALIFIER",
    "SYSTEMS_V2",
    "VERSIONS",
    "WHO_LESION",
    "drug_label",
]

#: an end date that sites write for "not discharged yet" (after the day of any run)
FAR_FUTURE = dt.date(2099, 12, 31)

#: spec §1 (v2) code systems beyond v1, by the short key the renderers use
SYSTEMS_V2 = {
    "icd9cm": "http://hl7.org/fhir/sid/icd-9-cm",
    "icd10": "http://hl7.org/fhir/sid/icd-10",
    "icd10gm": "http://fhir.de/CodeSystem/bfarm/icd-10-gm",
    "icd10gm_dimdi": "http://fhir.de/CodeSystem/dimdi/icd-10-gm",
    "ops": "http://fhir.de/CodeSystem/bfarm/ops",
    "uicc": "https://www.uicc.org/resources/tnm",
    # activity records only (no code group)
    "cvx": "http://hl7.org/fhir/sid/cvx",
    "actcode": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
    "dicom": "http://dicom.nema.org/resources/ontology/DCM",
    "local_drugs": "https://fhir.ospedale.example.it/CodeSystem/prontuario",
    "local_stage": "https://fhir.ospedale.example.it/CodeSystem/stadiazione",
}

#: spec §1 Aliases: HL7 OIDs of the systems (ICD-9-CM: .103 diagnoses, .104 procedures)
OIDS = {
    "http://snomed.info/sct": "urn:oid:2.16.840.1.113883.6.96",
    "http://loinc.org": "urn:oid:2.16.840.1.113883.6.1",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "urn:oid:2.16.840.1.113883.6.88",
    "http://hl7.org/fhir/sid/icd-10-cm": "urn:oid:2.16.840.1.113883.6.90",
    "http://hl7.org/fhir/sid/icd-10": "urn:oid:2.16.840.1.113883.6.3",
    "http://www.whocc.no/atc": "urn:oid:2.16.840.1.113883.6.73",
    "http://www.ama-assn.org/go/cpt": "urn:oid:2.16.840.1.113883.6.12",
    "http://www.cms.gov/Medicare/Coding/ICD10": "urn:oid:2.16.840.1.113883.6.4",
}
OID_ICD9 = {"Condition": "urn:oid:2.16.840.1.113883.6.103", "Procedure": "urn:oid:2.16.840.1.113883.6.104"}
#: spec §1: "any system may carry a FHIR version suffix |V" (versions as sites write them)
VERSIONS = {
    "http://snomed.info/sct": "http://snomed.info/sct/900000000000207008/version/20230131",
    "http://loinc.org": "2.74",
    "http://www.nlm.nih.gov/research/umls/rxnorm": "2023-01-03",
    "http://hl7.org/fhir/sid/icd-10-cm": "2022",
    "http://www.whocc.no/atc": "2023",
    "http://www.ama-assn.org/go/cpt": "2022",
    "http://www.cms.gov/Medicare/Coding/ICD10": "2022",
    "http://cancerstaging.org": "8",
}
#: spec §1: SNOMED written as an edition URI (International edition module 900000000000207008)
SNOMED_EDITION = "http://snomed.info/sct/900000000000207008/version/20230131"

#: ICD-9-CM diagnoses (spec §2.1; ICD-9-CM tabular list): NSCLC by lobe, lesions by site category
ICD9_NSCLC = {
    "1": ("162.3", "Malignant neoplasm of upper lobe, bronchus or lung"),
    "3": ("162.5", "Malignant neoplasm of lower lobe, bronchus or lung"),
    "9": ("162.9", "Malignant neoplasm of bronchus and lung, unspecified"),
}
ICD9_LESION = {
    "lung": "197.0",
    "lymph_node_thoracic": "196.1",
    "lymph_node_distant": "196.2",
    "pleura": "197.2",
    "peritoneum": "197.6",
    "liver": "197.7",
    "brain": "198.3",
    "meninges": "198.4",
    "bone": "198.5",
    "adrenal": "198.7",
}
#: WHO ICD-10 / ICD-10-GM lesions (spec §2.1; no laterality digit; C79.3 is brain *and*
#: meninges, so meninges has no code of its own here and keeps its ICD-10-CM C79.32)
WHO_LESION = {
    "lung": "C78.0",
    "lymph_node_thoracic": "C77.1",
    "lymph_node_distant": "C77.2",
    "pleura": "C78.2",
    "peritoneum": "C78.6",
    "liver": "C78.7",
    "brain": "C79.3",
    "bone": "C79.5",
    "adrenal": "C79.7",
}

#: radiotherapy delivery (spec §2.1): SNOMED teleradiotherapy and the mCODE IMRT technique
#: (codes.md E, S1), ICD-9-CM 92.24 (and 92.39 stereotactic), OPS 8-522 (MII onco examples,
#: codes.md S20: 8-522.d1 with performedPeriod)
RT_CODES = {
    "ebrt": ("snomed", "33195004", "Teleradiotherapy procedure"),
    "imrt": ("snomed", "441799006", "Intensity modulated radiation therapy"),
    "icd9": ("icd9cm", "92.24", "Teleradiotherapy using photons"),
    "icd9_stereotactic": ("icd9cm", "92.39", "Stereotactic radiosurgery, not elsewhere classified"),
    "ops": ("ops", "8-522.d1", "Hochvoltstrahlentherapie: Linearbeschleuniger"),
}
#: OPS 8-529 treatment planning: not radiotherapy delivery (spec §2.1: it would move the start)
OPS_PLANNING = ("8-529", "Bestrahlungsplanung")
#: chemotherapy without a drug (spec §2.1 chemo_procedure; OPS 8-543 as in the MII onco examples)
CHEMO_PROCEDURE = {
    "snomed": ("snomed", "367336001", "Chemotherapy"),
    "icd9": ("icd9cm", "99.25", "Injection or infusion of cancer chemotherapeutic substance"),
    "ops": ("ops", "8-543", "Mittelgradig komplexe und intensive Blockchemotherapie"),
}
#: SNOMED stage qualifiers (spec §2.1; codes.md S19)
STAGE_QUALIFIER = {"IIIA": ("261638004", "Stage 3A"), "IIIB": ("261639007", "Stage 3B")}
#: Synthea's NSCLC-with-stage conditions (spec §2.1; codes.md H, S7)
STAGE_CONDITION = {
    "I": ("424132000", "Non-small cell carcinoma of lung, TNM stage 1"),
    "II": ("425048006", "Non-small cell carcinoma of lung, TNM stage 2"),
    "III": ("422968005", "Non-small cell carcinoma of lung, TNM stage 3"),
    "IV": ("423121009", "Non-small cell carcinoma of lung, TNM stage 4"),
}

#: RxNorm clinical/branded drugs (spec §2.1; codes.md D, S7, S14; the others from
#: mappings/drug_products.yaml, RxNorm 10/06/2025 prescribable content), by ingredient
PRODUCTS: dict[str, tuple[tuple[str, str, str], ...]] = {
    "carboplatin": (("597195", "carboplatin 10 MG/ML Injectable Solution", "Clinical Drug"),),
    "cisplatin": (("1736854", "cisplatin 50 MG Injection", "Clinical Drug"),),
    "paclitaxel": (("583214", "paclitaxel 100 MG Injection", "Clinical Drug"),),
    "etoposide": (("1734340", "etoposide 100 MG Injection", "Clinical Drug"),),
    "pemetrexed": (("1728072", "pemetrexed 500 MG Injection", "Clinical Drug"),),
    "vinorelbine": (("1729418", "1 ML vinorelbine 10 MG/ML Injection", "Clinical Drug"),),
    "docetaxel": (("1860480", "1 ML docetaxel 20 MG/ML Injection", "Clinical Drug"),),
    "durvalumab": (
        ("1919507", "2.4 ML durvalumab 50 MG/ML Injection", "Clinical Drug"),
        ("1919512", "2.4 ML durvalumab 50 MG/ML Injection [Imfinzi]", "Branded Drug"),
        ("1919515", "10 ML durvalumab 50 MG/ML Injection", "Clinical Drug"),
        ("1919516", "10 ML durvalumab 50 MG/ML Injection [Imfinzi]", "Branded Drug"),
    ),
    "pembrolizumab": (("1657750", "4 ML pembrolizumab 25 MG/ML Injection", "Clinical Drug"),),
    "nivolumab": (("1657190", "4 ML nivolumab 10 MG/ML Injection", "Clinical Drug"),),
    "osimertinib": (("1721581", "osimertinib 80 MG Oral Tablet", "Clinical Drug"),),
}
#: INN (English, Italian) and brand names (spec §2.1), how a record names a drug without a code
DRUG_NAMES = {
    "cisplatin": ("Cisplatin", "Cisplatino", "Platinol"),
    "carboplatin": ("Carboplatin", "Carboplatino", "Paraplatin"),
    "etoposide": ("Etoposide",),
    "pemetrexed": ("Pemetrexed", "Alimta"),
    "paclitaxel": ("Paclitaxel", "Taxol"),
    "vinorelbine": ("Vinorelbine", "Vinorelbina", "Navelbine"),
    "docetaxel": ("Docetaxel", "Taxotere"),
    "durvalumab": ("Durvalumab", "Imfinzi"),
    "pembrolizumab": ("Pembrolizumab", "Keytruda"),
    "nivolumab": ("Nivolumab", "Opdivo"),
    "osimertinib": ("Osimertinib", "Tagrisso"),
}

#: Activity records (in no code group; spec §1 table). Codes as Synthea emits them (codes.md S7,
#: Table H: lab panel 58410-2) and codes.md C (ECOG 89247-1); CPT 71250 CT thorax; OMOP visit
#: concepts 9201 / 9202 (standard Visit vocabulary).
ACTIVITY = {
    "visit": ("snomed", "185349003", "Encounter for check up"),
    "admission": ("snomed", "32485007", "Hospital admission"),
    "ecog": ("loinc", "89247-1", "ECOG Performance Status score"),
    "lab": ("loinc", "718-7", "Hemoglobin [Mass/volume] in Blood"),
    "report": ("loinc", "58410-2", "CBC panel - Blood by Automated count"),
    "hypertension": ("snomed", "59621000", "Essential hypertension"),
    "immunization": ("cvx", "140", "Influenza, seasonal, injectable, preservative free"),
    "statement": ("rxnorm", "310798", "Hydrochlorothiazide 25 MG Oral Tablet"),
    "imaging": ("cpt", "71250", "Computed tomography, thorax; without contrast material"),
    "port": ("", "", "Port-a-Cath implantation"),
}


def drug_label(ingredient: str, n: int) -> str:
    """How a record names a drug in text: its INN (English, Italian) or brand, with a strength."""
    names = DRUG_NAMES[ingredient]
    return f"{names[n % len(names)]} {('50 mg', '100 mg/ml', '1500 mg')[n % 3]}"
