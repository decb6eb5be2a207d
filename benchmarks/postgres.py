"""A throw-away PostgreSQL database per benchmark, dropped afterwards.

Benchmarks touch only databases they created (``leopard_bench_<pid>_<n>``); when the
server is unreachable the caller turns :class:`~benchmarks.measure.Skip` into a
skipped row with the reason.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from .measure import Skip, need

HOST = "127.0.0.1"
PORT = 5432
USER = "postgres"
_names = itertools.count()


def _admin() -> Any:
    psycopg = need("psycopg")
    try:
        return psycopg.connect(
            host=HOST, port=PORT, user=USER, dbname="postgres", connect_timeout=3, autocommit=True
        )
    except psycopg.OperationalError as exc:
        first = (str(exc).strip().splitlines() or ["unreachable"])[0]
        raise Skip(f"PostgreSQL at {HOST}:{PORT} unreachable ({first})") from None


@contextmanager
def fresh_database(purpose: str) -> Iterator[str]:
    """Yield the SQLAlchemy URL of a new empty database; drop it on exit."""
    admin = _admin()
    name = f"leopard_bench_{purpose}_{os.getpid()}_{next(_names)}"
    try:
        admin.execute(f'CREATE DATABASE "{name}"')
        yield f"postgresql+psycopg://{USER}@{HOST}:{PORT}/{name}"
    finally:
        try:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            admin.close()
