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
  write ``Patient.ndjson`` after ``Condition.ndjson``);
* *(v2)* a Condition or Procedure in a code group with no date of its own, whose date
  is its Encounter's ``period.start`` (``Condition.ndjson`` comes before
  ``Encounter.ndjson`` too). Encounter starts are kept as they are read (an id and a
  day each) so that a record naming an Encounter already read resolves at once.

*(v2)* Every dated record of the read types that is not excluded by status is an
**activity record** (spec §1): when it is in no code group it still becomes an event,
with ``groups == ""``, so that it counts for last alive and the default cutoff.

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

__all__ = [
    "ACTIVITY_ONLY",
    "ACTIVITY_TYPES",
    "EXCLUDED_STATUS",
    "READ_TYPES",
    "CodedContent",
    "FhirRecordReader",
    "MedicationCodes",
    "coded_content",
    "medication_codes",
]

SOURCE_SYSTEM = "fhir"
RECORD_MAX = 4000  # characters of the raw record kept in a quarantine row

#: Groups whose body sites are an irradiated field (all of them count), not a lesion's site.
RT_GROUPS = frozenset({"radiotherapy", "stereotactic"})

#: resource types whose records can be in a code group (Patient and Medication are handled apart)
EVENT_KIND = {
    "Condition": "condition",
    "Procedure": "procedure",
    "Observation": "observation",
    "MedicationAdministration": "drug_admin",
    "MedicationRequest": "drug_request",
}
#: *(v2)* resource types read only as activity records (spec §1): their codes feed no rule
ACTIVITY_ONLY = {
    "Encounter": "encounter",
    "MedicationStatement": "medication_statement",
    "DiagnosticReport": "diagnostic_report",
    "Immunization": "immunization",
    "ImagingStudy": "imaging_study",
}
#: every type whose dated records are activity records (last alive, default cutoff)
ACTIVITY_TYPES = (*EVENT_KIND, *ACTIVITY_ONLY)
READ_TYPES = ("Patient", "Medication", *ACTIVITY_TYPES)
_KIND = {**EVENT_KIND, **ACTIVITY_ONLY}

#: spec §1 "Excluded" and the v2 activity table: (status element, statuses that put the record
#: out of scope)
EXCLUDED_STATUS: dict[str, tuple[str, frozenset[str]]] = {
    "Condition": ("verificationStatus", frozenset({"refuted", "entered-in-error"})),
    "Procedure": ("status", frozenset({"not-done", "entered-in-error"})),
    "Observation": ("status", frozenset({"cancelled", "entered-in-error"})),
    "MedicationAdministration": ("status", frozenset({"not-done", "entered-in-error"})),
    "MedicationRequest": ("status", frozenset({"cancelled", "entered-in-error", "draft"})),
    "Encounter": ("status", frozenset({"planned", "cancelled", "entered-in-error"})),
    "MedicationStatement": ("status", frozenset({"not-taken", "entered-in-error", "intended"})),
    "DiagnosticReport": ("status", frozenset({"cancelled", "entered-in-error"})),
    "Immunization": ("status", frozenset({"not-done", "entered-in-error"})),
    "ImagingStudy": ("status", frozenset({"cancelled", "entered-in-error"})),
}

#: *(v2)* the element holding an activity-only record's code (for unmatched_codes.csv)
_ACTIVITY_CODE = {
    "Encounter": "type",
    "MedicationStatement": "medicationCodeableConcept",
    "DiagnosticReport": "code",
    "Immunization": "vaccineCode",
    "ImagingStudy": "procedureCode",
}

