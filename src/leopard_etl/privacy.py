"""Keep patient identity and credentials out of what leaves the site.

Outputs shared beyond the hospital (patients.csv, warehouse extracts) carry a keyed
pseudonym instead of the hospital patient id: HMAC-SHA256 under a site key, so the
same patient gets the same pseudonym on every run (results stay linkable over
time) while nobody without the key can recompute or reverse it. Patient
references inside provenance columns (``fhir:Patient/123``, ``omop:person/123``) are
replaced too. The key is read from an environment variable named in the
configuration, never from the configuration itself.

:func:`redact_source` is the one redaction function: it masks passwords and secret
query parameters (tokens, keys, signatures, OAuth codes) in a URL, or in every URL of a
free-text message, before it is logged, raised, or stored in a table or a file.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from leopard_etl.errors import ConfigError

if TYPE_CHECKING:  # pandas only for pseudonymise: redact_source is imported by every HTTP reader
    import pandas as pd

__all__ = ["PSEUDONYM_LENGTH", "check_key", "key_from_env", "pseudonym", "pseudonymise", "redact_source"]

PSEUDONYM_LENGTH = 32
MIN_KEY_BYTES = 16
#: Columns holding ';'-joined source references, where patient references are pseudonymised too.
REFERENCE_COLUMNS = ("source_ids", "source")
_PATIENT_REF = re.compile(r"(fhir:Patient/|omop:person/)([^;]+)")


def pseudonym(patient_id: str, key: bytes) -> str:
    """Keyed hash of one patient id (hex, 32 characters = 128 bits)."""
    return hmac.new(key, patient_id.encode("utf-8"), hashlib.sha256).hexdigest()[:PSEUDONYM_LENGTH]


def check_key(key: bytes) -> None:
    if len(key) < MIN_KEY_BYTES:
        raise ConfigError(
            f"pseudonymisation key is {len(key)} bytes, at least {MIN_KEY_BYTES} are needed",
            fix="generate one with: python -c 'import secrets; print(secrets.token_hex(32))'",
        )


def pseudonymise(frames: Mapping[str, pd.DataFrame], key: bytes) -> dict[str, pd.DataFrame]:
    """Copies of ``frames`` with every ``patient_id`` (and patient reference) replaced by its pseudonym."""
    check_key(key)
    cache: dict[str, str] = {}

    def one(value: object) -> object:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return value
        text = str(value)
        if text not in cache:
            cache[text] = pseudonym(text, key)
        return cache[text]

    def refs(value: object) -> object:
        if not isinstance(value, str):
            return value
        return _PATIENT_REF.sub(lambda m: m.group(1) + str(one(m.group(2))), value)

    out: dict[str, pd.DataFrame] = {}
    for name, df in frames.items():
        copy = df.copy()
        if "patient_id" in copy.columns:
            copy["patient_id"] = copy["patient_id"].map(one)
        for column in REFERENCE_COLUMNS:
            if column in copy.columns:
                copy[column] = copy[column].map(refs)
        out[name] = copy
    return out


def key_from_env(env_name: str | None, env: Mapping[str, str]) -> bytes:
    """The pseudonymisation key from the variable ``env_name`` (never logged)."""
    if not env_name:
        raise ConfigError("pseudonymisation needs a key", fix="set pseudonymise_key_env to an env var name")
    value = env.get(env_name)
    if not value:
        raise ConfigError(
            f"environment variable {env_name} (pseudonymisation key) is not set or empty",
            fix=f"export {env_name}=<at least {MIN_KEY_BYTES} random bytes, e.g. 64 hex characters>",
        )
    key = value.encode("utf-8")
    check_key(key)
    return key


#: Query / fragment parameter names whose values are secrets: any name containing one of these…
_SECRET_PARTS = (
    "password",
    "passwd",
    "pwd",
    "token",
    "secret",
    "key",
    "sig",
    "credential",
    "assertion",
    "session",
)
#: …or exactly one of these (OAuth authorization ``code``, HTTP ``auth``; FHIR's own ``code``
#: search parameter is masked too — a clinical code is no secret, but it costs nothing).
_SECRET_NAMES = frozenset({"code", "auth", "authorization", "jwt", "pass", "client_assertion"})
#: A URL inside free text (an error message, a log line): scheme://… up to white space or a quote.
_URL_IN_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")
MASK = "***"


def _secret_name(name: str) -> bool:
    plain = unquote_plus(name).strip().lower().replace("-", "_")
    return plain in _SECRET_NAMES or any(part in plain for part in _SECRET_PARTS)


def _redact_params(text: str) -> str:
    """``a=1&access_token=x`` → ``a=1&access_token=***``; unchanged (byte for byte) when nothing is secret."""
    parts = text.split("&")
    out = []
    changed = False
    for part in parts:
        name, sep, _ = part.partition("=")
        if sep and _secret_name(name):
            out.append(f"{name}={MASK}")
            changed = True
        else:
            out.append(part)
    return "&".join(out) if changed else text


def _redact_url(url: str) -> str:
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        scheme = url.split("://", 1)[0]
        return f"{scheme}://{MASK}"  # cannot tell the secret parts apart: hide all but the scheme
    if not parts.scheme or not parts.netloc:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{user}@{host}"
    query = _redact_params(parts.query)
    fragment = _redact_params(parts.fragment) if "=" in parts.fragment else parts.fragment
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_source(source: str) -> str:
    """``source`` with every secret a URL can carry replaced by ``***``: the one redaction function.

    A URL (``https://user:pw@host/fhir?access_token=t&_count=10``) keeps its scheme, user, host,
    path and harmless parameters; the userinfo password and the values of secret-looking
    query or fragment parameters (``access_token``, ``token``, ``key``, ``code``,
    ``client_secret``, ``X-Amz-Signature``, ``sig``, ``password`` …) become ``***``.
    Free text (an error message, a log line) has every URL in it redacted the same way;
    text without a URL, such as a file path, comes back unchanged, as does a URL without
    secrets (byte for byte: the run log keys watermarks by the redacted source).
    Use it for every URL that reaches a message, a log, a table or a file.
    """
    if "://" not in source:
        return source
    if _URL_IN_TEXT.fullmatch(source):
        return _redact_url(source)
    return _URL_IN_TEXT.sub(lambda m: _redact_url(m.group(0)), source)
