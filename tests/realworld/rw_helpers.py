"""Running `leopard-etl run` as a site would (a subprocess) and reading what it wrote.

Nothing here computes an expectation: expectations are written by hand in the tests, from
the spec and the vendored data (with `rw_oracle` for dates). Only the standard library and
the outputs' documented formats (spec v2 §5) are used.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "realworld"
CLI = Path(sys.executable).with_name("leopard-etl")

PATIENT_COLUMNS = [
    "patient_id",
    "in_cohort",
    "exclusion_reason",
    "stage",
    "crt_type",
    "crt_start",
    "crt_end",
    "durvalumab_start",
    "durvalumab_doses",
    "recurrence",
    "recurrence_date",
    "pattern",
    "n_lesions",
    "sites",
    "field",
    "salvage",
    "death",
    "last_alive_date",
    "os_months",
    "prs_months",
]  # spec v2 §5, in its order


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str
    out: Path

    def describe(self) -> str:
        return f"exit {self.returncode}\n--- stdout\n{self.stdout[-3000:]}\n--- stderr\n{self.stderr[-3000:]}"

    def patients(self) -> dict[str, dict[str, str]]:
        with (self.out / "patients.csv").open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            assert reader.fieldnames == PATIENT_COLUMNS, reader.fieldnames
            return {row["patient_id"]: row for row in reader}

    def results(self) -> dict:
        return json.loads((self.out / "results.json").read_text(encoding="utf-8"))

    def quarantine(self) -> list[dict[str, str]]:
        with (self.out / "quarantine.csv").open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    def unmatched(self) -> list[dict[str, str]]:
        with (self.out / "unmatched_codes.csv").open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))


def run_cli(*args: str, out: Path, timeout: float = 120) -> Run:
    """`leopard-etl run ARGS --out OUT`, as a subprocess with a clean environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEOPARD_")}
    proc = subprocess.run(
        [str(CLI), "run", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        check=False,
    )
    return Run(proc.returncode, proc.stdout, proc.stderr, out)


def row(patient_id: str, **filled: str) -> dict[str, str]:
    """An expected patients.csv row: every column empty unless given (spec §5: columns of the
    steps a patient did not reach are empty)."""
    expected = dict.fromkeys(PATIENT_COLUMNS, "")
    expected["patient_id"] = patient_id
    unknown = set(filled) - set(PATIENT_COLUMNS)
    assert not unknown, unknown
    expected.update(filled)
    return expected


def diff_rows(got: dict[str, str], expected: dict[str, str]) -> list[str]:
    return [f"{k}: got {got.get(k)!r}, expected {v!r}" for k, v in expected.items() if got.get(k) != v]


def assert_balanced(source: dict) -> None:
    """spec v2 §5: `read` = in_scope + quarantined + out_of_scope."""
    assert set(source) >= {"read", "in_scope", "quarantined", "out_of_scope"}, source
    assert source["read"] == source["in_scope"] + source["quarantined"] + source["out_of_scope"], source


def assert_outputs_exist(out: Path) -> None:
    for name in ("patients.csv", "results.json", "report.html", "quarantine.csv", "unmatched_codes.csv"):
        assert (out / name).is_file(), f"{name} missing in {sorted(p.name for p in out.iterdir())}"


def assert_shareable_clean(out: Path, patient_ids: set[str], dates: set[str]) -> None:
    """The outputs meant to leave the site (results-shareable.json, report.html; docs/outputs.md)
    name no patient and carry none of the patients' dates."""
    for name in ("results-shareable.json", "report.html"):
        text = (out / name).read_text(encoding="utf-8")
        leaked = sorted(x for x in patient_ids | dates if x in text)
        assert not leaked, f"{name} shows {leaked}"
