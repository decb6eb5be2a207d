"""Auth (bearer, SMART Backend Services) and $export error handling, against in-process mock servers."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fhir_samples import patient, small_cohort

from leopard_etl.errors import ConfigError, SourceError
from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.fhir import (
    BearerToken,
    FhirRestClient,
    SmartBackendAuth,
    bulk_export,
    read_bulk_export,
)

SECRET = "s3cr3t-t0ken-value"
BASE = "https://fhir.example.org/fhir"
TOKEN_URL = "https://auth.example.org/token"


def test_bearer_from_env_and_file_never_leaks(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization", ""))
        return httpx.Response(503)

    monkeypatch.setenv("LEOPARD_TEST_TOKEN", SECRET)
    (tmp_path / "token").write_text(SECRET + "\n")
    caplog.set_level(logging.DEBUG)
    for auth in (BearerToken.from_env("LEOPARD_TEST_TOKEN"), BearerToken.from_file(tmp_path / "token")):
        client = FhirRestClient(
            BASE, auth=auth, max_retries=1, transport=httpx.MockTransport(handler), sleep=lambda s: None
        )
        with pytest.raises(SourceError) as err:
            client.capability()
        assert SECRET not in str(err.value) and SECRET not in repr(auth) and SECRET not in repr(client)
    assert seen == [f"Bearer {SECRET}"] * 4
    assert SECRET not in caplog.text and "retrying GET" in caplog.text
    with pytest.raises(ConfigError, match="LEOPARD_UNSET_VAR") as err2:
        BearerToken.from_env("LEOPARD_UNSET_VAR")
    assert SECRET not in str(err2.value)


def _keys(alg: str) -> tuple[bytes, Any]:
    key: Any = (
        rsa.generate_private_key(65537, 2048) if alg == "RS384" else ec.generate_private_key(ec.SECP384R1())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key.public_key()


@pytest.mark.parametrize("alg", ["RS384", "ES384"])
def test_smart_backend_services_discovery_assertion_and_refresh(alg: str) -> None:
    pem, public = _keys(alg)
    issued: list[str] = []
    now = [1_000_000.0]

    def handler(request: httpx.Request) -> httpx.Response:
        url = str(request.url)
        if url.endswith("/.well-known/smart-configuration"):
            return httpx.Response(200, json={"token_endpoint": TOKEN_URL})
        if url == TOKEN_URL:
            form = {k: v[0] for k, v in parse_qs(request.content.decode()).items()}
            claims = jwt.decode(
                form["client_assertion"],
                public,
                algorithms=[alg],
                audience=TOKEN_URL,
                options={"verify_exp": False, "verify_iat": False},
            )  # fake clock
            assert claims["exp"] - claims["iat"] == 300 and claims["iat"] == int(now[0])
            assert claims["iss"] == claims["sub"] == "leopard" and form["grant_type"] == "client_credentials"
            assert jwt.get_unverified_header(form["client_assertion"])["kid"] == "k1"
            issued.append(f"tok{len(issued)}")
            return httpx.Response(200, json={"access_token": issued[-1], "expires_in": 300})
        auth_header = request.headers.get("Authorization")
        if auth_header == "Bearer revoked":
            return httpx.Response(401)
        return httpx.Response(
            200, json={"resourceType": "CapabilityStatement", "fhirVersion": "4.0.1", "seen": auth_header}
        )

    transport = httpx.MockTransport(handler)
    auth = SmartBackendAuth(
        BASE, "leopard", pem, alg=alg, kid="k1", transport=transport, clock=lambda: now[0]
    )
    client = FhirRestClient(BASE, auth=auth, transport=transport)
    assert client.capability()["seen"] == "Bearer tok0"
    now[0] += 200  # within the validity minus the refresh margin: same token
    assert client.capability()["seen"] == "Bearer tok0"
    now[0] += 50  # 250 s: less than a minute left, renewed before expiry
    assert client.capability()["seen"] == "Bearer tok1"
    auth._token = "revoked"  # the server drops it early: one fresh token and one retry
    assert client.capability()["seen"] == "Bearer tok2"
    assert auth.tokens_fetched == 3 and pem.decode()[40:80] not in repr(auth)


def test_smart_refused_client_is_a_source_error() -> None:
    pem, _ = _keys("RS384")
    transport = httpx.MockTransport(lambda r: httpx.Response(401, json={"error": "invalid_client"}))
    auth = SmartBackendAuth(BASE, "leopard", pem, token_url=TOKEN_URL, transport=transport)
    with pytest.raises(SourceError, match=r"refused the client leopard \(401, invalid_client"):
        FhirRestClient(BASE, auth=auth, transport=transport).capability()


def test_bulk_manifest_errors_are_quarantined_and_token_only_when_required(tmp_path: Path) -> None:
    files = {
        "Patient": b"\n".join(orjson.dumps(r) for r in small_cohort(1) if r["resourceType"] == "Patient"),
        "err": orjson.dumps(
            {
                "resourceType": "OperationOutcome",
                "issue": [
                    {
                        "severity": "error",
                        "code": "exception",
                        "diagnostics": "Observation/o9 could not be exported",
                    },
                    {"severity": "warning", "code": "informational", "diagnostics": "slow disk"},
                ],
            }
        ),
    }
    polls: list[int] = []
    auth_on_files: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path.endswith("/$export"):
            assert request.headers["Prefer"] == "respond-async" and "Patient" in request.url.params["_type"]
            return httpx.Response(202, headers={"Content-Location": f"{BASE}/status/1"})
        if path.endswith("/status/1"):
            if request.method == "DELETE":
                return httpx.Response(202)
            polls.append(1)
            if len(polls) < 3:
                return httpx.Response(202, headers={"Retry-After": "2", "X-Progress": "50%"})
            return httpx.Response(
                200,
                json={
                    "transactionTime": "2024-05-01T10:00:00Z",
                    "requiresAccessToken": False,
                    "output": [{"type": "Patient", "url": f"{BASE}/files/Patient"}],
                    "error": [{"type": "OperationOutcome", "url": f"{BASE}/files/err"}],
                },
            )
        auth_on_files.append(request.headers.get("Authorization"))
        return httpx.Response(200, content=files[path.rsplit("/", 1)[1]])

    waits: list[float] = []
    out = bulk_export(
        BASE, tmp_path, auth=BearerToken(SECRET), transport=httpx.MockTransport(handler), sleep=waits.append
    )
    assert [p.name for p in out] == ["000-Patient.ndjson"] and waits == [2.0, 2.0]
    assert auth_on_files == [None, None]  # requiresAccessToken false: the token is not sent
    sink = EventSink()
    read_bulk_export(tmp_path, CodeMatcher(load_mappings()), sink)
    assert [q.reason for q in sink.quarantined] == ["bulk export error: Observation/o9 could not be exported"]
    assert sink.watermark == "2024-05-01T10:00:00Z" and len(sink.patients) == 1 and sink.stats.balanced()
    assert patient("p0")["id"] == sink.patients[0].patient_id
