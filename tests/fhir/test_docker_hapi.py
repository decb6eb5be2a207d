"""HAPI FHIR (docker/compose.yaml) read over REST gives the same events as the same files.

Needs a Docker engine; skips cleanly without one (in CI too: no engine there).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from fhir_samples import small_cohort

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.fhir import FhirRestClient, read_fhir_files

pytestmark = pytest.mark.docker


def docker_engine() -> bool:
    if not shutil.which("docker"):
        return False
    try:
        return subprocess.run(["docker", "info"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


@pytest.fixture(scope="session")
def docker_compose_file() -> str:
    return str(Path(__file__).resolve().parents[2] / "docker" / "compose.yaml")


def _hapi_up(url: str) -> bool:
    try:
        return httpx.get(f"{url}/metadata", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False


def test_hapi_rest_read_equals_file_read(
    request: pytest.FixtureRequest, tmp_path: Path, require_service: Any
) -> None:
    require_service(docker_engine(), "no Docker engine (docker info fails)", ci_must_run=False)
    services: Any = request.getfixturevalue("docker_services")
    ip: str = request.getfixturevalue("docker_ip")
    base = f"http://{ip}:{services.port_for('hapi', 8080)}/fhir"
    services.wait_until_responsive(check=lambda: _hapi_up(base), timeout=240.0, pause=2.0)
    data = small_cohort(12, prefix="hapi")
    entries = [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in data
    ]
    resp = httpx.post(
        base,
        content=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
        headers={"Content-Type": "application/fhir+json"},
        timeout=120,
    )
    assert resp.status_code == 200, resp.text[:300]
    matcher = CodeMatcher(load_mappings())
    rest = EventSink()
    with FhirRestClient(base, page_size=10) as client:
        client.read(matcher, rest)
    path = tmp_path / "hapi.ndjson"
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in data))
    files = EventSink()
    read_fhir_files([path], matcher, files)
    mine = {e.patient_id for e in files.events}
    assert sorted(e for e in rest.events if e.patient_id in mine) == sorted(files.events)
    assert len(files.events) == 12 * 7
