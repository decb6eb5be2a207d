"""``check`` on FHIR sources: the real sekmet server (metadata, searches, $export, auth, a search),
FHIR files — and for each a failing variant with its own line and a non-zero verdict."""

from __future__ import annotations

import gzip
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import orjson
import pytest
from check_helpers import failures, folder_state, one, part

from leopard_etl.check import check_request, format_line, verdict
from leopard_etl.errors import EXIT_CONFIG, EXIT_SOURCE

pytestmark = pytest.mark.fhir_server


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_server_reachable_with_what_the_run_uses(sekmet: Any) -> None:
    lines = check_request(fhir=[sekmet.base_url], env={})
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    assert "FHIR 4.0.1" in one(lines, "fhir").message
    search = one(lines, "fhir.search", "ok").message
    assert "12 resource types" in search and "scanned for the C34 prefix" in search
    used = one(lines, "fhir.search", "info").message
    assert "Observation?patient" in used and "Patient?_id" in used
    assert one(lines, "fhir.bulk").status == "ok"  # sekmet declares system-level $export
    assert one(lines, "fhir.auth").status == "info"  # no credentials configured
    empty = one(lines, "fhir.read")  # the module's server starts empty: a warning, not a failure
    assert empty.status == "warn" and "holds no Patient" in empty.message
    assert all("\n" not in format_line(line) for line in lines)
    sekmet.transaction([{"resourceType": "Patient", "id": "check-1", "gender": "female"}])
    lines = check_request(fhir=[sekmet.base_url], env={})
    answered = one(lines, "fhir.read", "ok").message
    assert answered == "a search is answered: Patient?_summary=count (1 patients)"


def test_bulk_is_checked_against_the_capability_statement(sekmet: Any) -> None:
    lines = check_request(fhir=[sekmet.base_url], bulk=True, env={})
    assert verdict(lines) == 0
    assert "(used: --bulk)" in one(lines, "fhir.bulk").message


def test_wrong_url_is_one_line_and_exit_3(sekmet: Any) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/fhir"
    lines = check_request(fhir=[dead], env={})
    line = one(lines, "fhir", "fail")
    assert line.exit_code == EXIT_SOURCE and "unreachable" in line.message and line.fix
    assert verdict(lines) == EXIT_SOURCE
    assert not part(lines, "fhir.read")  # nothing further is tried on a server that does not answer
    # a reachable host but not the FHIR base: the metadata is not a CapabilityStatement
    wrong = check_request(fhir=[sekmet.base_url.rsplit("/fhir", 1)[0] + "/nope"], env={})
    assert one(wrong, "fhir", "fail").exit_code == EXIT_SOURCE and verdict(wrong) == EXIT_SOURCE


