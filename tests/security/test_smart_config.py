"""Issue 13: SMART Backend Services from the configuration, against a token endpoint on loopback.

The FHIR server and the token endpoint are two fake servers (two origins). The token is
obtained with a signed JWT assertion (checked with pyjwt and the public key), reused
until shortly before it expires, then renewed; it never goes to the token endpoint's
origin, and the assertion never goes to the FHIR server.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from fake_fhir import CAPABILITY, FakeServer, Reply, Seen

from leopard_etl.config import load_config
from leopard_etl.errors import ConfigError
from leopard_etl.sources.fhir import BearerToken, FhirRestClient, SmartBackendAuth
from leopard_etl.sources.fhir.auth import ASSERTION_TYPE, auth_from_config

SCOPES = "system/Patient.rs system/Condition.rs"


def keypair(alg: str) -> tuple[bytes, Any]:
    key: Any = (
        rsa.generate_private_key(65537, 2048) if alg == "RS384" else ec.generate_private_key(ec.SECP384R1())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return pem, key.public_key()


@pytest.mark.parametrize(("alg", "by"), [("RS384", "file"), ("ES384", "env")])
def test_smart_from_config_token_reused_then_renewed(
    origins: tuple[FakeServer, FakeServer], tmp_path: Path, alg: str, by: str
) -> None:
    server, auth_server = origins
    token_url = f"{auth_server.origin}/oauth/token"
    issued: list[str] = []

    def fhir(fake: FakeServer, seen: Seen) -> Reply:
        if seen.path.endswith("/.well-known/smart-configuration"):
            return 200, {}, {"token_endpoint": token_url}
        return 200, {}, CAPABILITY

    def token_endpoint(fake: FakeServer, seen: Seen) -> Reply:
        issued.append(f"tok{len(issued)}")
        return 200, {}, {"access_token": issued[-1], "token_type": "bearer", "expires_in": 300}

    server.route, auth_server.route = fhir, token_endpoint
    pem, public = keypair(alg)
    smart: dict[str, Any] = {"client_id": "leopard-etl", "key_id": "k1", "algorithm": alg, "scopes": SCOPES}
    env = {}
    if by == "file":
        (tmp_path / "key.pem").write_bytes(pem)
        smart["private_key_file"] = str(tmp_path / "key.pem")
    else:
        smart["private_key_env"] = "SITE_SMART_KEY"
        env["SITE_SMART_KEY"] = pem.decode()
    cfg = load_config(None, {"fhir": [server.base], "smart": smart}, env)
    now = [1_700_000_000.0]
    auth = auth_from_config(cfg, env=env, clock=lambda: now[0])
    assert isinstance(auth, SmartBackendAuth) and pem.decode()[30:60] not in repr(auth)

    def bearer_seen() -> str | None:
        with FhirRestClient(server.base, auth=auth) as client:
            client.capability()
        return server.seen[-1].authorization

    assert bearer_seen() == "Bearer tok0"  # discovered the endpoint, got a token
    times = [now[0]]
    now[0] += 200
    assert bearer_seen() == "Bearer tok0"  # reused: 100 s left
    now[0] += 45
    assert bearer_seen() == "Bearer tok1"  # 55 s left (< 60 s margin): renewed before expiry
    times.append(now[0])
    now[0] += 100
    assert bearer_seen() == "Bearer tok1"

    posts = [s for s in auth_server.seen if s.method == "POST"]
    assert len(posts) == 2 and auth_server.with_token() == []  # the access token never went there
    jtis = set()
    for post, at in zip(posts, times, strict=True):
        form = {k: v[0] for k, v in parse_qs(post.body.decode()).items()}
        assert form["grant_type"] == "client_credentials" and form["scope"] == SCOPES
        assert form["client_assertion_type"] == ASSERTION_TYPE
        assertion = form["client_assertion"]
        header = jwt.get_unverified_header(assertion)
        assert header["alg"] == alg and header["kid"] == "k1"
        claims = jwt.decode(
            assertion, public, algorithms=[alg], audience=token_url, options={"verify_exp": False}
        )  # signature and audience verified; expiry is in the fake clock's time
        assert claims["iss"] == claims["sub"] == "leopard-etl" and claims["aud"] == token_url
        assert claims["iat"] == int(at) and claims["exp"] == int(at) + 300
        jtis.add(claims["jti"])
    assert len(jtis) == 2
    assert not any("client_assertion" in s.body.decode() for s in server.seen)


def test_auth_from_config_bearer_none_and_errors(tmp_path: Path) -> None:
    env = {"SITE_FHIR_TOKEN": "t0k"}
    assert isinstance(
        auth_from_config(load_config(None, {"bearer_token_env": "SITE_FHIR_TOKEN"}, env), env=env),
        BearerToken,
    )
    assert auth_from_config(load_config(None, {}, {}), env={}) is None
    with pytest.raises(ConfigError, match="SITE_FHIR_TOKEN is not set"):
        auth_from_config(load_config(None, {"bearer_token_env": "SITE_FHIR_TOKEN"}, {}), env={})
    (tmp_path / "empty").write_text("")
    with pytest.raises(ConfigError, match=r"bearer token file .* is empty"):
        auth_from_config(load_config(None, {"bearer_token_file": str(tmp_path / "empty")}, {}), env={})
    smart = {"client_id": "c", "private_key_env": "SITE_KEY", "token_url": "https://auth.example.org/t"}
    with pytest.raises(ConfigError, match="SITE_KEY is not set") as err:
        auth_from_config(load_config(None, {"smart": smart}, {}), env={})
    assert "\n" not in str(err.value)
    no_server = {"client_id": "c", "private_key_env": "SITE_KEY"}
    with pytest.raises(ConfigError, match=r"needs a FHIR server URL or smart\.token_url"):
        auth_from_config(load_config(None, {"smart": no_server}, {}), env={"SITE_KEY": "pem"})
