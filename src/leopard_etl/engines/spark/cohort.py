"""The cohort rules on Spark: one data-wide cutoff, then the unchanged ``cohort.derive`` per patient group.

Patients are independent under the rules of spec §3 once the cutoff is fixed (the default run's
partitioned derivation rests on the same fact, :mod:`leopard_etl.partitioned`), so:

1. the cutoff is the spec §3.12 v2 default computed by the one SQL text of it
   (:func:`leopard_etl.spool.cutoff_sql`, run by Spark SQL), or the configured one;
2. only patients who can be screened (an event in a group that screens: nsclc, ICD C34) are
   derived — every other patient yields no row of any output;
3. their events and patient records are grouped by a hash of the patient id into tasks of about
   ``patients_per_task`` patients (``groupBy(bucket).cogroup(...).applyInArrow``): each task builds
   the frames the default run builds and calls :func:`leopard_etl.cohort.derive` with the cutoff fixed;
4. the (small) derivations come back to the driver and are merged by
   :func:`leopard_etl.cohort.derive.merge_derivations`; the drug-route counts, which the default run
   takes over every event, are counted over every event here too.
"""

from __future__ import annotations

import datetime as dt
import math
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

import pandas as pd
import pyarrow as pa

from ...cohort.derive import Derivation, derive, merge_derivations
from ...cohort.timeline import NSCLC, NSCLC_ICD, _group_bits
from ...config import Rules
from ...events import EVENT_COLUMNS, PATIENT_COLUMNS
from ...mappings import Mappings
from ...spool import _records_frame, cutoff_sql, latest_date
from .session import sql_conf

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["derive_on_spark", "run_cutoff", "screening_groups"]

#: tables to keep: name → columns (None: all); None keeps every table whole
Tables = Mapping[str, Sequence[str] | None] | None


def run_cutoff(
    spark: SparkSession, events: DataFrame, patients: DataFrame, rules: Rules, run_day: dt.date | None
) -> dt.date:
    """The configured cutoff, else the spec §3.12 v2 default over the events (``spool.cutoff_sql``)."""
    if rules.cutoff is not None:
        return rules.cutoff
    events.createOrReplaceTempView("leopard_cutoff_events")
    patients.createOrReplaceTempView("leopard_cutoff_patients")
    sql = cutoff_sql(
        "leopard_cutoff_events", "leopard_cutoff_patients", run_day, rules.small_cell_excludes_icd
    )
    # the SQL quotes "end" and "groups" as identifiers (DuckDB / PostgreSQL): Spark's ANSI option for it
    with sql_conf(
        spark,
        spark__sql__ansi__enabled="true",
        spark__sql__ansi__doubleQuotedIdentifiers="true",
    ):
        rows = [tuple(r) for r in spark.sql(sql).collect()]
    return latest_date(rows, run_day)


def screening_groups(groups: Sequence[str], mappings: Mappings) -> list[str]:
    """The ``groups`` strings (as events carry them) whose records can screen a patient (timeline bits)."""
    bits = _group_bits(pd.Series(list(groups), dtype=object), mappings)
    return [g for g, b in zip(groups, bits.tolist(), strict=True) if b & (NSCLC | NSCLC_ICD)]


def _bucket_task(
    rules: Rules,
    mappings: Mappings,
    source_system: str,
    tables: Tables,
    order: Sequence[str],
) -> Callable[[pa.Table, pa.Table], pa.Table]:
    """The function one task runs on a group of patients: the default run's frames, ``derive``, pickled."""

    def run(events: pa.Table, patients: pa.Table) -> pa.Table:
        if events.num_rows:
            events = events.sort_by([(c, "ascending") for c in order])
        if patients.num_rows:
            patients = patients.sort_by([(c, "ascending") for c in order])
        ev = _records_frame(_cast(events, EVENT_COLUMNS, _EVENT_TYPES))
        pts = _records_frame(_cast(patients, PATIENT_COLUMNS, _PATIENT_TYPES))
        part = _keep(derive(ev, pts, rules, mappings, source_system), tables)
        bucket = events.column("bucket")[0].as_py() if events.num_rows else -1
        return pa.table(
            {"bucket": pa.array([bucket], pa.int32()), "payload": pa.array([pickle.dumps(part)], pa.binary())}
        )

    return run


