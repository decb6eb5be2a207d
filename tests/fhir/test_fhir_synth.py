"""Synthetic cohort (leopard_etl.synth) through files, the real server's REST search and its $export.

Skips until ``leopard_etl.synth.generate`` exists (written concurrently).
"""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from leopard_etl.events import Event, EventSink
from leopard_etl.mappings import SCREENING_GROUPS, CodeMatcher, load_mappings
from leopard_etl.sources.fhir import FhirRestClient, bulk_export, read_bulk_export, read_fhir_files
from leopard_etl.sources.fhir.files import expand_paths

pytestmark = pytest.mark.fhir_server


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from leopard_etl.synth import generate

    out = tmp_path_factory.mktemp("synth")
    generate(patients=40, seed=11, out=out, fmt="fhir-ndjson")
    return out


def fhir_id(value: str) -> str:
    """FHIR ids allow ``[A-Za-z0-9.-]`` only: the generator's ``_`` becomes ``-`` on the server."""
    return value.replace("_", "-")


def sanitise(node: Any, top: bool = True) -> Any:
    if isinstance(node, dict):
        out = {k: sanitise(v, False) for k, v in node.items()}
        for key in ("id", "reference"):
            if isinstance(out.get(key), str) and (key == "reference" or top or "resourceType" in out):
                out[key] = fhir_id(out[key])
        return out
    if isinstance(node, list):
        return [sanitise(v, False) for v in node]
    return node


def comparable(events: list[Event]) -> list[Event]:
    ids = {e.patient_id for e in events if set(e.groups.split(";")) & SCREENING_GROUPS}
    return sorted(
        e._replace(
            patient_id=fhir_id(e.patient_id),
            source=fhir_id(e.source),
            lesion_id=fhir_id(e.lesion_id) if e.lesion_id else None,
        )
        for e in events
        if e.patient_id in ids
    )


def resources_of(folder: Path) -> list[dict[str, Any]]:
    """The well-formed resources of the generated files (malformed test lines cannot be stored)."""
    out: list[dict[str, Any]] = []
    for path in expand_paths([folder]):
        raw = gzip.decompress(path.read_bytes()) if path.name.endswith(".gz") else path.read_bytes()
        for line in raw.splitlines():
            try:
                r = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if (
                isinstance(r, dict)
                and isinstance(r.get("resourceType"), str)
                and isinstance(r.get("id"), str)
            ):
                out.append(sanitise(r))
    return out


def test_files_rest_and_export_give_identical_events(cohort: Path, sekmet: Any, tmp_path: Path) -> None:
    matcher = CodeMatcher(load_mappings())
    files = EventSink()
    read_fhir_files([cohort], matcher, files)
    assert files.stats.balanced() and files.events
    sekmet.transaction(resources_of(cohort))
    rest = EventSink()
    with FhirRestClient(sekmet.base_url, page_size=50) as client:
        client.read(matcher, rest)
    assert comparable(rest.events) == comparable(files.events)
    bulk_export(sekmet.base_url, tmp_path / "export", sleep=lambda s: time.sleep(min(s, 0.05)))
    exported = EventSink()
    read_bulk_export(tmp_path / "export", matcher, exported)
    assert comparable(exported.events) == comparable(files.events)
