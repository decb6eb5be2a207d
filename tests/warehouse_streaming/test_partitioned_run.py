"""The warehouse run derives the stored events in patient partitions: same warehouse, same files.

The reference is the run as it was before it streamed (in-memory sink → ``upsert_events``
→ ``load_events`` → one ``derive`` → ``replace_derived``), the behaviour to keep. A full run
with the data-wide default cutoff, forced into many partitions and given a single one, must
leave every table (run ids aside) and patients.csv identical to the reference; so must a
partitioned incremental run that changes, deletes and drops records of some patients (the
path that replaces only the changed patients' rows). Both engines.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from leopard_etl.cohort import derive
from leopard_etl.config import RunConfig, load_config
from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.pipeline import execute, frames, write_outputs
from leopard_etl.sources.fhir import read_fhir
from leopard_etl.warehouse import Warehouse
from leopard_etl.warehouse.schema import DERIVED_TABLES

MANY = 600  # stored events per partition: the 160 patients' ~8,000 events make over ten partitions
ONE = 10**9
TABLES = (*DERIVED_TABLES, "source_event", "source_patient", "derive_pending", "quarantine")
Reader = Callable[..., str]

MATCHER = CodeMatcher(load_mappings())


def _config(data: Path, target: tuple[str, str], out: Path, cutoff: dt.date | None) -> RunConfig:
    url, schema = target
    overrides: dict[str, Any] = {
        "fhir": [str(data)],
        "out": out,
        "warehouse": url,
        "warehouse_schema": schema,
    }
    if cutoff is not None:
        overrides["rules"] = {"cutoff": cutoff}
    return load_config(None, overrides, {})


def _read_all(cfg: RunConfig, matcher: CodeMatcher, sink: EventSink, *, since: str | None, bulk: bool) -> str:
    read_fhir(cfg.fhir[0], matcher, sink)
    sink.watermark = "w1"
    return "fhir"


def _read_changes(later: Path, chosen: set[str], vanished: str, deleted: str) -> Reader:
    """An incremental read: ``chosen`` patients' records as they are later, one record seen that no
    longer yields anything (``vanished``) and one the server reports deleted."""

    def read(cfg: RunConfig, matcher: CodeMatcher, sink: EventSink, *, since: str | None, bulk: bool) -> str:
        assert since == "w1"
        whole = EventSink()
        read_fhir(str(later), matcher, whole)
        for e in whole.events:
            if e.patient_id in chosen:
                sink.event(e)
                sink.touched.add(e.source)
        for p in whole.patients:
            if p.patient_id in chosen:
                sink.patient(p)
                sink.touched.add(p.source)
        sink.touched.add(vanished)
        sink.deleted.append(deleted)
        sink.stats.read = sink.stats.in_scope = len(sink.touched)
        sink.watermark = "w2"
        return "fhir"

    return read


def _reference_run(cfg: RunConfig, read: Reader, since: str | None) -> None:
    """The warehouse run as it was before it streamed: everything in memory, one derivation."""
    with Warehouse(str(cfg.warehouse), cfg.warehouse_schema) as wh:
        wh.migrate()
        run_id = wh.begin_run("reference", "fhir", "full" if since is None else "incremental")
        sink = EventSink()
        sink.run_day = dt.date.today()  # as every run: dates after the day of the run are quarantined
        sink.cutoff = cfg.rules.cutoff
        read(cfg, MATCHER, sink, since=since, bulk=False)
        wh.write_quarantine(run_id, sink.quarantined)
        events, patients, quarantine = frames(sink)
        kept = set(events["source"]) | set(patients["source"])
        deleted = (
            [] if since is None else sorted({r for r in sink.touched if r not in kept} | set(sink.deleted))
        )
        changed = wh.upsert_events(events, patients, run_id=run_id, full=since is None, deleted=deleted)
        all_events, all_patients = wh.load_events()
        derivation = derive(all_events, all_patients, cfg.rules, MATCHER.mappings, "fhir", dt.date.today())
        if since is not None and set(wh.read_table("outcome")["cutoff"]) == {derivation.cutoff}:
            wh.replace_derived(derivation.tables, patient_ids=changed)
        else:
            wh.replace_derived(derivation.tables)
        write_outputs(cfg, derivation, quarantine, "fhir")
        wh.end_run(run_id, "ok", {}, watermark=sink.watermark)


def _cell(value: Any) -> Any:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, float):
        return round(value, 9)
    return value.item() if hasattr(value, "item") else value


def _state(target: tuple[str, str]) -> dict[str, list[tuple[Any, ...]]]:
    """Every data table as sorted rows of plain values, run ids left out (they name the run)."""
    with Warehouse(*target) as wh:
        state = {}
        for name in TABLES:
            df = wh.read_table(name)
            df = df[[c for c in df.columns if c != "run_id"]]
            rows = [tuple(_cell(v) for v in r) for r in df.itertuples(index=False, name=None)]
            state[name] = sorted(rows, key=lambda r: tuple((v is None, str(v)) for v in r))
    return state


def _partitions(target: tuple[str, str], partition_rows: int) -> int:
    with Warehouse(*target) as wh:
        return sum(1 for _ in wh.event_partitions(partition_rows))


def test_partitioned_full_run_stores_and_writes_what_one_derivation_did(
    fhir_data: tuple[Path, Path], make_warehouse: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    first, _ = fhir_data
    targets = {name: make_warehouse(name) for name in ("many", "one", "reference")}
    cfgs = {name: _config(first, t, tmp_path / name, None) for name, t in targets.items()}

    many = execute(
        cfgs["many"], MATCHER, incremental=False, bulk=False, read=_read_all, partition_rows=MANY
    )
    one = execute(
        cfgs["one"], MATCHER, incremental=False, bulk=False, read=_read_all, partition_rows=ONE
    )
    _reference_run(cfgs["reference"], _read_all, None)

    assert _partitions(targets["many"], MANY) >= 10
    assert _partitions(targets["one"], ONE) == 1
    assert many["cutoff"] == one["cutoff"]
    assert many["patients_changed"] == one["patients_changed"] == 160
    expected = _state(targets["reference"])
    assert len(expected["source_event"]) > 5_000 and len(expected["patient"]) > 100
    assert len(expected["quarantine"]) > 0
    assert expected["derive_pending"] == []
    for name in ("many", "one"):
        got = _state(targets[name])
        for table in TABLES:
            assert got[table] == expected[table], f"{name}: {table}"
        csv = (tmp_path / name / "patients.csv").read_bytes()
        assert csv == (tmp_path / "reference" / "patients.csv").read_bytes()


def test_partitioned_incremental_run_replaces_the_changed_patients_as_before(
    fhir_data: tuple[Path, Path], make_warehouse: Callable[[str], tuple[str, str]], tmp_path: Path
) -> None:
    first, later = fhir_data
    whole = EventSink()
    read_fhir(str(first), MATCHER, whole)
    ids = sorted({e.patient_id for e in whole.events})
    chosen = set(ids[:12])
    untouched = [e for e in whole.events if e.patient_id not in chosen]
    vanished, deleted = untouched[0].source, untouched[-1].source
    changes = _read_changes(later, chosen, vanished, deleted)
    cutoff = dt.date(2024, 6, 30)  # fixed, so the incremental run replaces only the changed patients

    states, summaries = {}, {}
    for name, rows in (("many", MANY), ("reference", None)):
        target = make_warehouse(name)
        cfg = _config(first, target, tmp_path / name, cutoff)
        if rows is None:
            _reference_run(cfg, _read_all, None)
            _reference_run(cfg, changes, "w1")
        else:
            execute(
                cfg, MATCHER, incremental=False, bulk=False, read=_read_all, partition_rows=rows
            )
            states["first"] = _state(target)
            summaries[name] = execute(
                cfg, MATCHER, incremental=True, bulk=False, read=changes, partition_rows=rows
            )
        states[name] = _state(target)

    affected = chosen | {untouched[0].patient_id, untouched[-1].patient_id}
    assert summaries["many"]["mode"] == "incremental" and summaries["many"]["since"] == "w1"
    assert summaries["many"]["patients_changed"] == len(affected)
    stored = {row[0] for row in states["many"]["source_event"]}
    assert vanished not in stored and deleted not in stored
    assert states["many"]["source_event"] != states["first"]["source_event"]
    for table in TABLES:
        assert states["many"][table] == states["reference"][table], table
    csv = (tmp_path / "many" / "patients.csv").read_bytes()
    assert csv == (tmp_path / "reference" / "patients.csv").read_bytes()
