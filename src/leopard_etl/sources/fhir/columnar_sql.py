"""The DuckDB half of the columnar NDJSON reader: one lenient JSON parse per line, raw JSON of what we read.

Why this shape: DuckDB's JSON parse is the only step that touches every byte, so it
runs once per line: one multi-path ``json_extract`` whose values are ``JSON`` (the
value's own, minified JSON text; 0–20 % cheaper per query than ``from_json`` into a
struct of JSON leaves, same values). Nothing is cast, so a value of an unexpected type is not
silently turned into a string: every leaf is later decoded with orjson and judged
by the Python reader's own helpers, once per *distinct* value (:mod:`.columnar_codes`).
No temp table and no per-row string building: the coded parts of a line are
reduced to one 64-bit hash (its *signature*), and only the first line of each new
signature brings its raw parts to Python.

One list of paths per resource type (:func:`type_sql`): extracting a leaf costs about as
much whether it is present or not, so a line is read with the leaves its type's rules
read (parse._DATE_PATHS, EXCLUDED_STATUS, the coded elements), about a third of the
union. The caller groups a chunk's lines by type first (from the line's
``{"resourceType":"…",`` prefix, else :data:`TYPE_SQL`); each query checks the type again.

DuckDB reads JSON more leniently than orjson (trailing commas, ``NaN``); lines
with a trailing comma are flagged here and read by the Python reader, and a
``NaN`` in an element we read fails orjson in the resolver (same outcome). A
``NaN`` in an element nobody reads is the one known difference (the Python reader
says "invalid JSON", we read the resource).
"""

from __future__ import annotations

from functools import cache

__all__ = [
    "COLUMNS",
    "ID_SQL",
    "SIG_PARTS",
    "TYPED",
    "TYPE_SQL",
    "entry_id_sql",
    "entry_type_sql",
    "type_sql",
]

#: date leaves by type: parse._DATE_PATHS (the first present element gives the start)
_START: dict[str, tuple[str, ...]] = {
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate"),
    "Procedure": ("performedDateTime", "performedPeriod.start", "performedPeriod.end"),
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectivePeriod.end", "issued"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start", "effectivePeriod.end"),
    "MedicationRequest": ("authoredOn",),
    "Encounter": ("period.start", "period.end"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "Immunization": ("occurrenceDateTime",),
    "ImagingStudy": ("started",),
}
#: parse._SECOND_DATE: (leaves of which one must be present for the start, the other date)
_END: dict[str, tuple[tuple[str, ...], str]] = {
    "Condition": (("onsetDateTime", "onsetPeriod.start"), "recordedDate"),
    "Procedure": (("performedPeriod.start",), "performedPeriod.end"),
    "Observation": (("effectivePeriod.start",), "effectivePeriod.end"),
    "MedicationAdministration": (("effectivePeriod.start",), "effectivePeriod.end"),
    "Encounter": (("period.start",), "period.end"),
}
#: the coded leaves whose hash is a line's signature (what parse.coded_row and _first_coding read)
_GROUPED = ("code", "bodySite", "valueCodeableConcept", "valueString")
_DRUG = (
    "medicationCodeableConcept",
    "medicationReference",
    "contained",
    "bodySite",
    "valueCodeableConcept",
    "valueString",
)
_CODED: dict[str, tuple[str, ...]] = {
    "Condition": (*_GROUPED, "stage"),
    "Procedure": _GROUPED,
    "Observation": _GROUPED,
    "MedicationAdministration": _DRUG,
    "MedicationRequest": _DRUG,
    "Encounter": ("type",),
    "MedicationStatement": ("medicationCodeableConcept",),
    "DiagnosticReport": ("code",),
    "Immunization": ("vaccineCode",),
    "ImagingStudy": ("procedureCode",),
}
#: the types read here (Patient, Medication and everything else go to :data:`ID_SQL` / the reader)
TYPED = tuple(_START)
#: kept for the signature's documentation: the coded parts by type
SIG_PARTS = _CODED

