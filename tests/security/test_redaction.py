"""Issue 13: a password or token in a FHIR URL never reaches an error message, a log or a table.

``leopard_etl.privacy.redact_source`` is the one redaction function; the FHIR readers use
it for every URL they put into a message, a log line or a quarantine location, and the
``httpx`` request log (INFO, full URL) is filtered through it.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from fake_fhir import CAPABILITY, SECRET, FakeServer, Reply, Seen, bundle

from leopard_etl.errors import SourceError
from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher
from leopard_etl.privacy import redact_source
from leopard_etl.sources.fhir import BearerToken, FhirRestClient

PASSWORD = "pa55-SECRET-word"
SESSION = "sess-SECRET-9f2"
NSCLC = {"coding": [{"system": "http://snomed.info/sct", "code": "254637007"}]}


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://etl:pw@h/fhir", "https://etl:***@h/fhir"),
        ("postgresql+psycopg://etl:pw@db:5432/omop", "postgresql+psycopg://etl:***@db:5432/omop"),
        ("https://h/fhir?access_token=t&_count=10", "https://h/fhir?access_token=***&_count=10"),
        (
            "https://h/f?token=a&key=b&code=c&client_secret=d",
            "https://h/f?token=***&key=***&code=***&client_secret=***",
        ),
        (
            "https://s3.example/b/x.ndjson?X-Amz-Credential=c&X-Amz-Signature=s&X-Amz-Security-Token=t",
            "https://s3.example/b/x.ndjson?X-Amz-Credential=***&X-Amz-Signature=***&X-Amz-Security-Token=***",
        ),
        ("https://blob.example/x?sv=2020&sig=abc%2B", "https://blob.example/x?sv=2020&sig=***"),
        ("https://h/cb#access_token=t&state=1", "https://h/cb#access_token=***&state=1"),
        ("https://h/f?api%5Fkey=z", "https://h/f?api%5Fkey=***"),
        ("https://h:bad/x?token=t", "https://***"),  # unparseable: nothing but the scheme survives
        # unchanged, byte for byte (the run log keys watermarks by the redacted source)
        ("https://h/fhir/Condition?patient=p1&_count=200", "https://h/fhir/Condition?patient=p1&_count=200"),
        ("https://h/f?a&&b=1", "https://h/f?a&&b=1"),
        ("/data/export.ndjson", "/data/export.ndjson"),
        ("duckdb:///srv/leopard.duckdb", "duckdb:///srv/leopard.duckdb"),
        # free text: every URL in it
        (
            "GET https://u:pw@h/x?_count=1&access_token=t failed; see http://h2/y?sig=s.",
            "GET https://u:***@h/x?_count=1&access_token=*** failed; see http://h2/y?sig=***",
        ),
    ],
)
def test_redact_source(url: str, expected: str) -> None:
    assert redact_source(url) == expected


def test_password_in_the_server_url_stays_out_of_errors_and_logs(
    origins: tuple[Any, Any], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = origins
    server.route = lambda fake, seen: (503, {}, b"")
    caplog.set_level(logging.DEBUG)
    base = f"http://etl:{PASSWORD}@127.0.0.1:{server.port}/fhir"
    client = FhirRestClient(base, auth=BearerToken(SECRET), max_retries=1, sleep=lambda s: None)
    with client, pytest.raises(SourceError) as err:
        client.capability()
    assert "unreachable or not FHIR" in str(err.value) and "etl:***@127.0.0.1" in str(err.value)
    assert PASSWORD not in str(err.value) and PASSWORD not in repr(client)
    assert "HTTP Request: GET" in caplog.text and "retrying GET" in caplog.text  # logs were written…
    assert PASSWORD not in caplog.text and SECRET not in caplog.text  # …without the secrets
    assert len(server.seen) == 2


def test_token_in_a_next_link_stays_out_of_quarantine_logs_and_errors(
    origins: tuple[FakeServer, Any], matcher: CodeMatcher, caplog: pytest.LogCaptureFixture
) -> None:
    """A server that puts a session token into its paging links (same origin)."""
    server, _ = origins

    def route(fake: FakeServer, seen: Seen) -> Reply:
        q = seen.query
        if seen.path.endswith("/metadata"):
            return 200, {}, CAPABILITY
        if seen.path.endswith("/Patient") and q.get("_summary") == ["count"]:
            return 200, {}, bundle([], meta={"lastUpdated": "2024-05-01T10:00:00Z"})
        if seen.path.endswith("/Patient"):
            return 200, {}, bundle([{"resourceType": "Patient", "id": "p1"}])
        if seen.path.endswith("/Condition") and "patient" in q:
            dx = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}
            dx |= {"code": NSCLC, "onsetDateTime": "2020-01-10"}
            nxt = f"{fake.base}/Condition?_page=2&access_token={SESSION}"
            return 200, {}, bundle([dx], next_url=nxt)
        if seen.path.endswith("/Condition") and "_page" in q:  # page 2: a record to quarantine
            if fail_page2:
                return 503, {}, b""
            bad = {"resourceType": "Condition", "id": "c2", "subject": {"reference": "Patient/p1"}}
            bad |= {"code": NSCLC, "onsetDateTime": "not-a-date"}
            return 200, {}, bundle([bad])
        if seen.path.endswith("/Condition"):  # the NSCLC scan
            dx = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}
            return 200, {}, bundle([dx | {"code": NSCLC}])
        return 200, {}, bundle([])

    server.route = route
    caplog.set_level(logging.DEBUG)
    fail_page2 = False
    sink = EventSink()
    with FhirRestClient(server.base, auth=BearerToken(SECRET)) as client:
        client.read(matcher, sink)
    assert any(SESSION in s.target for s in server.seen)  # the server did get its session token…
    page2 = [q for q in sink.quarantined if "_page=2" in q.location]
    assert page2 and "access_token=***#entry[0]" in page2[0].location  # …the quarantine row does not
    assert "HTTP Request: GET" in caplog.text and SESSION not in caplog.text and SECRET not in caplog.text

    fail_page2 = True
    with (
        FhirRestClient(server.base, auth=BearerToken(SECRET), max_retries=1, sleep=lambda s: None) as client,
        pytest.raises(SourceError) as err,
    ):
        client.read(matcher, EventSink())
    assert "Condition failed after 2 attempts" in str(err.value) and SESSION not in str(err.value)
    assert SESSION not in caplog.text and SECRET not in caplog.text
