"""A synthetic OMOP CDM (DuckDB file or PostgreSQL schemas) and the row changes of version 2.

Version 1 is rendered from the first ``N`` patients. Because the renderer numbers
rows per table in patient order, the rows of patient ``N + 1`` are exactly the tail
of the full rendering, so the change inserts them with their own ids; the moved
lesion is an UPDATE of its date and the withdrawn lesion a DELETE of its row.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scheduled_data import MOVE_DAYS, Changes, N
from sqlalchemy import MetaData, Table, create_engine, select

from leopard_etl.sources.omop.cdm import VOCAB_TABLES, cdm_metadata
from leopard_etl.synth import TruthPatient, load_omop_csv, omop_rows
from leopard_etl.synth.omop_io import write_omop_csv, write_omop_duckdb

VERSION = "5.4"
#: lesion rows: table → (id column, date column, source value column)
LESION_TABLES = {
    "condition_occurrence": ("condition_occurrence_id", "condition_start_date", "condition_source_value"),
    "measurement": ("measurement_id", "measurement_date", "measurement_source_value"),
}


@dataclass(frozen=True)
class Cdm:
    url: str
    cdm_schema: str
    vocab_schema: str

    def args(self) -> list[str]:
        return ["--omop", self.url, "--cdm-schema", self.cdm_schema, "--vocab-schema", self.vocab_schema]

    def metadata(self) -> MetaData:
        return cdm_metadata(VERSION, self.cdm_schema, self.vocab_schema)


def build_cdm(patients: list[TruthPatient], folder: Path, pg_url: str | None) -> Cdm:
    """Version 1 as a DuckDB file (``pg_url`` None) or loaded from CSV into fresh PostgreSQL schemas."""
    rows = omop_rows(patients[:N], VERSION)
    if pg_url is None:
        path = folder / "omop.duckdb"  # not cdm.duckdb: the catalog would shadow the schema
        write_omop_duckdb(rows, path, VERSION, "cdm", "vocab")
        return Cdm(f"duckdb:///{path}", "cdm", "vocab")
    suffix = uuid.uuid4().hex[:8]
    cdm = Cdm(pg_url, f"cdm_{suffix}", f"vocab_{suffix}")
    write_omop_csv(rows, folder / "csv", VERSION)
    engine = create_engine(pg_url)
    try:
        with engine.begin() as conn:
            load_omop_csv(conn, folder / "csv", cdm.cdm_schema, cdm.vocab_schema, VERSION)
    finally:
        engine.dispose()
    return cdm


def _lesion_row(conn: Any, md: MetaData, schema: str, patient: TruthPatient, ref: str) -> tuple[Table, int]:
    fact = next(f for f in patient.facts if f.ref == ref)
    for name, (id_col, date_col, value_col) in LESION_TABLES.items():
        table = md.tables[f"{schema}.{name}"]
        found = (
            conn.execute(
                select(table.c[id_col]).where(
                    table.c.person_id == int(patient.patient_id),
                    table.c[value_col] == fact.lesion_id,
                    table.c[date_col] == fact.start,
                )
            )
            .scalars()
            .all()
        )
        if found:
            assert len(found) == 1, (name, fact)
            return table, int(found[0])
    raise AssertionError(f"no OMOP row for lesion {fact}")


def apply_changes(cdm: Cdm, patients: list[TruthPatient], changes: Changes) -> dict[str, Any]:
    """Insert patient N + 1, move one lesion, delete another; returns what changed (source refs)."""
    v1, full = omop_rows(patients[:N], VERSION), omop_rows(patients, VERSION)
    md = cdm.metadata()
    by_id = {p.patient_id: p for p in patients}
    engine = create_engine(cdm.url)
    try:
        with engine.begin() as conn:
            for table in md.sorted_tables:
                old, new = v1.get(table.name, []), full.get(table.name, [])
                if table.name in VOCAB_TABLES:
                    assert old == new
                    continue
                assert new[: len(old)] == old, f"{table.name}: rows of version 1 renumbered"
                extra = [{c.name: r.get(c.name) for c in table.columns} for r in new[len(old) :]]
                if extra:
                    conn.execute(table.insert(), extra)
            moved_table, moved_id = _lesion_row(
                conn, md, cdm.cdm_schema, by_id[changes.moved[0]], changes.moved[1]
            )
            id_col, date_col, _ = LESION_TABLES[moved_table.name]
            old_date = conn.execute(
                select(moved_table.c[date_col]).where(moved_table.c[id_col] == moved_id)
            ).scalar_one()
            new_date = old_date + dt.timedelta(days=MOVE_DAYS)
            conn.execute(
                moved_table.update().where(moved_table.c[id_col] == moved_id).values({date_col: new_date})
            )
            gone_table, gone_id = _lesion_row(
                conn, md, cdm.cdm_schema, by_id[changes.withdrawn[0]], changes.withdrawn[1]
            )
            gone_id_col = LESION_TABLES[gone_table.name][0]
            conn.execute(gone_table.delete().where(gone_table.c[gone_id_col] == gone_id))
    finally:
        engine.dispose()
    return {
        "moved": (f"omop:{moved_table.name}/{moved_id}", new_date),
        "deleted": f"omop:{gone_table.name}/{gone_id}",
    }


def assert_changes_stored(events: dict[str, list[Any]], refs: dict[str, Any]) -> None:
    """The moved row carries its new date in the event store and the deleted row is gone."""
    stored = {e[0]: e for e in events["source_event"]}
    moved_ref, new_date = refs["moved"]
    assert stored[moved_ref][6] == new_date  # column 6: start
    assert refs["deleted"] not in stored
