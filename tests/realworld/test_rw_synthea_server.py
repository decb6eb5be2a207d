"""The same Synthea sample served by a FHIR server: REST search and Bulk $export give the files' result.

Spec v2 §3.12: the default cutoff is "the same on files, REST and Bulk". The vendored Synthea
records (tests/data/realworld/synthea-bulk-10/, see test_rw_synthea_bulk.py for the hand-worked
expectations) are PUT into the sekmet test server (only Synthea's conditional references to the
Practitioners / Organizations / Locations that are not vendored are dropped); each way of reading must give
the patients.csv row worked out by hand and the default cutoff 1989-05-14 — the end of the
Death Certification Encounter, a record a reader must fetch although it is in no code group.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path

import duckdb
import pytest
import rw_oracle as oracle
from rw_helpers import DATA, diff_rows, row, run_cli

SRC = DATA / "synthea-bulk-10"
NSCLC = "129c6ac7-8d06-89de-ad63-0204a93e76c3"
EXPECTED = row(
    NSCLC, in_cohort="false", exclusion_reason="not_stage_iii", stage="I", death="true",
    last_alive_date="1989-05-09",
)  # fmt: skip
CUTOFF = dt.date(1989, 5, 14)

_spec = importlib.util.spec_from_file_location(
    "rw_fhir_server", Path(__file__).parents[1] / "fhir" / "conftest.py"
)
assert _spec and _spec.loader
_fhir_server = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _fhir_server  # dataclasses look their module up there
_spec.loader.exec_module(_fhir_server)

pytestmark = [pytest.mark.fhir_server, pytest.mark.slow]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    srv = _fhir_server.start_sekmet(tmp_path_factory.mktemp("rw-sekmet"))
    try:
        srv.transaction([_without_conditional_references(r.resource) for r in oracle.read_records(SRC)])
        yield srv
    finally:
        srv.stop()


def _without_conditional_references(node):
    """Synthea points at Practitioner / Organization / Location by conditional reference
    (`Practitioner?identifier=...`); those resources are not vendored, and a server refuses a
    transaction whose conditional reference matches nothing. The reference is dropped (its
    `display` stays): none of them names a patient or a Medication."""
    if isinstance(node, dict):
        return {
            k: _without_conditional_references(v)
            for k, v in node.items()
            if not (k == "reference" and isinstance(v, str) and "?" in v)
        }
    if isinstance(node, list):
        return [_without_conditional_references(v) for v in node]
    return node


def _outcome(wh: Path) -> list[tuple]:
    with duckdb.connect(str(wh), read_only=True) as con:
        return con.execute(
            "SELECT patient_id, cutoff, death, death_date, last_alive_date FROM outcome"
        ).fetchall()


@pytest.mark.parametrize("mode", ["rest", "bulk"])
def test_server_read_matches_the_hand_worked_row_and_cutoff(server, mode: str, tmp_path: Path) -> None:
    wh = tmp_path / "wh.duckdb"
    extra = ["--bulk"] if mode == "bulk" else []
    run = run_cli("--fhir", server.base_url, *extra, "--warehouse", f"duckdb:///{wh}", out=tmp_path / "out")
    assert run.returncode == 0, run.describe()
    patients = run.patients()
    assert set(patients) == {NSCLC}, sorted(patients)
    assert not diff_rows(patients[NSCLC], EXPECTED), diff_rows(patients[NSCLC], EXPECTED)
    day = dt.date
    assert _outcome(wh) == [(NSCLC, CUTOFF, True, day(1989, 5, 9), day(1989, 5, 9))]
    assert run.quarantine() == []
