"""Shared test policy: real services, skipping only outside CI.

Tests that need PostgreSQL, the sekmet FHIR server or Docker call
:func:`require_service`; locally a missing service skips with the reason, but
with ``CI=true`` it fails (PostgreSQL and FHIR-server tests must run in CI, never
skip). Docker is the exception: no engine exists on our CI machines, so those tests
always skip cleanly without one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

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


PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """SQLAlchemy URL of a fresh PostgreSQL database for this test session, dropped at the end.

    One database for the whole session: test folders that need isolation use their own
    schemas in it. Without a server: skip locally, fail in CI (:func:`require_service`).
    """
    import uuid

    import sqlalchemy as sa

    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3})
    name = f"leopard_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        require_service(False, f"PostgreSQL is not reachable on 127.0.0.1:5432 ({exc.orig})")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
