"""A small hand-made OMOP CDM (5.4 or 5.3) that exercises every way a fact can sit in OMOP.

Concept ids are arbitrary on purpose (except the ``omop``-system ones that mappings/
names by id): the adapter must resolve groups by (vocabulary_id, concept_code).

Persons:
- 1000001: NSCLC through a *descendant* SNOMED concept + ICD10CM source concept C34.11
  (right); stage Cancer Modifier "AJCC/UICC Stage 3A"; IMRT course with 30 fractions;
  cisplatin *product* (descendant only), carboplatin via ATC *source concept* only,
  durvalumab product; lesions: Cancer Modifier "Metastasis to lung" (source value L1)
  and brain condition (no source value → row id); progression episode (5.4);
  a diabetes condition that must never leave the database; death.
- 1000002: NSCLC through the *source value* "C34.12" only (left); stage LOINC 21908-9 with
  value SNOMED 1222806003 (IIIC) and a Cancer Modifier "Stage 2"; SBRT by CPT source
  value; ICD-10-PCS DB22DZZ (stereotactic D?2 pattern); Cancer Modifier "Metastasis to
  kidney" (class Metastasis, not in mappings); disease status worsened (measurement) and
  a disease status observation whose value is not a progression value (out of scope).
- 1000003: no NSCLC (diabetes + cisplatin): nothing of theirs may leave the database.
- 1000009: an NSCLC condition but no person row → quarantined.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from sqlalchemy import insert
from sqlalchemy.engine import Connection

from leopard_etl.sources.omop.cdm import create_cdm

D = dt.date

CONCEPTS: list[tuple[int, str, str, str, str, str]] = [
    # id, name, domain, vocabulary, class, code
    (101, "Non-small cell lung cancer", "Condition", "SNOMED", "Clinical Finding", "254637007"),
    (102, "Adenocarcinoma of lung", "Condition", "SNOMED", "Clinical Finding", "254626006"),
    (103, "Adenocarcinoma of right upper lobe", "Condition", "SNOMED", "Clinical Finding", "99999001"),
    (
        110,
        "Malignant neoplasm of upper lobe, right bronchus or lung",
        "Condition",
        "ICD10CM",
        "5-char",
        "C34.11",
    ),
    (111, "Secondary malignant neoplasm of right lung", "Condition", "ICD10CM", "5-char", "C78.01"),
    (112, "Secondary malignant neoplasm of brain", "Condition", "ICD10CM", "5-char", "C79.31"),
    (120, "Secondary malignant neoplasm of brain", "Condition", "SNOMED", "Clinical Finding", "94225005"),
    (130, "cisplatin", "Drug", "RxNorm", "Ingredient", "2555"),
    (131, "Cisplatin 50 MG Injection", "Drug", "RxNorm", "Clinical Drug", "1736854"),
    (132, "cisplatin 1 MG/ML Injectable Solution", "Drug", "RxNorm", "Clinical Drug", "309311"),
    (133, "durvalumab", "Drug", "RxNorm", "Ingredient", "1919503"),
    (134, "durvalumab 50 MG/ML Injectable Solution", "Drug", "RxNorm", "Clinical Drug", "1919508"),
    (135, "carboplatin; parenteral", "Drug", "ATC", "ATC 5th", "L01XA02"),
    (136, "carboplatin", "Drug", "RxNorm", "Ingredient", "40048"),
    (140, "IMRT delivery complex", "Procedure", "CPT4", "CPT4", "77386"),
    (141, "SBRT delivery", "Procedure", "CPT4", "CPT4", "77373"),
    (142, "Stereotactic radiosurgery of lung", "Procedure", "ICD10PCS", "ICD10PCS", "DB22DZZ"),
    (150, "Stage group.clinical Cancer", "Measurement", "LOINC", "Clinical Observation", "21908-9"),
    (151, "Cancer disease status", "Measurement", "LOINC", "Clinical Observation", "97509-4"),
    (152, "Patient's condition worsened", "Meas Value", "SNOMED", "Clinical Finding", "271299001"),
    (
        153,
        "American Joint Committee on Cancer stage IIIC",
        "Meas Value",
        "SNOMED",
        "Staging / Scales",
        "1222806003",
    ),
    (154, "Patient's condition improved", "Meas Value", "SNOMED", "Clinical Finding", "268910001"),
    (160, "Diabetes mellitus", "Condition", "SNOMED", "Clinical Finding", "73211009"),
    (36770283, "Metastasis to lung", "Measurement", "Cancer Modifier", "Metastasis", "OMOP4999770"),
    (2000000001, "Metastasis to kidney", "Measurement", "Cancer Modifier", "Metastasis", "OMOP4999001"),
    (1634191, "Stage 3", "Measurement", "Cancer Modifier", "Staging/Grading", "Stage-3"),
    (2000000010, "AJCC/UICC Stage 3A", "Measurement", "Cancer Modifier", "Staging/Grading", "Stage-3A"),
    (2000000011, "AJCC/UICC Stage 2", "Measurement", "Cancer Modifier", "Staging/Grading", "Stage-2"),
    (
        2000000012,
        "AJCC/UICC 8th Clinical T1a Category",
        "Measurement",
        "Cancer Modifier",
        "Staging/Grading",
        "c-8th_AJCC/UICC-T1a",
    ),
    (32677, "Disease Progression", "Episode", "Episode", "Disease Episode", "OMOP4995911"),
    (8507, "MALE", "Gender", "Gender", "Gender", "M"),
    (8532, "FEMALE", "Gender", "Gender", "Gender", "F"),
]
ANCESTORS = [(102, 103), (130, 131), (130, 132), (133, 134)]

P1, P2, P3, ORPHAN = 1000001, 1000002, 1000003, 1000009


def _fill(table: Any, row: dict[str, Any]) -> dict[str, Any]:
    """Every column set: NULL where nullable, else 0 (type concepts and the like)."""
    return {c.name: row.get(c.name, None if c.nullable else 0) for c in table.columns}


def _rows(version: str) -> dict[str, list[dict[str, Any]]]:
    cond = [
        dict(
            condition_occurrence_id=1,
            person_id=P1,
            condition_concept_id=103,
            condition_source_concept_id=110,
            condition_source_value="C34.11",
            condition_start_date=D(2020, 1, 10),
        ),
        dict(
            condition_occurrence_id=2,
            person_id=P1,
            condition_concept_id=120,
            condition_source_concept_id=112,
            condition_source_value="",
            condition_start_date=D(2021, 3, 1),
        ),
        dict(
            condition_occurrence_id=3,
            person_id=P1,
            condition_concept_id=160,
            condition_start_date=D(2020, 2, 1),
        ),
        dict(
            condition_occurrence_id=4,
            person_id=P2,
            condition_concept_id=0,
            condition_source_concept_id=0,
            condition_source_value="C34.12",
            condition_start_date=D(2019, 5, 5),
        ),
        dict(
            condition_occurrence_id=5,
            person_id=P3,
            condition_concept_id=160,
            condition_start_date=D(2019, 1, 1),
        ),
        dict(
            condition_occurrence_id=6,
            person_id=ORPHAN,
            condition_concept_id=101,
            condition_start_date=D(2019, 1, 1),
        ),
    ]
    proc = [
        dict(
            procedure_occurrence_id=10,
            person_id=P1,
            procedure_concept_id=140,
            procedure_date=D(2020, 2, 1),
            procedure_end_date=D(2020, 3, 15),
            quantity=30,
        ),
        dict(
            procedure_occurrence_id=11,
            person_id=P2,
            procedure_concept_id=0,
            procedure_source_value="77373",
            procedure_date=D(2019, 6, 1),
            procedure_end_date=D(2019, 6, 10),
            quantity=5,
        ),
        dict(
            procedure_occurrence_id=12, person_id=P2, procedure_concept_id=142, procedure_date=D(2019, 7, 1)
        ),
    ]
    drug = [
        dict(
            drug_exposure_id=20,
            person_id=P1,
            drug_concept_id=132,
            drug_exposure_start_date=D(2020, 2, 3),
            drug_exposure_end_date=D(2020, 2, 3),
        ),
        dict(
            drug_exposure_id=21,
            person_id=P1,
            drug_concept_id=0,
            drug_source_concept_id=135,
            drug_source_value="carboplatin",
            drug_exposure_start_date=D(2020, 2, 10),
            drug_exposure_end_date=D(2020, 2, 10),
        ),
        dict(
            drug_exposure_id=22,
            person_id=P1,
            drug_concept_id=134,
            drug_exposure_start_date=D(2020, 4, 20),
            drug_exposure_end_date=D(2020, 4, 20),
        ),
        dict(
            drug_exposure_id=23,
            person_id=P3,
            drug_concept_id=130,
            drug_exposure_start_date=D(2019, 2, 1),
            drug_exposure_end_date=D(2019, 2, 1),
        ),
    ]
    meas = [
        dict(
            measurement_id=30,
            person_id=P1,
            measurement_concept_id=2000000010,
            measurement_date=D(2020, 1, 12),
        ),
        dict(
            measurement_id=31,
            person_id=P1,
            measurement_concept_id=36770283,
            measurement_source_value="L1",
            measurement_date=D(2021, 3, 2),
        ),
        dict(
            measurement_id=32,
            person_id=P2,
            measurement_concept_id=150,
            value_as_concept_id=153,
            measurement_date=D(2019, 5, 6),
        ),
        dict(
            measurement_id=33, person_id=P2, measurement_concept_id=2000000011, measurement_date=D(2019, 5, 7)
        ),
        dict(
            measurement_id=34,
            person_id=P2,
            measurement_concept_id=151,
            value_as_concept_id=152,
            measurement_date=D(2020, 1, 1),
        ),
        dict(
            measurement_id=35,
            person_id=P2,
            measurement_concept_id=2000000001,
            measurement_source_value="K9",
            measurement_date=D(2020, 1, 3),
        ),
        dict(
            measurement_id=36, person_id=P2, measurement_concept_id=2000000012, measurement_date=D(2019, 5, 7)
        ),
    ]
    obs = [
        dict(
            observation_id=40,
            person_id=P2,
            observation_concept_id=151,
            value_as_concept_id=154,
            observation_date=D(2019, 9, 1),
        ),
    ]
    rows: dict[str, list[dict[str, Any]]] = {
        "concept": [
            dict(
                concept_id=i,
                concept_name=n,
                domain_id=d,
                vocabulary_id=v,
                concept_class_id=c,
                concept_code=code,
                standard_concept="S",
                valid_start_date=D(1970, 1, 1),
                valid_end_date=D(2099, 12, 31),
            )
            for i, n, d, v, c, code in CONCEPTS
        ],
        "concept_ancestor": [
            dict(
                ancestor_concept_id=a,
                descendant_concept_id=d,
                min_levels_of_separation=1,
                max_levels_of_separation=1,
            )
            for a, d in ANCESTORS
        ]
        + [
            dict(
                ancestor_concept_id=i,
                descendant_concept_id=i,
                min_levels_of_separation=0,
                max_levels_of_separation=0,
            )
            for i, *_ in CONCEPTS
        ],
        "person": [
            dict(person_id=P1, gender_concept_id=8507, year_of_birth=1955, month_of_birth=3, day_of_birth=9),
            dict(person_id=P2, gender_concept_id=8532, year_of_birth=1960),
            dict(person_id=P3, gender_concept_id=8507, year_of_birth=1950),
        ],
        "observation_period": [
            dict(
                observation_period_id=50,
                person_id=P1,
                observation_period_start_date=D(2019, 1, 1),
                observation_period_end_date=D(2022, 6, 30),
            ),
            dict(
                observation_period_id=51,
                person_id=P2,
                observation_period_start_date=D(2019, 1, 1),
                observation_period_end_date=D(2021, 1, 31),
            ),
            dict(
                observation_period_id=52,
                person_id=P3,
                observation_period_start_date=D(2019, 1, 1),
                observation_period_end_date=D(2021, 1, 31),
            ),
        ],
        "death": [dict(person_id=P1, death_date=D(2022, 6, 30))],
        "condition_occurrence": cond,
        "procedure_occurrence": proc,
        "drug_exposure": drug,
        "measurement": meas,
        "observation": obs,
    }
    if version == "5.4":
        rows["episode"] = [
            dict(
                episode_id=60,
                person_id=P1,
                episode_concept_id=32677,
                episode_start_date=D(2021, 2, 27),
                episode_object_concept_id=0,
                episode_type_concept_id=32534,
            ),
        ]
        rows["episode_event"] = [dict(episode_id=60, event_id=31, episode_event_field_concept_id=1147330)]
    else:
        for r in proc:
            r.pop("procedure_end_date", None)
    return rows


def build_cdm(
    conn: Connection,
    version: str = "5.4",
    cdm_schema: str | None = None,
    vocab_schema: str | None = None,
    *,
    with_concepts: bool = True,
) -> None:
    """Create the CDM tables and load the fixture rows (``with_concepts=False``: empty vocabulary)."""
    md = create_cdm(conn, version, cdm_schema, vocab_schema)
    by_name = {t.name: t for t in md.sorted_tables}
    for name, rows in _rows(version).items():
        if name in ("concept", "concept_ancestor") and not with_concepts:
            continue
        table = by_name[name]
        conn.execute(insert(table), [_fill(table, r) for r in rows])


# --- spec v2 additions (activity records, undated and future rows, death without date, ICD-9) -----

P4 = 1000004
#: concepts the v2 fixture adds: ICD-9-CM diagnosis / ICD-9-CM procedure (dot after 2) / a drug
#: outside every group / an inpatient visit / a device
V2_CONCEPTS: list[tuple[int, str, str, str, str, str]] = [
    (
        300,
        "Malignant neoplasm of lower lobe, bronchus or lung",
        "Condition",
        "ICD9CM",
        "4-dig nonbill code",
        "162.5",
    ),
    (301, "Teleradiotherapy using photons", "Procedure", "ICD9Proc", "4-dig billing code", "92.24"),
    (302, "metformin", "Drug", "RxNorm", "Ingredient", "6809"),
    (9201, "Inpatient Visit", "Visit", "Visit", "Visit", "IP"),
    (303, "Implantable port", "Device", "SNOMED", "Physical Object", "706070003"),
]

#: the day of the run the v2 tests use (no explicit cutoff): later rows are "in the future"
RUN_DAY = D(2022, 12, 31)


def v2_rows() -> dict[str, list[dict[str, Any]]]:
    """Rows added to the 5.4 fixture. Per row, what the v2 reader must make of it (RUN_DAY, no cutoff):

    - condition 100 (P1): diabetes, no date → out of scope ("no date")
    - condition 101 (P1): brain lesion, no date → quarantined ("no usable date")
    - condition 102 (P1): brain lesion 2023-02-01 → quarantined (future); an event with a cutoff
    - condition 110 / 113 / 114 (P2): ICD-9-CM source value "162.3" → nsclc; "922.4" (a chest
      wall contusion, 92.24 as a procedure) → activity; ICD9CM source concept 162.5 → nsclc
    - procedure 111 / 112 / 115 (P2): "16.22" (162.2 as a diagnosis) → activity; "92.24" →
      radiotherapy; ICD9Proc source concept 92.24 → radiotherapy
    - condition 120 (P4): screened only by the ICD-9-CM source value "162.9"
    - drug 200 (P1): metformin 2021-01-01..2022-11-30 → activity by its start only
    - visits 1, 2 (P1): 2022-05-01..03, and 2022-12-20..2023-01-10 spanning the day of the run
      (counts by its start); visit 3 (orphan 1000009) → quarantined (unknown person)
    - device 1 (P1): 2023-03-01 → quarantined (future); with a cutoff: read, after the bound
    - death of P2 without a date → deceased, unknown date
    """
    return {
        "condition_occurrence": [
            dict(
                condition_occurrence_id=100, person_id=P1, condition_concept_id=160, condition_start_date=None
            ),
            dict(
                condition_occurrence_id=101, person_id=P1, condition_concept_id=120, condition_start_date=None
            ),
            dict(
                condition_occurrence_id=102,
                person_id=P1,
                condition_concept_id=120,
                condition_source_value="L7",
                condition_start_date=D(2023, 2, 1),
            ),
            dict(
                condition_occurrence_id=110,
                person_id=P2,
                condition_concept_id=0,
                condition_source_value="162.3",
                condition_start_date=D(2019, 5, 1),
            ),
            dict(
                condition_occurrence_id=113,
                person_id=P2,
                condition_concept_id=0,
                condition_source_value="922.4",
                condition_start_date=D(2019, 6, 2),
            ),
            dict(
                condition_occurrence_id=114,
                person_id=P2,
                condition_concept_id=0,
                condition_source_concept_id=300,
                condition_start_date=D(2019, 5, 2),
            ),
            dict(
                condition_occurrence_id=120,
                person_id=P4,
                condition_concept_id=0,
                condition_source_value="162.9",
                condition_start_date=D(2018, 3, 3),
            ),
        ],
        "procedure_occurrence": [
            dict(
                procedure_occurrence_id=111,
                person_id=P2,
                procedure_concept_id=0,
                procedure_source_value="16.22",
                procedure_date=D(2019, 6, 3),
            ),
            dict(
                procedure_occurrence_id=112,
                person_id=P2,
                procedure_concept_id=0,
                procedure_source_value="92.24",
                procedure_date=D(2019, 6, 4),
            ),
            dict(
                procedure_occurrence_id=115,
                person_id=P2,
                procedure_concept_id=0,
                procedure_source_concept_id=301,
                procedure_date=D(2019, 6, 5),
            ),
        ],
        "drug_exposure": [
            dict(
                drug_exposure_id=200,
                person_id=P1,
                drug_concept_id=302,
                drug_exposure_start_date=D(2021, 1, 1),
                drug_exposure_end_date=D(2022, 11, 30),
            ),
        ],
        "visit_occurrence": [
            dict(
                visit_occurrence_id=1,
                person_id=P1,
                visit_concept_id=9201,
                visit_start_date=D(2022, 5, 1),
                visit_end_date=D(2022, 5, 3),
            ),
            dict(
                visit_occurrence_id=2,
                person_id=P1,
                visit_concept_id=9201,
                visit_start_date=D(2022, 12, 20),
                visit_end_date=D(2023, 1, 10),
            ),
            dict(
                visit_occurrence_id=3,
                person_id=ORPHAN,
                visit_concept_id=9201,
                visit_start_date=D(2020, 1, 1),
                visit_end_date=D(2020, 1, 2),
            ),
        ],
        "device_exposure": [
            dict(
                device_exposure_id=1,
                person_id=P1,
                device_concept_id=303,
                device_exposure_start_date=D(2023, 3, 1),
            ),
        ],
        "person": [dict(person_id=P4, gender_concept_id=8532, year_of_birth=1948)],
        "death": [dict(person_id=P2, death_date=None)],
    }


#: date columns the v2 fixture leaves NULL (NOT NULL in the OHDSI DDL: real CDMs break that too)
V2_NULLABLE = (("condition_occurrence", "condition_start_date"), ("death", "death_date"))


def build_v2_cdm(
    conn: Connection, cdm_schema: str | None = "cdm", vocab_schema: str | None = "vocab"
) -> None:
    """The 5.4 fixture plus :func:`v2_rows` (and their concepts)."""
    build_cdm(conn, "5.4", cdm_schema, vocab_schema)
    prefix = f"{cdm_schema}." if cdm_schema else ""
    for table, col in V2_NULLABLE:
        conn.exec_driver_sql(f"ALTER TABLE {prefix}{table} ALTER COLUMN {col} DROP NOT NULL")
    add_rows(conn, v2_rows(), "5.4", cdm_schema, vocab_schema, concepts=V2_CONCEPTS)


def add_rows(
    conn: Connection,
    rows: dict[str, list[dict[str, Any]]],
    version: str = "5.4",
    cdm_schema: str | None = "cdm",
    vocab_schema: str | None = "vocab",
    concepts: Sequence[tuple[int, str, str, str, str, str]] = (),
) -> None:
    """Insert more rows (and concepts) into a CDM built by :func:`build_cdm`."""
    from leopard_etl.sources.omop.cdm import cdm_metadata

    by_name = {t.name: t for t in cdm_metadata(version, cdm_schema, vocab_schema).sorted_tables}
    extra = dict(rows)
    if concepts:
        extra["concept"] = [
            dict(
                concept_id=i,
                concept_name=n,
                domain_id=d,
                vocabulary_id=v,
                concept_class_id=c,
                concept_code=code,
                standard_concept="S",
                valid_start_date=D(1970, 1, 1),
                valid_end_date=D(2099, 12, 31),
            )
            for i, n, d, v, c, code in concepts
        ]
    for name, table_rows in extra.items():
        table = by_name[name]
        conn.execute(insert(table), [_fill(table, r) for r in table_rows])  # an explicit None stays NULL


def v2_table_rows() -> dict[str, list[dict[str, Any]]]:
    """Every row of the v2 fixture CDM per table, every column set (NULL where not given)."""
    from leopard_etl.sources.omop.cdm import cdm_metadata

    by_name = {t.name: t for t in cdm_metadata("5.4").sorted_tables}
    rows = _rows("5.4")
    for name, extra in v2_rows().items():
        rows.setdefault(name, []).extend(extra)
    rows["concept"].extend(
        dict(
            concept_id=i,
            concept_name=n,
            domain_id=d,
            vocabulary_id=v,
            concept_class_id=c,
            concept_code=code,
            standard_concept="S",
            valid_start_date=D(1970, 1, 1),
            valid_end_date=D(2099, 12, 31),
        )
        for i, n, d, v, c, code in V2_CONCEPTS
    )
    return {name: [_fill(by_name[name], r) for r in table_rows] for name, table_rows in rows.items()}
