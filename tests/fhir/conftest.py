"""A real FHIR server for the adapter tests: sekmet, started per module on a free port.

The executable is ``$SEKMET_BIN`` (the Makefile sets it), else
``<repo>/.venv-sekmet/bin/sekmet``, else ``sekmet`` on PATH; without one the
server tests skip locally and fail in CI (tests/conftest.py policy). Its order
simulator is disabled and inbound validation is off in a generated
settings.yaml, so the server stores exactly what we load. The process runs in its
own process group and is stopped by that group's id.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

_policy_spec = importlib.util.spec_from_file_location(
    "leopard_test_policy", Path(__file__).parents[1] / "conftest.py"
)
assert _policy_spec and _policy_spec.loader
_policy = importlib.util.module_from_spec(_policy_spec)
_policy_spec.loader.exec_module(_policy)
require_service = _policy.require_service

REPO = Path(__file__).resolve().parents[2]


def sekmet_bin() -> str | None:
    env = os.environ.get("SEKMET_BIN")
    if env and Path(env).is_file():
        return env
    local = REPO / ".venv-sekmet" / "bin" / "sekmet"
    if local.is_file():
        return str(local)
    return shutil.which("sekmet")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SETTINGS = """\
simulator:
  enabled: false
  delay_seconds: 0.05
validation:
  inbound: "off"
log_inbound: false
data_dir: {data}
"""


@dataclass
class Sekmet:
    """A running sekmet server and helpers to load data into it."""

    base_url: str
    proc: subprocess.Popen[bytes]
    log: Path

    def transaction(self, resources: list[dict[str, Any]], chunk: int = 400) -> None:
        """PUT the resources (ids kept) with transaction Bundles."""
        with httpx.Client(timeout=60) as client:
            for i in range(0, len(resources), chunk):
                entries = [
                    {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                    for r in resources[i : i + chunk]
                ]
                resp = client.post(
                    self.base_url,
                    content=orjson.dumps({"resourceType": "Bundle", "type": "transaction", "entry": entries}),
                    headers={"Content-Type": "application/fhir+json"},
                )
                assert resp.status_code == 200, resp.text[:500]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_sekmet(folder: Path) -> Sekmet:
    exe = sekmet_bin()
    require_service(exe is not None, "sekmet FHIR server not installed (set SEKMET_BIN or `make test`)")
    assert exe is not None
    folder.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    base = f"http://127.0.0.1:{port}/fhir"
    settings = folder / "settings.yaml"
    settings.write_text(SETTINGS.format(data=folder / "data"))
    env = {
        **os.environ,
        "SEKMET_CONFIG": str(settings),
        "SEKMET_BASE_URL": base,
        "SEKMET_DB": str(folder / "s.db"),
    }
    log = folder / "sekmet.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [exe, "serve", "--host", "127.0.0.1", "--port", str(port)],
            cwd=folder,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    server = Sekmet(base, proc, log)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"sekmet exited ({proc.returncode}): {log.read_text()[-1500:]}", pytrace=False)
        try:
            if httpx.get(f"{base}/metadata", timeout=2).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.stop()
    pytest.fail(f"sekmet did not answer /metadata within 30 s: {log.read_text()[-1500:]}", pytrace=False)


@pytest.fixture(scope="module")
def sekmet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sekmet]:
    """One server per test module (modules load different data)."""
    server = start_sekmet(tmp_path_factory.mktemp("sekmet"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def sekmet_factory(tmp_path: Path) -> Iterator[Any]:
    """Start extra servers inside one test (e.g. a clean one for an incremental scenario)."""
    started: list[Sekmet] = []

    def start(name: str = "s") -> Sekmet:
        server = start_sekmet(tmp_path / name)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for s in started:
            s.stop()