#: columns of every :func:`type_sql` result, one row per line of ``src`` in order
COLUMNS = ("odd", "rt", "rid", "status", "subject", "date_raw", "end_raw", "ext", "ident", "enc_start", "sig")

#: a dateTime with a well-formed time has the calendar date of its first ten characters
#: (parse_fhir_date): judged as that date, so the distinct values are days, not instants
_DAY = r"""'"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+(Z|[+-][0-9]{2}:[0-9]{2})?"'"""
_LENIENT = (
    "contains(line, ',}') OR contains(line, ',]') "
    "OR (contains(line, ', ') AND regexp_matches(line, ',\\s*[\\]}]'))"
)
_RID = "CASE WHEN left(r.id, 1) = '\"' AND length(r.id) > 2 AND NOT contains(r.id, '\\') THEN r.id[2:-2] END"


def _leaf(path: str) -> str:
    return f'r."{path}"'


def _day(expr: str) -> str:
    return f"CASE WHEN regexp_full_match({expr}, {_DAY}) THEN left({expr}, 11) || '\"' ELSE {expr} END"


#: a reference resolved through a Bundle's fullUrl index is written ``Type/id`` for the judge when
#: that reads back as the same (type, id) (references.reference_target); else it stays as it is
_SIMPLE = "regexp_full_match(u.rid, '[A-Za-z0-9.-]{1,64}') AND regexp_full_match(u.rtype, '[A-Z][A-Za-z]*')"


@cache
def type_sql(rtype: str, bundle: int = 0, urns: str = "") -> str:
    """``src`` (line) → :data:`COLUMNS` for lines of type ``rtype`` (another type's line is ``odd``).

    JSON text columns are NULL when absent or ``null``; ``subject`` is the subject object, or
    ``[subject, patient]`` when the subject is not a non-empty object (parse._patient_ref
    decides between them); ``date_raw`` / ``end_raw`` follow parse._DATE_PATHS / _SECOND_DATE.

    ``bundle`` > 0: each line is a Bundle entry (its ``resource`` is read) of the ``bundle``-th
    Bundle of the read, whose fullUrl index is table ``urns`` (url, rtype, rid; one row per
    fullUrl): the subject's reference is looked up there, and the signature is salted with
    ``bundle`` (a ``urn:uuid`` names another Medication in another Bundle).
    """
    status = "verificationStatus" if rtype == "Condition" else "status"
    coded = _CODED[rtype]
    starts = _START[rtype]
    end = _END.get(rtype)
    leaves = {"resourceType", "id", "subject", "patient", status, *coded, *starts}
    if end:
        leaves |= {*end[0], end[1]}
    if rtype == "Procedure":
        leaves.add("extension")
    if rtype == "Condition":
        leaves.add("identifier")
    start_sql = f"coalesce({', '.join(map(_leaf, starts))})" if len(starts) > 1 else _leaf(starts[0])
    end_sql = "NULL"
    if end:
        present = " OR ".join(f"{_leaf(p)} IS NOT NULL" for p in end[0])
        # performedDateTime / effectiveDateTime first in _DATE_PATHS: a period only counts without it
        first = _leaf(starts[0]) if starts[0] not in end[0] else None
        cond = f"({present})" + (f" AND {first} IS NULL" if first else "")
        end_sql = f"CASE WHEN {cond} THEN {_leaf(end[1])} END"
    mcc_null = "false"
    if rtype in ("MedicationAdministration", "MedicationRequest"):
        mcc_null = "(r.medicationCodeableConcept IS NULL AND contains(line, 'medicationCodeableConcept'))"
    # one multi-path json_extract (a list of JSON texts; JSON null → NULL) costs ~2/3 of from_json
    # into a struct of JSON leaves; a period that is not an object reads as absent (as in parse)
    names = sorted(leaves)
    prefix = "$.resource." if bundle else "$."
    paths = ", ".join(f"'{prefix}{name}'" for name in names)
    columns = ", ".join(f"nullif(j[{k + 1}], 'null') AS \"{name}\"" for k, name in enumerate(names))
    subject = (
        "CASE WHEN left(r.subject, 1) = '{' AND r.subject <> '{}' THEN r.subject "
        "ELSE '[' || coalesce(r.subject, 'null') || ',' || coalesce(r.patient, 'null') || ']' END"
    )
    sql = f"""
WITH p AS (
    SELECT line, try(json_extract(line, [{paths}])) AS j FROM src
), r AS (
    SELECT line, j IS NULL AS bad, {columns} FROM p
), f AS (
    SELECT r.bad OR r.resourceType IS DISTINCT FROM '"{rtype}"' OR {_LENIENT} OR {mcc_null} AS odd,
        r.resourceType AS rt,
        {_RID} AS rid,
        r."{status}" AS status,
        {subject} AS subject,
        {start_sql} AS date_raw,
        {end_sql} AS end_raw,
        {"r.extension" if rtype == "Procedure" else "NULL::VARCHAR"} AS ext,
        {"r.identifier" if rtype == "Condition" else "NULL::VARCHAR"} AS ident,
        {'r."period.start"' if rtype == "Encounter" else "NULL::VARCHAR"} AS enc_start,
        hash({bundle}, r.resourceType, {", ".join(_leaf(c) for c in coded)}) AS sig{_REF if bundle else ""}
    FROM r
)"""
    if not bundle:
        return (
            sql
            + f"""
SELECT odd, rt, rid, status, subject, {_day("date_raw")} AS date_raw, {_day("end_raw")} AS end_raw,
    ext, ident, enc_start, sig
FROM f
"""
        )
    return (
        sql
        + f""", g AS (SELECT row_number() OVER () AS k, * FROM f)
SELECT g.odd, g.rt, g.rid, g.status,
    CASE WHEN u.rid IS NOT NULL AND {_SIMPLE} THEN '{{"reference":"' || u.rtype || '/' || u.rid || '"}}'
        ELSE g.subject END AS subject,
    {_day("g.date_raw")} AS date_raw, {_day("g.end_raw")} AS end_raw, g.ext, g.ident, g.enc_start, g.sig
FROM g LEFT JOIN {urns} u ON u.url = g.ref
ORDER BY g.k
"""
    )


