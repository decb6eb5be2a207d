"""Codes the synthetic renderings use, and the OMOP vocabulary subset that resolves them.

Codes come from the shared spec's codes.md (Tables A–F); OMOP concept_ids are the real
ones where codes.md gives them, otherwise local ids above 2,000,000,000 (OMOP's local
range), allocated in the order of ``_CONCEPTS`` so that they never change between runs.
"""

from __future__ import annotations

import datetime as dt

from . import idiom_codes as v2

__all__ = [
    "ATC",
    "CM_LESION",
    "CM_STAGE",
    "ICD_LESION",
    "INGREDIENT",
    "LATERALITY",
    "PRECOORDINATED",
    "PRODUCT",
    "SITE_BODY",
    "SYSTEMS",
    "concept_ancestor_rows",
    "concept_id",
    "concept_rows",
    "icd_lesion_code",
]

SYSTEMS = {
    "snomed": "http://snomed.info/sct",
    "icd10cm": "http://hl7.org/fhir/sid/icd-10-cm",
    "loinc": "http://loinc.org",
    "rxnorm": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "atc": "http://www.whocc.no/atc",
    "cpt": "http://www.ama-assn.org/go/cpt",
    "icd10pcs": "http://www.cms.gov/Medicare/Coding/ICD10",
    "ajcc": "http://cancerstaging.org",
    **v2.SYSTEMS_V2,
}

#: ingredient -> (RxNorm IN code, OMOP concept_id), codes.md Table D
INGREDIENT = {
    "durvalumab": ("1919503", 1594034),
    "cisplatin": ("2555", 1397599),
    "carboplatin": ("40048", 1344905),
    "etoposide": ("4179", 1350504),
    "pemetrexed": ("68446", 1304919),
    "paclitaxel": ("56946", 1378382),
    "vinorelbine": ("39541", 1343346),
    "pembrolizumab": ("1547545", 45775965),
    "nivolumab": ("1597876", 45892628),
    "osimertinib": ("1721560", 35605522),
    "docetaxel": ("72962", 1315942),
}
#: clinical-drug (product) codes known from codes.md Table D / S7 / S14
PRODUCT = {
    "cisplatin": ("1736854", "Cisplatin 50 MG Injection"),
    "paclitaxel": ("583214", "PACLitaxel 100 MG Injection"),
    "durvalumab": ("1919507", "2.4 ML durvalumab 50 MG/ML Injection"),
}
ATC = {
    "durvalumab": "L01FF03",
    "cisplatin": "L01XA01",
    "carboplatin": "L01XA02",
    "etoposide": "L01CB01",
    "pemetrexed": "L01BA04",
    "paclitaxel": "L01CD01",
    "vinorelbine": "L01CA04",
    "pembrolizumab": "L01FF02",
    "nivolumab": "L01FF01",
    "osimertinib": "L01EB04",
    "docetaxel": "L01CD02",
}