def _keep(part: Derivation, tables: Tables) -> Derivation:
    """Only the tables (and columns) asked for travel back to the driver (patients.csv always does)."""
    if tables is not None:
        part.tables = {
            name: frame if tables[name] is None else frame[list(tables[name] or ())]
            for name, frame in part.tables.items()
            if name in tables
        }
    return part


_EVENT_TYPES = {"start": pa.date32(), "end": pa.date32(), "fractions": pa.int64(), "dose_cgy": pa.float64()}
_PATIENT_TYPES = {"birth_date": pa.date32(), "death_date": pa.date32(), "deceased": pa.bool_()}


def _cast(table: pa.Table, columns: Sequence[str], types: Mapping[str, pa.DataType]) -> pa.Table:
    """The spool's Arrow types (plain strings; Spark may send large strings)."""
    arrays = []
    for name in columns:
        col = table.column(name)
        arrays.append(col.cast(types.get(name, pa.string())))
    return pa.Table.from_arrays(arrays, names=list(columns))


def derive_on_spark(
    spark: SparkSession,
    events: DataFrame,
    patients: DataFrame,
    rules: Rules,
    mappings: Mappings,
    source_system: str,
    cutoff: dt.date,
    *,
    order: Sequence[str],
    patients_per_task: int,
    tables: Tables = None,
) -> Derivation:
    """:func:`leopard_etl.cohort.derive` of every screenable patient, in Spark tasks, merged on the driver.

    ``order`` names the columns that give the read order of events and patient records (the default
    run's arrival order: ties on a date keep it in the rules).
    """
    from pyspark.sql import functions as F

    fixed = rules.model_copy(update={"cutoff": cutoff})
    # one pass: the distinct group strings (few) and the drug-route counts
    combos = events.groupBy("groups", "route").count().collect()
    groups = sorted({r["groups"] for r in combos if r["groups"]})
    screening = screening_groups(groups, mappings)
    screened = events.where(F.col("groups").isin(screening)).select("patient_id").distinct()
    n_screened = screened.count() if screening else 0
    parts: list[Derivation] = []
    empty_events = _records_frame(pa.Table.from_pylist([], schema=_schema(EVENT_COLUMNS, _EVENT_TYPES)))
    empty_patients = _records_frame(pa.Table.from_pylist([], schema=_schema(PATIENT_COLUMNS, _PATIENT_TYPES)))
    # one empty part: every table with its columns even when nobody is screened (the default run's
    # last, possibly empty, partition does the same)
    empty = derive(empty_events, empty_patients, fixed, mappings, source_system)
    parts.append(_keep(empty, tables))
    if n_screened:
        n_buckets = max(1, math.ceil(n_screened / max(1, patients_per_task)))
        bucket = F.pmod(F.xxhash64("patient_id"), F.lit(n_buckets)).cast("int")
        ev = events.join(screened, "patient_id", "left_semi").withColumn("bucket", bucket)
        pts = patients.join(screened, "patient_id", "left_semi").withColumn("bucket", bucket)
        task = _bucket_task(fixed, mappings, source_system, tables, order)
        # both sides come from one read: Spark's self-join check would see ambiguous columns where
        # the cogroup only pairs groups by bucket
        with sql_conf(spark, spark__sql__analyzer__failAmbiguousSelfJoin="false"):
            out = (
                ev.groupBy("bucket")
                .cogroup(pts.groupBy("bucket"))
                .applyInArrow(task, "bucket int, payload binary")
            )
            parts.extend(pickle.loads(row.payload) for row in out.collect())
    merged = merge_derivations(parts, cutoff)
    # the default run counts drug routes over every event it derives (all patients): so do we
    routes: dict[str, int] = {}
    for r in combos:
        if r["route"] is not None:
            routes[str(r["route"])] = routes.get(str(r["route"]), 0) + int(r["count"])
    merged.facts.drug_routes = dict(sorted(routes.items(), key=lambda kv: (-kv[1], kv[0])))
    return merged


def _schema(columns: Sequence[str], types: Mapping[str, pa.DataType]) -> pa.Schema:
    return pa.schema([(c, types.get(c, pa.string())) for c in columns])
