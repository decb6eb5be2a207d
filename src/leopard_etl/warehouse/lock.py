"""One run at a time per warehouse, with locks the operating system or the server releases on death.

Two scheduled runs writing the same warehouse would interleave their event-store
and derived-table writes, so a run takes an exclusive lock first and a second run
fails fast with :class:`~leopard_etl.errors.LockHeldError` (exit code 5) instead of
waiting. Neither lock can go stale: an ``fcntl.flock`` on a file beside the DuckDB
database is dropped by the kernel when the holding process dies (even on SIGKILL),
and a PostgreSQL session advisory lock is dropped when its connection closes.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Connection, text

from leopard_etl.errors import ConfigError, LockHeldError

__all__ = ["advisory_key", "file_lock", "postgres_lock"]

_FIX = "wait for the other leopard-etl run to finish (a killed run releases the lock by itself)"


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Exclusive non-blocking ``flock`` on ``path`` (created if absent; never deleted, to avoid races)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:  # a read-only or full location: the site's setting, not a bug
        raise ConfigError(
            f"cannot create the warehouse lock file {path}: {err.strerror or err}",
            fix="put the DuckDB warehouse in a writable folder with free space",
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            message = f"warehouse is locked by another run (pid {holder}, lock {path})"
            raise LockHeldError(message, fix=_FIX) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def advisory_key(schema: str) -> int:
    """Signed 64-bit advisory-lock key of one warehouse schema (stable across processes)."""
    digest = hashlib.sha256(f"leopard-etl:{schema}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextlib.contextmanager
def postgres_lock(connect: Callable[[], Connection], schema: str) -> Iterator[None]:
    """Session-level ``pg_try_advisory_lock`` held on a dedicated connection for the block's duration."""
    key = advisory_key(schema)
    with connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        if not got:
            raise LockHeldError(f"warehouse schema {schema!r} is locked by another run", fix=_FIX)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
