"""Fixtures of the security tests: two fake FHIR servers on loopback, two origins."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fake_fhir import FakeServer, no_route

from leopard_etl.mappings import CodeMatcher, load_mappings


@pytest.fixture
def origins() -> Iterator[tuple[FakeServer, FakeServer]]:
    """(server, other): the configured FHIR server and a host on another origin (another port).

    Each test sets ``.route`` on them; both stop at the end of the test (or by themselves).
    """
    server, other = FakeServer(no_route), FakeServer(no_route)
    try:
        yield server, other
    finally:
        server.stop()
        other.stop()
        assert server.overflow == 0 and other.overflow == 0, "a test ran past the request bound"


@pytest.fixture(scope="session")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())
