"""Issue 13: every bound of a FHIR read (``fhir_limits.*``) ends it with one clear line, exit 3."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from fake_fhir import CAPABILITY, FakeServer, Reply, Seen, bundle

from leopard_etl.config import FhirLimits, load_config
from leopard_etl.errors import EXIT_SOURCE, SourceError
from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher
from leopard_etl.sources.fhir import FhirRestClient, bulk_export


def endless_pages(delay: float = 0.0) -> Any:
    """A server whose NSCLC scan never ends: every page links to the next (same origin)."""

    def route(fake: FakeServer, seen: Seen) -> Reply:
        if seen.path.endswith("/metadata"):
            return 200, {}, CAPABILITY
        if seen.path.endswith("/Patient"):
            return 200, {}, bundle([], meta={"lastUpdated": "2024-05-01T10:00:00Z"})
        page = int(seen.query.get("_page", ["1"])[0])
        time.sleep(delay)
        return 200, {}, bundle([], next_url=f"{fake.base}/Condition?_page={page + 1}")

    return route


def limits(**kw: Any) -> FhirLimits:
    """Settings as a run gets them: through the validated config."""
    return load_config(None, {"fhir_limits": kw}, {}).fhir_limits


def one_line(err: pytest.ExceptionInfo[SourceError], setting: str) -> str:
    text = str(err.value)
    assert err.value.exit_code == EXIT_SOURCE and "\n" not in text and setting in text
    return text


def test_max_pages_per_search(origins: tuple[FakeServer, Any], matcher: CodeMatcher) -> None:
    server, _ = origins
    server.route = endless_pages()
    with (
        FhirRestClient(server.base, limits=limits(max_pages=3)) as client,
        pytest.raises(SourceError) as err,
    ):
        client.read(matcher, EventSink())
    assert "search " in one_line(err, "fhir_limits.max_pages") and "more than 3 pages" in str(err.value)
    assert len([s for s in server.seen if s.path.endswith("/Condition")]) == 3


def test_max_read_seconds(origins: tuple[FakeServer, Any], matcher: CodeMatcher) -> None:
    server, _ = origins
    server.route = endless_pages(delay=0.05)
    started = time.monotonic()
    with (
        FhirRestClient(server.base, limits=limits(max_read_seconds=0.4)) as client,
        pytest.raises(SourceError) as err,
    ):
        client.read(matcher, EventSink())
    took = time.monotonic() - started
    assert "took longer than 0.4 s" in one_line(err, "fhir_limits.max_read_seconds")
    assert 0.4 <= took < 2.0


def export_route(polls_before_done: int, retry_after: str | None) -> Any:
    def route(fake: FakeServer, seen: Seen) -> Reply:
        if seen.path.endswith("/$export"):
            return 202, {"Content-Location": f"{fake.base}/status/1"}, b""
        if seen.path.endswith("/status/1") and seen.method == "GET":
            polls = sum(1 for s in fake.seen if s.path.endswith("/status/1") and s.method == "GET")
            if polls <= polls_before_done:
                return 202, {"Retry-After": retry_after} if retry_after else {}, b""
            return 200, {}, {"transactionTime": "2024-05-01T10:00:00Z", "output": [], "error": []}
        return 202, {}, b""

    return route


def test_bulk_max_wait(origins: tuple[FakeServer, Any], tmp_path: Path) -> None:
    server, _ = origins
    server.route = export_route(polls_before_done=10**6, retry_after="1")
    waits: list[float] = []
    with pytest.raises(SourceError) as err:
        bulk_export(server.base, tmp_path, limits=limits(bulk_max_wait_seconds=5), sleep=waits.append)
    assert "not complete after 5 s" in one_line(err, "fhir_limits.bulk_max_wait_seconds")
    assert waits == [1.0] * 5  # Retry-After honoured up to the limit, never beyond it

    server.seen.clear()
    server.route = export_route(polls_before_done=10**6, retry_after="120")
    waits.clear()
    with pytest.raises(SourceError) as err:
        bulk_export(server.base, tmp_path, limits=limits(bulk_max_wait_seconds=60), sleep=waits.append)
    assert "next poll in 120 s" in one_line(err, "fhir_limits.bulk_max_wait_seconds")
    assert waits == []  # a wait that would pass the limit is not started


@pytest.mark.parametrize(
    ("retry_after", "expected"),
    [(None, [7.0, 7.0]), ("3", [3.0, 3.0]), ("0", [1.0, 1.0])],
    ids=["no-hint", "retry-after", "floor"],
)
def test_bulk_poll_interval(
    origins: tuple[FakeServer, Any], tmp_path: Path, retry_after: str | None, expected: list[float]
) -> None:
    server, _ = origins
    server.route = export_route(polls_before_done=2, retry_after=retry_after)
    waits: list[float] = []
    bulk_export(server.base, tmp_path, limits=limits(bulk_poll_seconds=7), sleep=waits.append)
    assert waits == expected
