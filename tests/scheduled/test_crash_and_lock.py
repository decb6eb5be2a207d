"""SIGKILL at write checkpoints, and a second run while the first holds the lock (operations.md).

A scheduled OMOP run (``--incremental``: a full re-read) is stopped at a checkpoint
through ``LEOPARD_PAUSE_AT`` and killed there, several times in a row. After each
kill the derived tables are the previous complete state (or, past the derived
commit, the new one); the next run marks the killed runs failed, completes, and
leaves exactly what a clean run of the same data leaves — including patients whose
events a killed run stored but never derived (``derive_pending``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scheduled_cli import (
    cli,
    cli_ok,
    kill,
    patients_csv,
    reference_run,
    run_args,
    runs,
    spawn,
    state,
    store,
    wait_paused,
)
from scheduled_data import changed, truth
from scheduled_omop import apply_changes, assert_changes_stored, build_cdm

from leopard_etl.errors import EXIT_LOCK

#: (checkpoint, are the derived tables already the new state when killed there?)
SEQUENCES = {
    # ends killed between the two transactions: the final run must derive the pending patients
    "duckdb": [("read", False), ("deleted:lesion", False), ("events:committed", False)],
    "postgresql": [("events:commit", False), ("commit", False), ("committed", True)],
}


def _refused_while_locked(args: list[str], target: Any) -> None:
    second = cli(args, target)
    assert second.returncode == EXIT_LOCK
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("leopard-etl: error:") and "lock" in lines[0]
    assert "Traceback" not in second.stderr


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_killed_runs_leave_a_complete_state_and_the_next_run_recovers(
    engine: str, make_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patients = truth()
    _, changes = changed(patients)
    cdm = build_cdm(patients, tmp_path, None)
    target = make_target(engine, "crash")
    args = run_args(cdm.args(), target, tmp_path / "out", "--incremental")
    cli_ok(args, target)
    previous, previous_store = state(target), store(target)
    refs = apply_changes(cdm, patients, changes)
    clean = make_target(engine, "clean")
    reference_run(run_args(cdm.args(), clean, tmp_path / "clean"), clean, monkeypatch)
    expected, expected_store = state(clean), store(clean)
    assert expected != previous

    sequence = SEQUENCES[engine]
    for n, (point, new_state) in enumerate(sequence):
        proc = spawn(args, target, point)
        try:
            wait_paused(proc, point)
            if n == 0:
                _refused_while_locked(args, target)
        finally:
            kill(proc)
        assert state(target) == (expected if new_state else previous), f"killed at {point}"
        if point in ("read", "events:commit") and n == 0:
            assert store(target) == previous_store
        if point == "events:committed":
            assert store(target) == expected_store
            with target.open() as wh:
                pending = set(wh.read_table("derive_pending")["patient_id"])
            assert pending == {changes.new_patient, changes.moved[0], changes.withdrawn[0]}
        log = runs(target)
        assert len(log) == n + 2  # the refused run never opened a run
        assert log[-1]["status"] == "running"
        assert all(r["status"] == "failed" and "abandoned" in r["error"] for r in log[1:-1])

    done = cli_ok(args, target)
    assert state(target) == expected
    assert store(target) == expected_store
    assert_changes_stored(expected_store, refs)
    assert patients_csv(tmp_path / "out") == patients_csv(tmp_path / "clean")
    log = runs(target)
    assert [r["status"] for r in log] == ["ok"] + ["failed"] * len(sequence) + ["ok"]
    caught_up = 0 if sequence[-1][1] else 3
    assert log[-1]["n_patients_changed"] == caught_up
    with target.open() as wh:
        assert wh.read_table("derive_pending").empty

    status = cli(["status", "--warehouse", target.url], target)
    assert status.returncode == 0 and done.returncode == 0
    lines = status.stdout.splitlines()
    assert len(lines) == len(log)
    assert (
        lines[0].startswith(log[-1]["run_id"]) and " ok " in lines[0] and f"changed={caught_up}" in lines[0]
    )
    assert f"read={log[-1]['n_read']}" in lines[0] and log[-1]["n_read"] > 0
    assert all(" failed " in line and "abandoned" in line for line in lines[1:-1])
    assert " ok " in lines[-1]
