"""The warehouse sink of a scheduled run: lock, migrate, run row, store, load, log.

The pipeline (:func:`leopard_etl.pipeline.execute`) orders the steps; this module only
does the warehouse's part of each.

Order matters for recovery: the run row is opened first (a crash leaves it
``running``, marked failed by the next run), events are stored and their patients
marked pending in one transaction, and derived tables are replaced in another; a
crash between the two is caught up by the next run (``derive_pending``). The
watermark is recorded only with status ``ok``, so a failed incremental run is
simply repeated from the previous watermark.

Whether stored records missing from a read are deletions depends on whether the
read was *complete*, not on the run mode: an OMOP CDM has no reliable change
column, so every OMOP read is a full re-read (changes are found by content hash in
the event store) and rows deleted at the source must disappear even in an
incremental run. Only a FHIR read from a watermark (``_lastUpdated`` / ``_since``)
is partial; its deletions come from the records it saw (entered-in-error, now out
of scope) and those the source reported deleted.

``LEOPARD_PAUSE_AT=point[,point…]`` stops the run at those write checkpoints
(``read``, ``events:commit``, ``events:committed``, ``deleted:<table>``, ``commit``,
``committed``, ``outputs``) until a line arrives on stdin: it lets an operator or a
crash test see — or kill the process at — the exact state between two steps.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy.engine import make_url

from leopard_etl.config import RunConfig, resolve_secret
from leopard_etl.errors import ConfigError
from leopard_etl.events import EventSink
from leopard_etl.privacy import redact_source
from leopard_etl.warehouse.bulk import to_arrow
from leopard_etl.warehouse.derived import check_frames
from leopard_etl.warehouse.schema import DERIVED_TABLES, METADATA

if TYPE_CHECKING:
    from leopard_etl.cohort import Derivation
    from leopard_etl.spool import EventSpool
    from leopard_etl.warehouse.store import Warehouse

__all__ = [
    "PAUSE_ENV",
    "StoredEvents",
    "WarehouseSink",
    "pause_checkpoint",
    "read_is_complete",
    "warehouse_url",
]

log = logging.getLogger(__name__)

Checkpoint = Callable[[str], None]

#: Environment variable naming the checkpoints where a run waits for a line on stdin.
PAUSE_ENV = "LEOPARD_PAUSE_AT"


def warehouse_url(cfg: RunConfig) -> str:
    """The configured warehouse URL with the password from ``warehouse_password_env`` filled in."""
    if not cfg.warehouse:
        raise ConfigError("no warehouse given", fix="use --warehouse URL or set warehouse in the config")
    password = resolve_secret(cfg.warehouse_password_env, None)
    if not password:
        return cfg.warehouse
    return make_url(cfg.warehouse).set(password=password).render_as_string(hide_password=False)


def read_is_complete(source_system: str, since: str | None) -> bool:
    """True when the read returned the whole source, so stored records it lacks were deleted there."""
    return since is None or source_system == "omop"


def pause_checkpoint(
    environ: Mapping[str, str], stdin: IO[str] | None = None, stderr: IO[str] | None = None
) -> Checkpoint | None:
    """The checkpoint hook ``LEOPARD_PAUSE_AT`` asks for (None when unset): announce, wait for stdin."""
    wanted = {p.strip() for p in environ.get(PAUSE_ENV, "").split(",") if p.strip()}
    if not wanted:
        return None

    def checkpoint(point: str) -> None:
        if point not in wanted:
            return
        err = stderr or sys.stderr
        err.write(f"leopard-etl: paused at {point} (pid {os.getpid()}); send a line on stdin to resume\n")
        err.flush()
        (stdin or sys.stdin).readline()

    return checkpoint


def _noop(_point: str) -> None:
    return None


class WarehouseSink:
    """The warehouse as one sink of a run (the output files are the other).

    The pipeline drives every run the same way (source → spool → derive → sinks) and calls
    this sink at each step: :meth:`open` (lock, migrate, run row; the ``since`` of an
    incremental read), :meth:`read_done` (quarantine rows), :meth:`store` (events into the
    store; returns the store as the derivation's input — the complete event set, also
    after an incremental read), :meth:`keep_partition` (each partition's derived tables to
    Parquet), :meth:`load_derived` (one transaction), then :meth:`succeeded` or
    :meth:`failed`. Nothing here calls back into the pipeline.
    """

    def __init__(
        self, cfg: RunConfig, *, incremental: bool, scratch: Path, checkpoint: Checkpoint | None = None
    ) -> None:
        from leopard_etl.warehouse.store import Warehouse

        self.cfg = cfg
        self.step = checkpoint or pause_checkpoint(os.environ) or _noop
        self.source = "; ".join(cfg.fhir) if cfg.fhir else (cfg.omop or "")
        self.source_system = "omop" if cfg.omop else "fhir"
        self.mode = "incremental" if incremental or cfg.mode == "incremental" else "full"
        self.wh = Warehouse(
            warehouse_url(cfg),
            cfg.warehouse_schema,
            checkpoint=self.step,
            duckdb_memory=cfg.warehouse_duckdb_memory,
        )
        self.derived = scratch / "derived"
        self.since: str | None = None
        self.run_id = ""
        self.changed: set[str] = set()
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> WarehouseSink:
        self._stack.enter_context(self.wh)
        self._stack.enter_context(self.wh.lock())
        self.wh.migrate()
        self.since = self.wh.last_watermark(self.source) if self.mode == "incremental" else None
        self.run_id = self.wh.begin_run(self.source, self.source_system, self.mode)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def read_done(self, spool: EventSpool) -> None:
        from leopard_etl.spool import spooled_quarantine

        self.step("read")
        self.wh.write_quarantine_batches(self.run_id, spooled_quarantine(spool))

    def store(self, spool: EventSpool, source_system: str) -> StoredEvents:
        """Upsert the read into the event store; the store is then what the run derives from."""
        complete = read_is_complete(source_system, self.since)
        self.changed = _store_events(self.wh, spool, self.run_id, complete=complete)
        self.step("events:committed")
        return StoredEvents(self.wh)

    def keep_partition(self, i: int, part: Derivation) -> None:
        """One partition's derived tables to Parquet under ``derived/<table>/`` (typed and checked
        now, loaded later in one transaction)."""
        check_frames(part.tables, DERIVED_TABLES)
        for name in DERIVED_TABLES:
            if name == "cohort_attrition":  # cohort-wide: from the merged attrition
                continue
            data = to_arrow(part.tables[name], METADATA.tables[name])
            if data.num_rows:
                (self.derived / name).mkdir(parents=True, exist_ok=True)
                pq.write_table(data, self.derived / name / f"part-{i:06d}.parquet")

    def load_derived(self, derivation: Derivation) -> None:
        """Replace the derived tables in one transaction: all patients, or only the changed ones
        when the cutoff stayed where it was (the default cutoff is data-wide: when it moves,
        every patient's outcome moves with it)."""
        attrition = derivation.tables["cohort_attrition"]
        (self.derived / "cohort_attrition").mkdir(parents=True, exist_ok=True)
        pq.write_table(
            to_arrow(attrition, METADATA.tables["cohort_attrition"]),
            self.derived / "cohort_attrition" / "all.parquet",
        )
        only_changed = self.since is not None and self.wh.stored_cutoffs() == {derivation.cutoff}
        self.wh.replace_derived_batches(
            {name: _stored_batches(self.derived / name) for name in DERIVED_TABLES},
            patient_ids=self.changed if only_changed else None,
        )

    def outputs_written(self) -> None:
        self.step("outputs")

    def succeeded(self, spool: EventSpool) -> dict[str, Any]:
        counts = {**spool.stats.as_dict(), "events": spool.n_events}
        self.wh.end_run(
            self.run_id, "ok", counts, watermark=spool.watermark, n_patients_changed=len(self.changed)
        )
        return {
            "run_id": self.run_id,
            "mode": self.mode,
            "since": self.since,
            "patients_changed": len(self.changed),
        }

    def failed(self, spool: EventSpool, err: BaseException) -> None:
        with contextlib.suppress(Exception):
            spool.close()
        counts = {**spool.stats.as_dict(), "events": spool.n_events}
        self.wh.end_run(self.run_id, "failed", counts, error=redact_source(f"{type(err).__name__}: {err}"))


class StoredEvents:
    """The event store as a derivation input (the spool's counterpart,
    :class:`leopard_etl.spool.SpooledEvents`)."""

    def __init__(self, wh: Warehouse) -> None:
        self.wh = wh

    def cutoff(
        self, configured: dt.date | None, *, run_day: dt.date | None, small_cell_excludes_icd: bool
    ) -> dt.date:
        return self.wh.cutoff(configured, run_day=run_day, small_cell_excludes_icd=small_cell_excludes_icd)

    def partitions(self, partition_rows: int) -> Iterator[tuple[Any, Any]]:
        return self.wh.event_partitions(partition_rows)


def _store_events(wh: Warehouse, spool: EventSpool, run_id: str, *, complete: bool) -> set[str]:
    """Upsert the spooled read into the event store in batches (one transaction); the changed patients."""
    from leopard_etl.spool import kept_sources, spooled_events, spooled_patients

    con = spool.connect()
    try:
        deleted = [] if complete else _deleted_sources(spool, kept_sources(spool, con, spool.touched))
        return wh.upsert_event_batches(
            spooled_events(spool, con),
            spooled_patients(spool, con),
            run_id=run_id,
            full=complete,
            deleted=deleted,
        )
    finally:
        con.close()


def _stored_batches(folder: Path) -> Iterator[pa.Table]:
    """The Parquet files of one derived table, read one at a time when the load consumes them."""
    for path in sorted(folder.glob("*.parquet")):
        yield pq.read_table(path)


def _deleted_sources(sink: EventSink, kept: set[str]) -> list[str]:
    """Records this incremental read saw that no longer yield anything (entered-in-error, refuted,
    out of scope now) or that the source reported deleted: their stored events must go.

    ``kept``: the source references of the events and patient records the read produced."""
    gone = {ref for ref in sink.touched if ref not in kept and not ref.startswith("fhir:Medication/")}
    return sorted(gone | set(sink.deleted))
