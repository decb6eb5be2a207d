"""Raw synthetic data → `leopard-etl run` → patients.csv equal to the generator's ground truth.

The generator (`leopard_etl.synth`) computes the expected rows from its latent
histories without using `leopard_etl.cohort`; here every rendering (FHIR NDJSON,
FHIR Bundles, OMOP in DuckDB, OMOP in PostgreSQL, CDM 5.3) must give exactly those
rows, column by column, for two seeds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from leopard_etl.pipeline import RunRequest, run_pipeline
from leopard_etl.synth import generate

N_PATIENTS = 160


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _assert_same(got_path: Path, expected_path: Path) -> None:
    got, expected = _read(got_path), _read(expected_path)
    assert list(got.columns) == list(expected.columns)
    assert len(got) == len(expected), f"{len(got)} rows vs {len(expected)} expected"
    merged = got.merge(expected, on="patient_id", how="outer", suffixes=("", "_exp"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged.loc[merged["_merge"] != "both", "patient_id"].tolist()
    problems = []
    for col in expected.columns:
        if col == "patient_id":
            continue
        diff = merged[merged[col] != merged[f"{col}_exp"]]
        for _, row in diff.head(5).iterrows():
            problems.append(f"{row['patient_id']} {col}: got {row[col]!r}, expected {row[f'{col}_exp']!r}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("seed", [11, 29])
@pytest.mark.parametrize("fmt", ["fhir-ndjson", "fhir-bundle"])
def test_fhir_files_reproduce_ground_truth(tmp_path: Path, seed: int, fmt: str) -> None:
    data = tmp_path / "data"
    generate(patients=N_PATIENTS, seed=seed, out=data, fmt=fmt)
    out = tmp_path / "out"
    summary = run_pipeline(RunRequest(fhir=[str(data)], out=out))
    _assert_same(out / "patients.csv", data / "expected" / "patients.csv")
    results = json.loads((out / "results.json").read_text())
    assert results["n_screened"] == len(_read(data / "expected" / "patients.csv"))
    assert summary["cohort"] == results["n_cohort"]


@pytest.mark.parametrize(("seed", "cdm_version"), [(11, "5.4"), (29, "5.3")])
def test_omop_duckdb_reproduces_ground_truth(tmp_path: Path, seed: int, cdm_version: str) -> None:
    data = tmp_path / "data"
    generate(patients=N_PATIENTS, seed=seed, out=data, fmt="omop-duckdb", cdm_version=cdm_version)
    out = tmp_path / "out"
    run_pipeline(
        RunRequest(omop=f"duckdb:///{data / 'omop.duckdb'}", cdm_schema="cdm", vocab_schema="vocab", out=out)
    )
    _assert_same(out / "patients.csv", data / "expected" / "patients.csv")


@pytest.mark.parametrize("seed", [11, 29])
def test_omop_postgres_reproduces_ground_truth(tmp_path: Path, pg_url: str, seed: int) -> None:
    import sqlalchemy as sa

    from leopard_etl.synth import load_omop_csv

    data = tmp_path / "data"
    generate(patients=N_PATIENTS, seed=seed, out=data, fmt="omop-csv")
    schema = f"cdm_{seed}"
    engine = sa.create_engine(pg_url)
    with engine.begin() as conn:
        load_omop_csv(conn, data, cdm_schema=schema, vocab_schema=schema)
    engine.dispose()
    out = tmp_path / "out"
    run_pipeline(RunRequest(omop=pg_url, cdm_schema=schema, vocab_schema=schema, out=out))
    _assert_same(out / "patients.csv", data / "expected" / "patients.csv")


def test_demo_command_from_the_readme(tmp_path: Path) -> None:
    """`leopard-etl demo` (the README's first command minus the install) writes the three outputs."""
    out = tmp_path / "leopard-out"
    proc = subprocess.run(
        [sys.executable, "-m", "leopard_etl.cli", "demo", "--patients", "200", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**os.environ, "CI": "true"},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    for name in ("patients.csv", "results.json", "report.html"):
        assert (out / name).stat().st_size > 0, name
    _assert_same(out / "patients.csv", out / "synthetic-fhir" / "expected" / "patients.csv")


def test_bad_source_is_one_line_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "leopard_etl.cli", "run", "--omop", "postgresql+psycopg://nobody@127.0.0.1:1/x",
         "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("leopard-etl: error: cannot connect"), proc.stderr


def test_explain_names_the_records_behind_each_call(tmp_path: Path) -> None:
    """`leopard-etl explain` on a recurrent cohort patient cites the records that drove the calls."""
    data = tmp_path / "data"
    generate(patients=60, seed=5, out=data, fmt="fhir-ndjson")
    expected = _read(data / "expected" / "patients.csv")
    row = expected[(expected["recurrence"] == "true") & (expected["n_lesions"] != "0")].iloc[0]
    proc = subprocess.run(
        [sys.executable, "-m", "leopard_etl.cli", "explain", row["patient_id"], "--fhir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = proc.stdout
    assert row["recurrence_date"] in text
    assert row["pattern"] in text and row["field"] in text and row["salvage"] in text
    assert "fhir:Condition/" in text  # lesions are traced to their source resources
    missing = subprocess.run(
        [sys.executable, "-m", "leopard_etl.cli", "explain", "no-such-patient", "--fhir", str(data)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "no-such-patient" in missing.stderr


def test_pseudonymised_outputs_are_stable_and_keyed(tmp_path: Path) -> None:
    """With a key file, every output id is an HMAC pseudonym: same key → same ids, other key → others."""
    data = tmp_path / "data"
    generate(patients=40, seed=3, out=data, fmt="fhir-ndjson")
    ids = []
    for run, secret in enumerate(["k" * 32, "k" * 32, "z" * 32]):
        key = tmp_path / f"key{run}"
        key.write_text(secret)
        config = tmp_path / f"leopard{run}.yaml"
        config.write_text(f"pseudonymise_key_file: {key}\n")
        out = tmp_path / f"out{run}"
        run_pipeline(RunRequest(fhir=[str(data)], out=out, config=config))
        ids.append(list(_read(out / "patients.csv")["patient_id"]))
    truth = set(_read(data / "expected" / "patients.csv")["patient_id"])
    assert sorted(ids[0]) == sorted(ids[1]) and not set(ids[0]) & truth
    assert len(set(ids[0])) == len(truth) and all(len(i) == 32 for i in ids[0])
    assert not set(ids[0]) & set(ids[2])


def test_status_of_a_missing_warehouse_is_a_clear_error_and_creates_nothing(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.duckdb"
    proc = subprocess.run(
        [sys.executable, "-m", "leopard_etl.cli", "status", "--warehouse", f"duckdb:///{missing}"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
    assert not missing.exists()
