"""Pure OMOP row → Event / PatientRecord: no database, no clock, no environment.

The extraction SQL gives every clinical table the same column names (``row_id``,
``person_id``, ``concept_id``, ``source_concept_id``, ``source_value``,
``start_date``, ``end_date`` and, where the table has them, ``quantity`` and the
``value_*`` columns), so one function classifies them all. A row's codings are, in
the order of docs/omop-conventions.md: the standard concept, the source concept,
then the source value read as ICD-10-CM and as CPT; groups, site and laterality
come from the shared CodeMatcher over all of them, exactly as for a FHIR resource.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from ...events import Event, PatientRecord, Quarantined, join_groups
from ...mappings import CodeMatcher
from .concepts import LESION_GROUP, Coding, ConceptSet

__all__ = ["KIND_OF_TABLE", "NO_GROUP", "SEX_OF_GENDER", "RowReader", "as_date", "person_record"]

KIND_OF_TABLE = {
    "condition_occurrence": "condition",
    "procedure_occurrence": "procedure",
    "drug_exposure": "drug_admin",
    "measurement": "observation",
    "observation": "observation",
    "episode": "episode",
    "observation_period": "observation_period",
}
#: OMOP gender concepts (Gender vocabulary): 8507 MALE, 8532 FEMALE.
SEX_OF_GENDER = {8507: "male", 8532: "female"}
NO_GROUP = "no code group"
STAGE_GROUPS = frozenset({"stage_group", "stage_condition", "stage_modifier"})
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
        return None


def person_record(row: Mapping[str, Any]) -> PatientRecord:
    """person (+ earliest death.death_date) → PatientRecord; birth date from birth_datetime or y/m/d."""
    birth = as_date(row.get("birth_datetime"))
    year = _int(row.get("year_of_birth"))
    if birth is None and year:
        try:
            birth = dt.date(year, _int(row.get("month_of_birth")) or 7, _int(row.get("day_of_birth")) or 1)
        except ValueError:
            birth = None
    return PatientRecord(
        patient_id=str(row["person_id"]),
        birth_date=birth,
        sex=SEX_OF_GENDER.get(_int(row.get("gender_concept_id")) or 0),
        death_date=as_date(row.get("death_date")),
        source=f"{SOURCE_SYSTEM}:person/{row['person_id']}",
    )


def _codings(row: Mapping[str, Any], concepts: ConceptSet, matcher: CodeMatcher) -> list[Coding]:
    out: list[Coding] = []
    for key in ("concept_id", "source_concept_id"):
        cid = _int(row.get(key))
        if cid is not None:
            out.extend(concepts.codings.get(cid, ()))
    source_value = row.get("source_value")
    if isinstance(source_value, str) and source_value.strip():
        for system in concepts.source_systems:
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
#: that matched, site, laterality, value. Memoised per code key (a cohort repeats few code combinations).
_Classified = tuple[str, str | None, str, str, str | None, str | None, str | None]
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

    def classify(self, row: Mapping[str, Any]) -> _Classified | None:
        """(groups, ingredient, system, code, site, laterality, value) of a row's codes; None = no group."""
        key = tuple(row.get(k) for k in _CODE_KEYS)
        if key in self._memo:
            return self._memo[key]
        result = _classify(row, self.concepts, self.matcher)
        if len(self._memo) < self._memo_size:
            self._memo[key] = result
        return result

    def event(self, table: str, row: Mapping[str, Any]) -> Event | Quarantined | str:
        """One clinical row → its Event, a Quarantined record, or the reason it is out of scope."""
        source = f"{SOURCE_SYSTEM}:{table}/{row.get('row_id')}"
        start = as_date(row.get("start_date"))
        if start is None:
            return Quarantined(SOURCE_SYSTEM, source, "no usable start date", repr(row.get("start_date")))
        end = as_date(row.get("end_date"))
        patient_id = str(row["person_id"])
        kind = KIND_OF_TABLE[table]
        if table == "observation_period":
            return Event(
                patient_id,
                kind,
                "",
                "",
                "",
                start,
                end,
                "day",
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                None,
                source,
            )
        classified = self.classify(row)
        if classified is None:
            return NO_GROUP
        groups, ingredient, system, code, site, laterality, value = classified
        lesion_id: str | None = None
        if LESION_GROUP in groups.split(";"):
            sv = row.get("source_value")
            lesion_id = sv.strip() if isinstance(sv, str) and sv.strip() else str(row.get("row_id"))
        fractions = _int(row.get("quantity")) if kind == "procedure" else None
        return Event(
            patient_id=patient_id,
            kind=kind,
            groups=groups,
            system=system,
            code=code,
            start=start,
            end=end,
            precision="day",
            site=site,
            laterality=laterality,
            body_site=None,
            value=value,
            lesion_id=lesion_id,
            ingredient=ingredient,
            fractions=fractions if fractions and fractions > 0 else None,
            dose_cgy=None,
            source=source,
        )


def _classify(row: Mapping[str, Any], concepts: ConceptSet, matcher: CodeMatcher) -> _Classified | None:
    codings = _codings(row, concepts, matcher)
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
    return join_groups(groups), ingredient, system, code, site, laterality or site_laterality, shown
