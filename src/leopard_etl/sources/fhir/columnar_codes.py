"""The per-distinct-value half of the columnar reader: JSON leaves judged by the Python reader's helpers.

Why: the FHIR rules (references in all their forms, partial dates, status
CodeableConcepts, code groups with prefixes / families / values, sites,
laterality, stage values, RT dose extensions) live in :mod:`.parse`,
:mod:`.fields`, :mod:`.dates` and :mod:`.references`. A bulk export has few
distinct values per element (208 coded signatures and ~3,000 dates for 100,000
resources), so :class:`LeafJudge` decodes each distinct raw JSON value once with
orjson and applies those very functions; the answers are spread back over the
rows with Arrow ``take``. Whatever would make the Python reader quarantine (or
wait) comes back as ``None`` and the line is fed to that reader. Pure: no I/O.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from ...events import join_groups
from .dates import parse_fhir_date
from .fields import extract_dose
from .parse import EXCLUDED_STATUS, READ_TYPES, FhirRecordReader, _first_coding, _status
from .references import reference_target

__all__ = ["CACHE_MAX", "UNDECIDED", "WAIT", "CodedRow", "LeafJudge", "TypeVerdict", "lesion_id"]

#: resource type verdict: ("py" | "skip" | "read" | "outcome", type or skip reason)
TypeVerdict = tuple[str, str]
#: (groups, system, code, site, laterality, body_site, value, ingredient, lesion, route); an activity
#: record (spec v2, in no code group) has groups ``""``, its first coding as written and that
#: coding's display as value
CodedRow = tuple[str, str, str, str | None, str | None, str | None, str | None, str | None, bool, str | None]

_ERRORS = (TypeError, AttributeError, KeyError, ValueError, IndexError, orjson.JSONDecodeError)
#: entries a cache keeps before it starts again (distinct subjects and days grow with the input)
CACHE_MAX = 50_000


def _bounded(cache: dict[Any, Any]) -> dict[Any, Any]:
    if len(cache) >= CACHE_MAX:
        cache.clear()
    return cache


class LeafJudge:
    """Caches of decisions on raw JSON leaves, kept for a whole read."""

    def __init__(self, reader: FhirRecordReader) -> None:
        self.reader = reader
        self._types: dict[str, TypeVerdict] = {}
        self._ids: dict[str, str | None] = {}
        self._status: dict[tuple[str, str | None], tuple[bool, str | None]] = {}
        self._subjects: dict[str, str | None] = {}
        self._dates: dict[str, tuple[dt.date, str] | None] = {}
        self._doses: dict[str | None, tuple[int | None, float | None] | None] = {}
        self._coded: dict[int, object] = {}

    def resource_type(self, raw: str | None) -> TypeVerdict:
        if raw is None:
            return "py", ""
        hit = self._types.get(raw)
        if hit is None:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = None
            if not value or not isinstance(value, str) or value == "Bundle":
                hit = ("py", "")
            elif value == "OperationOutcome":  # out of scope with its file's name (the caller knows it)
                hit = ("outcome", value)
            elif value not in READ_TYPES:
                hit = ("skip", f"resource type {value} not read")
            elif value in ("Patient", "Medication"):
                hit = ("py", value)
            else:
                hit = ("read", value)
            _bounded(self._types)[raw] = hit
        return hit

    def resource_id(self, raw: str | None) -> str | None:
        if raw is None:
            return None
        if raw not in self._ids:
            try:
                value = orjson.loads(raw)
            except orjson.JSONDecodeError:
                value = None
            self._ids[raw] = value if isinstance(value, str) and value else None
        return self._ids[raw]

    def status(self, rtype: str, raw: str | None) -> tuple[bool, str | None]:
        """(decided, skip reason or None) of the status element of a ``rtype`` resource."""
        key = (rtype, raw)
        hit = self._status.get(key)
        if hit is None:
            element, excluded = EXCLUDED_STATUS[rtype]
            try:
                status = _status(orjson.loads(raw) if raw is not None else None)
                hit = (True, f"{rtype} {element} {status}" if status in excluded else None)
            except _ERRORS:
                hit = (False, None)
            _bounded(self._status)[key] = hit
        return hit

    def subject(self, raw: str | None) -> str | None:
        """Patient id named by the record (parse._patient_ref); ``None`` when the reader would quarantine it.

        ``raw`` is the ``subject`` object, or ``[subject, patient]`` when ``subject`` is not a
        non-empty object (columnar_sql).
        """
        if raw is None:
            return None
        if raw not in self._subjects:
            pid = None
            try:
                value = orjson.loads(raw)
                if raw[0] == "[":
                    value = value[0] or value[1]
                target = reference_target(value.get("reference")) if isinstance(value, dict) else None
                if target is not None and target[0] == "Patient":
                    pid = target[1]
            except _ERRORS:
                pass
            _bounded(self._subjects)[raw] = pid
            return pid
        return self._subjects[raw]

    def date(self, raw: str) -> tuple[dt.date, str] | None:
        if raw not in self._dates:
            hit: tuple[dt.date, str] | None
            try:
                hit = parse_fhir_date(orjson.loads(raw))
            except _ERRORS:
                hit = None
            _bounded(self._dates)[raw] = hit
            return hit
        return self._dates[raw]

    def dose(self, raw: str | None) -> tuple[int | None, float | None] | None:
        """(fractions, dose cGy) of a Procedure's ``extension`` JSON; ``None`` when not decidable."""
        if raw not in self._doses:
            _bounded(self._doses)
            try:
                fractions, dose = extract_dose({"extension": orjson.loads(raw)} if raw is not None else {})
                ok = fractions is None or type(fractions) is int
                self._doses[raw] = (fractions, dose) if ok else None
            except (*_ERRORS, OverflowError):
                self._doses[raw] = None
        return self._doses[raw]

    def coded(self, signature: int, resource: Any) -> object:
        """Coded content of the lines whose coded parts hash to ``signature``.

        ``resource`` is the first of those lines: a dict, or its JSON text.

        Returns a :data:`CodedRow` (groups ``""``: an activity record, spec v2), :data:`WAIT` (names a
        Medication not read yet) or :data:`UNDECIDED` (the Python reader decides these lines: it
        quarantines them).
        """
        hit = self._coded.get(signature)
        if hit is not None:
            return hit
        try:
            res = resource if isinstance(resource, dict) else orjson.loads(resource)
            rtype = res["resourceType"]
            content = self.reader.coded_row(res)
            activity = _first_coding(res, rtype) if content is None else None
        except LookupError:  # names a Medication not read yet: judged again later
            return WAIT
        except Exception:
            verdict: object = UNDECIDED
        else:
            if content is None:
                assert activity is not None
                system, code, display = activity
                verdict = ("", system, code, None, None, None, display, None, False, None)
            else:
                groups, ingredient, first, site, laterality, body_site, value, route = content
                verdict = (
                    join_groups(groups),
                    first[0],
                    first[1],
                    site,
                    laterality,
                    body_site,
                    value,
                    ingredient,
                    "lesion" in groups,
                    route,
                )
        _bounded(self._coded)[signature] = verdict
        return verdict


#: markers of :meth:`LeafJudge.coded`
UNDECIDED = object()
WAIT = object()


def lesion_id(raw: str | None, rid: str) -> str | None:
    """Condition.identifier[0].value else the resource id, as the reader takes it; ``None``: not decidable."""
    if raw is None:
        return rid
    try:
        ident = orjson.loads(raw)
        value = ident[0].get("value") if isinstance(ident, list) and ident else None
    except _ERRORS:
        return None
    if value is None or isinstance(value, str):
        return value or rid
    return rid if not value else None
