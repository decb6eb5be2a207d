"""The OMOP CDM tables leopard-etl reads, with the official v5.4 column set (and v5.3).

Defined once as SQLAlchemy Core metadata (columns, types and NOT NULLs as in the
OHDSI CommonDataModel DDL for v5.4; v5.3 differs by the columns listed in
``_V54_ONLY`` / ``_V53_ONLY`` and by having no episode tables). Used by the synthetic
generator to build test CDMs in DuckDB/PostgreSQL and by the adapter to check that an
instance has what it needs. Not a full CDM: only the tables of spec §1 (v2: with the
activity-only tables visit_occurrence, visit_detail, device_exposure).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Column, Date, DateTime, Float, Integer, MetaData, String, Table, Text
from sqlalchemy.engine import Connection
from sqlalchemy.schema import CreateSchema, CreateTable

__all__ = ["CDM_TABLES", "VOCAB_TABLES", "cdm_metadata", "create_cdm"]

#: Clinical tables (cdm schema) and vocabulary tables (vocab schema).
CDM_TABLES = (
    "person",
    "observation_period",
    "death",
    "condition_occurrence",
    "procedure_occurrence",
    "drug_exposure",
    "measurement",
    "observation",
    "episode",
    "episode_event",
    "visit_occurrence",
    "visit_detail",
    "device_exposure",
)
VOCAB_TABLES = ("concept", "concept_ancestor")

#: (table, column) present in v5.4 only.
_V54_ONLY = {
    ("procedure_occurrence", "procedure_end_date"),
    ("procedure_occurrence", "procedure_end_datetime"),
    ("measurement", "unit_source_concept_id"),
    ("measurement", "measurement_event_id"),
    ("measurement", "meas_event_field_concept_id"),
    ("observation", "value_source_value"),
    ("observation", "observation_event_id"),
    ("observation", "obs_event_field_concept_id"),
    ("visit_occurrence", "admitted_from_concept_id"),
    ("visit_occurrence", "admitted_from_source_value"),
    ("visit_occurrence", "discharged_to_concept_id"),
    ("visit_occurrence", "discharged_to_source_value"),
    ("visit_detail", "admitted_from_concept_id"),
    ("visit_detail", "admitted_from_source_value"),
    ("visit_detail", "discharged_to_concept_id"),
    ("visit_detail", "discharged_to_source_value"),
    ("visit_detail", "parent_visit_detail_id"),
    ("device_exposure", "production_id"),
    ("device_exposure", "unit_concept_id"),
    ("device_exposure", "unit_source_value"),
    ("device_exposure", "unit_source_concept_id"),
}
#: (table, column) present in v5.3 only (renamed in v5.4).
_V53_ONLY = {
    ("visit_occurrence", "admitting_source_concept_id"),
    ("visit_occurrence", "admitting_source_value"),
    ("visit_occurrence", "discharge_to_concept_id"),
    ("visit_occurrence", "discharge_to_source_value"),
    ("visit_detail", "admitting_source_concept_id"),
    ("visit_detail", "admitting_source_value"),
    ("visit_detail", "discharge_to_concept_id"),
    ("visit_detail", "discharge_to_source_value"),
    ("visit_detail", "visit_detail_parent_id"),
}


def _i(name: str, nullable: bool = True) -> Column[int]:
    return Column(name, Integer, nullable=nullable)


def _s(name: str, n: int = 50) -> Column[str]:
    return Column(name, String(n))


def _columns(version: str) -> dict[str, list[Column[Any]]]:
    cols: dict[str, list[Column[Any]]] = {
        "person": [
            _i("person_id", False),
            _i("gender_concept_id", False),
            _i("year_of_birth", False),
            _i("month_of_birth"),
            _i("day_of_birth"),
            Column("birth_datetime", DateTime),
            _i("race_concept_id", False),
            _i("ethnicity_concept_id", False),
            _i("location_id"),
            _i("provider_id"),
            _i("care_site_id"),
            _s("person_source_value"),
            _s("gender_source_value"),
            _i("gender_source_concept_id"),
            _s("race_source_value"),
            _i("race_source_concept_id"),
            _s("ethnicity_source_value"),
            _i("ethnicity_source_concept_id"),
        ],
        "observation_period": [
            _i("observation_period_id", False),
            _i("person_id", False),
            Column("observation_period_start_date", Date, nullable=False),
            Column("observation_period_end_date", Date, nullable=False),
            _i("period_type_concept_id", False),
        ],
        "death": [
            _i("person_id", False),
            Column("death_date", Date, nullable=False),
            Column("death_datetime", DateTime),
            _i("death_type_concept_id"),
            _i("cause_concept_id"),
            _s("cause_source_value"),
            _i("cause_source_concept_id"),
        ],
        "condition_occurrence": [
            _i("condition_occurrence_id", False),
            _i("person_id", False),
            _i("condition_concept_id", False),
            Column("condition_start_date", Date, nullable=False),
            Column("condition_start_datetime", DateTime),
            Column("condition_end_date", Date),
            Column("condition_end_datetime", DateTime),
            _i("condition_type_concept_id", False),
            _i("condition_status_concept_id"),
            _s("stop_reason", 20),
            _i("provider_id"),
            _i("visit_occurrence_id"),
            _i("visit_detail_id"),
            _s("condition_source_value"),
            _i("condition_source_concept_id"),
            _s("condition_status_source_value"),
        ],
        "procedure_occurrence": [
            _i("procedure_occurrence_id", False),
            _i("person_id", False),
            _i("procedure_concept_id", False),
            Column("procedure_date", Date, nullable=False),
            Column("procedure_datetime", DateTime),
            Column("procedure_end_date", Date),
            Column("procedure_end_datetime", DateTime),
            _i("procedure_type_concept_id", False),
            _i("modifier_concept_id"),
            _i("quantity"),
            _i("provider_id"),
            _i("visit_occurrence_id"),
            _i("visit_detail_id"),
            _s("procedure_source_value"),
            _i("procedure_source_concept_id"),
            _s("modifier_source_value"),
        ],
        "drug_exposure": [
            _i("drug_exposure_id", False),
            _i("person_id", False),
            _i("drug_concept_id", False),
            Column("drug_exposure_start_date", Date, nullable=False),
            Column("drug_exposure_start_datetime", DateTime),
            Column("drug_exposure_end_date", Date, nullable=False),
            Column("drug_exposure_end_datetime", DateTime),
            Column("verbatim_end_date", Date),
            _i("drug_type_concept_id", False),
            _s("stop_reason", 20),
            _i("refills"),
            Column("quantity", Float),
            _i("days_supply"),
            Column("sig", Text),
            _i("route_concept_id"),
            _s("lot_number"),
            _i("provider_id"),
            _i("visit_occurrence_id"),
            _i("visit_detail_id"),
            _s("drug_source_value"),
            _i("drug_source_concept_id"),
            _s("route_source_value"),
            _s("dose_unit_source_value"),
        ],
        "measurement": [
            _i("measurement_id", False),
            _i("person_id", False),
            _i("measurement_concept_id", False),
            Column("measurement_date", Date, nullable=False),
            Column("measurement_datetime", DateTime),
            _s("measurement_time", 10),
            _i("measurement_type_concept_id", False),
            _i("operator_concept_id"),
            Column("value_as_number", Float),
            _i("value_as_concept_id"),
            _i("unit_concept_id"),
            Column("range_low", Float),
            Column("range_high", Float),
            _i("provider_id"),
            _i("visit_occurrence_id"),
            _i("visit_detail_id"),
            _s("measurement_source_value"),
            _i("measurement_source_concept_id"),
            _s("unit_source_value"),
            _i("unit_source_concept_id"),
            _s("value_source_value"),
            _i("measurement_event_id"),
            _i("meas_event_field_concept_id"),
        ],
        "observation": [
            _i("observation_id", False),
            _i("person_id", False),
            _i("observation_concept_id", False),
            Column("observation_date", Date, nullable=False),
            Column("observation_datetime", DateTime),
            _i("observation_type_concept_id", False),
            Column("value_as_number", Float),
            _s("value_as_string", 60),
            _i("value_as_concept_id"),
            _i("qualifier_concept_id"),
            _i("unit_concept_id"),
            _i("provider_id"),
            _i("visit_occurrence_id"),
            _i("visit_detail_id"),
            _s("observation_source_value"),
            _i("observation_source_concept_id"),
            _s("unit_source_value"),
            _s("qualifier_source_value"),
            _s("value_source_value"),
            _i("observation_event_id"),
            _i("obs_event_field_concept_id"),
        ],
        "episode": [
            _i("episode_id", False),
            _i("person_id", False),
            _i("episode_concept_id", False),
            Column("episode_start_date", Date, nullable=False),
            Column("episode_start_datetime", DateTime),
            Column("episode_end_date", Date),
            Column("episode_end_datetime", DateTime),
            _i("episode_parent_id"),
            _i("episode_number"),
            _i("episode_object_concept_id", False),
            _i("episode_type_concept_id", False),
            _s("episode_source_value"),
            _i("episode_source_concept_id"),
        ],
        "episode_event": [
            _i("episode_id", False),
            _i("event_id", False),
            _i("episode_event_field_concept_id", False),
        ],
        "visit_occurrence": [
            _i("visit_occurrence_id", False),
            _i("person_id", False),
            _i("visit_concept_id", False),
            Column("visit_start_date", Date, nullable=False),
            Column("visit_start_datetime", DateTime),
            Column("visit_end_date", Date, nullable=False),
            Column("visit_end_datetime", DateTime),
            _i("visit_type_concept_id", False),
            _i("provider_id"),
            _i("care_site_id"),
            _s("visit_source_value"),
            _i("visit_source_concept_id"),
            _i("admitting_source_concept_id"),
            _s("admitting_source_value"),
            _i("discharge_to_concept_id"),
            _s("discharge_to_source_value"),
            _i("admitted_from_concept_id"),
            _s("admitted_from_source_value"),
            _i("discharged_to_concept_id"),
            _s("discharged_to_source_value"),
            _i("preceding_visit_occurrence_id"),
        ],
        "visit_detail": [
            _i("visit_detail_id", False),
            _i("person_id", False),
            _i("visit_detail_concept_id", False),
            Column("visit_detail_start_date", Date, nullable=False),
            Column("visit_detail_start_datetime", DateTime),
            Column("visit_detail_end_date", Date, nullable=False),
            Column("visit_detail_end_datetime", DateTime),
            _i("visit_detail_type_concept_id", False),
            _i("provider_id"),
            _i("care_site_id"),
            _s("visit_detail_source_value"),
            _i("visit_detail_source_concept_id"),
            _i("admitting_source_concept_id"),
            _s("admitting_source_value"),
            _i("discharge_to_concept_id"),
            _s("discharge_to_source_value"),
            _i("admitted_from_concept_id"),
            _s("admitted_from_source_value"),
            _i("discharged_to_concept_id"),
            _s("discharged_to_source_value"),
            _i("preceding_visit_detail_id"),
            _i("visit_detail_parent_id"),
            _i("parent_visit_detail_id"),
            _i("visit_occurrence_id", False),
        ],
        "device_exposure": [
            _i("device_exposure_id", False),
            _i("person_id", False),
            _i("device_concept_id", False),
            Column("device_exposure_start_date", Date, nullable=False),
            Column("device_exposure_start_datetime", DateTime),
            Column("device_exposure_end_date", Date),
            Column("device_exposure_end_datetime", DateTime),
            _i("device_type_concept_id", False),
            _s("unique_device_id", 255),
            _s("production_id", 255),
            _i("quantity"),
            _i("provider_id"),
            _i("visit_occurrence_id"),
            _i("visit_detail_id"),
            _s("device_source_value"),
            _i("device_source_concept_id"),
            _i("unit_concept_id"),
            _s("unit_source_value"),
            _i("unit_source_concept_id"),
        ],
        "concept": [
            _i("concept_id", False),
            Column("concept_name", String(255), nullable=False),
            Column("domain_id", String(20), nullable=False),
            Column("vocabulary_id", String(20), nullable=False),
            Column("concept_class_id", String(20), nullable=False),
            _s("standard_concept", 1),
            Column("concept_code", String(50), nullable=False),
            Column("valid_start_date", Date, nullable=False),
            Column("valid_end_date", Date, nullable=False),
            _s("invalid_reason", 1),
        ],
        "concept_ancestor": [
            _i("ancestor_concept_id", False),
            _i("descendant_concept_id", False),
            _i("min_levels_of_separation", False),
            _i("max_levels_of_separation", False),
        ],
    }
    if version == "5.3":
        for table in ("episode", "episode_event"):
            del cols[table]
        drop = _V54_ONLY
    elif version == "5.4":
        drop = _V53_ONLY
    else:
        raise ValueError(f"unsupported CDM version {version!r} (5.3 or 5.4)")
    for table, column in drop:
        cols[table] = [c for c in cols[table] if c.name != column]
    return cols


def cdm_metadata(
    version: str = "5.4", cdm_schema: str | None = None, vocab_schema: str | None = None
) -> MetaData:
    """Metadata of the CDM tables we read; vocabulary tables may live in another schema."""
    md = MetaData()
    for name, cols in _columns(version).items():
        schema = vocab_schema if name in VOCAB_TABLES else cdm_schema
        Table(name, md, *cols, schema=schema)
    return md


def create_cdm(
    conn: Connection, version: str = "5.4", cdm_schema: str | None = None, vocab_schema: str | None = None
) -> MetaData:
    """Create the (empty) CDM tables on a connection; schemas are created if missing."""
    for schema in {s for s in (cdm_schema, vocab_schema) if s}:
        conn.execute(CreateSchema(schema, if_not_exists=True))
    md = cdm_metadata(version, cdm_schema, vocab_schema)
    for table in md.sorted_tables:
        conn.execute(CreateTable(table, if_not_exists=True))
    return md
