"""The calibrated synthetic multi-centre LEOPARD cohort, with its ground truth.

One latent history per patient (``simulate``) is rendered as FHIR (NDJSON or Bundles) or
OMOP (DuckDB or CSV), and the expected ``patients.csv`` is computed from the same latent
facts by an independent implementation of the spec rules (``expected_rows``). The
classifier's output on any rendering must equal that file.

    summary = generate(patients=200, seed=1, out=Path("synth"), fmt="fhir-ndjson")
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import ConfigError
from .calibration import Calibration
from .expected import COLUMNS, cutoff_of, expected_rows
from .fhir import fhir_resources
from .fhir_files import patient_bundle, write_bundles, write_ndjson
from .omop import omop_rows
from .omop_io import load_omop_csv, write_omop_csv, write_omop_duckdb
from .truth import Fact, TruthPatient, simulate

__all__ = [
    "COLUMNS",
    "FORMATS",
    "Calibration",
    "Fact",
    "TruthPatient",
    "expected_rows",
    "fhir_resources",
    "generate",
    "load_omop_csv",
    "omop_rows",
    "patient_bundle",
    "simulate",
]

FORMATS = ("fhir-ndjson", "fhir-bundle", "omop-duckdb", "omop-csv")


def generate(
    patients: int,
    seed: int,
    out: Path,
    fmt: str = "fhir-ndjson",
    centres: int = 8,
    cdm_version: str = "5.4",
    cdm_schema: str = "cdm",
    vocab_schema: str = "vocab",
) -> dict[str, object]:
    """Simulate, render in ``fmt`` into ``out`` and write ``out/expected/``: ``patients.csv`` (the
    ground truth), ``idioms.csv`` (patient_id, idiom: which spec-v2 idiom each patient carries),
    ``cutoff.txt`` (the default cutoff) and ``summary.json``."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown synthetic format {fmt!r}", fix=f"use one of {', '.join(FORMATS)}")
    if patients < 1 or centres < 1:
        raise ConfigError("--patients and --centres must be at least 1", fix="pass positive numbers")
    if cdm_version not in ("5.3", "5.4"):
        raise ConfigError(f"unsupported CDM version {cdm_version!r}", fix="use 5.3 or 5.4")
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(
            f"cannot create output folder {out}: {exc.strerror}", fix="choose a writable --out"
        ) from None
    truth = simulate(patients, seed, centres)
    cutoff = cutoff_of(truth)
    rows = expected_rows(truth, cutoff)
    idioms = sorted((p.patient_id, idiom) for p in truth for idiom in p.idioms)
    summary: dict[str, object] = {
        "format": fmt,
        "seed": seed,
        "patients": patients,
        "centres": centres,
        "cutoff": cutoff.isoformat(),
        "screened": len(rows),
        "cohort": int((rows["in_cohort"] == "true").sum()),
        "idiom_patients": len({pid for pid, _ in idioms}),
    }
    if fmt == "fhir-ndjson":
        summary.update(write_ndjson(truth, out))
    elif fmt == "fhir-bundle":
        summary.update(write_bundles(truth, out))
    else:
        tables = omop_rows(truth, cdm_version)
        summary.update(
            cdm_version=cdm_version, cdm_schema=cdm_schema, vocab_schema=vocab_schema, malformed_lines=0
        )
        if fmt == "omop-duckdb":
            summary["rows"] = write_omop_duckdb(
                tables, out / "omop.duckdb", cdm_version, cdm_schema, vocab_schema
            )
        else:
            summary["rows"] = write_omop_csv(tables, out, cdm_version)
    expected = out / "expected"
    expected.mkdir(exist_ok=True)
    rows.to_csv(expected / "patients.csv", index=False, lineterminator="\n")
    (expected / "idioms.csv").write_text(
        "patient_id,idiom\n" + "".join(f"{pid},{idiom}\n" for pid, idiom in idioms), encoding="utf-8"
    )
    (expected / "cutoff.txt").write_text(cutoff.isoformat() + "\n", encoding="utf-8")
    (expected / "summary.json").write_text(
        json.dumps(summary, indent=2, sort_keys=True) + "\n", encoding="utf-8"
    )
    return summary