#: the reference naming the patient, in its two plain forms (parse._patient_ref), for the join
_REF = """,
        CASE WHEN left(r.subject, 1) = '{' AND r.subject <> '{}' THEN r.subject ->> '$.reference'
            WHEN r.subject IS NULL AND left(r.patient, 1) = '{' THEN r.patient ->> '$.reference'
        END AS ref"""


#: ``src`` (line) → the raw ``resourceType`` of each line (lines without the usual prefix)
TYPE_SQL = """SELECT try(from_json(line, '{"resourceType": "JSON"}')).resourceType AS rt FROM src"""


def entry_type_sql() -> str:
    """:data:`TYPE_SQL` for Bundle entries (the type of their ``resource``)."""
    return """SELECT try(from_json(line, '{"resource": {"resourceType": "JSON"}}')).resource.resourceType
    AS rt FROM src"""


#: ``src`` (line) → :data:`COLUMNS` for lines of the other types: only type and id are read here
ID_SQL = f"""
WITH p AS (SELECT line, try(from_json(line, '{{"resourceType": "JSON", "id": "JSON"}}')) AS r FROM src)
SELECT r IS NULL OR {_LENIENT} AS odd, r.resourceType AS rt, {_RID} AS rid,
    NULL::VARCHAR AS status, NULL::VARCHAR AS subject, NULL::VARCHAR AS date_raw, NULL::VARCHAR AS end_raw,
    NULL::VARCHAR AS ext, NULL::VARCHAR AS ident, NULL::VARCHAR AS enc_start, 0::UBIGINT AS sig
FROM p
"""


def entry_id_sql() -> str:
    """:data:`ID_SQL` for Bundle entries."""
    return ID_SQL.replace(
        """try(from_json(line, '{"resourceType": "JSON", "id": "JSON"}'))""",
        """try(from_json(line, '{"resource": {"resourceType": "JSON", "id": "JSON"}}')).resource""",
    )
