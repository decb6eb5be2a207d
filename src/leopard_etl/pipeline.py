"""One run, end to end: source → events → derivation → outputs (→ warehouse).

The thin shell around the pure core: it wires the adapters (the only readers), the
cohort rules and the analysis (pure), and the writers (files, warehouse). Each
step reports counts so that a scheduled run is observable.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError, QuarantineError, SourceError
from .events import EVENT_COLUMNS, PATIENT_COLUMNS, QUARANTINE_COLUMNS, EventSink, ReadStats

if TYPE_CHECKING:
    import pandas as pd

    from .cohort import Derivation
    from .config import RunConfig
    from .mappings import CodeMatcher

__all__ = [
    "RunRequest",
    "check_quarantine",
    "derive_and_write",
    "execute",
    "explain_patient",
    "frames",
    "run_demo",
    "run_pipeline",
    "run_spooled",
    "warehouse_status",
    "write_outputs",
]

log = logging.getLogger("leopard_etl")

#: derived tables and columns the file outputs use (the report's age, sex and durvalumab
#: timing); a spooled run keeps only these, the warehouse gets every table from its own derivation
REPORT_TABLES: dict[str, tuple[str, ...]] = {
    "patient": ("patient_id", "birth_date", "sex"),
    "durvalumab_course": ("patient_id", "days_from_crt_end"),
}


@dataclass
class RunRequest:
    """What the CLI asked for; unset fields come from the config file / environment."""

    fhir: list[str] = field(default_factory=list)
    omop: str | None = None
    cdm_schema: str | None = None
    vocab_schema: str | None = None
    out: Path | None = None
    warehouse: str | None = None
    cutoff: str | None = None
    config: Path | None = None
    incremental: bool = False
    bulk: bool = False
    mappings: list[Path] = field(default_factory=list)
    json_logs: bool = False
    engine: str | None = None


def _resolve_config(req: RunRequest) -> RunConfig:
    import os

    from .config import load_config

    overrides: dict[str, Any] = {}
    if req.fhir:
        overrides["fhir"] = req.fhir
    for name in ("omop", "cdm_schema", "vocab_schema", "out", "warehouse"):
        value = getattr(req, name)
        if value is not None:
            overrides[name] = value
    if req.mappings:
        overrides["mappings_extra"] = req.mappings
    if req.cutoff:
        try:
            cutoff = dt.date.fromisoformat(req.cutoff)
        except ValueError:
            raise ConfigError(
                f"--cutoff {req.cutoff!r} is not a date", fix="write it as YYYY-MM-DD"
            ) from None
        overrides["rules"] = {"cutoff": cutoff}
    if req.json_logs:
        overrides["log_json"] = True
    if req.engine:
        overrides["engine"] = req.engine
    cfg = load_config(req.config, overrides, os.environ)
    if bool(cfg.fhir) == bool(cfg.omop):
        raise ConfigError(
            "give exactly one source", fix="use --fhir PATH_OR_URL ... or --omop SQLALCHEMY_URL"
        )
    return cfg


def _matcher(cfg: RunConfig) -> CodeMatcher:
    from .mappings import CodeMatcher, load_mappings

    return CodeMatcher(load_mappings(extra_dirs=cfg.mappings_extra))


def date_bounds(cfg: RunConfig, sink: EventSink, run_day: dt.date | None = None) -> None:
    """Tell the sink the day of the run and the configured cutoff (spec §3.12 v2).

    Without a configured cutoff, readers quarantine records dated after the day of the run;
    with one (date-shifted research data), nothing is quarantined for its date.
    """
    sink.run_day = run_day or dt.date.today()
    sink.cutoff = cfg.rules.cutoff


def _read(cfg: RunConfig, matcher: CodeMatcher, sink: EventSink, *, since: str | None, bulk: bool) -> str:
    """Fill the sink from the configured source; returns the source system name."""
    if sink.run_day is None:
        date_bounds(cfg, sink)
    if cfg.omop:
        from .config import url_with_password
        from .sources.omop import read_omop

        url = url_with_password(cfg.omop, cfg.omop_password_env)
        read_omop(url, matcher, sink, cdm_schema=cfg.cdm_schema, vocab_schema=cfg.vocab_schema)
        return "omop"
    from .sources.fhir import read_fhir
    from .sources.fhir.auth import auth_from_config

    auth = auth_from_config(cfg)
    for source in cfg.fhir:
        read_fhir(source, matcher, sink, since=since, bulk=bulk, auth=auth, limits=cfg.fhir_limits)
    return "fhir"


def frames(sink: EventSink) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Columnar views of what a sink collected (events, patients, quarantine)."""
    import pandas as pd

    events = pd.DataFrame.from_records(sink.events, columns=list(EVENT_COLUMNS))
    patients = pd.DataFrame.from_records(sink.patients, columns=list(PATIENT_COLUMNS))
    if not patients.empty:
        patients = patients.drop_duplicates("patient_id", keep="last")
    quarantine = pd.DataFrame.from_records(sink.quarantined, columns=list(QUARANTINE_COLUMNS))
    return events, patients, quarantine