LATERALITY = {"right": ("24028007", "Right"), "left": ("7771000", "Left")}
#: body structure codes (codes.md Table B); meninges/peritoneum have none in our mappings
SITE_BODY = {
    "lung": ("39607008", "Lung structure"),
    "brain": ("12738006", "Brain structure"),
    "bone": ("119186007", "Bone part"),
    "liver": ("10200004", "Liver structure"),
    "adrenal": ("23451007", "Adrenal structure"),
    "lymph_node_thoracic": ("62683002", "Mediastinal lymph node"),
    "lymph_node_distant": ("59441001", "Structure of lymph node"),
    "pleura": ("3120008", "Pleural membrane"),
}
#: precoordinated SNOMED secondary-neoplasm disorders with their OMOP id when codes.md has one
PRECOORDINATED = {
    "lung": ("94391008", "Secondary malignant neoplasm of lung", 254591),
    "brain": ("94225005", "Secondary malignant neoplasm of brain", None),
    "liver": ("94381002", "Secondary malignant neoplasm of liver", 198700),
}
_ICD_LESION = {
    ("lung", "right"): "C78.01",
    ("lung", "left"): "C78.02",
    ("lung", None): "C78.00",
    ("adrenal", "right"): "C79.71",
    ("adrenal", "left"): "C79.72",
    ("adrenal", None): "C79.70",
    ("brain", None): "C79.31",
    ("meninges", None): "C79.32",
    ("bone", None): "C79.51",
    ("liver", None): "C78.7",
    ("lymph_node_thoracic", None): "C77.1",
    ("lymph_node_distant", None): "C77.2",
    ("pleura", None): "C78.2",
    ("peritoneum", None): "C78.6",
}
ICD_LESION = _ICD_LESION
#: OMOP Cancer Modifier metastasis concepts (codes.md Table B), by (site, laterality)
CM_LESION = {
    ("lung", None): (36770283, "Metastasis to lung"),
    ("lung", "left"): (35225630, "Metastasis to left lung"),
    ("lung", "right"): (35226292, "Metastasis to right lung"),
    ("brain", None): (36768862, "Metastasis to brain"),
    ("bone", None): (36769301, "Metastasis to bone"),
    ("liver", None): (36770544, "Metastasis to liver"),
    ("adrenal", None): (35225568, "Metastasis to adrenal gland"),
    ("adrenal", "left"): (35225626, "Metastasis to left adrenal gland"),
    ("adrenal", "right"): (35226288, "Metastasis to right adrenal gland"),
    ("lymph_node_thoracic", None): (36769269, "Regional spread to lymph node"),
    ("lymph_node_distant", None): (36769243, "Distant spread to lymph node"),
    ("pleura", None): (35226258, "Metastasis to pleura"),
}
#: stage value -> (Cancer Modifier concept code, name); 1634191 "Stage 3" is real (codes.md A)
CM_STAGE = {
    "III": ("Stage-3", "Stage 3"),
    "IIIA": ("AJCC/UICC-Stage-3A", "AJCC/UICC Stage 3A"),
    "IIIB": ("AJCC/UICC-Stage-3B", "AJCC/UICC Stage 3B"),
    "IIIC": ("AJCC/UICC-Stage-3C", "AJCC/UICC Stage 3C"),
    "II": ("AJCC/UICC-Stage-2", "AJCC/UICC Stage 2"),
    "IV": ("AJCC/UICC-Stage-4", "AJCC/UICC Stage 4"),
}


def icd_lesion_code(site: str, laterality: str | None) -> str:
    return _ICD_LESION.get((site, laterality)) or _ICD_LESION[(site, None)]


# (vocabulary_id, concept_code, name, domain, class, standard, known concept_id or None)
_Concept = tuple[str, str, str, str, str, str | None, int | None]
_CONCEPTS: list[_Concept] = [
    ("SNOMED", "254637007", "Non-small cell lung cancer", "Condition", "Clinical Finding", "S", 4115276),
    ("SNOMED", "254626006", "Adenocarcinoma of lung", "Condition", "Clinical Finding", "S", 4112738),
    ("SNOMED", "254634000", "Squamous cell carcinoma of lung", "Condition", "Clinical Finding", "S", 4110705),
    ("SNOMED", "254629004", "Large cell carcinoma of lung", "Condition", "Clinical Finding", "S", 4110589),
    (
        "SNOMED",
        "422968005",
        "Non-small cell carcinoma of lung, TNM stage 3",
        "Condition",
        "Clinical Finding",
        "S",
        None,
    ),
    ("SNOMED", "254632001", "Small cell carcinoma of lung", "Condition", "Clinical Finding", "S", None),
    (
        "SNOMED",
        "128462008",
        "Secondary malignant neoplastic disease",
        "Condition",
        "Clinical Finding",
        "S",
        432851,
    ),
    ("SNOMED", "1217123003", "Radiotherapy course of treatment", "Procedure", "Procedure", "S", None),
    (
        "SNOMED",
        "703423002",
        "Combined chemotherapy and radiation therapy",
        "Procedure",
        "Procedure",
        "S",
        None,
    ),
    ("SNOMED", "359615001", "Partial lobectomy of lung", "Procedure", "Procedure", "S", None),
    ("SNOMED", "271299001", "Patient's condition worsened", "Meas Value", "Clinical Finding", "S", None),
    ("LOINC", "97509-4", "Cancer disease status", "Measurement", "Clinical Observation", "S", None),
    ("LOINC", "21908-9", "Stage group.clinical Cancer", "Measurement", "Clinical Observation", "S", None),
    ("CPT4", "77386", "IMRT delivery, complex", "Procedure", "CPT4", "S", 46257688),
    ("CPT4", "77412", "Radiation treatment delivery", "Procedure", "CPT4", "S", 2211867),
    (
        "CPT4",
        "77373",
        "Stereotactic body radiation therapy, treatment delivery",
        "Procedure",
        "CPT4",
        "S",
        None,
    ),
    (
        "ICD10PCS",
        "0BTC4ZZ",
        "Resection of Right Upper Lung Lobe, Percutaneous Endoscopic Approach",
        "Procedure",
        "ICD10PCS",
        "S",
        None,
    ),
    ("Episode", "32677", "Disease Progression", "Episode", "Disease Episode", "S", 32677),
    ("Episode", "32529", "Disease Recurrence", "Episode", "Disease Episode", "S", 32529),
    ("Type Concept", "32817", "EHR", "Type Concept", "Type Concept", "S", 32817),
    ("Gender", "M", "MALE", "Gender", "Gender", "S", 8507),
    ("Gender", "F", "FEMALE", "Gender", "Gender", "S", 8532),
]
for _site, (_code, _name, _cid) in PRECOORDINATED.items():
    _CONCEPTS.append(("SNOMED", _code, _name, "Condition", "Clinical Finding", "S", _cid))
