"""The shape of a held-out FHIR cohort: bulk-export NDJSON plus one large transaction Bundle.

Issue 14 measured a site's cohort as NDJSON, ``.ndjson.gz`` and one transaction Bundle holding
an eighth of the patients (56 MB at 20,000 patients); :func:`write_cohort` renders the synthetic
cohort (:mod:`leopard_etl.synth`) the same way: the first seven eighths of the patients as the
generator's NDJSON files (one of them gzip), the last eighth as ``Bundle-transaction.json``,
one pretty-printed transaction Bundle (PUT entries, ``urn:uuid`` references), written entry by
entry so that generating it does not hold it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from .measure import need

BUNDLE_NAME = "Bundle-transaction.json"


def write_cohort(patients: int, out: Path, *, seed: int = 1, bundle_share: int = 8) -> dict[str, Any]:
    """Write the cohort into ``out``; returns counts (resources, Bundle entries and bytes)."""
    simulate = need("leopard_etl.synth.truth", "simulate")
    write_ndjson = need("leopard_etl.synth.fhir_files", "write_ndjson")
    patient_bundle = need("leopard_etl.synth.fhir_files", "patient_bundle")
    truth = simulate(patients, seed, 8)
    cut = len(truth) - len(truth) // bundle_share
    summary: dict[str, Any] = dict(write_ndjson(truth[:cut], out))
    entries = 0
    path = out / BUNDLE_NAME
    with path.open("wb") as fh:
        fh.write(b'{\n  "resourceType": "Bundle",\n  "type": "transaction",\n  "entry": [\n')
        for p in truth[cut:]:
            for entry in patient_bundle(p, "transaction")["entry"]:
                fh.write(b",\n" if entries else b"")
                fh.write(orjson.dumps(entry, option=orjson.OPT_INDENT_2))
                entries += 1
        fh.write(b"\n  ]\n}\n")
    ndjson = sum(summary.get("resources", {}).values()) + summary.get("malformed_lines", 0)
    summary.update(bundle_entries=entries, bundle_bytes=path.stat().st_size, resources_total=ndjson + entries)
    return summary
