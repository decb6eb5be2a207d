"""FHIR resources (plain dicts) → :class:`Event` / :class:`PatientRecord` / :class:`Quarantined` (spec §1).

Pure: no I/O, no clock. :class:`FhirRecordReader` is fed resources in any order
by the file, REST and bulk front ends and applies every FHIR rule of spec §1 —
one event per resource with the union of the groups of all its codings, the
per-type date and status rules, references in any of their forms. Two things can
only be decided later in a stream, so the reader keeps them pending (bounded by
what is still unresolved, not by the input):

* a ``medicationReference`` to a Medication not seen yet (Medications are few);
* an event of a patient whose Patient resource has not been seen yet (a
  reference to an unknown patient is quarantined, spec §1, but bulk exports
  write ``Patient.ndjson`` after ``Condition.ndjson``).

:meth:`FhirRecordReader.finish` quarantines whatever is still unresolved, so the
accounting ``read == in_scope + quarantined + out_of_scope`` always balances.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson

from ...events import Event, EventSink, PatientRecord, Quarantined, join_groups
from ...mappings import CodeMatcher
from .dates import parse_fhir_date
from .fields import codings, extract_dose, extract_laterality, extract_site
from .references import UrnIndex, reference_target

__all__ = ["EXCLUDED_STATUS", "READ_TYPES", "CodedContent", "FhirRecordReader", "coded_content"]

SOURCE_SYSTEM = "fhir"
RECORD_MAX = 4000  # characters of the raw record kept in a quarantine row

#: Groups whose body sites are an irradiated field (all of them count), not a lesion's site.
RT_GROUPS = frozenset({"radiotherapy", "stereotactic"})

#: resource types turned into events (Patient and Medication are handled apart)
EVENT_KIND = {
    "Condition": "condition",
    "Procedure": "procedure",
    "Observation": "observation",
    "MedicationAdministration": "drug_admin",
    "MedicationRequest": "drug_request",
}
READ_TYPES = ("Patient", "Medication", *EVENT_KIND)

#: spec §1 "Excluded": (element holding the status, statuses that put the record out of scope)
EXCLUDED_STATUS: dict[str, tuple[str, frozenset[str]]] = {
    "Condition": ("verificationStatus", frozenset({"refuted", "entered-in-error"})),
    "Procedure": ("status", frozenset({"not-done", "entered-in-error"})),
    "Observation": ("status", frozenset({"cancelled", "entered-in-error"})),
    "MedicationAdministration": ("status", frozenset({"not-done", "entered-in-error"})),
    "MedicationRequest": ("status", frozenset({"cancelled", "entered-in-error", "draft"})),
}

#: spec §1 date rules: the first present element gives the start
_DATE_PATHS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "Condition": (("onsetDateTime", None), ("onsetPeriod", "start"), ("recordedDate", None)),
    "Procedure": (("performedDateTime", None), ("performedPeriod", "start"), ("performedPeriod", "end")),
    "Observation": (("effectiveDateTime", None), ("effectivePeriod", "start"), ("issued", None)),
    "MedicationAdministration": (("effectiveDateTime", None), ("effectivePeriod", "start")),
    "MedicationRequest": (("authoredOn", None),),
}


class _Bad(Exception):
    """A record that must be quarantined; the message is the reason."""


class FhirRecordReader:
    """Feed resources with :meth:`feed`, call :meth:`finish` once at the end of the input."""

    def __init__(
        self, matcher: CodeMatcher, sink: EventSink, *, validate: bool = False, track_touched: bool = True
    ) -> None:
        self.matcher = matcher
        self.sink = sink
        self.validate = validate
        self._patients: set[str] = set()
        #: Medication id → its codings (resolved references, kept for the whole read: Medications are few)
        self._medications: dict[str, list[tuple[str, str]]] = {}
        #: records waiting for their Medication, kept as JSON text (a quarter of a parsed dict's memory;
        #: not orjson's bytes, which reserve 4 KiB each)
        self._wait_medication: dict[str, list[tuple[str, str, UrnIndex | None]]] = {}
        self._wait_patient: dict[str, list[tuple[Event, str]]] = {}
        #: every ``fhir:Type/id`` read (an incremental consumer replaces these records); it grows
        #: with the input, so a reader nobody asks (files) leaves it empty: ``track_touched=False``
        self.touched: set[str] = set()
        self.track_touched = track_touched

    # --- entry points ------------------------------------------------------
    def bad_record(self, location: str, reason: str, raw: str | bytes) -> None:
        """Count and quarantine a record that is not even a JSON resource (invalid JSON, not an object)."""
        self.sink.stats.read += 1
        self._quarantine(location, reason, raw)

    def feed(
        self, res: Any, location: str, urns: UrnIndex | None = None, fallback_id: str | None = None
    ) -> None:
        """Read one resource; ``fallback_id`` names a Bundle entry without ``id`` (its ``urn:uuid``)."""
        self.sink.stats.read += 1
        try:
            self._feed(res, location, urns, fallback_id)
        except _Bad as exc:
            self._quarantine(location, str(exc), res)
        except (TypeError, AttributeError, KeyError, ValueError, IndexError) as exc:
            self._quarantine(location, f"malformed resource ({type(exc).__name__}: {exc})", res)

    def missing_medications(self) -> list[str]:
        """Ids of Medications that records wait for (a REST reader fetches them)."""
        return sorted(self._wait_medication)

    def missing_patients(self) -> list[str]:
        """Ids of Patients that events wait for."""
        return sorted(self._wait_patient)

    def finish(self) -> None:
        """Quarantine what is still waiting for a Medication or a Patient that never came."""
        for med_id, waiting in self._wait_medication.items():
            for raw, location, _urns in waiting:
                self.sink.stats.read += 1  # was uncounted while waiting
                self._quarantine(location, f"reference to unknown Medication/{med_id}", raw)
        self._wait_medication.clear()
        for pid, events in self._wait_patient.items():
            for e, location in events:
                self._quarantine(location, f"reference to unknown Patient/{pid}", e.source)
        self._wait_patient.clear()

    # --- for the columnar reader (public, no effect on the reading above) ---------------------------
    @property
    def known_patients(self) -> set[str]:
        """Ids of the Patients read so far (events of other patients wait)."""
        return self._patients

    @property
    def medications(self) -> dict[str, list[tuple[str, str]]]:
        """Medication id → its codings, for the Medications read so far."""
        return self._medications

    def accept_event(self, e: Event, location: str) -> None:
        """Take an event decided elsewhere: to the sink, or waiting for its Patient (in_scope once taken)."""
        self._accept(e, location)

    def coded_row(self, res: dict[str, Any]) -> CodedContent | None:
        """The coded content of a clinical resource as :meth:`feed` would read it; ``None``: no code group.

        Raises ``LookupError`` when it names a Medication not read yet; any other exception means the
        resource would be quarantined (the columnar reader then feeds it here).
        """
        rtype = res["resourceType"]
        code_list = _own_codings(res, rtype, self.matcher)
        if code_list is None:
            code_list = self._resolve_medication(res, None)
            if code_list is None:
                raise LookupError("Medication not read yet")
        return coded_content(res, rtype, code_list, self.matcher)

    # --- dispatch ----------------------------------------------------------
    def _feed(self, res: Any, location: str, urns: UrnIndex | None, fallback_id: str | None) -> None:
        if not isinstance(res, dict):
            raise _Bad("not a JSON object")
        rtype = res.get("resourceType")
        if not rtype or not isinstance(rtype, str):
            raise _Bad("no resourceType")
        rid = res.get("id") or fallback_id
        if not isinstance(rid, str) or not rid:
            raise _Bad("no id")
        if rtype not in READ_TYPES:
            self.sink.stats.skip(f"resource type {rtype} not read")
            return
        if self.track_touched:
            self.touched.add(f"fhir:{rtype}/{rid}")
        if self.validate:
            _validate(res)
        if rtype == "Patient":
            self._patient(res, rid)
        elif rtype == "Medication":
            self._medication(res, rid)
        else:
            self._clinical(res, rtype, rid, location, urns)

    def _patient(self, res: dict[str, Any], rid: str) -> None:
        birth = _optional_date(res.get("birthDate"), "birthDate")
        death: dt.date | None = None
        if "deceasedDateTime" in res:
            death = _optional_date(res["deceasedDateTime"], "deceasedDateTime")
        gender = res.get("gender")
        self.sink.patient(
            PatientRecord(
                rid, birth, gender if isinstance(gender, str) else None, death, f"fhir:Patient/{rid}"
            )
        )
        self.sink.stats.in_scope += 1
        self._patients.add(rid)
        for e, _location in self._wait_patient.pop(rid, ()):
            self._accept(e)

    def _medication(self, res: dict[str, Any], rid: str) -> None:
        self._medications[rid] = codings(res.get("code"), self.matcher)
        self.sink.stats.skip("Medication (resolves medicationReference)")
        for raw, location, urns in self._wait_medication.pop(rid, ()):
            self.feed(orjson.loads(raw), location, urns)

    def _clinical(
        self, res: dict[str, Any], rtype: str, rid: str, location: str, urns: UrnIndex | None
    ) -> None:
        element, excluded = EXCLUDED_STATUS[rtype]
        status = _status(res.get(element))
        if status in excluded:
            self.sink.stats.skip(f"{rtype} {element} {status}")
            return
        m = self.matcher
        code_list = _own_codings(res, rtype, m)
        if code_list is None:
            code_list = self._medication_codings(res, rid, location, urns)
            if code_list is None:  # waits for its Medication
                return
        coded = coded_content(res, rtype, code_list, m)
        if coded is None:
            self.sink.stats.skip("no code group")
            return
        groups, ingredient, first, site, laterality, body_site, value = coded
        target = reference_target((res.get("subject") or {}).get("reference"), urns)
        if target is None:
            raise _Bad("no subject" if not res.get("subject") else "unresolvable subject reference")
        if target[0] != "Patient":
            raise _Bad(f"subject is a {target[0]}, not a Patient")
        start, precision, end = _dates(res, rtype)
        lesion_id = None
        if "lesion" in groups:
            ident = res.get("identifier")
            lesion_id = ident[0].get("value") if isinstance(ident, list) and ident else None
            lesion_id = lesion_id or rid
        fractions, dose = extract_dose(res) if rtype == "Procedure" else (None, None)
        self._accept(
            Event(
                patient_id=target[1],
                kind=EVENT_KIND[rtype],
                groups=join_groups(groups),
                system=first[0],
                code=first[1],
                start=start,
                end=end,
                precision=precision,
                site=site,
                laterality=laterality,
                body_site=body_site,
                value=value,
                lesion_id=lesion_id,
                ingredient=ingredient,
                fractions=fractions,
                dose_cgy=dose,
                source=f"fhir:{rtype}/{rid}",
            ),
            location,
        )

    def _medication_codings(
        self, res: dict[str, Any], rid: str, location: str, urns: UrnIndex | None
    ) -> list[tuple[str, str]] | None:
        found = self._resolve_medication(res, urns)
        if found is not None:
            return found
        mid = str(reference_target(res["medicationReference"]["reference"], urns)[1])  # type: ignore[index]
        self.sink.stats.read -= 1  # counted again when it is fed back
        # a Bundle entry without ``id`` keeps the id it was given (its urn:uuid) while it waits
        waiting = res if res.get("id") == rid else {**res, "id": rid}
        self._wait_medication.setdefault(mid, []).append((orjson.dumps(waiting).decode(), location, urns))
        return None

    def _resolve_medication(self, res: dict[str, Any], urns: UrnIndex | None) -> list[tuple[str, str]] | None:
        """Codings named by ``medicationReference``; ``None`` for a Medication not read yet."""
        ref = res.get("medicationReference")
        if not isinstance(ref, dict):
            raise _Bad("no medication (neither medicationCodeableConcept nor medicationReference)")
        target = reference_target(ref.get("reference"), urns)
        if target is None:
            raise _Bad("unresolvable medicationReference")
        kind, mid = target
        if kind == "#":
            for c in res.get("contained") or ():
                if isinstance(c, dict) and c.get("id") == mid and c.get("resourceType") == "Medication":
                    return codings(c.get("code"), self.matcher)
            raise _Bad(f"contained Medication #{mid} not found")
        if kind != "Medication":
            raise _Bad(f"medicationReference names a {kind}")
        return self._medications.get(mid)

    # --- output ------------------------------------------------------------
    def _accept(self, e: Event, location: str = "") -> None:
        if e.patient_id not in self._patients:
            self._wait_patient.setdefault(e.patient_id, []).append((e, location))
            return
        self.sink.event(e)
        self.sink.stats.in_scope += 1

    def _quarantine(self, location: str, reason: str, raw: object) -> None:
        if isinstance(raw, bytes):
            text = raw.decode("utf-8", "replace")
        elif isinstance(raw, str):
            text = raw
        else:
            try:
                text = orjson.dumps(raw).decode()
            except TypeError:
                text = repr(raw)
        self.sink.quarantine(Quarantined(SOURCE_SYSTEM, location, reason, text[:RECORD_MAX]))

#: (groups, ingredient, first matching coding, site, laterality, body-site categories, stage value)
CodedContent = tuple[
    frozenset[str], str | None, tuple[str, str], str | None, str | None, str | None, str | None
]


def coded_content(
    res: dict[str, Any], rtype: str, code_list: list[tuple[str, str]], m: CodeMatcher
) -> CodedContent | None:
    """Groups, site, laterality and stage value of a clinical resource with codings ``code_list``.

    ``None`` when no coding is in a code group (the record is out of scope).
    """
    values = codings(res.get("valueCodeableConcept"), m) if rtype == "Observation" else []
    if values:
        groups: frozenset[str] = frozenset()
        ingredient = first = None
        for v in values:
            g, ing, f = m.match_any(code_list, v)
            groups |= g
            ingredient, first = ingredient or ing, first or f
    else:
        groups, ingredient, first = m.match_any(code_list)
    if not groups or first is None:
        return None
    field = bool(groups & RT_GROUPS)
    site, lat_from_site, body_site = extract_site(res, code_list, m, field=field)
    laterality = extract_laterality(res, code_list, m) or lat_from_site
    value = None
    if "stage_group" in groups:
        value = _stage_value(res, m)
    elif "stage_condition" in groups:
        value = next((s for s in (m.entry_stage(sy, c) for sy, c in code_list) if s), None)
    return groups, ingredient, first, site, laterality, body_site, value


def _status(value: Any) -> str | None:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):  # CodeableConcept (Condition.verificationStatus)
        for c in value.get("coding") or ():
            if isinstance(c, dict) and c.get("code"):
                return str(c["code"])
    return None


def _optional_date(value: Any, element: str) -> dt.date | None:
    if value is None:
        return None
    try:
        return parse_fhir_date(value)[0]
    except ValueError:
        raise _Bad(f"unparseable {element} {value!r}") from None


def _own_codings(res: dict[str, Any], rtype: str, m: CodeMatcher) -> list[tuple[str, str]] | None:
    """The codings a resource carries itself; ``None`` for a medication named by ``medicationReference``."""
    if rtype not in ("MedicationAdministration", "MedicationRequest"):
        return codings(res.get("code"), m)
    if "medicationCodeableConcept" in res:
        return codings(res["medicationCodeableConcept"], m)
    return None


def _dates(res: dict[str, Any], rtype: str) -> tuple[dt.date, str, dt.date | None]:
    for element, part in _DATE_PATHS[rtype]:
        raw = res.get(element)
        if part is not None:
            raw = raw.get(part) if isinstance(raw, dict) else None
        if raw is None:
            continue
        try:
            start, precision = parse_fhir_date(raw)
        except ValueError:
            raise _Bad(f"unparseable date {element}{'.' + part if part else ''} {raw!r}") from None
        end = None
        if rtype == "Procedure" and element == "performedPeriod" and part == "start":
            end = _optional_date(res["performedPeriod"].get("end"), "performedPeriod.end")
            if end is not None and end < start:
                end = None  # ends on its start (decisions.md), as in OMOP; e.g. 2020-03 (15th) to 2020-03-02
        return start, precision, end
    raise _Bad(f"no usable date ({' | '.join(e + ('.' + p if p else '') for e, p in _DATE_PATHS[rtype])})")


def _stage_value(res: dict[str, Any], m: CodeMatcher) -> str | None:
    vcc = res.get("valueCodeableConcept")
    text = res.get("valueString")
    if isinstance(vcc, dict):
        for c in vcc.get("coding") or ():
            if isinstance(c, dict) and c.get("code"):
                system = m.system_for_fhir(c.get("system"))
                if system:
                    hit = m.stage_value(system, str(c["code"]), None)
                    if hit:
                        return hit
        text = text or vcc.get("text")
    return m.stage_value(None, None, text if isinstance(text, str) else None)


def _validate(res: dict[str, Any]) -> None:
    """Optional strict mode: the resource must validate against the fhir.resources R4B model."""
    from fhir.resources.R4B import get_fhir_model_class

    try:
        get_fhir_model_class(res["resourceType"]).model_validate(res)
    except Exception as exc:
        first = str(exc).splitlines()
        raise _Bad(f"invalid FHIR R4B: {' '.join(first[:2])[:200]}") from None
