"""FHIR incremental run against a real server (sekmet) equals a full load of the changed server.

Between the two runs the server gets a new patient, a lesion Condition with a new
onset date, and a lesion Condition marked entered-in-error (PUT), so the incremental
read (``_lastUpdated=gt<watermark>``) sees an insert, an update and a withdrawal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from scheduled_cli import cli_ok, patients_csv, reference_run, run_args, runs, state, store
from scheduled_data import N, changed, resource, server_resources, truth

pytestmark = [pytest.mark.fhir_server, pytest.mark.postgres]


def test_incremental_read_of_server_changes_equals_full_load(
    sekmet: Any, make_target: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    patients = truth()
    version2, changes = changed(patients)
    sekmet.transaction(server_resources(patients[:N]))
    a = make_target("duckdb", "fhir_inc")
    b = make_target("postgresql", "fhir_full")
    source = ["--fhir", sekmet.base_url]

    cli_ok(run_args(source, a, tmp_path / "a1", "--incremental"), a)
    before = state(a)
    moved = resource(version2, *changes.moved)
    withdrawn = resource(version2, *changes.withdrawn)
    assert withdrawn["verificationStatus"]["coding"][0]["code"] == "entered-in-error"
    assert moved != resource(patients, *changes.moved)
    sekmet.transaction([moved, withdrawn, *server_resources(version2[N:])])
    cli_ok(run_args(source, a, tmp_path / "a2", "--incremental"), a)
    reference_run(run_args(source, b, tmp_path / "b"), b, monkeypatch)

    after = state(a)
    assert after == state(b)
    events = store(a)
    assert events == store(b)
    assert patients_csv(tmp_path / "a2") == patients_csv(tmp_path / "b")

    stored = {e[0] for e in events["source_event"]}
    assert f"fhir:Condition/{withdrawn['id']}" not in stored
    assert f"fhir:Condition/{moved['id']}" in stored
    assert changes.new_patient not in {r[0] for r in before["patient"]}
    assert changes.new_patient in {r[0] for r in after["patient"]}
    assert before["lesion"] != after["lesion"]

    first, second = runs(a)
    assert first["mode"] == second["mode"] == "incremental"
    assert second["status"] == "ok" and second["n_patients_changed"] == 3
    assert 0 < second["n_read"] < first["n_read"]  # only what changed was read
