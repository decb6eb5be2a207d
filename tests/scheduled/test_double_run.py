"""Loading the same FHIR files twice through the CLI changes nothing (operations.md, idempotence)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
from scheduled_cli import cli, cli_ok, patients_csv, run_args, runs, state, store
from scheduled_data import N, truth

from leopard_etl.synth.fhir_files import write_ndjson


@pytest.fixture(scope="module")
def fhir_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("fhir-v1")
    write_ndjson(truth()[:N], folder)
    return folder


@pytest.mark.parametrize("engine", ["duckdb", pytest.param("postgresql", marks=pytest.mark.postgres)])
def test_second_run_of_the_same_files_changes_nothing(
    engine: str, make_target: Any, fhir_files: Path, tmp_path: Path
) -> None:
    target = make_target(engine, "double")
    source = ["--fhir", str(fhir_files)]
    cli_ok(run_args(source, target, tmp_path / "first"), target)
    derived, events = state(target), store(target)
    cli_ok(run_args(source, target, tmp_path / "second"), target)

    assert state(target) == derived
    assert store(target) == events
    assert patients_csv(tmp_path / "second") == patients_csv(tmp_path / "first")
    with (tmp_path / "first" / "patients.csv").open() as fh:
        screened = list(csv.DictReader(fh))
    assert 0 < len(screened) == len(derived["patient"])
    assert any(r["in_cohort"] == "true" for r in screened) and derived["recurrence"]

    first, second = runs(target)
    assert (first["status"], second["status"]) == ("ok", "ok")
    stored_patients = {e[1] for e in events["source_event"]} | {p[0] for p in events["source_patient"]}
    assert first["n_patients_changed"] == len(stored_patients) > 0
    assert second["n_patients_changed"] == 0
    assert second["n_events"] == first["n_events"] == len(events["source_event"])

    status = cli(["status", "--warehouse", target.url], target)
    assert status.returncode == 0, status.stderr
    lines = status.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(second["run_id"]) and lines[1].startswith(first["run_id"])
    assert all(" ok " in line for line in lines)
    assert "changed=0" in lines[0] and f"changed={first['n_patients_changed']}" in lines[1]
    assert f"events={first['n_events']}" in lines[1]