#: spec §1 date rules: the first present element gives the start (v2 activity table for the
#: activity-only types; a Procedure period without start starts on its end)
_DATE_PATHS: dict[str, tuple[tuple[str, str | None], ...]] = {
    "Condition": (("onsetDateTime", None), ("onsetPeriod", "start"), ("recordedDate", None)),
    "Procedure": (("performedDateTime", None), ("performedPeriod", "start"), ("performedPeriod", "end")),
    "Observation": (
        ("effectiveDateTime", None),
        ("effectivePeriod", "start"),
        ("effectivePeriod", "end"),
        ("issued", None),
    ),
    "MedicationAdministration": (
        ("effectiveDateTime", None),
        ("effectivePeriod", "start"),
        ("effectivePeriod", "end"),
    ),
    "MedicationRequest": (("authoredOn", None),),
    "Encounter": (("period", "start"), ("period", "end")),
    "MedicationStatement": (("effectiveDateTime", None), ("effectivePeriod", "start")),
    "DiagnosticReport": (("effectiveDateTime", None), ("effectivePeriod", "start"), ("issued", None)),
    "Immunization": (("occurrenceDateTime", None),),
    "ImagingStudy": (("started", None),),
}
#: *(v2)* the record's other date that counts for last alive, read when the start came from
#: the first element named here: (start element, end element, end part)
_SECOND_DATE: dict[str, tuple[tuple[str, str, str | None], ...]] = {
    "Condition": (("onsetDateTime", "recordedDate", None), ("onsetPeriod", "recordedDate", None)),
    "Procedure": (("performedPeriod", "performedPeriod", "end"),),
    "Observation": (("effectivePeriod", "effectivePeriod", "end"),),
    "MedicationAdministration": (("effectivePeriod", "effectivePeriod", "end"),),
    "Encounter": (("period", "period", "end"),),
}
#: types whose records in a code group take their Encounter's start when they have no date
_ENCOUNTER_DATED = frozenset({"Condition", "Procedure"})

