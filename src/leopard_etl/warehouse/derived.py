"""Replace the derived tables atomically: readers see the previous complete state or the new one.

Full mode deletes and re-inserts every derived table inside one transaction — on
both engines a transaction is atomic and invisible until commit, and unlike
rename-swapping it keeps grants, views and comments on the tables. Incremental mode
replaces only the rows of the re-derived patients, then recomputes the cohort-wide
``cohort_attrition`` from the merged ``patient`` table, since a partial derivation
only knows its own patients' attrition. Frames are converted and checked before the
transaction starts, so bad input never leaves a half-written warehouse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import pandas as pd
import pyarrow as pa
from sqlalchemy import Connection

from leopard_etl.warehouse.bulk import bulk_insert, drop_stage, stage, to_arrow
from leopard_etl.warehouse.schema import DERIVED_TABLES, METADATA

__all__ = ["ATTRITION_STEPS", "PATIENT_TABLES", "check_frames", "recount_attrition", "replace_tables"]

Qualify = Callable[[str], str]
Checkpoint = Callable[[str], None]

#: (step, exclusion reason of a patient failing it) in spec §3.6 order;
#: the same as leopard_etl.cohort.attrition.STEPS (a test checks it).
ATTRITION_STEPS: tuple[tuple[str, str], ...] = (
    ("nsclc", "nsclc"),
    ("stage_iii", "not_stage_iii"),
    ("crt", "no_crt"),
    ("durvalumab", "no_durvalumab"),
)

PATIENT_TABLES = tuple(t for t in DERIVED_TABLES if "patient_id" in METADATA.tables[t].c)


def check_frames(tables: Mapping[str, pd.DataFrame], required: Iterable[str]) -> None:
    unknown = sorted(set(tables) - set(DERIVED_TABLES))
    if unknown:
        raise ValueError(f"not derived tables: {unknown} (known: {list(DERIVED_TABLES)})")
    missing = [t for t in required if t not in tables]
    if missing:
        raise ValueError(f"derived tables missing from the load: {missing}")
    for name, df in tables.items():
        extra = sorted(set(df.columns) - {c.name for c in METADATA.tables[name].columns})
        if extra:
            raise ValueError(f"table {name!r}: columns not in the schema: {extra}")


def recount_attrition(conn: Connection, q: Qualify) -> None:
    reasons: list[str] = []
    selects = []
    for no, (step, reason) in enumerate(ATTRITION_STEPS, start=1):
        reasons.append(reason)
        failed = ", ".join(f"'{r}'" for r in reasons)
        selects.append(
            f"SELECT {no} AS step_no, '{step}' AS step, COUNT(*) AS n FROM {q('patient')}"
            f" WHERE exclusion_reason IS NULL OR exclusion_reason NOT IN ({failed})"
        )
    conn.exec_driver_sql(f"DELETE FROM {q('cohort_attrition')}")
    union = " UNION ALL ".join(selects)
    conn.exec_driver_sql(f"INSERT INTO {q('cohort_attrition')} (step_no, step, n) {union}")


def replace_tables(
    conn: Connection,
    q: Qualify,
    tables: Mapping[str, pd.DataFrame],
    patient_ids: Iterable[str] | None,
    checkpoint: Checkpoint,
) -> dict[str, int]:
    """Write the derived frames inside the caller's transaction; returns rows inserted per table."""
    if patient_ids is None:
        check_frames(tables, DERIVED_TABLES)
        data = {name: to_arrow(tables[name], METADATA.tables[name]) for name in DERIVED_TABLES}
        counts = {}
        for name in DERIVED_TABLES:
            conn.exec_driver_sql(f"DELETE FROM {q(name)}")
            checkpoint(f"deleted:{name}")
            counts[name] = bulk_insert(conn, q(name), data[name])
            checkpoint(f"inserted:{name}")
        conn.exec_driver_sql(f"DELETE FROM {q('derive_pending')}")
        return counts

    check_frames(tables, PATIENT_TABLES)
    ids = sorted(set(patient_ids))
    data = {}
    for name in PATIENT_TABLES:
        df = tables[name]
        data[name] = to_arrow(df[df["patient_id"].isin(ids)] if len(df) else df, METADATA.tables[name])
    ids_stage = stage(conn, "_leopard_changed", pa.table({"patient_id": pa.array(ids, pa.string())}))
    chosen = f"patient_id IN (SELECT patient_id FROM {ids_stage})"
    try:
        counts = {}
        for name in PATIENT_TABLES:
            conn.exec_driver_sql(f"DELETE FROM {q(name)} WHERE {chosen}")
            checkpoint(f"deleted:{name}")
            counts[name] = bulk_insert(conn, q(name), data[name])
            checkpoint(f"inserted:{name}")
        recount_attrition(conn, q)
        checkpoint("inserted:cohort_attrition")
        conn.exec_driver_sql(f"DELETE FROM {q('derive_pending')} WHERE {chosen}")
    finally:
        drop_stage(conn, ids_stage)
    return counts
