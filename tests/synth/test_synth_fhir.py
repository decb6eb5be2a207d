"""Every rendered FHIR resource validates with fhir.resources R4B; the malformed lines do not."""

from __future__ import annotations

import gzip
import importlib
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from leopard_etl.synth import generate, patient_bundle, simulate
from leopard_etl.synth.fhir_files import NDJSON_TYPES


def _model(rtype: str) -> Any:
    return getattr(importlib.import_module(f"fhir.resources.R4B.{rtype.lower()}"), rtype)


def _valid(line: bytes) -> bool:
    try:
        res = orjson.loads(line)
        _model(res["resourceType"]).model_validate(res)
        if res["resourceType"] == "Condition" and "subject" not in res:
            return False
    except Exception:
        return False
    return True


@pytest.mark.parametrize("seed", [11, 12])
def test_ndjson_resources_validate_and_malformed_lines_fail(tmp_path: Path, seed: int) -> None:
    summary = generate(50, seed, tmp_path, "fhir-ndjson")
    lines = [ln for f in sorted(tmp_path.glob("*.ndjson")) for ln in f.read_bytes().splitlines()]
    lines += gzip.decompress((tmp_path / "mixed.ndjson.gz").read_bytes()).splitlines()
    results = [_valid(ln) for ln in lines]
    assert results.count(False) == summary["malformed_lines"] == 5
    assert results.count(True) == sum(summary["resources"].values())  # type: ignore[union-attr]
    types = {orjson.loads(ln)["resourceType"] for ln, ok in zip(lines, results, strict=True) if ok}
    assert types == set(NDJSON_TYPES)
    # medicationReference targets exist somewhere in the input (possibly after the referencing line)
    ids = {
        f"Medication/{orjson.loads(ln)['id']}"
        for ln, ok in zip(lines, results, strict=True)
        if ok and b'"resourceType":"Medication"' in ln
    }
    refs = {
        r["medicationReference"]["reference"].split("/fhir/")[-1]
        for ln, ok in zip(lines, results, strict=True)
        if ok and b"medicationReference" in ln
        for r in [orjson.loads(ln)]
        if not r["medicationReference"]["reference"].startswith("#")
    }
    assert refs and refs <= ids


def test_bundles_are_transactions_with_urn_references(tmp_path: Path) -> None:
    summary = generate(6, 3, tmp_path, "fhir-bundle")
    assert summary["bundles"] == 6 and summary["collection_bundles"] == 2
    bundle = json.loads(next(iter(sorted(tmp_path.glob("Bundle-*.json")))).read_text())
    assert bundle["type"] == "transaction"
    _model("Bundle").model_validate(bundle)
    full_urls = {e["fullUrl"] for e in bundle["entry"]}
    assert all(u.startswith("urn:uuid:") for u in full_urls)
    patient = bundle["entry"][0]
    assert patient["request"] == {"method": "PUT", "url": f"Patient/{patient['resource']['id']}"}
    subjects = {e["resource"]["subject"]["reference"] for e in bundle["entry"] if "subject" in e["resource"]}
    assert subjects == {patient["fullUrl"]}
    last = patient_bundle(simulate(6, 3)[-1], "collection")
    assert last["type"] == "collection" and "request" not in last["entry"][0]
