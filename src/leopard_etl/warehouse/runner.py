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

import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import IO, TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from leopard_etl.config import RunConfig, resolve_secret
from leopard_etl.errors import ConfigError
from leopard_etl.events import EventSink

if TYPE_CHECKING:
    from leopard_etl.mappings import CodeMatcher

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
) -> dict[str, Any]:
    """One locked run; returns the output summary plus run id, mode and changed-patient count.

    ``checkpoint`` (default: from ``LEOPARD_PAUSE_AT``) is called at each write step.
    """
    from leopard_etl import pipeline
    from leopard_etl.cohort import derive
    from leopard_etl.warehouse.store import Warehouse

    step = checkpoint or pause_checkpoint(os.environ) or _noop
    source = "; ".join(cfg.fhir) if cfg.fhir else (cfg.omop or "")
    source_system = "omop" if cfg.omop else "fhir"
    mode = "incremental" if incremental or cfg.mode == "incremental" else "full"
    wh = Warehouse(warehouse_url(cfg), cfg.warehouse_schema, checkpoint=step)
    with wh, wh.lock():
        wh.migrate()
        since = wh.last_watermark(source) if mode == "incremental" else None
        run_id = wh.begin_run(source, source_system, mode)
        sink = EventSink()
        try:
            source_system = read(cfg, matcher, sink, since=since, bulk=bulk) or source_system
            step("read")
            wh.write_quarantine(run_id, sink.quarantined)
            pipeline.check_quarantine(cfg, sink)
            events, patients, quarantine = pipeline.frames(sink)
            complete = read_is_complete(source_system, since)
            deleted = [] if complete else _deleted_sources(sink, events, patients)
            changed = wh.upsert_events(events, patients, run_id=run_id, full=complete, deleted=deleted)
            step("events:committed")
            all_events, all_patients = wh.load_events()
            derivation = derive(all_events, all_patients, cfg.rules, matcher.mappings, source_system)
            stored_cutoffs = set(wh.read_table("outcome")["cutoff"])
            # The default cutoff is data-wide: when it moves, every patient's outcome moves with it.
            if since is not None and stored_cutoffs == {derivation.cutoff}:
                wh.replace_derived(derivation.tables, patient_ids=changed)
            else:
                wh.replace_derived(derivation.tables)
            summary = pipeline.write_outputs(cfg, derivation, quarantine, source_system)
            step("outputs")
        except BaseException as err:
            counts = {**sink.stats.as_dict(), "events": len(sink.events)}
            wh.end_run(run_id, "failed", counts, error=f"{type(err).__name__}: {err}")
            raise
        counts = {**sink.stats.as_dict(), "events": len(sink.events)}
        wh.end_run(run_id, "ok", counts, watermark=sink.watermark, n_patients_changed=len(changed))
    summary.update({"run_id": run_id, "mode": mode, "since": since, "patients_changed": len(changed)})
    return dict(summary)


def _deleted_sources(sink: EventSink, events: Any, patients: Any) -> list[str]:
    """Records this incremental read saw that no longer yield anything (entered-in-error, refuted,
    out of scope now) or that the source reported deleted: their stored events must go."""
    kept = set(events["source"]) | set(patients["source"])
    gone = {ref for ref in sink.touched if ref not in kept and not ref.startswith("fhir:Medication/")}
    return sorted(gone | set(sink.deleted))