for (_site, _lat), _code in _ICD_LESION.items():
    _CONCEPTS.append(
        (
            "ICD10CM",
            _code,
            f"Secondary malignant neoplasm ({_site})",
            "Condition",
            "5-char billing code",
            None,
            None,
        )
    )
for _lobe in ("1", "3", "9"):
    for _lat_digit in ("0", "1", "2"):
        _CONCEPTS.append(
            (
                "ICD10CM",
                f"C34.{_lobe}{_lat_digit}",
                "Malignant neoplasm of bronchus and lung",
                "Condition",
                "5-char billing code",
                None,
                None,
            )
        )
for (_site, _lat), (_cid, _name) in CM_LESION.items():
    _CONCEPTS.append(("Cancer Modifier", f"c-{_cid}", _name, "Measurement", "Metastasis", "S", _cid))
for _stage, (_code, _name) in CM_STAGE.items():
    _CONCEPTS.append(
        (
            "Cancer Modifier",
            _code,
            _name,
            "Measurement",
            "Staging/Grading",
            "S",
            1634191 if _stage == "III" else None,
        )
    )
for _ing, (_rx, _cid) in INGREDIENT.items():
    _CONCEPTS.append(("RxNorm", _rx, _ing, "Drug", "Ingredient", "S", _cid))
    _CONCEPTS.append(("ATC", ATC[_ing], _ing, "Drug", "ATC 5th", "C", None))
for _ing, (_rx, _name) in PRODUCT.items():
    _CONCEPTS.append(("RxNorm", _rx, _name, "Drug", "Clinical Drug", "S", None))

# spec v2 idioms (idiom_codes.py); appended, so that the local ids above never change
for _code, _name in v2.ICD9_NSCLC.values():
    _CONCEPTS.append(("ICD9CM", _code, _name, "Condition", "4-dig billing code", None, None))
for _site, _code in v2.ICD9_LESION.items():
    _CONCEPTS.append(
        (
            "ICD9CM",
            _code,
            f"Secondary malignant neoplasm ({_site})",
            "Condition",
            "4-dig billing code",
            None,
            None,
        )
    )
for _vocab in ("ICD10", "ICD10GM"):
    for _lobe in ("1", "3", "9"):
        _CONCEPTS.append(
            (
                _vocab,
                f"C34.{_lobe}",
                "Malignant neoplasm of bronchus and lung",
                "Condition",
                "ICD10 code",
                None,
                None,
            )
        )
    for _site, _code in v2.WHO_LESION.items():
        _CONCEPTS.append(
            (_vocab, _code, f"Secondary malignant neoplasm ({_site})", "Condition", "ICD10 code", None, None)
        )
for _system, _code, _name in (*v2.RT_CODES.values(), *v2.CHEMO_PROCEDURE.values()):
    _vocab = {"snomed": "SNOMED", "icd9cm": "ICD9Proc", "ops": "OPS"}[_system]
    _known = 40480519 if _code == "441799006" else None  # codes.md E (S3)
    _CONCEPTS.append(
        (_vocab, _code, _name, "Procedure", "Procedure", "S" if _vocab == "SNOMED" else None, _known)
    )
