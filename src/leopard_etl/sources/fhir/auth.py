"""Authentication to a FHIR server: a static bearer token, or SMART Backend Services.

Secrets come from an environment variable *name* or a file *path* (never from
argv, where ``ps`` shows them), and never appear in reprs, logs or exception
messages. SMART Backend Services (client_credentials with a JWT assertion signed
RS384 / ES384) discovers its token endpoint in ``.well-known/smart-configuration``
and refreshes the access token a minute before it expires (a fifth of its lifetime
for a token valid less than five minutes), or once on a 401.

:func:`auth_from_config` builds the scheme a run's settings name. Where the token
goes is not decided here: :class:`.transport.HttpPolicy` attaches an :class:`Auth`
only to requests for the configured server's origin.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import jwt
import orjson

from ...errors import ConfigError, SourceError
from ...privacy import redact_source

if TYPE_CHECKING:
    from ...config import RunConfig

__all__ = ["Auth", "BearerToken", "SmartBackendAuth", "auth_from_config"]

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REFRESH_MARGIN = 60.0  # seconds before expiry at which a token is renewed


class Auth(httpx.Auth):
    """Base of our auth schemes (an :class:`httpx.Auth`)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(<hidden>)"


def _secret_from(env: str | None, file: Path | str | None, what: str) -> str:
    if env:
        value = os.environ.get(env)
        if not value:
            raise ConfigError(f"environment variable {env} for the {what} is not set", fix=f"export {env}")
        return value.strip()
    if file:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError:
            raise ConfigError(
                f"cannot read the {what} file {file}", fix="check the path and permissions"
            ) from None
        if not value:
            raise ConfigError(f"the {what} file {file} is empty", fix="write the secret into it")
        return value
    raise ConfigError(f"no {what} given", fix="name an environment variable or a file that holds it")


class BearerToken(Auth):
    """``Authorization: Bearer …`` with a static token."""

    def __init__(self, token: str) -> None:
        self._token = token

    @classmethod
    def from_env(cls, name: str) -> BearerToken:
        return cls(_secret_from(name, None, "bearer token"))

    @classmethod
    def from_file(cls, path: Path | str) -> BearerToken:
        return cls(_secret_from(None, path, "bearer token"))

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token}"
        yield request