@contextmanager
def _progress(label: str) -> Iterator[None]:
    """A step of the run: one live row on a terminal (shared with the readers' progress), a log line
    elsewhere."""
    from .progress import status

    with status(label):
        yield


def run_pipeline(req: RunRequest) -> dict[str, Any]:
    """The ``run`` command: returns a summary of counts and output paths."""
    cfg = _resolve_config(req)
    from .logs import configure_logging

    configure_logging(json=cfg.log_json, level=cfg.log_level)
    if cfg.engine == "spark":
        return execute_spark(cfg, _matcher(cfg))
    return execute(cfg, _matcher(cfg), incremental=req.incremental, bulk=req.bulk)


def execute_spark(cfg: RunConfig, matcher: CodeMatcher) -> dict[str, Any]:
    """``run --engine spark``: the read and the per-patient rules on Spark (docs/spark.md), the
    same output files by the same writers. Warehouse loads and incremental reads stay on the
    default engine."""
    import tempfile

    if cfg.warehouse:
        raise ConfigError(
            "--engine spark writes the output files only", fix="load the warehouse with the default engine"
        )
    try:
        from .engines.spark.run import run_spark
    except ImportError as err:
        raise ConfigError(
            f"the Spark engine needs pyspark ({err.name or err})", fix="pip install 'leopard-etl[spark]'"
        ) from None
    with tempfile.TemporaryDirectory(prefix="leopard-spark-") as tmp:
        result = run_spark(
            cfg, matcher, workdir=Path(tmp), settings=cfg.spark, run_day=dt.date.today(), tables=REPORT_TABLES
        )
        check_quarantine(cfg, result.stats)
        summary = write_outputs(
            cfg,
            result.derivation,
            result.quarantine,
            result.source_system,
            stats=result.stats,
            unmatched_extra=result.unmatched_extra,
        )
    summary["events"] = result.n_events
    stats = result.stats.as_dict()
    summary.update({f"source_{k}": v for k, v in stats.items() if k != "out_of_scope_reasons"})
    summary["engine"] = "spark"
    return summary


