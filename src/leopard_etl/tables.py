"""The canonical LEOPARD tables a derivation produces, defined once (SQLAlchemy Core).

Why here, below both ``cohort`` (the pure rules, which shape their rows by these
columns) and ``warehouse`` (which creates and loads them, and adds its own run-log and
event-store tables to the same :data:`METADATA`): the output contract must not make the
pure core depend on the database layer. Every derived table carries ``source_system``
and ``source_ids`` (the ``;``-joined source references) so a clinician can audit any
classification back to the FHIR resources or OMOP rows it came from. Derived tables are
keyed by ``patient_id`` (plus a natural sub-key), which is what the warehouse swaps or
merges on.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Date, Double, Integer, MetaData, String, Table, Text

__all__ = ["DERIVED_TABLES", "METADATA", "SCHEMA_VERSION"]

#: Bump when a table or column changes; the warehouse migrates from the previous one
#: (``leopard_etl.warehouse.migrate``). 1: first release; 2: event store + etl_run counts;
#: 3: spec v2 (drug match route, death with unknown date, platinum_unverified, quarantine record_id).
SCHEMA_VERSION = 3

METADATA = MetaData()


def _prov() -> list[Column[str]]:
    return [
        Column("source_system", String(16), nullable=False, comment="fhir | omop"),
        Column("source_ids", Text, nullable=False, comment="';'-joined source record references"),
    ]


patient = Table(
    "patient",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("birth_date", Date),
    Column("sex", String(16)),
    Column("in_cohort", Boolean, nullable=False),
    Column("exclusion_reason", String(32), comment="nsclc | not_stage_iii | no_crt | no_durvalumab"),
    *_prov(),
    comment="One row per screened patient (has an NSCLC record)",
)

diagnosis = Table(
    "diagnosis",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("diagnosis_date", Date, nullable=False),
    Column("date_precision", String(8), nullable=False),
    Column("histology_code", String(64), comment="system|code of the earliest NSCLC record"),
    Column("laterality", String(16)),
    Column("stage", String(16)),
    Column("stage_date", Date),
    Column("stage_iii", Boolean, nullable=False),
    *_prov(),
)

rt_course = Table(
    "rt_course",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=False),
    Column("n_records", Integer, nullable=False),
    Column("field_sites", Text, comment="';'-joined site categories of the records' body sites"),
    *_prov(),
)

crt_course = Table(
    "crt_course",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("crt_type", String(16), nullable=False, comment="concurrent | sequential"),
    Column("crt_start", Date, nullable=False),
    Column("crt_end", Date, nullable=False),
    Column("first_platinum_date", Date),
    Column("protocol_deviation", String(64), comment="sequential CRT was not PACIFIC-eligible"),
    # version 3
    Column(
        "platinum_unverified",
        Boolean,
        comment="spec v2 §2.1: the platinum date is a chemotherapy procedure with no drug named",
    ),
    *_prov(),
)

durvalumab_course = Table(
    "durvalumab_course",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("first_dose", Date, nullable=False),
    Column("last_dose", Date, nullable=False),
    Column("n_doses", Integer, nullable=False),
    Column("days_from_crt_end", Integer, nullable=False),
    *_prov(),
)

recurrence = Table(
    "recurrence",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("recurrence_date", Date, nullable=False),
    Column("pattern", String(16), nullable=False, comment="oligo | poly | unclassified"),
    Column("n_lesions", Integer, nullable=False),
    Column("sites", Text),
    Column("field", String(16), nullable=False, comment="in_field | out_of_field | both | unknown | none"),
    *_prov(),
)

lesion = Table(
    "lesion",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("lesion_key", String(256), primary_key=True, comment="site|laterality|lesion id"),
    Column("site", String(32), nullable=False),
    Column("laterality", String(16)),
    Column("first_date", Date, nullable=False),
    Column("n_records", Integer, nullable=False),
    Column("field_relation", String(16), nullable=False, comment="in | out | unknown"),
    *_prov(),
)

salvage_therapy = Table(
    "salvage_therapy",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("category", String(16), nullable=False,
           comment="crt | rt | chemo | immunotherapy | targeted | surgery | other | none"),
    Column("start_date", Date),
    Column("components", Text, comment="';'-joined therapy groups seen in the window"),
    *_prov(),
)

outcome = Table(
    "outcome",
    METADATA,
    Column("patient_id", String(128), primary_key=True),
    Column("death", Boolean, nullable=False),
    Column("death_date", Date),
    Column("last_alive_date", Date),
    Column("os_months", Double),
    Column("prs_months", Double),
    Column("cutoff", Date, nullable=False),
    # version 3
    Column(
        "death_date_unknown",
        Boolean,
        comment="spec v2 §3.12: death known without date; death_date = latest activity date",
    ),
    *_prov(),
)

cohort_attrition = Table(
    "cohort_attrition",
    METADATA,
    Column("step_no", Integer, primary_key=True, autoincrement=False),
    Column("step", String(32), nullable=False),
    Column("n", Integer, nullable=False),
)

#: Tables re-derived by each run (keyed by patient_id), in dependency-free load order.
DERIVED_TABLES: tuple[str, ...] = (
    "patient",
    "diagnosis",
    "rt_course",
    "crt_course",
    "durvalumab_course",
    "recurrence",
    "lesion",
    "salvage_therapy",
    "outcome",
    "cohort_attrition",
)
