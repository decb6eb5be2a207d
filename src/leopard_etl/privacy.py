"""Keep patient identity and credentials out of what leaves the site.

Outputs shared beyond the hospital (patients.csv, warehouse extracts) carry a keyed
pseudonym instead of the hospital patient id: HMAC-SHA256 under a site key, so the
same patient gets the same pseudonym on every run (results stay linkable over
time) while nobody without the key can recompute or reverse it. Patient
references inside provenance columns (``fhir:Patient/123``, ``omop:person/123``) are
replaced too. The key is read from an environment variable named in the
configuration, never from the configuration itself.

:func:`redact_source` strips passwords, tokens and query strings from a source or
warehouse URL before it is logged or stored in the run log.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from urllib.parse import urlsplit, urlunsplit

import pandas as pd

from leopard_etl.errors import ConfigError

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
        if value is None or (isinstance(value, float) and pd.isna(value)):
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


_SECRET_PARAM = re.compile(r"(?i)(password|passwd|pwd|token|secret|key|sig|signature|access_token)")


def redact_source(source: str) -> str:
    """``source`` without userinfo password and without secret-looking query parameters."""
    try:
        parts = urlsplit(source)
    except ValueError:
        return source
    if not parts.scheme or not parts.netloc:
        return source
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, host = netloc.rsplit("@", 1)
        user = userinfo.split(":", 1)[0]
        netloc = f"{user}:***@{host}" if ":" in userinfo else f"{user}@{host}"
    query = "&".join(
        f"{k}=***" if _SECRET_PARAM.search(k) else (f"{k}={v}" if sep else k)
        for k, sep, v in (p.partition("=") for p in parts.query.split("&") if p)
    )
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))