def execute(
    cfg: RunConfig,
    matcher: CodeMatcher,
    *,
    incremental: bool = False,
    bulk: bool = False,
    partition_rows: int | None = None,
    checkpoint: Callable[[str], None] | None = None,
    read: Callable[..., str] | None = None,
) -> dict[str, Any]:
    """One run, the one way: source → spool → derive → sinks (the files, and the warehouse if any).

    The read goes to a spool on disk and the derivation runs partition by partition, so
    memory stays flat as the input grows. With a warehouse, the spool is stored first and
    the derivation reads the event store (after an incremental read it holds the complete
    event set); each partition's derived tables also go to the warehouse, loaded in one
    transaction. ``checkpoint`` (crash tests; default ``LEOPARD_PAUSE_AT``) is called at each
    warehouse write step; ``read`` replaces the configured source (tests feed a changed read).
    """
    import tempfile

    from .partitioned import derive_partitions
    from .spool import PARTITION_ROWS, EventSpool, SpooledEvents

    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="leopard-run-")))
        warehouse = None
        if cfg.warehouse:
            from .warehouse.runner import WarehouseSink

            warehouse = stack.enter_context(
                WarehouseSink(cfg, incremental=incremental, scratch=scratch, checkpoint=checkpoint)
            )
        spool = EventSpool(scratch / "spool")
        date_bounds(cfg, spool)
        try:
            with _progress("reading source"):
                since = warehouse.since if warehouse else None
                source_system = (read or _read)(cfg, matcher, spool, since=since, bulk=bulk)
            spool.close()
            if warehouse:
                warehouse.read_done(spool)
            check_quarantine(cfg, spool)
            source: Any = (
                warehouse.store(spool, source_system)
                if warehouse
                else stack.enter_context(SpooledEvents(spool))
            )
            with _progress("deriving cohort"):
                cutoff = source.cutoff(
                    cfg.rules.cutoff,
                    run_day=spool.run_day,
                    small_cell_excludes_icd=cfg.rules.small_cell_excludes_icd,
                )
                derivation = derive_partitions(
                    source.partitions(partition_rows or PARTITION_ROWS),
                    cfg.rules,
                    matcher.mappings,
                    source_system,
                    cutoff,
                    tables=REPORT_TABLES,
                    each=warehouse.keep_partition if warehouse else None,
                )
            if warehouse:
                warehouse.load_derived(derivation)
            summary = write_outputs(
                cfg,
                derivation,
                spool.quarantine_csv,
                source_system,
                stats=spool.stats,
                unmatched_extra=spool.unmatched_codes,
            )
            if warehouse:
                warehouse.outputs_written()
        except BaseException as err:
            if warehouse:
                warehouse.failed(spool, err)
            raise
        if warehouse:
            summary.update(warehouse.succeeded(spool))
    summary["events"] = spool.n_events
    stats = spool.stats.as_dict()
    summary.update({f"source_{k}": v for k, v in stats.items() if k != "out_of_scope_reasons"})
    return summary


def run_spooled(
    cfg: RunConfig, matcher: CodeMatcher, *, bulk: bool = False, partition_rows: int | None = None
) -> dict[str, Any]:
    """A file-output run (no warehouse) — :func:`execute` with the warehouse left out."""
    if cfg.warehouse:
        cfg = cfg.model_copy(update={"warehouse": None})
    return execute(cfg, matcher, bulk=bulk, partition_rows=partition_rows)


def check_quarantine(cfg: RunConfig, counts: EventSink | ReadStats) -> None:
    """Exit 4 when the share of quarantined records passes ``quarantine_max_pct``."""
    stats = counts.stats if isinstance(counts, EventSink) else counts
    read = max(stats.read, 1)
    pct = 100.0 * stats.quarantined / read
    if pct > cfg.quarantine_max_pct:
        raise QuarantineError(
            f"{stats.quarantined} of {stats.read} records quarantined ({pct:.1f}%), "
            f"above the limit of {cfg.quarantine_max_pct}%",
            fix="inspect quarantine.csv in the output folder or raise quarantine_max_pct",
        )


def derive_and_write(
    cfg: RunConfig,
    matcher: CodeMatcher,
    events: pd.DataFrame,
    patients: pd.DataFrame,
    quarantine: pd.DataFrame,
    source_system: str,
    stats: ReadStats | None = None,
) -> dict[str, Any]:
    """Derive the cohort from events, then write the outputs (the in-memory path)."""
    from .cohort import derive

    with _progress("deriving cohort"):
        derivation = derive(events, patients, cfg.rules, matcher.mappings, source_system, dt.date.today())
    summary = write_outputs(cfg, derivation, quarantine, source_system, stats=stats)
    summary["events"] = len(events)
    return summary


#: the files a run writes into the output folder (replaced together: spec §5, issue 13)
OUTPUT_FILES = (
    "patients.csv",
    "quarantine.csv",
    "unmatched_codes.csv",
    "warnings-patients.csv",
    "results.json",
    "results-shareable.json",
    "site-summary.json",
    "report.html",
)