def test_bearer_token_is_used_but_never_printed(sekmet: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "tok-CHECK-9f2e-never-print"
    monkeypatch.setenv("SITE_FHIR_TOKEN", secret)  # the secret is read from the process environment
    lines = check_request(fhir=[sekmet.base_url], env={"LEOPARD_BEARER_TOKEN_ENV": "SITE_FHIR_TOKEN"})
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    assert one(lines, "fhir.auth").message == (
        "bearer token read from environment variable SITE_FHIR_TOKEN (not shown)"
    )
    assert all(secret not in format_line(line) for line in lines)
    # the variable named but not set: a configuration line (exit 2); the server is still checked
    missing = check_request(fhir=[sekmet.base_url], env={"LEOPARD_BEARER_TOKEN_ENV": "UNSET_TOKEN_VAR_X"})
    line = one(missing, "fhir.auth", "fail")
    assert line.exit_code == EXIT_CONFIG and "UNSET_TOKEN_VAR_X" in line.message
    assert one(missing, "fhir").status == "ok" and verdict(missing) == EXIT_CONFIG


class _TokenEndpoint:
    """A SMART token endpoint on loopback: answers every POST with a token, or refuses (401)."""

    def __init__(self, refuse: bool = False) -> None:
        self.token = "smart-ACCESS-7c1d-secret"
        self.requests: list[dict[str, list[str]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                from urllib.parse import parse_qs

                length = int(self.headers.get("Content-Length") or 0)
                outer.requests.append(parse_qs(self.rfile.read(length).decode()))
                status, body = (401, {"error": "invalid_client"}) if refuse else (
                    200, {"access_token": outer.token, "token_type": "bearer", "expires_in": 300})
                data = orjson.dumps(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/token"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def private_key(tmp_path: Path) -> Path:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "smart.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return path


@pytest.fixture
def token_endpoint() -> Iterator[_TokenEndpoint]:
    endpoint = _TokenEndpoint()
    yield endpoint
    endpoint.close()


def _smart_env(token_url: str, key: Path) -> dict[str, str]:
    return {
        "LEOPARD_SMART__CLIENT_ID": "leopard-site-7",
        "LEOPARD_SMART__TOKEN_URL": token_url,
        "LEOPARD_SMART__PRIVATE_KEY_FILE": str(key),
    }


def test_smart_token_is_obtained_and_never_printed(
    sekmet: Any, token_endpoint: _TokenEndpoint, private_key: Path
) -> None:
    lines = check_request(fhir=[sekmet.base_url], env=_smart_env(token_endpoint.url, private_key))
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    auth = one(lines, "fhir.auth")
    assert auth.status == "ok" and "SMART token obtained from http://127.0.0.1:" in auth.message
    assert "leopard-site-7" in auth.message and "token not shown" in auth.message
    assert token_endpoint.requests and token_endpoint.requests[0]["grant_type"] == ["client_credentials"]
    assert all(token_endpoint.token not in format_line(line) for line in lines)


def test_smart_refused_is_its_own_line(sekmet: Any, private_key: Path) -> None:
    endpoint = _TokenEndpoint(refuse=True)
    try:
        lines = check_request(fhir=[sekmet.base_url], env=_smart_env(endpoint.url, private_key))
    finally:
        endpoint.close()
    line = one(lines, "fhir.auth", "fail")
    assert "refused the client leopard-site-7" in line.message and line.exit_code == EXIT_SOURCE
    assert one(lines, "fhir").status == "ok"  # the server itself answered
    assert verdict(lines) == EXIT_SOURCE


def test_files_are_counted_and_left_alone(fhir_files: Path) -> None:
    before = folder_state(fhir_files)
    lines = check_request(fhir=[str(fhir_files)], env={})
    assert verdict(lines) == 0, "\n".join(map(str, lines))
    files = one(lines, "files").message
    ndjson = len([p for p in fhir_files.rglob("*") if p.name.endswith((".ndjson", ".ndjson.gz"))])
    assert files.startswith(f"{fhir_files}: {ndjson} NDJSON, 0 Bundle") and "readable" in files
    assert folder_state(fhir_files) == before


def test_missing_or_broken_files_fail(tmp_path: Path, fhir_files: Path) -> None:
    lines = check_request(fhir=[str(tmp_path / "no-such-export")], env={})
    assert one(lines, "files", "fail").message.endswith("does not exist")
    assert verdict(lines) == EXIT_SOURCE
    broken = tmp_path / "export"
    broken.mkdir()
    (broken / "Patient.ndjson").write_bytes((next(fhir_files.rglob("Patient*.ndjson"))).read_bytes())
    (broken / "Condition.ndjson.gz").write_bytes(gzip.compress(b'{"resourceType":"Condition"}\n')[:12])
    lines = check_request(fhir=[str(broken)], env={})
    line = one(lines, "files", "fail")
    assert "1 of 2 files" in line.message and "Condition.ndjson.gz" in line.message
    assert verdict(lines) == EXIT_SOURCE
    bulk_on_files = check_request(fhir=[str(fhir_files)], bulk=True, env={})
    assert one(bulk_on_files, "files", "fail").exit_code == EXIT_CONFIG


def test_several_problems_give_the_most_basic_exit_code(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}/fhir"
    (tmp_path / "file.txt").write_text("x")  # --out is a file: a configuration problem
    lines = check_request(fhir=[dead], env={"LEOPARD_OUT": str(tmp_path / "file.txt")})
    assert {line.exit_code for line in failures(lines)} == {EXIT_SOURCE, EXIT_CONFIG}
    assert verdict(lines) == EXIT_CONFIG
