"""FHIR REST search → events: find the NSCLC patients, then read their records page by page.

Full read: the patients are those with a Condition in the ``nsclc`` code group.
Exact codes are searched with ``Condition?code=system|code,…``; ICD-10 ``C34``
is a *prefix* entry that exact token search cannot express, and ``:below`` on a
token is not reliably supported (sekmet accepts it and silently matches exactly;
R4 CapabilityStatements cannot declare modifiers). So by default, when the
group has prefix entries, we scan all Conditions (``_elements=subject,code``,
paged) and match client-side — the scan also finds the exact codes; pass
``code_below=True`` for a server known to support ``:below``. Then per batch of
patients (bounded concurrency) the Patients and every type the reader reads
(:data:`.parse.READ_TYPES`): Condition, Procedure, Observation,
MedicationAdministration and MedicationRequest whole (``_include`` of the Medication;
a Medication the server did not include is fetched by id afterwards), and the
spec §1 *activity* types (Encounter, MedicationStatement, DiagnosticReport,
Immunization, ImagingStudy) with ``_elements`` cut to what an activity record
needs — patient, status, dates, code (:data:`ACTIVITY_ELEMENTS`).

Safety (issue 13): paging follows a ``next`` link only on the configured server's
origin (scheme, host, port) — another origin is refused with a one-line
:class:`SourceError`, and the token is only ever attached on that origin
(:class:`.transport.HttpPolicy`). A search stops with an error after
``fhir_limits.max_pages`` pages, a read after ``fhir_limits.max_read_seconds``.

Incremental read (``since``): every type with ``_lastUpdated=gt<since>``, for any
patient; the patients and Medications those records name are fetched as well.
The watermark is the server's time at the START of the read (``meta.lastUpdated``
of a first search, else its ``Date`` header minus one second): a record written
during the read is read again next time rather than missed. Deletions are not
seen by ``_lastUpdated`` (use entered-in-error, as the spec's FHIR idioms do).
"""

from __future__ import annotations

import datetime as dt
import email.utils
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar
from urllib.parse import urljoin

import httpx

from ...config import FhirLimits
from ...errors import SourceError
from ...events import EventSink
from ...mappings import SCREENING_GROUPS, CodeMatcher
from ...privacy import redact_source
from ...progress import Progress
from .auth import Auth
from .fields import codings
from .files import feed_bundle
from .parse import READ_TYPES, FhirRecordReader
from .references import reference_target
from .transport import HttpPolicy, LimitExceeded, where

__all__ = ["ACTIVITY_ELEMENTS", "FhirRestClient"]

#: every type read per patient (Patient is searched by _id, Medication resolved by reference)
CLINICAL_TYPES = tuple(t for t in READ_TYPES if t not in ("Patient", "Medication"))
MEDICATION_TYPES = ("MedicationAdministration", "MedicationRequest")
#: spec §1 activity types, read with ``_elements``: who (subject/patient), status, the dates of
#: the spec §1 table, and the code (for unmatched_codes.csv); a choice element ``x[x]`` is named
#: both by its base name (the FHIR rule) and by its typed names (servers that match keys).
ACTIVITY_ELEMENTS: dict[str, str] = {
    "Encounter": "subject,status,period,type,class,serviceType",
    "MedicationStatement": (
        "subject,status,effective,effectiveDateTime,effectivePeriod,"
        "medication,medicationCodeableConcept,medicationReference"
    ),
    "DiagnosticReport": "subject,status,effective,effectiveDateTime,effectivePeriod,issued,code,category",
    "Immunization": "patient,status,occurrence,occurrenceDateTime,vaccineCode",
    "ImagingStudy": "subject,status,started,modality,procedureCode",
}
URL_CODE_BUDGET = 1500  # characters of codes per search URL

Page = tuple[dict[str, Any], str]
_T = TypeVar("_T")
_R = TypeVar("_R")


