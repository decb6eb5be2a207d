"""A scheduled run against a warehouse: lock, migrate, read (incrementally), store, derive, load, log.

Order matters for recovery: the run row is opened first (a crash leaves it
``running``, marked failed by the next run), events are stored and their patients
marked pending in one transaction, and derived tables are replaced in another; a
crash between the two is caught up by the next run (``derive_pending``). The
watermark is recorded only with status ``ok``, so a failed incremental run is
simply repeated from the previous watermark.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy.engine import make_url

from leopard_etl.config import RunConfig, resolve_secret
from leopard_etl.errors import ConfigError
from leopard_etl.events import EventSink

if TYPE_CHECKING:
    from leopard_etl.mappings import CodeMatcher

__all__ = ["run_with_warehouse", "warehouse_url"]

log = logging.getLogger(__name__)

Reader = Callable[..., str]


def warehouse_url(cfg: RunConfig) -> str:
    """The configured warehouse URL with the password from ``warehouse_password_env`` filled in."""
    if not cfg.warehouse:
        raise ConfigError("no warehouse given", fix="use --warehouse URL or set warehouse in the config")
    password = resolve_secret(cfg.warehouse_password_env, None)
    if not password:
        return cfg.warehouse
    return make_url(cfg.warehouse).set(password=password).render_as_string(hide_password=False)


def run_with_warehouse(
    cfg: RunConfig, matcher: CodeMatcher, *, incremental: bool, bulk: bool, read: Reader
) -> dict[str, Any]:
    """One locked run; returns the output summary plus run id, mode and changed-patient count."""
    from leopard_etl import pipeline
    from leopard_etl.cohort import derive
    from leopard_etl.warehouse.store import Warehouse

    source = "; ".join(cfg.fhir) if cfg.fhir else (cfg.omop or "")
    source_system = "omop" if cfg.omop else "fhir"
    mode = "incremental" if incremental or cfg.mode == "incremental" else "full"
    wh = Warehouse(warehouse_url(cfg), cfg.warehouse_schema)
    with wh, wh.lock():
        wh.migrate()
        since = wh.last_watermark(source) if mode == "incremental" else None
        run_id = wh.begin_run(source, source_system, mode)
        sink = EventSink()
        try:
            read(cfg, matcher, sink, since=since, bulk=bulk)
            wh.write_quarantine(run_id, sink.quarantined)
            pipeline.check_quarantine(cfg, sink)
            events, patients, quarantine = pipeline.frames(sink)
            deleted = _deleted_sources(sink, events, patients) if since is not None else []
            changed = wh.upsert_events(events, patients, run_id=run_id, full=since is None, deleted=deleted)
            all_events, all_patients = wh.load_events()
            derivation = derive(all_events, all_patients, cfg.rules, matcher.mappings, source_system)
            stored_cutoffs = set(wh.read_table("outcome")["cutoff"])
            # The default cutoff is data-wide: when it moves, every patient's outcome moves with it.
            if since is not None and stored_cutoffs == {derivation.cutoff}:
                wh.replace_derived(derivation.tables, patient_ids=changed)
            else:
                wh.replace_derived(derivation.tables)
            summary = pipeline.write_outputs(cfg, derivation, quarantine, source_system)
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
