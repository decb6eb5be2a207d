"""The benchmark's held-out cohort shape (NDJSON + one transaction Bundle) reads as parse.py reads it.

``benchmarks.cohort.write_cohort`` renders an eighth of the patients as one transaction Bundle;
the file run streams that Bundle entry by entry (its ``urn:uuid`` references resolved through the
fullUrl index on disk) and must give the same events, patients, quarantine rows and counts as
the whole-document Python reader. No timing here: figures live in benchmarks/.
"""

from __future__ import annotations

import sys
from pathlib import Path

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fhir_columnar"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fhir"))
from benchmarks.cohort import BUNDLE_NAME, write_cohort
from benchmarks.end_to_end import orjson_floor
from test_columnar_equivalence import assert_same, python_reader

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.fhir import columnar


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, object]]:
    out = tmp_path_factory.mktemp("cohort")
    return out, write_cohort(48, out)


def test_an_eighth_of_the_patients_in_one_transaction_bundle(cohort: tuple[Path, dict[str, object]]) -> None:
    out, summary = cohort
    bundle = orjson.loads((out / BUNDLE_NAME).read_bytes())
    assert bundle["type"] == "transaction" and len(bundle["entry"]) == summary["bundle_entries"]
    patients = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
    assert len(patients) == 48 // 8
    entries = bundle["entry"]
    assert all(e["request"]["method"] == "PUT" and e["fullUrl"].startswith("urn:uuid:") for e in entries)
    assert (out / "mixed.ndjson.gz").exists()
    resources, _seconds = orjson_floor(out)
    assert resources == summary["resources_total"]


def test_streamed_read_equals_the_python_reader(
    cohort: tuple[Path, dict[str, object]], monkeypatch: pytest.MonkeyPatch
) -> None:
    out, _summary = cohort
    monkeypatch.setattr(columnar, "STREAM_BYTES", 0)
    matcher = CodeMatcher(load_mappings())
    ref, col = EventSink(), EventSink()
    python_reader([out], matcher, ref)
    columnar.read_ndjson_columnar([out], matcher, col, chunk_bytes=1 << 16)
    assert_same(ref, col)
    assert len(col.events) > 1_000