#: (codes, ``Medication.ingredient`` codes, texts) of a Medication: the three routes after
#: the record's own codings (spec §2.1)
MedicationCodes = tuple[list[tuple[str, str]], list[tuple[str, str]], tuple[str, ...]]


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
        #: Medication id → its codes (resolved references, kept for the whole read: Medications are few)
        self._medications: dict[str, MedicationCodes] = {}
        #: *(v2)* Encounter id → its start (records without a date of their own take it)
        self._encounter_start: dict[str, tuple[dt.date, str]] = {}
        #: records in a code group waiting for their Encounter's start, kept as JSON text
        self._wait_encounter: dict[str, list[tuple[str, str, UrnIndex | None]]] = {}
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

    def missing_encounters(self) -> list[str]:
        """Ids of Encounters whose start undated records wait for (a REST reader fetches them)."""
        return sorted(self._wait_encounter)

    def finish(self) -> None:
        """Quarantine what is still waiting for a Medication, an Encounter or a Patient that never came."""
        for med_id, waiting in self._wait_medication.items():
            for raw, location, _urns in waiting:
                self.sink.stats.read += 1  # was uncounted while waiting
                self._quarantine(location, f"reference to unknown Medication/{med_id}", raw)
        self._wait_medication.clear()
        for enc_id, waiting in self._wait_encounter.items():
            for raw, location, _urns in waiting:
                self.sink.stats.read += 1
                self._quarantine(
                    location, f"no usable date (no date of its own, and Encounter/{enc_id} was not read)", raw
                )
        self._wait_encounter.clear()
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
    def medications(self) -> dict[str, MedicationCodes]:
        """Medication id → its codes, for the Medications read so far."""
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
        if rtype in ACTIVITY_ONLY:
            return None
        code_list = _own_codings(res, rtype, self.matcher)
        med: MedicationCodes | None = None
        if code_list is None:
            med = self._resolve_medication(res, None)
            if med is None:
                raise LookupError("Medication not read yet")
            code_list = med[0]
        return coded_content(res, rtype, code_list, self.matcher, med)

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
        if rtype == "OperationOutcome":  # an export's error file: not patient data (spec §1 v2)
            self.sink.stats.skip(f"OperationOutcome in {_file_of(location)}")
            return
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
            if rtype == "Encounter":
                self.encounter_read(rid, res)
            self._clinical(res, rtype, rid, location, urns)

    def _patient(self, res: dict[str, Any], rid: str) -> None:
        birth = _optional_date(res.get("birthDate"), "birthDate")
        death: dt.date | None = None
        if "deceasedDateTime" in res:
            death = _optional_date(res["deceasedDateTime"], "deceasedDateTime")
        # spec §3.12 v2: deceasedBoolean true is a death with unknown date
        deceased = death is not None or res.get("deceasedBoolean") is True
        gender = res.get("gender")
        self.sink.patient(
            PatientRecord(
                rid,
                birth,
                gender if isinstance(gender, str) else None,
                death,
                f"fhir:Patient/{rid}",
                deceased,
            )
        )
        self.sink.stats.in_scope += 1
        self._patients.add(rid)
        for e, _location in self._wait_patient.pop(rid, ()):
            self._accept(e)

    def _medication(self, res: dict[str, Any], rid: str) -> None:
        self._medications[rid] = medication_codes(res, self.matcher)
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
        coded: CodedContent | None = None
        if rtype not in ACTIVITY_ONLY:
            code_list = _own_codings(res, rtype, m)
            med: MedicationCodes | None = None
            if code_list is None:
                med = self._medication_codings(res, rid, location, urns)
                if med is None:  # waits for its Medication
                    return
                code_list = med[0]
            coded = coded_content(res, rtype, code_list, m, med)
        dates = _dates(res, rtype)
        if dates is None and coded is not None and rtype in _ENCOUNTER_DATED:
            dates = self._encounter_date(res, rid, location, urns)
            if dates is None:  # waits for its Encounter
                return
        if dates is None:
            if coded is not None:
                raise _Bad(_no_date_reason(rtype))
            self.sink.stats.skip("no code group and no date")
            return
        start, precision, end = dates
        target = reference_target(_patient_ref(res), urns)
        if target is None:
            raise _Bad("no subject" if not _patient_ref(res) else "unresolvable subject reference")
        if target[0] != "Patient":
            raise _Bad(f"subject is a {target[0]}, not a Patient")
        if self.sink.in_future(start):
            raise _Bad(self.sink.future_reason(start))
        source = f"fhir:{rtype}/{rid}"
        if coded is None:
            system, code, display = _first_coding(res, rtype)
            e = Event(target[1], _KIND[rtype], "", system, code, start, end, precision,
                      None, None, None, display, None, None, None, None, source)
            self._accept(e, location)
            return
        groups, ingredient, first, site, laterality, body_site, value, route = coded
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
                source=source,
                route=route,
            ),
            location,
        )

    def _encounter_date(
        self, res: dict[str, Any], rid: str, location: str, urns: UrnIndex | None
    ) -> tuple[dt.date, str, dt.date | None] | None:
        """*(v2)* The start of the Encounter an undated Condition / Procedure names, or wait for it."""
        target = reference_target((res.get("encounter") or {}).get("reference"), urns)
        if target is None or target[0] != "Encounter":
            raise _Bad(_no_date_reason(res["resourceType"]) + " and no Encounter reference")
        hit = self._encounter_start.get(target[1])
        if hit is not None:
            return hit[0], hit[1], None
        self.sink.stats.read -= 1  # counted again when it is fed back
        waiting = res if res.get("id") == rid else {**res, "id": rid}
        text = orjson.dumps(waiting).decode()
        self._wait_encounter.setdefault(target[1], []).append((text, location, urns))
        return None

    def encounter_read(self, rid: str, res: dict[str, Any]) -> None:
        """Keep an Encounter's start (status aside) and feed back the records that waited for it."""
        period = res.get("period")
        raw = period.get("start") if isinstance(period, dict) else None
        if raw is None:
            return
        try:
            self._encounter_start[rid] = parse_fhir_date(raw)
        except ValueError:
            return
        for text, location, urns in self._wait_encounter.pop(rid, ()):
            self.feed(orjson.loads(text), location, urns)

    def _medication_codings(
        self, res: dict[str, Any], rid: str, location: str, urns: UrnIndex | None
    ) -> MedicationCodes | None:
        found = self._resolve_medication(res, urns)
        if found is not None:
            return found
        mid = str(reference_target(res["medicationReference"]["reference"], urns)[1])  # type: ignore[index]
        self.sink.stats.read -= 1  # counted again when it is fed back
        # a Bundle entry without ``id`` keeps the id it was given (its urn:uuid) while it waits
        waiting = res if res.get("id") == rid else {**res, "id": rid}
        self._wait_medication.setdefault(mid, []).append((orjson.dumps(waiting).decode(), location, urns))
        return None

    def _resolve_medication(self, res: dict[str, Any], urns: UrnIndex | None) -> MedicationCodes | None:
        """Codes named by ``medicationReference``; ``None`` for a Medication not read yet."""
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
                    return medication_codes(c, self.matcher)
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
        self.sink.quarantine(Quarantined(SOURCE_SYSTEM, location, reason, text[:RECORD_MAX], _record_id(raw)))

#: (groups, ingredient, first matching coding, site, laterality, body-site categories, stage value,
#: drug match route)
CodedContent = tuple[
    frozenset[str], str | None, tuple[str, str], str | None, str | None, str | None, str | None, str | None
]
_DRUG_TYPES = frozenset({"MedicationAdministration", "MedicationRequest"})


