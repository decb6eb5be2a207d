"""Pure OMOP row → Event / PatientRecord: no database, no clock, no environment.

The extraction SQL gives every clinical table the same column names (``row_id``,
``person_id``, ``concept_id``, ``source_concept_id``, ``source_value``,
``start_date``, ``end_date``, ``start_raw`` and, where the table has them, ``quantity`` and the
``value_*`` columns), so one function classifies them all. A row's codings are, in
the order of docs/omop-conventions.md: the standard concept, the source concept,
then the source value read as the code families of its table (``ConceptSet.source_systems``:
ICD-10 / ICD-9-CM diagnoses on conditions, CPT / ICD-10-PCS / OPS / ICD-9-CM procedures on
procedures); groups, site and laterality come from the shared CodeMatcher over all of them,
exactly as for a FHIR resource.

A row in no code group is an *activity record* (spec §1 v2): :meth:`RowReader.event` returns
``None`` for it and the adapter counts it with the table's aggregated activity (extract.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ...events import Event, PatientRecord, Quarantined, join_groups
from ...mappings import CodeMatcher
from .concepts import LESION_GROUP, Coding, ConceptSet

__all__ = [
    "KIND_OF_TABLE",
    "NO_DATE",
    "NO_USABLE_DATE",
    "SEX_OF_GENDER",
    "RowReader",
    "as_date",
    "code_text",
    "id_text",
    "person_record",
]

#: Event kind of each table's rows (events.KINDS).
KIND_OF_TABLE = {
    "condition_occurrence": "condition",
    "procedure_occurrence": "procedure",
    "drug_exposure": "drug_admin",
    "measurement": "observation",
    "observation": "observation",
    "episode": "episode",
    "observation_period": "observation_period",
    "visit_occurrence": "encounter",
    "visit_detail": "encounter",
    "device_exposure": "device",
}
#: OMOP gender concepts (Gender vocabulary): 8507 MALE, 8532 FEMALE.
SEX_OF_GENDER = {8507: "male", 8532: "female"}
#: quarantine reason of a row in a code group whose start date is NULL or not a date
NO_USABLE_DATE = "no usable date"
#: out-of-scope reason of a row in no code group without a date
NO_DATE = "no date"
STAGE_GROUPS = frozenset({"stage_group", "stage_condition", "stage_modifier"})
DRUG_TABLES = frozenset({"drug_exposure"})
SOURCE_SYSTEM = "omop"


def as_date(value: Any) -> dt.date | None:
    """A DATE column as a date whatever the driver returns (date, datetime or ISO text)."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _int(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            number = float(value)
        except (TypeError, ValueError):
            return None
        return int(number) if number.is_integer() else None


def id_text(value: Any) -> str:
    """A row or person id as text: ``42`` whether the column held 42, 42.0 or ``'42'``."""
    if type(value) is int:  # the usual case, first
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip() if value is not None else ""


def code_text(value: Any) -> str | None:
    """A ``*_source_value`` as code text whatever its stored type (spec §1 v2: types not trusted).

    The SQL already casts (columns.py); this covers drivers that return numbers anyway:
    ``1970.0`` → ``1970``, ``162.3`` → ``162.3``, ``77373`` → ``77373``; empty → None.
    """
    if value is None:
        return None
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        text = str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)
    else:
        text = str(value).strip()
    return text or None


def person_record(row: Mapping[str, Any]) -> PatientRecord:
    """person (+ its death rows) → PatientRecord; birth date from birth_datetime or y/m/d.

    ``n_death`` = the person's death rows: any death row makes the patient deceased, with the
    earliest usable ``death_date`` or, without one, an unknown date (spec §1 v2).
    """
    birth = as_date(row.get("birth_datetime"))
    year = _int(row.get("year_of_birth"))
    if birth is None and year:
        try:
            birth = dt.date(year, _int(row.get("month_of_birth")) or 7, _int(row.get("day_of_birth")) or 1)
        except ValueError:
            birth = None
    pid = id_text(row["person_id"])
    return PatientRecord(
        patient_id=pid,
        birth_date=birth,
        sex=SEX_OF_GENDER.get(_int(row.get("gender_concept_id")) or 0),
        death_date=as_date(row.get("death_date")),
        source=f"{SOURCE_SYSTEM}:person/{pid}",
        deceased=(_int(row.get("n_death")) or 0) > 0,
    )


