"""A scheduled run against a warehouse: lock, migrate, read (incrementally), store, derive, load, log.

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
import tempfile
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
    from leopard_etl.mappings import CodeMatcher
    from leopard_etl.spool import EventSpool
    from leopard_etl.warehouse.store import Warehouse

__all__ = ["PAUSE_ENV", "pause_checkpoint", "read_is_complete", "run_with_warehouse", "warehouse_url"]

log = logging.getLogger(__name__)

Reader = Callable[..., str]
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


def run_with_warehouse(
    cfg: RunConfig,
    matcher: CodeMatcher,
    *,
    incremental: bool,
    bulk: bool,
    read: Reader,
    checkpoint: Checkpoint | None = None,
    partition_rows: int | None = None,
) -> dict[str, Any]:
    """One locked run; returns the output summary plus run id, mode and changed-patient count.

    ``checkpoint`` (default: from ``LEOPARD_PAUSE_AT``) is called at each write step;
    ``partition_rows`` (default :data:`leopard_etl.spool.PARTITION_ROWS`) bounds the stored
    events derived at once.
    """
    from leopard_etl import pipeline
    from leopard_etl.spool import PARTITION_ROWS, EventSpool, spooled_quarantine
    from leopard_etl.warehouse.store import Warehouse

    step = checkpoint or pause_checkpoint(os.environ) or _noop
    source = "; ".join(cfg.fhir) if cfg.fhir else (cfg.omop or "")
    source_system = "omop" if cfg.omop else "fhir"
    mode = "incremental" if incremental or cfg.mode == "incremental" else "full"
    wh = Warehouse(
        warehouse_url(cfg), cfg.warehouse_schema, checkpoint=step, duckdb_memory=cfg.warehouse_duckdb_memory
    )
    with wh, wh.lock(), tempfile.TemporaryDirectory(prefix="leopard-warehouse-run-") as tmp:
        wh.migrate()
        since = wh.last_watermark(source) if mode == "incremental" else None
        run_id = wh.begin_run(source, source_system, mode)
        spool = EventSpool(Path(tmp) / "spool")
        try:
            source_system = read(cfg, matcher, spool, since=since, bulk=bulk) or source_system
            spool.close()
            step("read")
            wh.write_quarantine_batches(run_id, spooled_quarantine(spool))
            pipeline.check_quarantine(cfg, spool)
            changed = _store_events(wh, spool, run_id, complete=read_is_complete(source_system, since))
            step("events:committed")
            cutoff = wh.cutoff(
                cfg.rules.cutoff,
                run_day=spool.run_day,
                small_cell_excludes_icd=cfg.rules.small_cell_excludes_icd,
            )
            # The default cutoff is data-wide: when it moves, every patient's outcome moves with it.
            only_changed = since is not None and wh.stored_cutoffs() == {cutoff}
            derived = Path(tmp) / "derived"
            derivation = _derive_to_files(
                wh, cfg, matcher, source_system, cutoff, derived, partition_rows or PARTITION_ROWS
            )
            wh.replace_derived_batches(
                {name: _stored_batches(derived / name) for name in DERIVED_TABLES},
                patient_ids=changed if only_changed else None,
            )
            summary = pipeline.write_outputs(
                cfg,
                derivation,
                spool.quarantine_csv,
                source_system,
                stats=spool.stats,
                unmatched_extra=spool.unmatched_codes,
            )
            step("outputs")
        except BaseException as err:
            with contextlib.suppress(Exception):
                spool.close()
            counts = {**spool.stats.as_dict(), "events": spool.n_events}
            wh.end_run(run_id, "failed", counts, error=redact_source(f"{type(err).__name__}: {err}"))
            raise
        counts = {**spool.stats.as_dict(), "events": spool.n_events}
        wh.end_run(run_id, "ok", counts, watermark=spool.watermark, n_patients_changed=len(changed))
    summary.update({"run_id": run_id, "mode": mode, "since": since, "patients_changed": len(changed)})
    return dict(summary)


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


def _derive_to_files(
    wh: Warehouse,
    cfg: RunConfig,
    matcher: CodeMatcher,
    source_system: str,
    cutoff: dt.date,
    folder: Path,
    partition_rows: int,
) -> Derivation:
    """Derive the stored events one patient range at a time with the data-wide cutoff fixed.

    Each partition's derived tables go to Parquet under ``folder/<table>/`` (typed and
    checked now, loaded later in one transaction); the returned derivation keeps only
    what the file outputs need (:data:`leopard_etl.pipeline.REPORT_TABLES`).
    """
    from leopard_etl.partitioned import derive_partitions
    from leopard_etl.pipeline import REPORT_TABLES

    def store(i: int, part: Derivation) -> None:
        check_frames(part.tables, DERIVED_TABLES)
        for name in DERIVED_TABLES:
            if name == "cohort_attrition":  # cohort-wide: from the merged attrition below
                continue
            data = to_arrow(part.tables[name], METADATA.tables[name])
            if data.num_rows:
                (folder / name).mkdir(parents=True, exist_ok=True)
                pq.write_table(data, folder / name / f"part-{i:06d}.parquet")

    derivation: Derivation = derive_partitions(
        wh.event_partitions(partition_rows),
        cfg.rules,
        matcher.mappings,
        source_system,
        cutoff,
        tables=REPORT_TABLES,
        each=store,
    )
    attrition = derivation.tables["cohort_attrition"]
    (folder / "cohort_attrition").mkdir(parents=True, exist_ok=True)
    pq.write_table(
        to_arrow(attrition, METADATA.tables["cohort_attrition"]), folder / "cohort_attrition" / "all.parquet"
    )
    return derivation


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