class FhirRestClient:
    """Read a FHIR R4 server through REST search (spec §1); see the module docstring for the strategy."""

    def __init__(
        self,
        base_url: str,
        *,
        auth: Auth | None = None,
        timeout: float = 30,
        max_retries: int = 5,
        concurrency: int = 4,
        page_size: int = 200,
        verify: bool = True,
        transport: httpx.BaseTransport | None = None,
        batch_size: int = 25,
        code_below: bool = False,
        validate: bool = False,
        sleep: Callable[[float], None] | None = None,
        limits: FhirLimits | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.limits = limits or FhirLimits.model_validate({})
        kw: dict[str, Any] = {"sleep": sleep} if sleep else {}
        if clock:
            kw["clock"] = clock
        self.http = HttpPolicy(
            auth=auth,
            origin=self.base_url,
            deadline_seconds=self.limits.max_read_seconds,
            deadline_what=f"the REST read of {redact_source(self.base_url)}",
            timeout=timeout,
            max_retries=max_retries,
            concurrency=concurrency,
            verify=verify,
            transport=transport,
            **kw,
        )
        self.concurrency = max(1, concurrency)
        self.page_size = page_size
        self.batch_size = batch_size
        self.code_below = code_below
        self.validate = validate
        self._progress = Progress.null()  # the read's progress (pages, resources per type, patients)

    def __repr__(self) -> str:
        return f"FhirRestClient({redact_source(self.base_url)!r})"

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> FhirRestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- public ------------------------------------------------------------
    def capability(self) -> dict[str, Any]:
        """The server's CapabilityStatement; :class:`SourceError` when unreachable or not FHIR R4."""
        base = where(self.base_url)
        try:
            body, _ = self.http.get_json(f"{self.base_url}/metadata")
        except LimitExceeded:
            raise
        except SourceError as exc:
            raise SourceError(
                f"FHIR server {base} is unreachable or not FHIR ({exc.message})",
                fix="check the URL (it ends with the FHIR base, e.g. /fhir)",
            ) from None
        if body.get("resourceType") != "CapabilityStatement":
            raise SourceError(
                f"{base}/metadata is not a CapabilityStatement",
                fix="check the URL points at the FHIR base",
            )
        version = str(body.get("fhirVersion") or "")
        if version and not version.startswith("4."):
            raise SourceError(
                f"FHIR server {base} speaks FHIR {version}, not R4",
                fix="use the server's R4 endpoint",
            )
        return body

    def read(self, matcher: CodeMatcher, sink: EventSink, since: str | None = None) -> None:
        """Read into ``sink``; set ``sink.watermark`` to the server time at the start of this read."""
        self.http.start_clock()  # fhir_limits.max_read_seconds counts from here
        self.capability()
        watermark = self._server_time()
        reader = FhirRecordReader(matcher, sink, validate=self.validate)
        label = f"FHIR REST read of {where(self.base_url)}"
        with Progress.for_task(label, unit="patients") as self._progress:
            if since:
                self._read_changes(reader, since)
            else:
                patients = sorted(self._nsclc_patients(matcher))
                self._progress.update(total=len(patients))
                size = self.batch_size
                batches = [patients[i : i + size] for i in range(0, len(patients), size)]
                for pages in self._parallel(self._patient_batch, batches):  # in order: a deterministic feed
                    self._feed(reader, pages)
            self._resolve_missing(reader)
        self._progress = Progress.null()
        reader.finish()
        touched = getattr(sink, "touched", None)
        if isinstance(touched, set):
            touched |= reader.touched
        sink.watermark = watermark

    # --- steps -------------------------------------------------------------
    def _server_time(self) -> str:
        body, resp = self.http.get_json(f"{self.base_url}/Patient", {"_summary": "count"})
        stamp = (body.get("meta") or {}).get("lastUpdated")
        if isinstance(stamp, str) and stamp:
            return stamp
        date = resp.headers.get("Date")
        if not date:
            raise SourceError(
                f"{where(self.base_url)} gives no server time (no meta.lastUpdated, no Date header)",
                fix="run without --since (full read)",
            )
        # second precision: step back one second so that nothing written in this second is missed
        when = email.utils.parsedate_to_datetime(date) - dt.timedelta(seconds=1)
        return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _parallel(self, fn: Callable[[_T], _R], items: list[_T]) -> Iterator[_R]:
        """``fn`` over ``items`` on the pool, results in order; the first error cancels what has not begun."""
        pool = ThreadPoolExecutor(self.concurrency)
        try:
            yield from pool.map(fn, items)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _pages(self, url: str, params: dict[str, str] | None) -> Iterator[Page]:
        """Every page of a search, following ``link[next]`` on the server's origin only.

        Each page comes with its URL (secrets masked) as location. A ``next`` link to another
        origin, a loop, or more than ``fhir_limits.max_pages`` pages is a :class:`SourceError`.
        """
        next_url: str | None = url
        seen: set[str] = set()
        pages = 0
        search = where(url)
        rtype = search.rstrip("/").rsplit("/", 1)[-1]
        while next_url:
            body, resp = self.http.get_json(next_url, params)
            pages += 1
            entries = body.get("entry")
            self._progress.advance(0, pages=1, **{rtype: len(entries) if isinstance(entries, list) else 0})
            location = redact_source(str(resp.url))
            if body.get("resourceType") != "Bundle":
                raise SourceError(f"search {search} did not return a Bundle", fix="check the server")
            yield body, location
            params = None
            seen.add(next_url)
            link = next(
                (ln.get("url") for ln in body.get("link") or () if ln.get("relation") == "next"), None
            )
            if not link:
                return
            next_url = urljoin(str(resp.url), str(link))  # a relative link is relative to this page
            self.http.require_origin(next_url, f"search {search}: the next page")
            if next_url in seen:
                raise SourceError(
                    f"search {search} pages loop on {redact_source(next_url)}", fix="report to the server"
                )
            if pages >= self.limits.max_pages:
                raise LimitExceeded(
                    f"search {search} has more than {self.limits.max_pages} pages "
                    "(limit fhir_limits.max_pages)",
                    fix="raise fhir_limits.max_pages, or use --bulk for a large server",
                )

    def _search(self, rtype: str, params: dict[str, str]) -> list[Page]:
        q = {**params, "_count": str(self.page_size)}
        if rtype in MEDICATION_TYPES:
            q["_include"] = f"{rtype}:medication"
        if rtype in ACTIVITY_ELEMENTS:
            q["_elements"] = ACTIVITY_ELEMENTS[rtype]
        return list(self._pages(f"{self.base_url}/{rtype}", q))

    def _feed(self, reader: FhirRecordReader, pages: list[Page]) -> None:
        for bundle, location in pages:
            feed_bundle(reader, bundle, location)

    def _nsclc_patients(self, matcher: CodeMatcher) -> set[str]:
        entries = [e for e in matcher.mappings.entries if e.group in SCREENING_GROUPS]
        found: set[str] = set()
        prefixes = [e for e in entries if e.match != "exact"]
        if prefixes and not self.code_below:
            for bundle, _ in self._pages(
                f"{self.base_url}/Condition", {"_elements": "subject,code", "_count": str(self.page_size)}
            ):
                for entry in bundle.get("entry") or ():
                    res = entry.get("resource") or {}
                    groups, _, _ = matcher.match_any(codings(res.get("code"), matcher, "Condition"))
                    pid = _patient_of(res)
                    if groups & SCREENING_GROUPS and pid:
                        found.add(pid)
            return found
        tokens = [
            f"{uri}|{code}"
            for e in entries
            if e.match == "exact"
            for uri, code in _search_forms(matcher, e.system, e.code)
        ]
        searches = [("code", chunk) for chunk in _chunks(tokens)]
        searches += [
            (
                "code:below",
                ",".join(f"{uri}|{code}" for uri, code in _search_forms(matcher, e.system, e.code)),
            )
            for e in prefixes
        ]
        for param, value in searches:
            for bundle, _ in self._pages(
                f"{self.base_url}/Condition",
                {param: value, "_elements": "subject", "_count": str(self.page_size)},
            ):
                found.update(
                    p for p in (_patient_of(e.get("resource") or {}) for e in bundle.get("entry") or ()) if p
                )
        return found

    def _patient_batch(self, patients: list[str]) -> list[Page]:
        ids = ",".join(patients)
        pages = self._search("Patient", {"_id": ids})
        for rtype in CLINICAL_TYPES:
            pages += self._search(rtype, {"patient": ids})
        self._progress.advance(len(patients))
        return pages

    def _read_changes(self, reader: FhirRecordReader, since: str) -> None:
        types = ["Patient", *CLINICAL_TYPES]
        for pages in self._parallel(lambda t: self._search(t, {"_lastUpdated": f"gt{since}"}), types):
            self._feed(reader, pages)

    def _resolve_missing(self, reader: FhirRecordReader) -> None:
        """Fetch the Medications, Encounters and Patients that records name but the searches did not return.

        In this order: a record fed back when its Medication or Encounter arrives may wait for its Patient.
        """
        for rtype, missing_of in (
            ("Medication", reader.missing_medications),
            ("Encounter", reader.missing_encounters),
            ("Patient", reader.missing_patients),
        ):
            missing = missing_of()
            for i in range(0, len(missing), self.batch_size):
                self._feed(reader, self._search(rtype, {"_id": ",".join(missing[i : i + self.batch_size])}))


def _patient_of(res: dict[str, Any]) -> str | None:
    target = reference_target((res.get("subject") or {}).get("reference"))  # same rules as the reader
    return target[1] if target is not None and target[0] == "Patient" else None


def _search_forms(matcher: CodeMatcher, system: str, code: str) -> list[tuple[str, str]]:
    """(FHIR system URI, code as servers store it) for a mapping entry; ICD codes also with their dot."""
    family = matcher.mappings.systems
    uris = [
        uri for key, info in family.items() if key == system or info.family == system for uri in info.fhir
    ]
    forms = [code]
    if (
        any(info.strip_dots for key, info in family.items() if key == system or info.family == system)
        and len(code) > 3
    ):
        forms.append(f"{code[:3]}.{code[3:]}")
    return [(uri, form) for uri in uris for form in forms]


def _chunks(tokens: list[str]) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    for t in tokens:
        if cur and sum(len(c) + 1 for c in cur) + len(t) > URL_CODE_BUDGET:
            out.append(",".join(cur))
            cur = []
        cur.append(t)
    if cur:
        out.append(",".join(cur))
    return out