def _codings(
    row: Mapping[str, Any], systems: tuple[str, ...], concepts: ConceptSet, matcher: CodeMatcher
) -> list[Coding]:
    out: list[Coding] = []
    for key in ("concept_id", "source_concept_id"):
        cid = _int(row.get(key))
        if cid is not None:
            out.extend(concepts.codings.get(cid, ()))
    source_value = code_text(row.get("source_value"))
    if source_value:
        for system in systems:
            out.append((system, matcher.normalise(system, source_value)))
    return out


def _value(
    row: Mapping[str, Any], concepts: ConceptSet, matcher: CodeMatcher
) -> tuple[Coding | None, str | None]:
    """(coded value as a CodeMatcher coding, free-text value) of a measurement/observation row."""
    text = row.get("value_as_string") or row.get("value_source_value")
    text = str(text).strip() if text is not None and str(text).strip() else None
    vid = _int(row.get("value_concept_id"))
    if not vid:
        return None, text
    system = matcher.system_for_omop(row.get("value_vocabulary_id"))
    code = row.get("value_concept_code")
    if system is None or code is None:
        return None, text
    info = matcher.mappings.systems.get(system)
    return (system, str(vid) if info and info.by_concept_id else matcher.normalise(system, str(code))), text


def _stage(
    row: Mapping[str, Any], concepts: ConceptSet, matcher: CodeMatcher, value: Coding | None, text: str | None
) -> str | None:
    """Stage of a stage record: the concept's own (Cancer Modifier name, entry), else its value."""
    for key in ("concept_id", "source_concept_id"):
        cid = _int(row.get(key))
        if cid is not None and cid in concepts.stages:
            return concepts.stages[cid]
    vid = _int(row.get("value_concept_id"))
    if vid is not None and vid in concepts.stages:
        return concepts.stages[vid]
    if value is not None:
        hit = matcher.stage_value(value[0], value[1], None)
        if hit:
            return hit
    return matcher.stage_value(None, None, text) if text else None


#: What a row's codes say, the same for every row with the same codes: groups, ingredient, the coding
#: that matched, site, laterality, value, drug route. Memoised per (table, code key): a cohort
#: repeats few code combinations.
_Classified = tuple[str, str | None, str, str, str | None, str | None, str | None, str | None]
_CODE_KEYS = (
    "concept_id",
    "source_concept_id",
    "source_value",
    "value_concept_id",
    "value_vocabulary_id",
    "value_concept_code",
    "value_as_string",
    "value_source_value",
)


class RowReader:
    """Row → Event for one concept set; pure (its memo is a cache of a deterministic function)."""

    def __init__(self, concepts: ConceptSet, matcher: CodeMatcher, memo_size: int = 100_000) -> None:
        self.concepts = concepts
        self.matcher = matcher
        self._memo: dict[tuple[Any, ...], _Classified | None] = {}
        self._memo_size = memo_size

    def classify(self, row: Mapping[str, Any], table: str = "") -> _Classified | None:
        """(groups, ingredient, system, code, site, laterality, value, route) of a row's codes;
        None = in no code group."""
        get = row.get
        key = (  # unrolled _CODE_KEYS: this runs once per row
            table,
            get("concept_id"),
            get("source_concept_id"),
            get("source_value"),
            get("value_concept_id"),
            get("value_vocabulary_id"),
            get("value_concept_code"),
            get("value_as_string"),
            get("value_source_value"),
        )
        if key in self._memo:
            return self._memo[key]
        result = _classify(row, table, self.concepts, self.matcher)
        if len(self._memo) < self._memo_size:
            self._memo[key] = result
        return result

    def event(self, table: str, row: Mapping[str, Any]) -> Event | Quarantined | None:
        """A candidate row → its Event, Quarantined (in a code group without a usable start
        date), or None: in no code group, an activity record (counted by the aggregate)."""
        classified = self.classify(row, table)
        if classified is None:
            return None
        source = f"{SOURCE_SYSTEM}:{table}/{id_text(row.get('row_id'))}"
        start = as_date(row.get("start_date"))
        if start is None:
            return quarantined(table, row, NO_USABLE_DATE)
        groups, ingredient, system, code, site, laterality, value, route = classified
        kind = KIND_OF_TABLE[table]
        lesion_id: str | None = None
        if LESION_GROUP in groups.split(";"):
            sv = code_text(row.get("source_value"))
            lesion_id = sv if sv else id_text(row.get("row_id"))
        fractions = _int(row.get("quantity")) if kind == "procedure" else None
        return Event(  # positional, in Event's field order: this runs once per row
            id_text(row["person_id"]),
            kind,
            groups,
            system,
            code,
            start,
            as_date(row.get("end_date")),
            "day",
            site,
            laterality,
            None,
            value,
            lesion_id,
            ingredient,
            fractions if fractions and fractions > 0 else None,
            None,
            source,
            route,
        )