_CONCEPTS.append(("OPS", v2.OPS_PLANNING[0], v2.OPS_PLANNING[1], "Procedure", "Procedure", None, None))
for _code, _name in v2.STAGE_QUALIFIER.values():
    _CONCEPTS.append(("SNOMED", _code, _name, "Meas Value", "Qualifier Value", "S", None))
for _stage, (_code, _name) in v2.STAGE_CONDITION.items():
    if _stage != "III":  # 422968005 is in the v1 rows
        _CONCEPTS.append(("SNOMED", _code, _name, "Condition", "Clinical Finding", "S", None))
for _ing, _products in v2.PRODUCTS.items():
    for _rx, _name, _cls in _products:
        _CONCEPTS.append(("RxNorm", _rx, _name, "Drug", _cls, "S", None))
_ACTIVITY_VOCAB = {"snomed": "SNOMED", "loinc": "LOINC", "cvx": "CVX", "rxnorm": "RxNorm", "cpt": "CPT4"}
_ACTIVITY_DOMAIN = {
    "snomed": "Condition",
    "loinc": "Measurement",
    "cvx": "Drug",
    "rxnorm": "Drug",
    "cpt": "Procedure",
}
for _kind, (_system, _code, _name) in v2.ACTIVITY.items():
    if _system and _kind not in ("visit", "admission"):
        _CONCEPTS.append(
            (_ACTIVITY_VOCAB[_system], _code, _name, _ACTIVITY_DOMAIN[_system], _kind, "S", None)
        )
_CONCEPTS.append(("Visit", "IP", "Inpatient Visit", "Visit", "Visit", "S", 9201))
_CONCEPTS.append(("Visit", "OP", "Outpatient Visit", "Visit", "Visit", "S", 9202))

_IDS: dict[tuple[str, str], int] = {}
_next = 2_000_000_001
for _c in _CONCEPTS:
    if (_c[0], _c[1]) in _IDS:  # listed twice (a v1 product again among the v2 products)
        continue
    if _c[6] is None:
        _IDS[(_c[0], _c[1])] = _next
        _next += 1
    else:
        _IDS[(_c[0], _c[1])] = _c[6]


def concept_id(vocabulary_id: str, code: str) -> int:
    """The concept_id of (vocabulary_id, concept_code) in the synthetic vocabulary."""
    return _IDS[(vocabulary_id, code)]


_VALID = (dt.date(1970, 1, 1), dt.date(2099, 12, 31))


def concept_rows() -> list[dict[str, object]]:
    """Rows of the ``concept`` table, unique by concept_id."""
    rows: dict[int, dict[str, object]] = {}
    for vocab, code, name, domain, cls, standard, _ in _CONCEPTS:
        cid = _IDS[(vocab, code)]
        rows.setdefault(
            cid,
            {
                "concept_id": cid,
                "concept_name": name,
                "domain_id": domain,
                "vocabulary_id": vocab,
                "concept_class_id": cls,
                "standard_concept": standard,
                "concept_code": str(cid) if code.startswith("c-") else code,
                "valid_start_date": _VALID[0],
                "valid_end_date": _VALID[1],
                "invalid_reason": None,
            },
        )
    return [rows[k] for k in sorted(rows)]


def concept_ancestor_rows() -> list[dict[str, object]]:
    """Self rows for every standard concept plus product -> ingredient (RxNorm hierarchy)."""
    out: list[dict[str, object]] = [
        {
            "ancestor_concept_id": cid,
            "descendant_concept_id": cid,
            "min_levels_of_separation": 0,
            "max_levels_of_separation": 0,
        }
        for cid in sorted({_IDS[(c[0], c[1])] for c in _CONCEPTS if c[5] == "S"})
    ]
    pairs = {(ing, rx) for ing, (rx, _) in PRODUCT.items()}
    pairs |= {(ing, rx) for ing, products in v2.PRODUCTS.items() for rx, _, _ in products}
    for ing, rx in sorted(pairs, key=lambda p: concept_id("RxNorm", p[1])):
        out.append(
            {
                "ancestor_concept_id": INGREDIENT[ing][1],
                "descendant_concept_id": concept_id("RxNorm", rx),
                "min_levels_of_separation": 1,
                "max_levels_of_separation": 1,
            }
        )
    return out
