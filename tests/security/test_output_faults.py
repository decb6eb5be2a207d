"""Environment faults are configuration errors with the path, and never leave half a set of outputs.

Issue 13: a read-only or full output folder gave exit 70 ("please report"), and a failed run
left a new patients.csv next to an old report.html. Root (CI) ignores permission bits, so the
unwritable location is a path under a regular file, and a full disk is an ``ENOSPC`` raised
while the report is written.
"""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from leopard_etl.errors import ConfigError
from leopard_etl.pipeline import RunRequest, run_pipeline
from leopard_etl.synth import generate


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("faults") / "fhir"
    generate(patients=40, seed=23, out=folder, fmt="fhir-ndjson")
    return folder


def test_unwritable_output_location_is_exit_2_with_the_path(data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    out = blocker / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "leopard_etl.cli", "run", "--fhir", str(data), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(out) in proc.stderr and "Traceback" not in proc.stderr
    assert "please report" not in proc.stderr


def test_a_failed_write_leaves_the_previous_outputs(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    run_pipeline(RunRequest(fhir=[str(data)], out=out))
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    assert {"patients.csv", "report.html", "results.json", "quarantine.csv"} <= set(before)
    (out / "patients.csv").write_text("edited by hand\n")  # a later run must replace it, or leave it
    before["patients.csv"] = b"edited by hand\n"

    def full_disk(*_args: object, **_kwargs: object) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device", str(out / "report.html"))

    monkeypatch.setattr("leopard_etl.report.html.render_report", full_disk)
    with pytest.raises(ConfigError) as err:
        run_pipeline(RunRequest(fhir=[str(data)], out=out))
    assert "No space left on device" in str(err.value) and str(out) in str(err.value)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # nothing new, nothing stray
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.writing-")]


def test_unwritable_warehouse_location_is_exit_2(data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    proc = subprocess.run(
        [sys.executable, "-m", "leopard_etl.cli", "run", "--fhir", str(data), "--out", str(tmp_path / "o"),
         "--warehouse", f"duckdb:///{blocker}/wh.duckdb"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert str(blocker) in proc.stderr and "Traceback" not in proc.stderr
