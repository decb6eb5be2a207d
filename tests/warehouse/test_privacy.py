"""Pseudonymisation (keyed, stable, everywhere a patient id appears) and URL redaction."""

from __future__ import annotations

import pandas as pd
import pytest

from leopard_etl.errors import ConfigError
from leopard_etl.privacy import key_from_env, pseudonym, pseudonymise, redact_source

KEY = b"0123456789abcdef-site-key"


def test_pseudonyms_replace_ids_and_patient_references_stably() -> None:
    frames = {
        "patient": pd.DataFrame(
            {
                "patient_id": ["1000001", "1000002"],
                "source_ids": ["fhir:Patient/1000001;fhir:Condition/x", "omop:person/1000002"],
            }
        ),
        "lesion": pd.DataFrame({"patient_id": ["1000001", "1000001"], "site": ["lung", "brain"]}),
        "cohort_attrition": pd.DataFrame({"step": ["nsclc"], "n": [2]}),
    }
    out = pseudonymise(frames, KEY)
    p1 = pseudonym("1000001", KEY)
    assert len(p1) == 32 and p1 != pseudonym("1000001", KEY + b"x")
    assert list(out["patient"]["patient_id"]) == [p1, pseudonym("1000002", KEY)]
    assert list(out["lesion"]["patient_id"]) == [p1, p1]
    assert out["patient"].loc[0, "source_ids"] == f"fhir:Patient/{p1};fhir:Condition/x"
    assert "1000002" not in out["patient"].loc[1, "source_ids"]
    assert out["cohort_attrition"].equals(frames["cohort_attrition"])
    assert frames["patient"].loc[0, "patient_id"] == "1000001"  # inputs untouched
    assert pseudonymise(frames, KEY)["lesion"].equals(out["lesion"])  # stable across runs


def test_key_comes_from_the_named_variable() -> None:
    assert key_from_env("SITE_KEY", {"SITE_KEY": KEY.decode()}) == KEY
    with pytest.raises(ConfigError, match="SITE_KEY"):
        key_from_env("SITE_KEY", {})
    with pytest.raises(ConfigError, match="at least 16"):
        key_from_env("SITE_KEY", {"SITE_KEY": "short"})


def test_redaction() -> None:
    assert (
        redact_source("postgresql+psycopg://etl:pw@db:5432/omop")
        == "postgresql+psycopg://etl:***@db:5432/omop"
    )
    assert redact_source("/data/export.ndjson") == "/data/export.ndjson"
    assert redact_source("https://h/fhir?access_token=t&x=1") == "https://h/fhir?access_token=***&x=1"
