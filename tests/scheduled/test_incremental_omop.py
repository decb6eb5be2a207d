"""OMOP incremental run: a full re-read with change detection, deletions included (runner fix).

An OMOP CDM has no reliable change column, so ``--incremental`` re-reads everything
and the event store's content hashes find what changed. A row deleted at the source
must disappear from the warehouse even though the run is "incremental".

Here: a PostgreSQL CDM into a PostgreSQL warehouse. The DuckDB CDM goes through the
same changes in test_crash_and_lock.py, whose final (incremental) run is compared
with a clean full load too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scheduled_cli import cli_ok, patients_csv, reference_run, run_args, runs, state, store
from scheduled_data import changed, truth
from scheduled_omop import apply_changes, assert_changes_stored, build_cdm

pytestmark = pytest.mark.postgres


def test_incremental_after_row_changes_equals_full_load(
    pg_url: str, make_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patients = truth()
    _, changes = changed(patients)
    cdm = build_cdm(patients, tmp_path, pg_url)
    a = make_target("postgresql", "omop_inc")
    b = make_target("postgresql", "omop_full")

    cli_ok(run_args(cdm.args(), a, tmp_path / "a1", "--incremental"), a)
    before = state(a)
    refs = apply_changes(cdm, patients, changes)
    cli_ok(run_args(cdm.args(), a, tmp_path / "a2", "--incremental"), a)
    reference_run(run_args(cdm.args(), b, tmp_path / "b"), b, monkeypatch)

    assert state(a) == state(b)
    events = store(a)
    assert events == store(b)
    assert patients_csv(tmp_path / "a2") == patients_csv(tmp_path / "b")
    assert patients_csv(tmp_path / "a2") != patients_csv(tmp_path / "a1")

    # the three changes reached the store and the derived tables
    assert_changes_stored(events, refs)
    assert changes.new_patient not in {r[0] for r in before["patient"]}
    assert changes.new_patient in {r[0] for r in state(a)["patient"]}
    assert before["lesion"] != state(a)["lesion"]

    first, second = runs(a)
    assert (first["mode"], second["mode"]) == ("incremental", "incremental")
    assert second["status"] == "ok" and second["n_patients_changed"] == 3