class SmartBackendAuth(Auth):
    """SMART Backend Services: a short-lived access token bought with a signed JWT assertion."""

    def __init__(
        self,
        base_url: str,
        client_id: str,
        private_key_pem: bytes | str,
        *,
        alg: str = "RS384",
        kid: str | None = None,
        scope: str = "system/*.read",
        token_url: str | None = None,
        transport: httpx.BaseTransport | None = None,
        verify: bool = True,
        timeout: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if alg not in ("RS384", "ES384"):
            raise ConfigError(f"SMART assertion algorithm {alg} is not supported", fix="use RS384 or ES384")
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self._key = private_key_pem
        self.alg = alg
        self.kid = kid
        self.scope = scope
        self.token_url = token_url
        self._http = httpx.Client(transport=transport, verify=verify, timeout=timeout)
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._margin = REFRESH_MARGIN
        self.tokens_fetched = 0

    @classmethod
    def from_key_file(
        cls, base_url: str, client_id: str, key_path: Path | str, **kw: object
    ) -> SmartBackendAuth:
        return cls(base_url, client_id, _secret_from(None, key_path, "SMART private key"), **kw)  # type: ignore[arg-type]

    def _discover(self) -> str:
        url = f"{self.base_url}/.well-known/smart-configuration"
        try:
            resp = self._http.get(url, headers={"Accept": "application/json"})
            endpoint = orjson.loads(resp.content).get("token_endpoint") if resp.status_code == 200 else None
        except (httpx.HTTPError, orjson.JSONDecodeError, AttributeError):
            endpoint = None
        if not isinstance(endpoint, str) or not endpoint:
            raise SourceError(
                f"no token_endpoint in {redact_source(url)}",
                fix="give the token URL explicitly (smart.token_url)",
            )
        return endpoint

    def _assertion(self, token_url: str) -> str:
        now = int(self._clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": token_url,
            "exp": now + 300,
            "iat": now,
            "jti": uuid.uuid4().hex,
        }
        headers = {"kid": self.kid} if self.kid else None
        try:
            return jwt.encode(claims, self._key, algorithm=self.alg, headers=headers)
        except (ValueError, TypeError, jwt.PyJWTError):
            raise ConfigError(
                "the SMART private key cannot sign the assertion",
                fix=f"give a PEM private key matching {self.alg}",
            ) from None

    def _fetch(self) -> None:
        token_url = self.token_url = self.token_url or self._discover()
        form = {
            "grant_type": "client_credentials",
            "scope": self.scope,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": self._assertion(token_url),
        }
        try:
            resp = self._http.post(token_url, data=form, headers={"Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise SourceError(
                f"token endpoint {redact_source(token_url)} unreachable ({type(exc).__name__})",
                fix="check the network and the token URL",
            ) from None
        try:
            body = orjson.loads(resp.content)
        except orjson.JSONDecodeError:
            body = {}
        if resp.status_code != 200 or not isinstance(body, dict) or not body.get("access_token"):
            err = body.get("error") if isinstance(body, dict) else None
            raise SourceError(
                f"token endpoint {redact_source(token_url)} refused the client {self.client_id} "
                f"({resp.status_code}{', ' + str(err) if err else ''})",
                fix="check the client id, its registered public key and the scope",
            )
        self._token = str(body["access_token"])
        try:
            lifetime = float(body.get("expires_in") or 300)
        except (TypeError, ValueError):
            lifetime = 300.0
        self._expires = self._clock() + lifetime
        self._margin = min(REFRESH_MARGIN, lifetime / 5)
        self.tokens_fetched += 1

    def _current(self, force: bool = False) -> str:
        with self._lock:
            if force or self._token is None or self._clock() >= self._expires - self._margin:
                self._fetch()
            assert self._token is not None
            return self._token

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._current()}"
        response = yield request
        if response.status_code == 401:  # revoked or expired early: one fresh token, one retry
            request.headers["Authorization"] = f"Bearer {self._current(force=True)}"
            yield request


def auth_from_config(
    cfg: RunConfig,
    *,
    base_url: str | None = None,
    env: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    verify: bool = True,
    clock: Callable[[], float] = time.time,
) -> Auth | None:
    """The FHIR credentials ``cfg`` names: SMART Backend Services, a bearer token, or ``None``.

    ``base_url`` is the server whose ``.well-known/smart-configuration`` names the token
    endpoint when ``smart.token_url`` is not set (default: the first http(s) source of
    ``cfg.fhir``). Secrets are read now, from the variable or file the settings name; a
    missing one is a :class:`ConfigError` naming the variable or file, never its content.
    """
    from ...config import resolve_secret

    smart = cfg.smart
    if smart.client_id:
        pem = resolve_secret(smart.private_key_env, smart.private_key_file, env)
        if not pem:
            raise ConfigError(
                f"the SMART private key file {smart.private_key_file} is empty",
                fix="write the PEM private key into it",
            )
        base = base_url or next((s for s in cfg.fhir if s.startswith(("http://", "https://"))), None)
        if base is None and smart.token_url is None:
            raise ConfigError(
                "SMART Backend Services needs a FHIR server URL or smart.token_url",
                fix="give the server base URL in fhir, or set smart.token_url",
            )
        return SmartBackendAuth(
            base or "",
            smart.client_id,
            pem.encode("utf-8"),
            alg=smart.algorithm,
            kid=smart.key_id,
            scope=smart.scopes,
            token_url=smart.token_url,
            transport=transport,
            verify=verify,
            clock=clock,
        )
    token = resolve_secret(cfg.bearer_token_env, cfg.bearer_token_file, env)
    if token:
        return BearerToken(token)
    if cfg.bearer_token_file is not None:
        raise ConfigError(
            f"the bearer token file {cfg.bearer_token_file} is empty", fix="write the token into it"
        )
    return None
