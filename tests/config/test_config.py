"""Configuration: file < LEOPARD_* env < CLI overrides, one-line errors, secrets by name only."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from leopard_etl.config import load_config, resolve_secret
from leopard_etl.errors import ConfigError
from leopard_etl.logs import configure_logging

DOCS = Path(__file__).parents[2] / "docs"


def test_precedence_and_nested_env(tmp_path: Path) -> None:
    cfg_file = tmp_path / "leopard.yaml"
    cfg_file.write_text(
        "warehouse: duckdb:///a.duckdb\nout: from-file\nrules:\n  lesion_window_days: 20\n"
        "  salvage_window_days: 60\n"
    )
    env = {
        "LEOPARD_OUT": "from-env",
        "LEOPARD_RULES__LESION_WINDOW_DAYS": "45",
        "LEOPARD_FHIR": "a.ndjson, b.ndjson",
        "LEOPARD_HOME": "/elsewhere",
        "PATH": "/bin",
    }
    cfg = load_config(cfg_file, {"warehouse": "duckdb:///cli.duckdb", "out": None}, env)
    assert cfg.warehouse == "duckdb:///cli.duckdb"  # CLI beats file
    assert cfg.out == Path("from-env")  # env beats file; a None override is "not given"
    assert cfg.rules.lesion_window_days == 45 and cfg.rules.salvage_window_days == 60
    assert cfg.rules.rt_window_days == 180  # untouched defaults stay normative
    assert cfg.fhir == ["a.ndjson", "b.ndjson"]


def test_toml_and_the_documented_example_load(tmp_path: Path) -> None:
    toml = tmp_path / "leopard.toml"
    toml.write_text(
        'omop = "postgresql+psycopg://etl@db/cdm"\ncdm_schema = "cdm"\n[rules]\noligo_max_lesions = 5\n'
    )
    cfg = load_config(toml, {}, {})
    assert (cfg.omop, cfg.cdm_schema, cfg.rules.oligo_max_lesions) == (
        "postgresql+psycopg://etl@db/cdm",
        "cdm",
        5,
    )
    example = load_config(DOCS / "config.example.yaml", {}, {})
    assert example.warehouse_password_env == "LEOPARD_WAREHOUSE_PASSWORD"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("rules:\n  lesion_window_days: soon\n", {}, r"^rules\.lesion_window_days: .*integer.*config file"),
        (
            "",
            {"LEOPARD_RULES__LESION_WINDOW_DAYS": "x"},
            r"rules\.lesion_window_days: .*LEOPARD_RULES__LESION",
        ),
        ("warehous: duckdb:///x\n", {}, r"^warehous: unknown setting"),
        ("warehouse: postgresql://etl:s3cret@db/w\n", {}, r"^warehouse: the URL contains a password"),
        ("warehouse_schema: 'a; drop'\n", {}, r"^warehouse_schema: .*identifier"),
        ("out: [unclosed\n", {}, r"not valid YAML"),
        ("- a\n- b\n", {}, r"must hold a mapping"),
    ],
)
def test_bad_settings_name_the_field(tmp_path: Path, text: str, env: dict[str, str], expected: str) -> None:
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(text)
    with pytest.raises(ConfigError, match=expected) as info:
        load_config(cfg_file, {}, env)
    assert "\n" not in str(info.value)
    assert "s3cret" not in str(info.value)


def test_missing_file_and_unknown_suffix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml", {}, {})
    (tmp_path / "c.ini").write_text("x=1")
    with pytest.raises(ConfigError, match="neither YAML nor TOML"):
        load_config(tmp_path / "c.ini", {}, {})


def test_secrets_are_resolved_by_name(tmp_path: Path) -> None:
    cfg = load_config(
        None, {"bearer_token_env": "LEOPARD_FHIR_TOKEN"}, {"LEOPARD_FHIR_TOKEN": "s3cr3t-value"}
    )
    assert "s3cr3t-value" not in repr(cfg)  # the variable named as a secret is not read as a setting
    assert (
        resolve_secret(cfg.bearer_token_env, None, {"LEOPARD_FHIR_TOKEN": "s3cr3t-value"}) == "s3cr3t-value"
    )
    token_file = tmp_path / "token"
    token_file.write_text("from-file\n")
    assert resolve_secret(None, token_file, {}) == "from-file"
    assert resolve_secret(None, None, {}) is None
    with pytest.raises(ConfigError, match="LEOPARD_FHIR_TOKEN is not set"):
        resolve_secret("LEOPARD_FHIR_TOKEN", None, {})


def test_json_logs_carry_extra_fields() -> None:
    stream = io.StringIO()
    handler = configure_logging(json=True, stream=stream)
    try:
        logging.getLogger("leopard_etl.warehouse").info("run %s ended", "r1", extra={"run_id": "r1", "n": 3})
    finally:
        logging.getLogger("leopard_etl").removeHandler(handler)
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert (entry["msg"], entry["level"], entry["run_id"], entry["n"]) == ("run r1 ended", "info", "r1", 3)


def test_database_password_comes_from_the_named_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    from leopard_etl.config import url_with_password

    monkeypatch.setenv("OMOP_DB_PASSWORD", "s3cr3t")
    url = url_with_password("postgresql+psycopg://etl@db:5432/omop", "OMOP_DB_PASSWORD")
    assert url == "postgresql+psycopg://etl:s3cr3t@db:5432/omop"
    assert url_with_password("duckdb:///cdm.duckdb", None) == "duckdb:///cdm.duckdb"
