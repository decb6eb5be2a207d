"""Derived-table loads: idempotent, incremental == full, atomic under SIGKILL, one run at a time."""

from __future__ import annotations

import time

import pandas as pd
import pytest
from warehouse_checks import expected, kill, snapshot, spawn, wait_for
from warehouse_frames import attrition, derived_tables, events_frame, patients_frame, pid
from warehouse_loader import NUMBERS

from leopard_etl.errors import EXIT_LOCK, LockHeldError
from leopard_etl.warehouse import Warehouse
from leopard_etl.warehouse.derived import ATTRITION_STEPS
from leopard_etl.warehouse.schema import DERIVED_TABLES


def _load(wh: Warehouse, numbers: list[int], variant: int) -> set[str]:
    run_id = wh.begin_run("synthetic", "fhir", "full")
    changed = wh.upsert_events(
        events_frame(numbers, variant), patients_frame(numbers, variant), run_id=run_id, full=True
    )
    wh.replace_derived(derived_tables(numbers, variant))
    wh.end_run(run_id, "ok", {"read": len(numbers)}, watermark=f"v{variant}")
    return changed


def test_double_load_gives_identical_state(wh_target: tuple[str, str]) -> None:
    with Warehouse(*wh_target) as wh:
        wh.migrate()
        assert len(_load(wh, NUMBERS, 0)) == len(NUMBERS)
        first = snapshot(wh)
        assert _load(wh, NUMBERS, 0) == set()
        assert snapshot(wh) == first
        frames = derived_tables(NUMBERS, 0)
        assert {k: first[k] for k in DERIVED_TABLES} == expected(frames)
        # floats survive exactly (DuckDB FLOAT would be 4-byte): 0.1 + 0.2 is not 0.3
        outcome = wh.read_table("outcome")
        assert 0.30000000000000004 in set(outcome["prs_months"].dropna())


def _combine(parts: list[dict[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    out = {name: pd.concat([p[name] for p in parts], ignore_index=True) for name in DERIVED_TABLES}
    out["cohort_attrition"] = attrition(list(out["patient"]["exclusion_reason"]))
    return out


def test_incremental_replace_equals_full_reload(wh_target: tuple[str, str]) -> None:
    url, schema = wh_target
    start = list(range(1, 13))
    unchanged = [n for n in start if n not in (2, 5, 7)]
    changed_ids = {pid(n) for n in (2, 5, 7, 13)}  # 2, 5 re-derived; 7 deleted at source; 13 new
    final = _combine([derived_tables(unchanged, 0), derived_tables([2, 5, 13], 1)])
    with Warehouse(url, schema) as wh:
        wh.migrate()
        wh.replace_derived(derived_tables(start, 0))
        counts = wh.replace_derived(derived_tables([2, 5, 13], 1), patient_ids=changed_ids)
        assert counts["patient"] == 3
        incremental = snapshot(wh, DERIVED_TABLES)
    with Warehouse(url, schema + "_full") as wh:
        wh.migrate()
        wh.replace_derived(final)
        assert snapshot(wh, DERIVED_TABLES) == incremental
    assert incremental == expected(final)
    assert pid(7) not in {r[0] for r in incremental["patient"]}
    assert [r[2] for r in incremental["cohort_attrition"]] == [12, 10, 9, 7]


def test_attrition_steps_match_the_classifier() -> None:
    attrition_module = pytest.importorskip("leopard_etl.cohort.attrition")
    assert tuple(attrition_module.STEPS) == ATTRITION_STEPS


def test_bad_frames_fail_before_touching_the_warehouse(tmp_path: object) -> None:
    with Warehouse("duckdb:///:memory:") as wh:
        wh.migrate()
        wh.replace_derived(derived_tables([1, 2], 0))
        before = snapshot(wh, DERIVED_TABLES)
        broken = derived_tables([1, 2], 1)
        broken["outcome"] = broken["outcome"].assign(os_months="twelve")
        with pytest.raises(ValueError, match="os_months"):
            wh.replace_derived(broken)
        missing = {k: v for k, v in derived_tables([1], 1).items() if k != "lesion"}
        with pytest.raises(ValueError, match="lesion"):
            wh.replace_derived(missing)
        assert snapshot(wh, DERIVED_TABLES) == before


@pytest.mark.parametrize("point", ["events:commit", "deleted:patient", "commit"])
def test_sigkill_during_load_keeps_previous_state(wh_target: tuple[str, str], point: str) -> None:
    """The child stores events (one transaction), then replaces derived tables (another); kill it inside."""
    url, schema = wh_target
    with Warehouse(url, schema) as wh:
        wh.migrate()
        _load(wh, NUMBERS, 0)
        before = snapshot(wh)
    child = spawn(url, schema, "load", variant=1, pause=point)
    try:
        assert wait_for(child, "PAUSED") == f"PAUSED {point}"
    finally:
        kill(child)
    with Warehouse(url, schema) as wh:
        after = snapshot(wh)
        assert {k: after[k] for k in DERIVED_TABLES} == {k: before[k] for k in DERIVED_TABLES}
        if point == "events:commit":
            assert after == before
        else:  # events committed; their patients wait in derive_pending for the next run
            assert len(after["derive_pending"]) == len(NUMBERS)
        assert wh.last_watermark("synthetic") == "v0"
        # The next run re-derives every patient the dead run left pending, although its events are now equal.
        assert _load(wh, NUMBERS, 1) == {pid(n) for n in NUMBERS}
        final = snapshot(wh)
        assert {k: final[k] for k in DERIVED_TABLES} == expected(derived_tables(NUMBERS, 1))
        assert final["derive_pending"] == []
        runs = wh.runs(10)
        assert [r["status"] for r in runs[:3]] == ["ok", "failed", "ok"]
        assert "abandoned" in runs[1]["error"]
        assert wh.last_watermark("synthetic") == "v1"


def test_second_run_is_refused_while_the_lock_is_held(wh_target: tuple[str, str]) -> None:
    url, schema = wh_target
    holder = spawn(url, schema, "hold")
    try:
        wait_for(holder, "LOCKED")
        with Warehouse(url, schema) as wh, pytest.raises(LockHeldError), wh.lock():
            pass
        other = spawn(url, schema, "try-lock")
        out, _ = other.communicate(timeout=60)
        assert other.returncode == EXIT_LOCK, out
        assert out.startswith("LockHeldError")
    finally:
        kill(holder)
    # The killed holder's lock goes with it (PostgreSQL notices the closed session shortly).
    with Warehouse(url, schema) as wh:
        for _ in range(100):
            try:
                with wh.lock():
                    break
            except LockHeldError:
                time.sleep(0.1)
        else:
            pytest.fail("lock of a killed process was never released")
