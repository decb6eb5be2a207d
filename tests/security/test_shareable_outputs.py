"""Shareable outputs carry no identifier and no date of a patient (issue 13, spec §5).

One synthetic run with a contradictory death (before CRT: a negative OS, whose warning used
to name the patient) and a death without date (whose ids belong to the site-only file); then
every shareable output is scanned for every patient id and every patient date.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import orjson
import pandas as pd
import pytest

from leopard_etl.pipeline import RunRequest, run_pipeline
from leopard_etl.synth import generate

SHAREABLE = ("results-shareable.json", "report.html")
DATE_COLUMNS = ("crt_start", "crt_end", "durvalumab_start", "recurrence_date", "last_alive_date")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("shareable")
    data = base / "fhir"
    generate(patients=150, seed=17, out=data, fmt="fhir-ndjson")
    expected = pd.read_csv(data / "expected" / "patients.csv", dtype=str)
    cohort = expected[expected["in_cohort"] == "true"]
    early, unknown = cohort.iloc[0], cohort.iloc[1]
    lines = []
    for raw in (data / "Patient.ndjson").read_bytes().splitlines():
        res = orjson.loads(raw)
        res.pop("deceasedDateTime", None)
        res.pop("deceasedBoolean", None)
        if res["id"] == early["patient_id"]:  # died before CRT: a negative OS
            res["deceasedDateTime"] = "2000-01-01"
        elif res["id"] == unknown["patient_id"]:  # died, date unknown
            res["deceasedBoolean"] = True
        lines.append(orjson.dumps(res))
    (data / "Patient.ndjson").write_bytes(b"\n".join(lines) + b"\n")
    out = base / "out"
    run_pipeline(RunRequest(fhir=[str(data)], out=out))
    return out


def test_warnings_count_patients_and_the_site_file_names_them(run: Path) -> None:
    results = json.loads((run / "results.json").read_text())
    flagged = pd.read_csv(run / "warnings-patients.csv", dtype=str)
    assert set(flagged["warning"]) == {"negative os_months", "death with unknown date"}
    assert any("died with unknown date" in w for w in results["warnings"])
    assert any(w.startswith("negative os_months for 1 patient(s)") for w in results["warnings"])
    patients = pd.read_csv(run / "patients.csv", dtype=str).set_index("patient_id")
    unknown = flagged.loc[flagged["warning"] == "death with unknown date", "patient_id"].iloc[0]
    assert patients.loc[unknown, "death"] == "true"
    assert patients.loc[unknown, "last_alive_date"]  # the latest activity date stands in for the death


def test_no_shareable_output_names_a_patient_or_a_patient_date(run: Path) -> None:
    patients = pd.read_csv(run / "patients.csv", dtype=str)
    ids = set(patients["patient_id"])
    dates = {d for c in DATE_COLUMNS for d in patients[c].dropna()}
    assert len(ids) > 100 and len(dates) > 100
    for name in SHAREABLE:
        text = (run / name).read_text(encoding="utf-8")
        tokens = set(re.findall(r"[A-Za-z0-9_.-]+", text))
        assert not ids & tokens, f"{name} names patients {sorted(ids & tokens)[:5]}"
        found = set(re.findall(r"\d{4}-\d{2}-\d{2}", text))
        assert not dates & found, f"{name} holds patient dates {sorted(dates & found)[:5]}"