def write_outputs(
    cfg: RunConfig,
    derivation: Derivation,
    quarantine: pd.DataFrame | Path,
    source_system: str,
    *,
    stats: ReadStats | None = None,
    unmatched_extra: Sequence[Mapping[str, Any]] = (),
) -> dict[str, Any]:
    """Write every output file of a run into ``cfg.out``, all or nothing.

    ``quarantine`` is the frame of quarantined records, or a CSV file of them already in the
    output format (a spooled run), which is copied. ``stats`` are the read's record counts and
    ``unmatched_extra`` unmatched-code rows a reader counted itself (OMOP aggregates in SQL).
    The files are written into a scratch folder beside the target and moved into place only
    when all of them are written, so a failed run leaves the previous outputs as they were; an
    unwritable or full location is a configuration error (exit 2) naming the path.
    """
    import shutil
    import tempfile

    out = Path(cfg.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.writing-", dir=out.parent))
    except OSError as exc:
        raise _unwritable(out, exc) from None
    try:
        summary = _write_all(cfg, derivation, quarantine, source_system, scratch, stats, unmatched_extra)
        for name in OUTPUT_FILES:
            os.replace(scratch / name, out / name)
    except OSError as exc:
        raise _unwritable(out, exc) from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    summary["out"] = str(out)
    return summary


def _unwritable(out: Path, exc: OSError) -> ConfigError:
    where = exc.filename or out
    return ConfigError(
        f"cannot write the outputs to {out} ({where}: {exc.strerror or exc})",
        fix="choose a writable output folder with free space (--out)",
    )


def _write_all(
    cfg: RunConfig,
    derivation: Derivation,
    quarantine: pd.DataFrame | Path,
    source_system: str,
    folder: Path,
    stats: ReadStats | None,
    unmatched_extra: Sequence[Mapping[str, Any]],
) -> dict[str, Any]:
    import shutil

    import pandas as pd

    from .analysis.results import compute_results, write_results
    from .cohort.derive import UNMATCHED_COLUMNS
    from .events import QUARANTINE_CSV_COLUMNS
    from .report.html import render_report

    patients_csv = derivation.patients_csv
    tables = derivation.tables
    facts = derivation.facts
    death_unknown = list(facts.death_unknown_ids)
    if cfg.pseudonymise_key_env or cfg.pseudonymise_key_file:
        from .config import resolve_secret
        from .privacy import check_key, pseudonym, pseudonymise

        secret = resolve_secret(cfg.pseudonymise_key_env, cfg.pseudonymise_key_file)
        if not secret:
            raise ConfigError(
                "the pseudonymisation key is empty", fix="put the key in the named env var or file"
            )
        key = secret.encode("utf-8")
        check_key(key)
        pseudo = pseudonymise({"patients_csv": patients_csv, **tables}, key)
        patients_csv = pseudo.pop("patients_csv")
        tables = pseudo
        death_unknown = [pseudonym(pid, key) for pid in death_unknown]
    patients_csv.to_csv(folder / "patients.csv", index=False)
    if isinstance(quarantine, Path):
        shutil.copyfile(quarantine, folder / "quarantine.csv")
        n_quarantined = _csv_rows(quarantine)
    else:
        frame = quarantine.reindex(columns=list(QUARANTINE_CSV_COLUMNS)).fillna("")
        frame.to_csv(folder / "quarantine.csv", index=False)
        n_quarantined = len(quarantine)
    unmatched = facts.unmatched
    if unmatched_extra:
        from .cohort.derive import _sum_unmatched

        extra = pd.DataFrame.from_records(list(unmatched_extra), columns=list(UNMATCHED_COLUMNS))
        unmatched = _sum_unmatched([unmatched, extra])
    unmatched.to_csv(folder / "unmatched_codes.csv", index=False, columns=list(UNMATCHED_COLUMNS))
    read = stats.as_dict() if stats is not None else {}
    run_facts = {
        "source": {k: v for k, v in read.items() if k != "out_of_scope_reasons"},
        "drug_match_routes": facts.drug_routes,
        "platinum_unverified_n": facts.platinum_unverified_n,
        "death_unknown_n": len(death_unknown),
    }
    with _progress("survival analysis"):
        results = compute_results(patients_csv, derivation.attrition, facts=run_facts)
        shareable = compute_results(
            patients_csv, derivation.attrition, small_cell=cfg.small_cell_threshold, facts=run_facts
        )
    # Site-only: the patients behind the warnings (results files give counts only, spec §5).
    flagged = [(pid, "death with unknown date") for pid in death_unknown]
    from .analysis.patients import cohort_frame

    flagged += list(cohort_frame(patients_csv).attrs.get("warning_patients", []))
    pd.DataFrame.from_records(flagged, columns=["patient_id", "warning"]).to_csv(
        folder / "warnings-patients.csv", index=False
    )
    # results.json is the spec §5 contract with exact figures (the site's own analysis);
    # results-shareable.json shows small cells as "<k" for passing outside the site, and
    # site-summary.json holds the event tables a multi-centre study pools (docs/pooling.md).
    write_results(results, folder / "results.json")
    write_results(shareable, folder / "results-shareable.json")
    from .analysis.site_summary import site_summary, write_site_summary

    summary = site_summary(
        patients_csv,
        derivation.attrition,
        small_cell=cfg.small_cell_threshold,
        site=cfg.site,
        facts=run_facts,
    )
    write_site_summary(summary, folder / "site-summary.json")
    with _progress("rendering report"):
        render_report(
            results,
            patients_csv,
            folder / "report.html",
            tables=tables,
            small_cell=cfg.small_cell_threshold,
            # the default cutoff is one patient's date: the shareable report shows its month only
            run_info={"source": source_system, "cutoff (month)": derivation.cutoff.isoformat()[:7]},
            unmatched=unmatched,
        )
    return {
        "screened": results.get("n_screened"),
        "cohort": results.get("n_cohort"),
        "recurrences": results.get("recurrence", {}).get("n"),
        "cutoff": derivation.cutoff.isoformat(),
        "quarantined": n_quarantined,
    }


def _csv_rows(path: Path) -> int:
    import csv

    with path.open(encoding="utf-8", newline="") as fh:
        return max(0, sum(1 for _ in csv.reader(fh)) - 1)


def run_demo(out: Path, patients: int, seed: int) -> dict[str, Any]:
    """Synthetic LEOPARD cohort → FHIR NDJSON → full pipeline on the embedded default."""
    from .synth import generate

    data = out / "synthetic-fhir"
    with _progress(f"generating {patients} synthetic patients"):
        generate(patients=patients, seed=seed, out=data, fmt="fhir-ndjson")
    req = RunRequest(fhir=[str(data)], out=out)
    summary = run_pipeline(req)
    summary["synthetic_data"] = str(data)
    summary["expected"] = str(data / "expected" / "patients.csv")
    return summary


def explain_patient(req: RunRequest, patient_id: str) -> str:
    cfg = _resolve_config(req)
    matcher = _matcher(cfg)
    sink = EventSink()
    source_system = _read(cfg, matcher, sink, since=None, bulk=req.bulk)
    events, patients, _ = frames(sink)
    if patient_id not in set(events["patient_id"]) | set(patients["patient_id"]):
        raise ConfigError(
            f"patient {patient_id!r} has no records in the {source_system} source",
            fix="check the id against patients.csv",
        )
    from .cohort import explain

    return explain(events, patients, patient_id, cfg.rules, matcher.mappings, sink.run_day)


def warehouse_status(url: str | None, config: Path | None, limit: int) -> list[str]:
    import os

    from .config import load_config
    from .warehouse import Warehouse

    cfg = load_config(config, {"warehouse": url} if url else {}, os.environ)
    if not cfg.warehouse:
        raise ConfigError("no warehouse given", fix="use --warehouse URL or set warehouse in the config")
    import sqlalchemy as sa

    target = sa.engine.make_url(cfg.warehouse)
    db = target.database if target.get_backend_name() == "duckdb" else None
    if db and db != ":memory:" and not Path(db).is_file():  # status only looks: it creates nothing
        raise SourceError(f"warehouse {db} does not exist", fix="check --warehouse, or run a load first")
    from .warehouse.runner import warehouse_url

    try:  # with the password from warehouse_password_env, as a run connects
        runs = Warehouse(warehouse_url(cfg), cfg.warehouse_schema).runs(limit)
    except sa.exc.SQLAlchemyError as exc:
        if "etl_run" in str(exc):
            return ["no runs yet (the warehouse has no leopard-etl tables)"]
        raise SourceError(
            f"cannot read the run log of {target.render_as_string(hide_password=True)}: "
            f"{type(getattr(exc, 'orig', None) or exc).__name__}",
            fix="check the warehouse URL, schema and credentials",
        ) from None
    if not runs:
        return ["no runs yet"]
    lines = []
    for r in runs:
        lines.append(
            f"{r['run_id']}  {r['status']:<8} {r['mode']:<11} {r['started_at']}  "
            f"read={r.get('n_read')} events={r.get('n_events')} quarantined={r.get('n_quarantined')} "
            f"changed={r.get('n_patients_changed')} {r.get('error') or ''}".rstrip()
        )
    return lines
