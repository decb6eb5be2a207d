"""Shared test policy: real services, skipping only outside CI.

Tests that need PostgreSQL, the sekmet FHIR server or Docker call
:func:`require_service`; locally a missing service skips with the reason, but
with ``CI=true`` it fails (PostgreSQL and FHIR-server tests must run in CI, never
skip). Docker is the exception: no engine exists on our CI machines, so those tests
always skip cleanly without one.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(available: bool, reason: str, *, ci_must_run: bool = True) -> None:
    """Skip (locally) or fail (in CI) when a real service a test needs is absent."""
    if available:
        return
    if IN_CI and ci_must_run:
        pytest.fail(f"CI=true but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session", name="require_service")
def require_service_fixture() -> object:
    """The same policy as a fixture, for test folders that cannot import this module."""
    return require_service
