"""FHIR access settings (issue 13): SMART Backend Services, read limits, no credentials in URLs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from leopard_etl.config import load_config
from leopard_etl.errors import ConfigError

DOCS = Path(__file__).parents[2] / "docs"


def test_smart_and_limits_from_file_and_env(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg_file = tmp_path / "leopard.yaml"
    cfg_file.write_text(
        "fhir: [https://fhir.example.org/r4]\n"
        "smart:\n  client_id: leopard\n  private_key_env: SITE_SMART_KEY\n  key_id: k1\n"
        "  algorithm: ES384\n  scopes: system/Patient.rs  system/Condition.rs\n"
        "fhir_limits:\n  max_pages: 500\n"
    )
    env = {
        "LEOPARD_FHIR_LIMITS__BULK_MAX_WAIT_SECONDS": "7200",
        "LEOPARD_SMART__TOKEN_URL": "https://auth.example.org/token",
        "SITE_SMART_KEY": "-----BEGIN PRIVATE KEY-----",  # a secret, not a setting: not read, not warned
    }
    caplog.set_level(logging.WARNING)
    cfg = load_config(cfg_file, {}, env)
    assert (cfg.smart.client_id, cfg.smart.algorithm, cfg.smart.key_id) == ("leopard", "ES384", "k1")
    assert cfg.smart.scopes == "system/Patient.rs system/Condition.rs"
    assert cfg.smart.token_url == "https://auth.example.org/token"
    assert cfg.fhir_limits.max_pages == 500 and cfg.fhir_limits.bulk_max_wait_seconds == 7200
    assert cfg.fhir_limits.max_read_seconds == 6 * 3600 and cfg.fhir_limits.bulk_poll_seconds == 5
    assert "SITE_SMART_KEY" not in caplog.text


def test_defaults_are_safe() -> None:
    cfg = load_config(None, {}, {})
    assert cfg.smart.client_id is None and cfg.smart.scopes == "system/*.read"
    limits = cfg.fhir_limits
    assert (limits.max_pages, limits.max_read_seconds, limits.bulk_max_wait_seconds) == (10_000, 21600, 21600)


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"smart": {"client_id": "c"}}, r"^smart: name the private key with exactly one of"),
        (
            {"smart": {"client_id": "c", "private_key_env": "K", "private_key_file": "/k.pem"}},
            r"^smart: name the private key with exactly one",
        ),
        ({"smart": {"private_key_env": "K"}}, r"^smart: client_id is needed"),
        ({"smart": {"client_id": "c", "private_key_env": "K", "algorithm": "HS256"}}, r"^smart\.algorithm: "),
        ({"smart": {"client_id": "c", "private_key_env": "K", "scopes": "system/*.write"}}, r"write access"),
        ({"smart": {"client_id": "c", "private_key_env": "K", "scopes": "system/*.cruds"}}, r"write access"),
        ({"smart": {"client_id": "c", "private_key_env": "K", "scopes": " "}}, r"at least one scope"),
        (
            {"smart": {"client_id": "c", "private_key_env": "K", "token_url": "http://auth.example.org/t"}},
            r"^smart\.token_url: the token URL must use https",
        ),
        (
            {"smart": {"client_id": "c", "private_key_env": "K", "token_url": "https://a:pw@auth/t"}},
            r"^smart\.token_url: .*credentials",
        ),
        ({"smart": {"client_id": "c", "private_key_env": "K"}, "bearer_token_env": "T"}, r"keep one"),
        ({"fhir_limits": {"max_pages": 0}}, r"^fhir_limits\.max_pages: .*greater than or equal to 1"),
        ({"fhir_limits": {"max_read_seconds": -1}}, r"^fhir_limits\.max_read_seconds: .*greater than 0"),
        ({"fhir_limits": {"bulk_poll_seconds": 0.1}}, r"^fhir_limits\.bulk_poll_seconds: "),
        ({"fhir_limits": {"max_wait": 1}}, r"^fhir_limits\.max_wait: unknown setting"),
        (
            {"fhir": ["https://etl:s3cret@fhir.example.org/r4"]},
            r"^fhir: a FHIR server URL carries a credential",
        ),
        ({"fhir": ["https://fhir.example.org/r4?access_token=s3cret"]}, r"^fhir: .*carries a credential"),
    ],
)
def test_bad_fhir_settings_are_one_line(settings: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(None, settings, {})
    assert "\n" not in str(info.value) and "s3cret" not in str(info.value)
    assert info.value.exit_code == 2


def test_local_paths_are_not_urls() -> None:
    cfg = load_config(None, {"fhir": ["/data/key=1/export.ndjson", "https://fhir.example.org/r4"]}, {})
    assert cfg.fhir[0] == "/data/key=1/export.ndjson"


def test_documented_example_names_every_fhir_setting() -> None:
    example = (DOCS / "config.example.yaml").read_text()
    reference = (DOCS / "configuration.md").read_text()
    cfg = load_config(DOCS / "config.example.yaml", {}, {})
    assert cfg.fhir_limits.max_pages == 10_000
    for name in (
        "client_id",
        "token_url",
        "private_key_env",
        "private_key_file",
        "key_id",
        "algorithm",
        "scopes",
    ):
        assert f"{name}:" in example and f"smart.{name}" in reference
    for name in ("max_pages", "max_read_seconds", "bulk_max_wait_seconds", "bulk_poll_seconds"):
        assert f"{name}:" in example and f"fhir_limits.{name}" in reference
