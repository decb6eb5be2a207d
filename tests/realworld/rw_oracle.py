"""An independent reading of raw FHIR files: the test oracle of the real-world suite.

This module never imports ``leopard_etl``. It reads the vendored NDJSON (plain or gzip) and
Bundle files with the standard library only and answers the few questions whose answer
is tedious to work out by hand from a thousand records: which dates a patient's records
carry (spec v2 §1, the activity-record table), the latest of them up to a cutoff, and how
many records of each kind the files hold. Everything clinical (who is screened, the
stage, the exclusion reason) is written by hand in the tests, from the spec and the data.

It is deliberately literal: the §1 table, transcribed below, and nothing else.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

# spec v2 §1 "Activity record" table: type -> excluded statuses. The dates are read by
# `activity_dates` below, one branch per row of the table.
EXCLUDED_STATUS: dict[str, set[str]] = {
    "Encounter": {"planned", "cancelled", "entered-in-error"},
    "Observation": {"cancelled", "entered-in-error"},
    "Condition": set(),  # by verificationStatus, below
    "Procedure": {"not-done", "entered-in-error"},
    "MedicationAdministration": {"not-done", "entered-in-error"},
    "MedicationRequest": {"cancelled", "entered-in-error", "draft"},
    "MedicationStatement": {"not-taken", "entered-in-error", "intended"},
    "DiagnosticReport": {"cancelled", "entered-in-error"},
    "Immunization": {"not-done", "entered-in-error"},
    "ImagingStudy": {"cancelled", "entered-in-error"},
}
ACTIVITY_TYPES = frozenset(EXCLUDED_STATUS)
# spec v2 §1 "Resource types read" (activity types plus Patient and Medication).
READ_TYPES = ACTIVITY_TYPES | {"Patient", "Medication"}
CONDITION_EXCLUDED_VERIFICATION = {"refuted", "entered-in-error"}


@dataclass
class Record:
    resource: dict
    source: str  # file name (and entry number for Bundles)

    @property
    def type(self) -> str:
        return self.resource.get("resourceType", "")

    @property
    def patient(self) -> str | None:
        """The id of the patient the record names (`subject` or `patient`), else None."""
        if self.type == "Patient":
            return self.resource.get("id")
        for key in ("subject", "patient"):
            ref = (self.resource.get(key) or {}).get("reference")
            if ref:
                return ref.rstrip("/").split("/")[-1]
        return None


def _day(value: str | None) -> str | None:
    """The calendar date as written (spec §1: no timezone conversion); partial dates per §1."""
    if not value:
        return None
    if len(value) >= 10:
        return value[:10]
    if len(value) == 7:  # YYYY-MM -> day 15
        return value + "-15"
    if len(value) == 4:  # YYYY -> July 1
        return value + "-07-01"
    return None


def _effective(res: dict, prefix: str, with_end: bool = True) -> list[str]:
    out = [res.get(f"{prefix}DateTime")]
    period = res.get(f"{prefix}Period") or {}
    out.append(period.get("start"))
    if with_end:
        out.append(period.get("end"))
    return [d for d in (_day(v) for v in out) if d]


def excluded(rec: Record) -> bool:
    res = rec.resource
    if rec.type == "Condition":
        codes = {c.get("code") for c in (res.get("verificationStatus") or {}).get("coding", [])}
        return bool(codes & CONDITION_EXCLUDED_VERIFICATION)
    return res.get("status") in EXCLUDED_STATUS.get(rec.type, set())


def activity_dates(rec: Record) -> list[str]:
    """Every date the §1 table lets this record contribute (empty: not an activity record)."""
    res, t = rec.resource, rec.type
    if t not in ACTIVITY_TYPES or rec.patient is None or excluded(rec):
        return []
    if t == "Encounter":
        p = res.get("period") or {}
        dates = [_day(p.get("start")), _day(p.get("end"))]
    elif t == "Observation":
        dates = _effective(res, "effective") or [_day(res.get("issued"))]
    elif t == "Condition":
        dates = [
            _day(res.get("onsetDateTime")),
            _day((res.get("onsetPeriod") or {}).get("start")),
            _day(res.get("recordedDate")),
        ]
    elif t in ("Procedure",):
        dates = _effective(res, "performed")
    elif t == "MedicationAdministration":
        dates = _effective(res, "effective")
    elif t == "MedicationRequest":
        dates = [_day(res.get("authoredOn"))]
    elif t == "MedicationStatement":
        dates = _effective(res, "effective", with_end=False)
    elif t == "DiagnosticReport":
        dates = _effective(res, "effective", with_end=False) or [_day(res.get("issued"))]
    elif t == "Immunization":
        dates = [_day(res.get("occurrenceDateTime"))]
    elif t == "ImagingStudy":
        dates = [_day(res.get("started"))]
    else:  # pragma: no cover - ACTIVITY_TYPES is exhaustive
        dates = []
    return sorted({d for d in dates if d})


def start_date(rec: Record) -> str | None:
    """The record's own date (its start): the earliest date it contributes."""
    dates = activity_dates(rec)
    return dates[0] if dates else None


