"""Writing the FHIR rendering as Bulk-export NDJSON (plus one mixed gzip file) or as per-patient Bundles.

Byte-identical for a seed: resources in patient order, gzip with mtime 0 and no file name,
bundle UUIDs derived (uuid5) from the resource ids. The NDJSON set carries a few
deliberately malformed lines (counted in the summary); bundles carry none.
"""

from __future__ import annotations

import gzip
import uuid
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from .fhir import fhir_resources
from .truth import TruthPatient

__all__ = ["NDJSON_TYPES", "malformed_lines", "write_bundles", "write_ndjson"]

NDJSON_TYPES = (
    "Patient",
    "Condition",
    "Procedure",
    "Observation",
    "MedicationAdministration",
    "MedicationRequest",
    "Medication",
    # activity records (spec §1 v2)
    "Encounter",
    "MedicationStatement",
    "DiagnosticReport",
    "Immunization",
    "ImagingStudy",
)
_NS = uuid.UUID("6f1c1c52-4f7e-4a53-9a55-6c656f706172")


def malformed_lines(first_patient: str) -> dict[str, list[bytes]]:
    """The deliberately bad lines, by the file they are hidden in (reason in the ``id``)."""
    subject = {"reference": f"Patient/{first_patient}"}
    return {
        "Condition": [
            b'{"resourceType": "Condition", "id": "bad-invalid-json", "subject": {"reference": ',
            orjson.dumps(
                {
                    "resourceType": "Condition",
                    "id": "bad-no-subject",
                    "code": {"coding": [{"system": "http://snomed.info/sct", "code": "128462008"}]},
                    "onsetDateTime": "2020-05-01",
                }
            ),
        ],
        "Observation": [
            orjson.dumps(
                {
                    "id": "bad-no-resource-type",
                    "status": "final",
                    "subject": subject,
                    "effectiveDateTime": "2020-05-01",
                }
            )
        ],
        "Procedure": [
            orjson.dumps(
                {
                    "resourceType": "Procedure",
                    "id": "bad-date",
                    "status": "completed",
                    "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "77412"}]},
                    "subject": subject,
                    "performedDateTime": "2020-13-45",
                }
            )
        ],
    }


def write_ndjson(truth: Sequence[TruthPatient], out: Path) -> dict[str, Any]:
    """One file per type plus ``mixed.ndjson.gz`` (centres with ``file=mixed``); returns counts.

    Streams: each line is written as it is rendered, so memory does not grow with the
    cohort (benchmarks generate 100k patients). The malformed lines go near the top of
    their file, between good lines (after good lines 1, 3, 5 …).
    """
    out.mkdir(parents=True, exist_ok=True)
    pending = {
        t: list(lines) for t, lines in malformed_lines(truth[0].patient_id if truth else "1000001").items()
    }
    n_bad = sum(len(v) for v in pending.values())
    seen_medications: set[str] = set()
    counts: Counter[str] = Counter()
    written: Counter[str] = Counter()
    handles = {t: (out / f"{t}.ndjson").open("wb") for t in NDJSON_TYPES}
    raw = (out / "mixed.ndjson.gz").open("wb")
    gz = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0)
    mixed_written = 0
    try:
        for p in truth:
            target_mixed = p.style.get("file") == "mixed"
            for res in fhir_resources(p):
                rtype = res["resourceType"]
                if rtype == "Medication":
                    if res["id"] in seen_medications:
                        continue
                    seen_medications.add(res["id"])
                counts[rtype] += 1
                line = orjson.dumps(res) + b"\n"
                if target_mixed:
                    gz.write(line)
                    mixed_written += 1
                    if mixed_written == 3:
                        gz.write(b'{"resourceType": "Observation", "id": "bad-truncated-gzip-line"\n')
                        n_bad += 1
                    continue
                fh = handles[rtype]
                fh.write(line)
                written[rtype] += 1
                queue = pending.get(rtype)
                if queue and written[rtype] % 2 == 1:
                    fh.write(queue.pop(0) + b"\n")
        for rtype, queue in pending.items():  # files too short to hide them between good lines
            for line in queue:
                handles[rtype].write(line + b"\n")
    finally:
        for fh in handles.values():
            fh.close()
        gz.close()
        raw.close()
    return {
        "resources": dict(sorted(counts.items())),
        "malformed_lines": n_bad,
        "files": [f"{t}.ndjson" for t in NDJSON_TYPES] + ["mixed.ndjson.gz"],
    }


def _urn(rtype: str, rid: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NS, f'{rtype}/{rid}')}"


def patient_bundle(p: TruthPatient, kind: str = "transaction") -> dict[str, Any]:
    """A transaction (PUT per resource, urn:uuid references) or collection Bundle of one patient."""
    entries = []
    for res in fhir_resources(p, reference=_urn):
        entry: dict[str, Any] = {"fullUrl": _urn(res["resourceType"], res["id"]), "resource": res}
        if kind == "transaction":
            entry["request"] = {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
        entries.append(entry)
    return {"resourceType": "Bundle", "id": f"bundle-{p.patient_id}", "type": kind, "entry": entries}


def write_bundles(truth: Sequence[TruthPatient], out: Path) -> dict[str, Any]:
    """One Bundle file per patient; the last two patients as ``collection`` bundles."""
    out.mkdir(parents=True, exist_ok=True)
    counts: Counter[str] = Counter()
    files = []
    n_collection = 2 if len(truth) > 2 else 0
    for i, p in enumerate(truth):
        kind = "collection" if i >= len(truth) - n_collection else "transaction"
        bundle = patient_bundle(p, kind)
        counts.update(e["resource"]["resourceType"] for e in bundle["entry"])
        name = f"Bundle-{p.patient_id}.json"
        (out / name).write_bytes(orjson.dumps(bundle, option=orjson.OPT_INDENT_2) + b"\n")
        files.append(name)
    return {
        "resources": dict(sorted(counts.items())),
        "malformed_lines": 0,
        "bundles": len(files),
        "collection_bundles": n_collection,
        "files": files,
    }
