"""The run log (``etl_run``, ``quarantine``): what ran, when, from where, with which counts.

Schedulers and ``leopard-etl status`` read it; an incremental run resumes from the
watermark of the last *successful* run of the same source. A run row is written
``running`` when the run begins, so a run that died leaves evidence; the next run
(which holds the warehouse lock, so no other run can be live) marks it ``failed``.
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd
from sqlalchemy import Connection, select, update

from leopard_etl.events import QUARANTINE_COLUMNS, Quarantined
from leopard_etl.warehouse.schema import etl_run, quarantine

__all__ = ["RUN_STATUSES", "abandon_running", "insert_run", "last_watermark", "list_runs", "quarantine_frame"]

RUN_STATUSES = ("running", "ok", "failed")
_ABANDONED = "abandoned: the process ended without closing the run (killed?)"


def new_run_id(now: dt.datetime) -> str:
    """Sortable and unique: UTC start time plus a random suffix."""
    return f"{now.astimezone(dt.UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex[:8]}"


def abandon_running(conn: Connection, now: dt.datetime) -> int:
    stmt = (
        update(etl_run)
        .where(etl_run.c.status == "running")
        .values(status="failed", ended_at=now, error=_ABANDONED)
    )
    return conn.execute(stmt).rowcount


def insert_run(
    conn: Connection, run_id: str, source: str, source_system: str, mode: str, now: dt.datetime
) -> None:
    values = {"source": source, "source_system": source_system, "mode": mode}
    conn.execute(etl_run.insert().values(run_id=run_id, started_at=now, status="running", **values))


def _int(counts: Mapping[str, Any], *keys: str) -> int | None:
    for key in keys:
        if counts.get(key) is not None:
            return int(counts[key])
    return None


def finish_run(
    conn: Connection,
    run_id: str,
    *,
    status: str,
    counts: Mapping[str, Any],
    watermark: str | None,
    n_patients_changed: int | None,
    error: str | None,
    now: dt.datetime,
) -> None:
    reasons = counts.get("out_of_scope_reasons")
    values = {
        "ended_at": now,
        "status": status,
        "watermark": watermark,
        "n_read": _int(counts, "read", "n_read"),
        "n_in_scope": _int(counts, "in_scope", "n_in_scope"),
        "n_events": _int(counts, "events", "n_events"),
        "n_quarantined": _int(counts, "quarantined", "n_quarantined"),
        "n_out_of_scope": _int(counts, "out_of_scope", "n_out_of_scope"),
        "n_patients_changed": n_patients_changed,
        "out_of_scope_reasons": json.dumps(dict(reasons), sort_keys=True) if reasons else None,
        "error": error.splitlines()[0][:2000] if error else None,
    }
    found = conn.execute(update(etl_run).where(etl_run.c.run_id == run_id).values(**values)).rowcount
    if found != 1:
        raise ValueError(f"no run {run_id!r} in etl_run")


def last_watermark(conn: Connection, source: str) -> str | None:
    stmt = (
        select(etl_run.c.watermark)
        .where(etl_run.c.source == source, etl_run.c.status == "ok", etl_run.c.watermark.is_not(None))
        .order_by(etl_run.c.started_at.desc(), etl_run.c.run_id.desc())
        .limit(1)
    )
    return conn.execute(stmt).scalar()


def list_runs(conn: Connection, limit: int) -> list[dict[str, Any]]:
    stmt = select(etl_run).order_by(etl_run.c.started_at.desc(), etl_run.c.run_id.desc()).limit(limit)
    return [dict(row._mapping) for row in conn.execute(stmt)]


def quarantine_frame(
    run_id: str, rows: Iterable[Quarantined | Mapping[str, Any]], max_record: int
) -> pd.DataFrame:
    """Quarantine rows as a frame for the bulk path; the offending record is truncated to ``max_record``."""
    records = [r._asdict() if isinstance(r, Quarantined) else dict(r) for r in rows]
    df = pd.DataFrame.from_records(records, columns=list(QUARANTINE_COLUMNS))
    df["record"] = df["record"].map(lambda v: None if v is None else str(v)[:max_record])
    df.insert(0, "run_id", run_id)
    return df[[c.name for c in quarantine.columns]]
