"""Issue 13: the token stays with its server — no request to another origin carries it.

Two fake FHIR servers on loopback (fake_fhir.py): ``server`` is the configured one,
``other`` listens on another port, i.e. another origin (scheme, host, port). Decisions
(docs/configuration.md "Where the token goes"):

* REST: a ``next`` link to another origin is refused (exit 3) — no request goes there;
* Bulk: a status URL (``Content-Location``) on another origin is refused likewise;
* Bulk files: with ``requiresAccessToken`` false or absent they are fetched *without*
  the token wherever they are; with ``requiresAccessToken: true`` the token goes only to
  files on the server's origin, and a file on another origin is refused before any
  download (sending the token there would leak it);
* a redirect to another origin is followed without the token (also http → https).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from fake_fhir import CAPABILITY, SECRET, FakeServer, Reply, Seen, bundle

from leopard_etl.errors import EXIT_SOURCE, SourceError
from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher
from leopard_etl.sources.fhir import BearerToken, FhirRestClient, bulk_export

NSCLC = {"coding": [{"system": "http://snomed.info/sct", "code": "254637007"}]}


def condition(rid: str, pid: str = "p1", **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": rid,
        "subject": {"reference": f"Patient/{pid}"},
        "code": NSCLC,
        "onsetDateTime": "2020-01-10",
        **extra,
    }


def fhir_basics(seen: Seen) -> Reply | None:
    """metadata and the server-time probe every REST read starts with."""
    if seen.path.endswith("/metadata"):
        return 200, {}, CAPABILITY
    if seen.path.endswith("/Patient") and seen.query.get("_summary") == ["count"]:
        return 200, {}, bundle([], meta={"lastUpdated": "2024-05-01T10:00:00Z"}, total=1)
    return None


def one_line_source_error(err: pytest.ExceptionInfo[SourceError]) -> str:
    text = str(err.value)
    assert err.value.exit_code == EXIT_SOURCE and "\n" not in text and SECRET not in text
    return text


def test_rest_next_link_to_another_origin_is_refused_and_never_requested(
    origins: tuple[FakeServer, FakeServer], matcher: CodeMatcher
) -> None:
    server, other = origins

    def route(fake: FakeServer, seen: Seen) -> Reply:
        basic = fhir_basics(seen)
        if basic:
            return basic
        if seen.path.endswith("/Condition"):  # the NSCLC scan: its next page is on the other origin
            return 200, {}, bundle([condition("c1")], next_url=f"{other.base}/Condition?_page=2")
        return 200, {}, bundle([])

    server.route = route
    other.route = lambda fake, seen: (200, {}, bundle([condition("c2", "p2")]))
    with (
        FhirRestClient(server.base, auth=BearerToken(SECRET), max_retries=0) as client,
        pytest.raises(SourceError) as err,
    ):
        client.read(matcher, EventSink())
    text = one_line_source_error(err)
    assert "another origin" in text and other.base + "/Condition" in text
    assert other.seen == []  # not followed at all (before the fix: followed, with the token)
    assert server.seen and all(s.authorization == f"Bearer {SECRET}" for s in server.seen)


def test_bulk_status_url_on_another_origin_is_refused(
    origins: tuple[FakeServer, FakeServer], tmp_path: Path
) -> None:
    server, other = origins
    server.route = lambda fake, seen: (202, {"Content-Location": f"{other.base}/status/1"}, b"")
    other.route = lambda fake, seen: (202, {"Retry-After": "1"}, b"")
    waits: list[float] = []
    with pytest.raises(SourceError) as err:
        bulk_export(server.base, tmp_path, auth=BearerToken(SECRET), sleep=waits.append, max_retries=0)
    text = one_line_source_error(err)
    assert "status URL" in text and "another origin" in text
    assert other.seen == [] and waits == []  # before the fix: polled there, with the token
    assert [s.authorization for s in server.seen] == [f"Bearer {SECRET}"]  # the kick-off only


def bulk_route(other: FakeServer, manifest_extra: dict[str, Any], outputs: list[str]) -> Any:
    patient = b'{"resourceType":"Patient","id":"p1"}'

    def route(fake: FakeServer, seen: Seen) -> Reply:
        if seen.path.endswith("/$export"):
            return 202, {"Content-Location": f"{fake.base}/status/1"}, b""
        if seen.path.endswith("/status/1"):
            if seen.method == "DELETE":
                return 202, {}, b""
            manifest = {
                "transactionTime": "2024-05-01T10:00:00Z",
                "request": f"{fake.base}/$export",
                "output": [{"type": "Patient", "url": url} for url in outputs],
                "error": [],
                **manifest_extra,
            }
            return 200, {}, manifest
        if "/files/" in seen.path:
            return 200, {"Content-Type": "application/fhir+ndjson"}, patient
        return 404, {}, b""

    return route


def test_bulk_files_without_required_token_are_fetched_without_it(
    origins: tuple[FakeServer, FakeServer], tmp_path: Path
) -> None:
    server, other = origins
    outputs = [f"{server.base}/files/a.ndjson", f"{other.base}/files/b.ndjson?X-Amz-Signature=s1"]
    for n, flag in enumerate([{}, {"requiresAccessToken": False}]):  # absent (the leak before), false
        server.seen.clear()
        other.seen.clear()
        server.route = bulk_route(other, flag, outputs)
        other.route = server.route
        files = bulk_export(server.base, tmp_path / str(n), auth=BearerToken(SECRET), sleep=lambda s: None)
        assert [p.name for p in files] == ["000-Patient.ndjson", "001-Patient.ndjson"]
        assert [s.path for s in other.seen] == ["/fhir/files/b.ndjson"] and other.with_token() == []
        file_requests = [s for s in server.seen if "/files/" in s.path]
        assert len(file_requests) == 1 and file_requests[0].authorization is None
        # the export conversation itself (kick-off, status, delete) carries the token, on its origin
        assert all(s.authorization == f"Bearer {SECRET}" for s in server.seen if "/files/" not in s.path)


def test_bulk_files_requiring_the_token_get_it_on_the_origin_only(
    origins: tuple[FakeServer, FakeServer], tmp_path: Path
) -> None:
    server, other = origins
    server.route = bulk_route(other, {"requiresAccessToken": True}, [f"{server.base}/files/a.ndjson"])
    bulk_export(server.base, tmp_path / "same", auth=BearerToken(SECRET), sleep=lambda s: None)
    assert [s.authorization for s in server.seen if "/files/" in s.path] == [f"Bearer {SECRET}"]

    server.seen.clear()
    outputs = [f"{server.base}/files/a.ndjson", f"{other.base}/files/b.ndjson"]
    server.route = bulk_route(other, {"requiresAccessToken": True}, outputs)
    other.route = server.route
    with pytest.raises(SourceError) as err:
        bulk_export(server.base, tmp_path / "cross", auth=BearerToken(SECRET), sleep=lambda s: None)
    text = one_line_source_error(err)
    assert "requiresAccessToken true" in text and "another origin" in text
    assert other.seen == []  # refused before any download (before the fix: fetched with the token)
    assert not [s for s in server.seen if "/files/" in s.path]


def test_redirects_to_another_origin_drop_the_token(origins: tuple[FakeServer, FakeServer]) -> None:
    """Another port (httpx alone already drops the header there), and http:80 → https:443 of the
    same host, where httpx keeps it: the origin differs (scheme, port), so the token must not follow."""
    server, other = origins
    server.route = lambda fake, seen: (302, {"Location": f"{other.base}/metadata"}, b"")
    other.route = lambda fake, seen: (200, {}, CAPABILITY)
    with FhirRestClient(server.base, auth=BearerToken(SECRET), max_retries=0) as client:
        assert client.capability()["fhirVersion"] == "4.0.1"
    assert server.with_token() and len(other.seen) == 1 and other.with_token() == []

    seen: list[tuple[str, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:  # no network: an in-process transport
        seen.append((str(request.url), request.headers.get("Authorization")))
        if request.url.scheme == "http":
            return httpx.Response(301, headers={"Location": "https://fhir.example.org/fhir/metadata"})
        return httpx.Response(200, json=CAPABILITY)

    client = FhirRestClient(
        "http://fhir.example.org/fhir", auth=BearerToken(SECRET), transport=httpx.MockTransport(handler)
    )
    with client:
        client.capability()
    assert seen == [
        ("http://fhir.example.org/fhir/metadata", f"Bearer {SECRET}"),
        ("https://fhir.example.org/fhir/metadata", None),
    ]