def period_event(row: Mapping[str, Any]) -> Event | None:
    """An observation_period row → its ``observation_period`` event (no groups); None without a date."""
    start = as_date(row.get("start_date"))
    if start is None:
        return None
    return Event(
        id_text(row["person_id"]),
        "observation_period",
        "",
        "",
        "",
        start,
        as_date(row.get("end_date")),
        "day",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        f"{SOURCE_SYSTEM}:observation_period/{id_text(row.get('row_id'))}",
    )


def activity_event(table: str, person_id: Any, latest: dt.date) -> Event:
    """The one activity event of a person in a table (spec §1 v2): its latest date ≤ the bound.

    Its content changes exactly when that date changes, which is what a complete re-read with
    change detection (incremental warehouse runs) needs.
    """
    pid = id_text(person_id)
    return Event(
        pid,
        KIND_OF_TABLE[table],
        "",
        "",
        "",
        latest,
        None,
        "day",
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        None,
        f"{SOURCE_SYSTEM}:{table}/latest/{pid}",
    )


def quarantined(table: str, row: Mapping[str, Any], reason: str) -> Quarantined:
    """A row that cannot be used: ``record_id`` = ``table/row_id`` (spec §5 v2 quarantine.csv)."""
    rid = id_text(row.get("row_id"))
    raw = row.get("start_raw")
    record = f"person_id={id_text(row.get('person_id'))} start={raw if raw is not None else 'NULL'}"
    return Quarantined(SOURCE_SYSTEM, f"{SOURCE_SYSTEM}:{table}/{rid}", reason, record, f"{table}/{rid}")


def _classify(
    row: Mapping[str, Any], table: str, concepts: ConceptSet, matcher: CodeMatcher
) -> _Classified | None:
    codings = _codings(row, concepts.source_systems.get(table, ()), concepts, matcher)
    value, text = _value(row, concepts, matcher)
    groups, ingredient, first = matcher.match_any(codings, value)
    for key in ("concept_id", "source_concept_id"):
        cid = _int(row.get(key))
        if cid is not None:
            groups |= concepts.extra_groups.get(cid, frozenset())
    if not groups:
        return None
    system, code = first or (codings[0] if codings else ("", ""))
    site: str | None = None
    site_laterality: str | None = None
    for s, c in codings:
        hit = matcher.site(s, c, "lesion")
        if hit:
            site, site_laterality = hit
            break
    # ICD-10-CM 5th character first, then a lateralised Cancer Modifier (docs/decisions.md)
    laterality = next((lat for s, c in codings if (lat := matcher.code_laterality(s, c))), None)
    if groups & STAGE_GROUPS:
        shown = _stage(row, concepts, matcher, value, text)
    else:
        shown = value[1] if value is not None else text
    route: str | None = None
    if table in DRUG_TABLES and ingredient and first is not None:
        inherited: frozenset[Coding] = frozenset()
        for key in ("concept_id", "source_concept_id"):
            cid = _int(row.get(key))
            if cid is not None:
                inherited |= concepts.inherited.get(cid, frozenset())
        route = "product" if first in inherited else matcher.route(*first)
    return (
        join_groups(groups),
        ingredient,
        system,
        code,
        site,
        laterality or site_laterality,
        shown,
        route,
    )
