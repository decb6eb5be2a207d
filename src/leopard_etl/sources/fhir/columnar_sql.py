"""The DuckDB half of the columnar NDJSON reader: one lenient JSON parse per line, raw JSON of what we read.

Why this shape: DuckDB's ``from_json`` is the only step that touches every byte,
so it runs once per line with a schema whose leaves are ``JSON`` (the value's own,
minified JSON text). Nothing is cast, so a value of an unexpected type is not
silently turned into a string: every leaf is later decoded with orjson and judged
by the Python reader's own helpers, once per *distinct* value (:mod:`.columnar_codes`).
No temp table and no per-row string building: the coded parts of a line are
reduced to one 64-bit hash (its *signature*), and only the first line of each new
signature brings its raw parts to Python.

DuckDB reads JSON more leniently than orjson (trailing commas, ``NaN``); lines
with a trailing comma are flagged here and read by the Python reader, and a
``NaN`` in an element we read fails orjson in the resolver (same outcome). A
``NaN`` in an element nobody reads is the one known difference (the Python reader
says "invalid JSON", we read the resource).
"""

from __future__ import annotations

import json

__all__ = ["CHUNK_SQL", "SIG_PARTS"]

_LEAVES = (
    "resourceType",
    "id",
    "status",
    "verificationStatus",
    "subject",
    "code",
    "bodySite",
    "valueCodeableConcept",
    "valueString",
    "medicationCodeableConcept",
    "medicationReference",
    "contained",
    "extension",
    "identifier",
    "onsetDateTime",
    "recordedDate",
    "performedDateTime",
    "effectiveDateTime",
    "issued",
    "authoredOn",
    "stage",
)
_PERIODS = {
    "onsetPeriod": ("start",),
    "performedPeriod": ("start", "end"),
    "effectivePeriod": ("start", "end"),
}

#: from_json schema: leaves keep their JSON text; a period that is not an object reads as absent (as in parse)
SCHEMA = json.dumps(
    {**{k: "JSON" for k in _LEAVES}, **{k: {p: "JSON" for p in v} for k, v in _PERIODS.items()}}
)

#: the coded parts of a line that decide groups, site, laterality, value and ingredient (in this order)
SIG_PARTS = ("rt", "code", "mcc", "mref", "contained", "body", "vcc", "vstr", "stage")

#: ``src`` (line) → one row per line, in order (blank and unparsed lines are ``odd``);
#: JSON text columns are NULL when absent or ``null``
CHUNK_SQL = f"""
WITH p AS (
    SELECT line, try(from_json(line, '{SCHEMA}')) AS j FROM src
), f AS (
    SELECT j IS NULL AS unparsed,
        contains(line, ',}}') OR contains(line, ',]')
            OR (contains(line, ', ') AND regexp_matches(line, ',\\s*[\\]}}]')) AS lenient,
        j.resourceType AS rt,
        CASE WHEN left(j.id, 1) = '"' AND length(j.id) > 2 AND NOT contains(j.id, '\\')
            THEN j.id[2:-2] END AS rid,
        CASE WHEN j.resourceType = '"Condition"' THEN j.verificationStatus ELSE j.status END AS status,
        j.subject AS subject, j.code AS code, j.medicationCodeableConcept AS mcc,
        j.medicationReference AS mref, j.contained AS contained, j.bodySite AS body,
        j.valueCodeableConcept AS vcc, j.valueString AS vstr,
        CASE WHEN j.resourceType = '"Condition"' THEN j.stage END AS stage,
        CASE WHEN j.resourceType = '"Procedure"' THEN j.extension END AS ext,
        CASE WHEN j.resourceType = '"Condition"' THEN j.identifier END AS ident,
        CASE j.resourceType
            WHEN '"Condition"' THEN coalesce(j.onsetDateTime, j.onsetPeriod.start, j.recordedDate)
            WHEN '"Procedure"'
                THEN coalesce(j.performedDateTime, j.performedPeriod.start, j.performedPeriod."end")
            WHEN '"Observation"'
                THEN coalesce(j.effectiveDateTime, j.effectivePeriod.start, j.effectivePeriod."end", j.issued)
            WHEN '"MedicationAdministration"'
                THEN coalesce(j.effectiveDateTime, j.effectivePeriod.start, j.effectivePeriod."end")
            WHEN '"MedicationRequest"' THEN j.authoredOn
        END AS date_raw,
        -- the record's other date for last alive (parse._SECOND_DATE): a period's end after its
        -- start, a Condition's recordedDate beside its onset
        CASE
            WHEN j.resourceType = '"Procedure"' AND j.performedDateTime IS NULL
                AND j.performedPeriod.start IS NOT NULL THEN j.performedPeriod."end"
            WHEN j.resourceType IN ('"Observation"', '"MedicationAdministration"')
                AND j.effectiveDateTime IS NULL AND j.effectivePeriod.start IS NOT NULL
                THEN j.effectivePeriod."end"
            WHEN j.resourceType = '"Condition"'
                AND coalesce(j.onsetDateTime, j.onsetPeriod.start) IS NOT NULL THEN j.recordedDate
        END AS end_raw,
        j.resourceType IN ('"MedicationAdministration"', '"MedicationRequest"')
            AND j.medicationCodeableConcept IS NULL
            AND contains(line, 'medicationCodeableConcept') AS mcc_null
    FROM p
)
SELECT unparsed OR lenient OR mcc_null AS odd, rt, rid, status, subject, date_raw, end_raw, ext,
    ident, hash({", ".join(SIG_PARTS)}) AS sig
FROM f
"""