def read_records(folder: Path) -> Iterator[Record]:
    """Every resource in the folder's NDJSON (.ndjson, .ndjson.gz) and Bundle (.json) files.

    Lines without a resourceType (export-client logs) are skipped: they are no resource.
    """
    for path in sorted(folder.iterdir()):
        name = path.name
        if name.endswith((".ndjson", ".ndjson.gz")):
            opener = gzip.open if name.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8-sig") as fh:
                for n, line in enumerate(fh, 1):
                    if line.strip():
                        res = json.loads(line)
                        if "resourceType" in res:
                            yield Record(res, f"{name}:{n}")
        elif name.endswith(".json"):
            bundle = json.loads(path.read_text(encoding="utf-8-sig"))
            for n, entry in enumerate(bundle.get("entry", []), 1):
                yield Record(entry["resource"], f"{name}#{n}")


def count_lines(path: Path) -> int:
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rt", encoding="utf-8-sig") as fh:
        return sum(1 for line in fh if line.strip())


@dataclass
class PatientFacts:
    death_date: str | None = None
    deceased_boolean: bool = False
    dates: list[tuple[str, str]] = field(default_factory=list)  # (date, "Type/id")

    def latest(self, cutoff: str | None = None, *, not_after: str | None = None) -> str | None:
        """Latest activity date <= cutoff (and <= not_after, e.g. a death date)."""
        bound = min(x for x in (cutoff, not_after, "9999-12-31") if x)
        eligible = [d for d, _ in self.dates if d <= bound]
        return max(eligible) if eligible else None


def patient_facts(records: list[Record]) -> dict[str, PatientFacts]:
    facts: dict[str, PatientFacts] = {}
    for rec in records:
        pid = rec.patient
        if pid is None:
            continue
        f = facts.setdefault(pid, PatientFacts())
        if rec.type == "Patient":
            f.death_date = _day(rec.resource.get("deceasedDateTime"))
            f.deceased_boolean = rec.resource.get("deceasedBoolean") is True
            continue
        ref = f"{rec.type}/{rec.resource.get('id')}"
        for d in activity_dates(rec):
            f.dates.append((d, ref))
    return facts


def last_alive(f: PatientFacts, cutoff: str) -> str | None:
    """spec v2 §3.12: the death date when the patient died <= cutoff, else the latest activity
    date <= cutoff (an interval spanning the cutoff counts by its start: its end is > cutoff and
    so is dropped, its start is kept)."""
    if f.death_date and f.death_date <= cutoff:
        return f.death_date
    return f.latest(cutoff)


def default_cutoff(facts: dict[str, PatientFacts], screened: set[str], today: str) -> str:
    """spec v2 §3.12: latest date <= today among the screened patients' activity records and deaths."""
    candidates = []
    for pid in screened:
        f = facts[pid]
        candidates += [d for d, _ in f.dates if d <= today]
        if f.death_date and f.death_date <= today:
            candidates.append(f.death_date)
    return max(candidates)
