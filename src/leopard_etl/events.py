"""The normalised event record: the one intermediate both adapters produce.

Adapters (FHIR, OMOP) turn source records into :class:`Event` rows and
:class:`PatientRecord` rows; everything after that (cohort rules, analysis,
warehouse) sees only these. They are plain NamedTuples so that millions of them
stay cheap and turn into a columnar frame with ``pandas.DataFrame.from_records``
(column names = ``EVENT_COLUMNS``) or an Arrow table without conversion code.

Code-group matching happens in the adapter through the shared
:class:`leopard_etl.mappings.CodeMatcher`, so an event already says which groups
(``radiotherapy``, ``platinum`` …) it belongs to, its lesion site category and its
laterality; the raw system/code of the coding that matched is kept for provenance.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Literal, NamedTuple

__all__ = [
    "EVENT_COLUMNS",
    "KINDS",
    "PATIENT_COLUMNS",
    "QUARANTINE_COLUMNS",
    "QUARANTINE_CSV_COLUMNS",
    "ROUTES",
    "Event",
    "EventSink",
    "PatientRecord",
    "Precision",
    "Quarantined",
    "ReadStats",
    "join_groups",
    "quarantine_from_row",
    "quarantine_row",
    "split_groups",
]

Precision = Literal["day", "month", "year"]

#: Event kinds. ``condition``/``procedure``/``observation`` as in FHIR (OMOP
#: condition_occurrence / procedure_occurrence / measurement+observation),
#: ``drug_admin`` (MedicationAdministration, OMOP drug_exposure), ``drug_request``
#: (MedicationRequest: used only for an ingredient without any administration),
#: ``episode`` (OMOP episode), ``observation_period`` (OMOP: its dates count
#: as dates the patient was known alive), and *(spec v2)* the kinds that are only ever
#: activity records: ``encounter`` (FHIR Encounter, OMOP visit_occurrence / visit_detail),
#: ``medication_statement``, ``diagnostic_report``, ``immunization``, ``imaging_study``,
#: ``device`` (OMOP device_exposure).
KINDS = (
    "condition",
    "procedure",
    "observation",
    "drug_admin",
    "drug_request",
    "episode",
    "observation_period",
    "encounter",
    "medication_statement",
    "diagnostic_report",
    "immunization",
    "imaging_study",
    "device",
)

#: How a drug event's coding reached its group (spec §2.1): the coding itself is a group entry
#: (``code``), an RxNorm product rolled up to its ingredient (``product``), a
#: ``Medication.ingredient`` coding (``ingredient``), or the INN / brand name in text (``name``).
ROUTES = ("code", "product", "ingredient", "name")


class Event(NamedTuple):
    """One dated clinical fact of one patient, in the canonical vocabulary.

    ``groups`` is the ``;``-joined sorted set of code groups (see mappings/) the
    record belongs to; ``ingredient`` names the drug ingredient for drug events
    (``cisplatin``) so the MedicationRequest fallback can work per ingredient.
    ``source`` is the stable reference of the source record
    (``fhir:Condition/abc``, ``omop:condition_occurrence/42``): the provenance
    every derived row carries.

    *(spec v2)* An **activity record** (dated, not excluded, in no code group) is an
    event with ``groups == ""``: it only decides last alive and the default cutoff. Its
    ``system``/``code`` are the first coding as written (FHIR system URI, OMOP
    vocabulary_id) and ``value`` that coding's display, for ``unmatched_codes.csv``.
    ``start`` is the record's first date; ``end`` its other date that counts for last
    alive (a period's end, or a Condition's ``recordedDate`` after its onset) — for
    every event, grouped or not, last alive takes ``end`` when it is not after the cutoff.
    ``route`` says how a drug event matched (:data:`ROUTES`); ``None`` for other events.
    """

    patient_id: str
    kind: str
    groups: str
    system: str
    code: str
    start: dt.date
    end: dt.date | None
    precision: str
    site: str | None
    laterality: str | None
    body_site: str | None
    value: str | None
    lesion_id: str | None
    ingredient: str | None
    fractions: int | None
    dose_cgy: float | None
    source: str
    route: str | None = None


EVENT_COLUMNS: tuple[str, ...] = Event._fields


class PatientRecord(NamedTuple):
    """Patient-level facts (FHIR Patient, OMOP person + death).

    ``deceased`` is true whenever the source says the patient died, with or without a
    date: ``death_date is None and deceased`` is a death with unknown date (spec §3.12
    v2: FHIR ``deceasedBoolean: true``, an OMOP death row with NULL ``death_date``).
    """

    patient_id: str
    birth_date: dt.date | None
    sex: str | None
    death_date: dt.date | None
    source: str
    deceased: bool = False


PATIENT_COLUMNS: tuple[str, ...] = PatientRecord._fields


class Quarantined(NamedTuple):
    """A record that could not be used, with why and where it came from.

    ``record_id`` is ``Type/id`` (FHIR) or ``table/row_id`` (OMOP) where the record has one
    (spec §5 v2 quarantine.csv columns).
    """

    source_system: str
    location: str
    reason: str
    record: str
    record_id: str = ""


QUARANTINE_COLUMNS: tuple[str, ...] = Quarantined._fields
#: quarantine.csv columns in the order of spec §5 (v2)
QUARANTINE_CSV_COLUMNS: tuple[str, ...] = ("source_system", "location", "reason", "record_id", "record")


def quarantine_row(q: Quarantined) -> tuple[str, str, str, str, str]:
    """A quarantined record in quarantine.csv column order."""
    return (q.source_system, q.location, q.reason, q.record_id, q.record)


def quarantine_from_row(row: list[str]) -> Quarantined:
    """The inverse of :func:`quarantine_row`."""
    source_system, location, reason, record_id, record = row
    return Quarantined(source_system, location, reason, record, record_id)


class ReadStats:
    """Accounting of one read: ``read == events + quarantined + out_of_scope``.

    ``read`` counts source records (resources, lines, rows), not events; a record
    that yields several events still counts once under ``in_scope``.
    """

    __slots__ = ("in_scope", "out_of_scope", "out_of_scope_reasons", "quarantined", "read")

    def __init__(self) -> None:
        self.read = 0
        self.in_scope = 0
        self.quarantined = 0
        self.out_of_scope = 0
        self.out_of_scope_reasons: dict[str, int] = {}

    def skip(self, reason: str, n: int = 1) -> None:
        """Count ``n`` records as read but not relevant (with the reason)."""
        self.out_of_scope += n
        self.out_of_scope_reasons[reason] = self.out_of_scope_reasons.get(reason, 0) + n

    def balanced(self) -> bool:
        return self.read == self.in_scope + self.quarantined + self.out_of_scope

    def merge(self, other: ReadStats) -> None:
        self.read += other.read
        self.in_scope += other.in_scope
        self.quarantined += other.quarantined
        self.out_of_scope += other.out_of_scope
        for k, v in other.out_of_scope_reasons.items():
            self.out_of_scope_reasons[k] = self.out_of_scope_reasons.get(k, 0) + v

    def as_dict(self) -> dict[str, object]:
        return {
            "read": self.read,
            "in_scope": self.in_scope,
            "quarantined": self.quarantined,
            "out_of_scope": self.out_of_scope,
            "out_of_scope_reasons": dict(sorted(self.out_of_scope_reasons.items())),
        }

    def __repr__(self) -> str:
        return f"ReadStats({self.as_dict()})"


def join_groups(groups: Iterable[str]) -> str:
    return ";".join(sorted(set(groups)))


def split_groups(groups: str) -> frozenset[str]:
    return frozenset(groups.split(";")) if groups else frozenset()


class EventSink:
    """Where an adapter puts what it reads; the default collects everything in lists.

    Adapters call :meth:`event`, :meth:`patient` and :meth:`quarantine` as they
    stream, and count every source record in :attr:`stats` (``stats.read += 1``
    per record, then exactly one of ``stats.in_scope += 1``,
    ``stats.quarantined`` (done by :meth:`quarantine`) or ``stats.skip(reason)``).
    A subclass can spill to disk or Arrow batches instead of lists (performance
    issue) without the adapters changing.
    """

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.patients: list[PatientRecord] = []
        self.quarantined: list[Quarantined] = []
        self.stats = ReadStats()
        #: server time / change marker to resume an incremental read from
        self.watermark: str | None = None
        #: source references of every record read (incremental runs replace these in the store)
        self.touched: set[str] = set()
        #: source references deleted / entered-in-error at the source (incremental runs remove them)
        self.deleted: list[str] = []
        #: *(spec v2 §3.12)* the day of the run: without an explicit :attr:`cutoff`, a record whose
        #: own date (its start) lies after it is quarantined ("date in the future"); ``None`` = no check
        self.run_day: dt.date | None = None
        #: the configured cutoff, when there is one (then no record is quarantined for its date)
        self.cutoff: dt.date | None = None
        #: unmatched-code rows a reader counted itself (OMOP aggregates them in SQL), keys of
        #: ``leopard_etl.cohort.derive.UNMATCHED_COLUMNS``
        self.unmatched_codes: list[dict[str, object]] = []

    def in_future(self, start: dt.date) -> bool:
        """True when a record starting on ``start`` must be quarantined as dated in the future."""
        return self.cutoff is None and self.run_day is not None and start > self.run_day

    def future_reason(self, start: dt.date) -> str:
        return f"date in the future ({start.isoformat()} after the day of the run {self.run_day})"

    def event(self, e: Event) -> None:
        self.events.append(e)

    def patient(self, p: PatientRecord) -> None:
        self.patients.append(p)

    def quarantine(self, q: Quarantined) -> None:
        self.stats.quarantined += 1
        self.quarantined.append(q)