def medication_codes(med: dict[str, Any], m: CodeMatcher) -> MedicationCodes:
    """A Medication's own codes, its ``ingredient[].itemCodeableConcept`` codes and its texts (§2.1)."""
    ingredients: list[tuple[str, str]] = []
    texts: list[str] = list(_texts(med.get("code")))
    for item in med.get("ingredient") or ():
        if isinstance(item, dict):
            ingredients.extend(codings(item.get("itemCodeableConcept"), m, "Medication"))
            texts.extend(_texts(item.get("itemCodeableConcept")))
    return codings(med.get("code"), m, "Medication"), ingredients, tuple(texts)


def _texts(concept: Any) -> list[str]:
    """The ``text`` and every coding ``display`` of a CodeableConcept (where drug names are found)."""
    if not isinstance(concept, dict):
        return []
    out = [concept["text"]] if isinstance(concept.get("text"), str) else []
    for c in concept.get("coding") or ():
        if isinstance(c, dict) and isinstance(c.get("display"), str):
            out.append(c["display"])
    return out


def _drug_match(
    res: dict[str, Any], code_list: list[tuple[str, str]], med: MedicationCodes | None, m: CodeMatcher
) -> tuple[frozenset[str], str | None, tuple[str, str] | None, str | None]:
    """Groups of a drug record by the routes of spec §2.1, in order: its codes (``code`` or
    ``product``), its Medication's ingredient codes, then a drug name in its texts."""
    groups, ingredient, first = m.match_any(code_list)
    if groups and first is not None:
        return groups, ingredient, first, m.route(*first)
    if med is not None and med[1]:
        groups, ingredient, first = m.match_any(med[1])
        if groups:
            return groups, ingredient, first, "ingredient"
    texts = med[2] if med is not None else tuple(_texts(res.get("medicationCodeableConcept")))
    for text in texts:
        groups, ingredient = m.match_name(text)
        if groups:
            return groups, ingredient, ("name", ingredient or text), "name"
    return frozenset(), None, None, None


def coded_content(
    res: dict[str, Any],
    rtype: str,
    code_list: list[tuple[str, str]],
    m: CodeMatcher,
    med: MedicationCodes | None = None,
) -> CodedContent | None:
    """Groups, site, laterality and stage value of a clinical resource with codings ``code_list``.

    ``med`` holds the codes of the Medication a drug record names by reference. ``None`` when
    no coding is in a code group (the record is an activity record or out of scope).
    """
    route: str | None = None
    values = codings(res.get("valueCodeableConcept"), m) if rtype == "Observation" else []
    first: tuple[str, str] | None
    if rtype in _DRUG_TYPES:
        groups, ingredient, first, route = _drug_match(res, code_list, med, m)
    elif values:
        groups = frozenset()
        ingredient = first = None
        for v in values:
            g, ing, f = m.match_any(code_list, v)
            groups |= g
            ingredient, first = ingredient or ing, first or f
    else:
        groups, ingredient, first = m.match_any(code_list)
    summary = _stage_summary(res, m) if rtype == "Condition" else None
    if summary is not None:
        groups = groups | {"stage_condition"}
        first = first or next(iter(code_list), ("stage_summary", summary))
    if not groups or first is None:
        return None
    field = bool(groups & RT_GROUPS)
    site, lat_from_site, body_site = extract_site(res, code_list, m, field=field)
    laterality = extract_laterality(res, code_list, m) or lat_from_site
    value = None
    if "stage_group" in groups:
        value = _stage_value(res, m)
    elif summary is not None:
        value = summary
    elif "stage_condition" in groups:
        value = next((s for s in (m.entry_stage(sy, c) for sy, c in code_list) if s), None)
    return groups, ingredient, first, site, laterality, body_site, value, route


def _stage_summary(res: dict[str, Any], m: CodeMatcher) -> str | None:
    """*(v2 §2.1)* The stage of ``Condition.stage[].summary``: a coded stage value, or a display / text
    matching the stage pattern."""
    for stage in res.get("stage") or ():
        summary = stage.get("summary") if isinstance(stage, dict) else None
        if not isinstance(summary, dict):
            continue
        hit = _concept_stage(summary, m)
        if hit:
            return hit
    return None


