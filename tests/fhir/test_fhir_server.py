"""REST search, incremental reads, $export and fault tolerance against a real FHIR server (sekmet)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir_samples import ICD10CM, SNOMED, cc, condition, patient, small_cohort

from leopard_etl.errors import SourceError
from leopard_etl.events import Event, EventSink
from leopard_etl.mappings import SCREENING_GROUPS, CodeMatcher, load_mappings
from leopard_etl.sources.fhir import FhirRestClient, bulk_export, read_bulk_export, read_fhir_files

pytestmark = pytest.mark.fhir_server


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


def dataset() -> list[dict[str, Any]]:
    """34 NSCLC patients, one small-cell only (not found by the NSCLC search), one without cancer."""
    out = small_cohort(34)
    out += [
        patient("sclc"),
        condition("sclc-dx", "sclc", cc(SNOMED, "254632001")),
        patient("healthy"),
        condition("healthy-c", "healthy", cc(ICD10CM, "J45.909")),
    ]
    return out


@pytest.fixture(scope="module")
def loaded(sekmet: Any, tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Path]:
    data = dataset()
    sekmet.transaction(data)
    path = tmp_path_factory.mktemp("files") / "all.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in data))
    return sekmet, path


class TrackingSink(EventSink):
    def __init__(self) -> None:
        super().__init__()
        self.touched: set[str] = set()


def nsclc_events(events: list[Event]) -> list[Event]:
    screened = {e.patient_id for e in events if set(e.groups.split(";")) & SCREENING_GROUPS}
    return sorted(e for e in events if e.patient_id in screened)


def rest_read(base: str, matcher: CodeMatcher, since: str | None = None, **kw: Any) -> TrackingSink:
    sink = TrackingSink()
    kw = {"page_size": 7, "batch_size": 8, "concurrency": 3, **kw}
    with FhirRestClient(base, **kw) as client:
        client.read(matcher, sink, since=since)
    assert sink.stats.balanced(), sink.stats
    return sink


def file_read(path: Path, matcher: CodeMatcher) -> EventSink:
    sink = EventSink()
    read_fhir_files([path], matcher, sink)
    return sink


def test_rest_read_equals_file_read(loaded: tuple[Any, Path], matcher: CodeMatcher) -> None:
    server, path = loaded
    rest = rest_read(server.base_url, matcher)
    files = file_read(path, matcher)
    expected = nsclc_events(files.events)
    assert len(expected) == 34 * 7
    assert sorted(rest.events) == expected  # the small-cell / healthy patients are not read over REST
    assert sorted(p.patient_id for p in rest.patients) == sorted(f"p{i}" for i in range(34))
    assert rest.watermark and rest.watermark.endswith("Z") and not rest.quarantined


def test_unreachable_and_non_fhir_servers_are_source_errors(
    loaded: tuple[Any, Path], matcher: CodeMatcher
) -> None:
    server, _ = loaded
    with pytest.raises(SourceError, match="unreachable or not FHIR"):
        FhirRestClient("http://127.0.0.1:9/fhir", max_retries=1, sleep=lambda s: None).capability()
    root = server.base_url.rsplit("/fhir", 1)[0] + "/nothing-here"
    with pytest.raises(SourceError, match="unreachable or not FHIR"):
        FhirRestClient(root, max_retries=0).read(matcher, EventSink())


class FaultTransport(httpx.BaseTransport):
    """Injects, once each, on the n-th request of a search: 429 + Retry-After, 503, a dropped
    connection, a truncated body and a slow page; or fails one URL for good (``always``)."""

    def __init__(self, always: str | None = None) -> None:
        self.inner = httpx.HTTPTransport()
        self.count = 0
        self.always = always
        self.lock = threading.Lock()
        self.injected: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        with self.lock:
            self.count += 1
            n = self.count
        url = str(request.url)
        if self.always and self.always in url:
            self.injected.append("503-forever")
            return httpx.Response(503, request=request)
        fault = {3: "429", 5: "503", 8: "drop", 11: "truncate", 14: "slow", 20: "429-date"}.get(n)
        if fault == "429":
            self.injected.append(fault)
            return httpx.Response(429, headers={"Retry-After": "1"}, request=request)
        if fault == "429-date":
            self.injected.append(fault)
            return httpx.Response(
                429, headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, request=request
            )
        if fault == "503":
            self.injected.append(fault)
            return httpx.Response(503, request=request)
        if fault == "drop":
            self.injected.append(fault)
            raise httpx.RemoteProtocolError(
                "Server disconnected without sending a response.", request=request
            )
        resp = self.inner.handle_request(request)
        if fault == "truncate":
            self.injected.append(fault)
            body = resp.read()
            return httpx.Response(
                200,
                content=body[: len(body) // 2],
                headers={"Content-Type": "application/json"},
                request=request,
            )
        if fault == "slow":
            self.injected.append(fault)
            time.sleep(0.3)
        return resp


def test_faults_end_with_the_same_events(loaded: tuple[Any, Path], matcher: CodeMatcher) -> None:
    server, _ = loaded
    clean = rest_read(server.base_url, matcher)
    waits: list[float] = []
    faults = FaultTransport()
    noisy = rest_read(server.base_url, matcher, transport=faults, sleep=waits.append)
    assert sorted(noisy.events) == sorted(clean.events)
    assert sorted(noisy.patients) == sorted(clean.patients)
    assert sorted(faults.injected) == ["429", "429-date", "503", "drop", "slow", "truncate"]
    assert 1.0 in waits and len(waits) == 5  # Retry-After honoured; the slow page needs no retry


def test_a_page_that_fails_for_good_raises(loaded: tuple[Any, Path], matcher: CodeMatcher) -> None:
    server, _ = loaded
    sink = EventSink()
    client = FhirRestClient(
        server.base_url, max_retries=2, transport=FaultTransport(always="/Observation?"), sleep=lambda s: None
    )
    with client, pytest.raises(SourceError, match=r"Observation failed after 3 attempts \(HTTP 503\)"):
        client.read(matcher, sink)
    assert sink.watermark is None  # nothing claims a complete read


def test_bulk_export_equals_file_read(loaded: tuple[Any, Path], matcher: CodeMatcher, tmp_path: Path) -> None:
    server, path = loaded
    files = bulk_export(server.base_url, tmp_path / "export", sleep=lambda s: time.sleep(min(s, 0.05)))
    assert {p.name.split("-", 1)[1] for p in files} >= {
        "Patient.ndjson",
        "Condition.ndjson",
        "Medication.ndjson",
    }
    sink = EventSink()
    read_bulk_export(tmp_path / "export", matcher, sink)
    direct = file_read(path, matcher)
    assert sorted(sink.events) == sorted(direct.events) and len(sink.events) >= 34 * 7 + 1  # + activity (v2)
    assert sink.stats.balanced() and not sink.quarantined and sink.watermark


def test_incremental_read_equals_full_read_of_changed_data(sekmet_factory: Any, matcher: CodeMatcher) -> None:
    server = sekmet_factory("incremental")
    base = small_cohort(6)
    server.transaction(base)
    first = rest_read(server.base_url, matcher)
    assert len(first.events) == 6 * 7
    time.sleep(0.01)  # the next writes get a later millisecond stamp than the watermark
    changed = {r["id"]: dict(r) for r in base}
    updates = [
        changed["p0-dx"] | {"onsetDateTime": "2019-11-30"},  # update
        changed["p2-rt"] | {"status": "entered-in-error"},  # entered-in-error
        condition("p1-met2", "p1", cc(ICD10CM, "C78.01"), onset="2021-02-01"),  # add
        patient("p9"),
        condition("p9-dx", "p9", cc(SNOMED, "254637007")),  # new patient
    ]
    server.transaction(updates)
    inc = rest_read(server.base_url, matcher, since=first.watermark)
    merged = [e for e in first.events if e.source not in inc.touched] + inc.events
    full = rest_read(server.base_url, matcher)
    assert sorted(merged) == sorted(full.events)
    assert inc.stats.read == 7  # 5 changed records + the Patients p0 and p1 their events name
    assert inc.stats.out_of_scope_reasons == {"Procedure status entered-in-error": 1}
    assert inc.watermark and inc.watermark > first.watermark  # type: ignore[operator]
    again = rest_read(server.base_url, matcher, since=inc.watermark)
    assert again.stats.read == 0 and not again.events
