"""One run on Spark: read (FHIR files or OMOP tables), cutoff, derivation — then the default writers.

:func:`run_spark` returns what :func:`leopard_etl.pipeline.write_outputs` takes (a
:class:`~leopard_etl.cohort.Derivation`, the quarantine CSV, the source system, the read counts),
so the outputs are written by the same code as on the default engine
(:func:`leopard_etl.pipeline.execute_spark` is ``run --engine spark``).
"""

from __future__ import annotations

import csv
import datetime as dt
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ...errors import ConfigError
from ...events import QUARANTINE_CSV_COLUMNS, Quarantined, ReadStats, quarantine_row
from ...mappings import CodeMatcher
from .settings import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from ...cohort.derive import Derivation
    from ...config import Rules

__all__ = ["RunLike", "SparkRun", "run_spark"]

log = logging.getLogger("leopard_etl")


class RunLike(Protocol):
    """The fields of :class:`leopard_etl.config.RunConfig` a Spark run reads."""

    fhir: list[str]
    omop: str | None
    cdm_schema: str | None
    vocab_schema: str | None
    rules: Rules


@dataclass
class SparkRun:
    """A Spark run's result, in the shapes the default writers take."""

    derivation: Derivation
    #: record counts of the read (``read = in_scope + quarantined + out_of_scope``)
    stats: ReadStats
    #: quarantine.csv (spec §5 v2 columns), as the default spooled run writes it
    quarantine: Path
    source_system: str
    #: events derived (after the read, before the cutoff)
    n_events: int
    #: unmatched-code rows a reader counted itself (OMOP aggregates them in SQL)
    unmatched_extra: list[dict[str, object]] = field(default_factory=list)
    #: seconds per step (read, cutoff, derive)
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def n_quarantined(self) -> int:
        return self.stats.quarantined


def run_spark(
    cfg: RunLike,
    matcher: CodeMatcher,
    *,
    workdir: Path,
    settings: SparkSettings | None = None,
    run_day: dt.date | None = None,
    tables: Mapping[str, Sequence[str] | None] | None = None,
    spark: SparkSession | None = None,
) -> SparkRun:
    """Read ``cfg.fhir`` (files) or ``cfg.omop`` (``spark:DB`` / ``parquet:/path``) on Spark and derive.

    ``workdir`` (a folder of the driver) receives quarantine.csv (and, for OMOP, the spool of the
    screened persons' rows). ``run_day`` is the day of the run (default today: spec §3.12 v2 bounds);
    ``tables`` keeps only some derived tables / columns (``pipeline.REPORT_TABLES`` for a file run);
    ``spark`` is an existing session (default: the active one, else one from ``settings``).
    """
    from .session import spark_session

    if bool(cfg.fhir) == bool(cfg.omop):
        raise ConfigError(
            "give exactly one source", fix="use --fhir PATH ... or --omop spark:DB | parquet:/path"
        )
    settings = settings or SparkSettings.model_validate({})
    run_day = run_day or dt.date.today()
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    session = spark or spark_session(settings)
    if cfg.fhir:
        return _run_fhir(session, cfg, matcher, workdir, settings, run_day, tables)
    return _run_omop(session, cfg, matcher, workdir, settings, run_day, tables)


def _run_fhir(
    spark: SparkSession,
    cfg: RunLike,
    matcher: CodeMatcher,
    workdir: Path,
    settings: SparkSettings,
    run_day: dt.date,
    tables: Mapping[str, Sequence[str] | None] | None,
) -> SparkRun:
    from .cohort import derive_on_spark, run_cutoff
    from .fhir import read_fhir_spark

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    read = read_fhir_spark(spark, list(cfg.fhir), matcher, run_day=run_day, cutoff=cfg.rules.cutoff)
    try:
        quarantine = _write_quarantine(workdir / "quarantine.csv", read.quarantined)
        n_events = read.n_events
        timings["read"] = time.perf_counter() - t0
        timings.update({f"read: {k}": v for k, v in read.timings.items()})
        t0 = time.perf_counter()
        cutoff = run_cutoff(spark, read.events, read.patients, cfg.rules, run_day)
        timings["cutoff"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        derivation = derive_on_spark(
            spark,
            read.events,
            read.patients,
            cfg.rules,
            matcher.mappings,
            "fhir",
            cutoff,
            order=("rank", "block", "line", "sub"),
            patients_per_task=settings.patients_per_task,
            tables=tables,
        )
        timings["derive"] = time.perf_counter() - t0
    finally:
        read.release()
    return SparkRun(derivation, read.stats, quarantine, "fhir", n_events, timings=timings)


def _run_omop(
    spark: SparkSession,
    cfg: RunLike,
    matcher: CodeMatcher,
    workdir: Path,
    settings: SparkSettings,
    run_day: dt.date,
    tables: Mapping[str, Sequence[str] | None] | None,
) -> SparkRun:
    import shutil

    import pyarrow as pa
    import pyarrow.dataset as ds

    from ...spool import EVENT_SCHEMA, PATIENT_SCHEMA, EventSpool
    from .cohort import derive_on_spark, run_cutoff
    from .omop import read_omop_spark

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    spool = EventSpool(workdir / "omop-spool")
    spool.run_day, spool.cutoff = run_day, cfg.rules.cutoff
    assert cfg.omop is not None
    read_omop_spark(spark, cfg.omop, matcher, spool, cdm_schema=cfg.cdm_schema, vocab_schema=cfg.vocab_schema)
    spool.close()
    quarantine = workdir / "quarantine.csv"
    shutil.copyfile(spool.quarantine_csv, quarantine)

    def frame(kind: str, schema: pa.Schema) -> Any:
        folder = spool.folder / kind  # the spool's spill files (seq = the order the reader gave them)
        table = ds.dataset(folder).to_table() if folder.is_dir() else pa.Table.from_pylist([], schema=schema)
        return spark.createDataFrame(table.cast(schema))

    from pyspark.sql import Window
    from pyspark.sql import functions as F

    events = frame("events", EVENT_SCHEMA)
    last = Window.partitionBy("patient_id").orderBy(F.col("seq").desc())
    patients = (
        frame("patients", PATIENT_SCHEMA)
        .withColumn("_last", F.row_number().over(last))
        .where("_last = 1")
        .drop("_last")
    )
    timings["read"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cutoff = run_cutoff(spark, events, patients, cfg.rules, run_day)
    timings["cutoff"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    derivation = derive_on_spark(
        spark,
        events,
        patients,
        cfg.rules,
        matcher.mappings,
        "omop",
        cutoff,
        order=("seq",),
        patients_per_task=settings.patients_per_task,
        tables=tables,
    )
    timings["derive"] = time.perf_counter() - t0
    unmatched = list(getattr(spool, "unmatched_codes", []) or [])
    return SparkRun(derivation, spool.stats, quarantine, "omop", spool.n_events, unmatched, timings)


def _write_quarantine(path: Path, rows: Iterable[Quarantined]) -> Path:
    """quarantine.csv as the default spooled run writes it (``EventSpool``: spec §5 v2 column order)."""
    with path.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(QUARANTINE_CSV_COLUMNS)
        for q in rows:
            writer.writerow(quarantine_row(q))
    return path