def _concept_stage(concept: dict[str, Any], m: CodeMatcher) -> str | None:
    """Stage of a value CodeableConcept: a coded stage value first, then a display or the text (§2.1)."""
    for c in concept.get("coding") or ():
        if isinstance(c, dict) and c.get("code"):
            system = m.system_for_fhir(c.get("system"))
            if system:
                hit = m.stage_value(system, str(c["code"]), None)
                if hit:
                    return hit
    for c in concept.get("coding") or ():
        if isinstance(c, dict) and isinstance(c.get("display"), str):
            hit = m.stage_display(c["display"])
            if hit:
                return hit
    return None


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
    if rtype not in _DRUG_TYPES:
        return codings(res.get("code"), m, rtype)
    if "medicationCodeableConcept" in res:
        return codings(res["medicationCodeableConcept"], m, rtype)
    return None


def _patient_ref(res: dict[str, Any]) -> Any:
    """The reference naming the patient: ``subject``, or ``patient`` (Immunization)."""
    holder = res.get("subject") or res.get("patient")
    return holder.get("reference") if isinstance(holder, dict) else None


def _first_coding(res: dict[str, Any], rtype: str) -> tuple[str, str, str | None]:
    """(system as written, code, display) of an activity record's first coding, for unmatched_codes.csv."""
    if rtype in _DRUG_TYPES:
        concept: Any = res.get("medicationCodeableConcept")
    else:
        concept = res.get(_ACTIVITY_CODE.get(rtype, "code"))
    if isinstance(concept, list):
        concept = concept[0] if concept else None
    if isinstance(concept, dict):
        for c in concept.get("coding") or ():
            if isinstance(c, dict) and c.get("code"):
                display = c.get("display") if isinstance(c.get("display"), str) else concept.get("text")
                shown = display if isinstance(display, str) else None
                return str(c.get("system") or ""), str(c["code"]), shown
        if isinstance(concept.get("text"), str):
            return "", "", concept["text"]
    return "", "", None


def _no_date_reason(rtype: str) -> str:
    return f"no usable date ({' | '.join(e + ('.' + p if p else '') for e, p in _DATE_PATHS[rtype])})"


def _read_date(res: dict[str, Any], element: str, part: str | None) -> tuple[dt.date, str] | None:
    raw = res.get(element)
    if part is not None:
        raw = raw.get(part) if isinstance(raw, dict) else None
    if raw is None:
        return None
    try:
        return parse_fhir_date(raw)
    except ValueError:
        raise _Bad(f"unparseable date {element}{'.' + part if part else ''} {raw!r}") from None


def _dates(res: dict[str, Any], rtype: str) -> tuple[dt.date, str, dt.date | None] | None:
    """(start, precision, end) of a record; ``None`` when it carries none of its type's dates.

    ``end`` is the record's other date that counts for last alive (v2 activity table): a period's
    end, or a Condition's ``recordedDate`` beside its onset. An end before the start is dropped
    (the record ends on its start, decisions.md).
    """
    for element, part in _DATE_PATHS[rtype]:
        found = _read_date(res, element, part)
        if found is None:
            continue
        start, precision = found
        end = None
        if part != "end":
            for first, end_element, end_part in _SECOND_DATE.get(rtype, ()):
                if first == element:
                    other = _read_date(res, end_element, end_part)
                    end = other[0] if other is not None else None
        if end is not None and end < start:
            end = None  # e.g. 2020-03 (15th) to 2020-03-02
        return start, precision, end
    return None


def _file_of(location: str) -> str:
    """The file name of a ``path:line`` / ``path#entry[i]`` location (a URL stays as it is)."""
    if "://" in location:
        return location
    return location.split("#", 1)[0].rsplit(":", 1)[0].replace("\\", "/").rsplit("/", 1)[-1]


def _record_id(raw: object) -> str:
    """``Type/id`` of a quarantined record, where it has one (spec §5 v2 quarantine.csv)."""
    if isinstance(raw, dict):
        rtype, rid = raw.get("resourceType"), raw.get("id")
        if isinstance(rtype, str) and isinstance(rid, str):
            return f"{rtype}/{rid}"
    if isinstance(raw, str) and raw.startswith("fhir:"):
        return raw[5:]
    return ""


def _stage_value(res: dict[str, Any], m: CodeMatcher) -> str | None:
    vcc = res.get("valueCodeableConcept")
    text = res.get("valueString")
    if isinstance(vcc, dict):
        hit = _concept_stage(vcc, m)
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
