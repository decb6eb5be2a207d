"""The synthetic 8-centre cohort of the pooling tests (built once per session by conftest.py).

``leopard-etl synth --patients 1200 --seed 5`` → ``leopard-etl run`` gives patients.csv and the
single-run results.json; patients.csv is split into its 8 synthetic centres (the centre is the
leading digit of the patient id: centre × 1,000,000 + n) and each centre's summary is built with
``site_summary`` — at the default threshold 5 and, to check the pooling arithmetic without any
merging, at threshold 1.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from leopard_etl.analysis.site_summary import site_summary
from leopard_etl.cli import main

N_SITES = 8
K = 5


@dataclass(frozen=True)
class Cohort:
    folder: Path
    patients: pd.DataFrame  # patients.csv as strings, plus a "site" column
    single: dict[str, Any]  # the single run's results.json
    summaries: dict[int, list[dict[str, Any]]]  # threshold -> one summary per site

    def site_frame(self, site: int) -> pd.DataFrame:
        return self.patients[self.patients["site"] == site].drop(columns="site").reset_index(drop=True)


def attrition_of(patients_csv: pd.DataFrame) -> list[tuple[str, int]]:
    """A site's attrition from its patients.csv rows (exclusion reasons of spec §3.6)."""
    reasons = patients_csv["exclusion_reason"]
    nsclc = len(patients_csv)
    stage = nsclc - int((reasons == "not_stage_iii").sum())
    crt = stage - int((reasons == "no_crt").sum())
    durva = crt - int((reasons == "no_durvalumab").sum())
    return [("nsclc", nsclc), ("stage_iii", stage), ("crt", crt), ("durvalumab", durva)]


def summaries_for(cohort_patients: pd.DataFrame, sites: Sequence[int], k: int) -> list[dict[str, Any]]:
    out = []
    for site in sites:
        frame = cohort_patients[cohort_patients["site"] == site].drop(columns="site").reset_index(drop=True)
        out.append(site_summary(frame, attrition_of(frame), small_cell=k, site=f"Centre {site}"))
    return out


def build_cohort(root: Path) -> Cohort:
    data, out = root / "fhir", root / "run"
    synth = ["synth", "--patients", "1200", "--seed", "5", "--format", "fhir-ndjson", "--out", str(data)]
    assert main(synth) == 0
    assert main(["run", "--fhir", str(data), "--out", str(out)]) == 0
    patients = pd.read_csv(out / "patients.csv", dtype=str, keep_default_na=False)
    patients["site"] = patients["patient_id"].astype(int) // 1_000_000
    sites = sorted(patients["site"].unique())
    assert len(sites) == N_SITES
    single = json.loads((out / "results.json").read_text(encoding="utf-8"))
    summaries = {k: summaries_for(patients, sites, k) for k in (K, 1)}
    return Cohort(root, patients, single, summaries)
