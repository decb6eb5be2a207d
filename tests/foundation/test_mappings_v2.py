"""Spec v2 code families and aliases (§1 aliases, §2.1), each against the spec's own examples.

Expected values come from the spec text (and codes.md), not from the mapping files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from leopard_etl.errors import ConfigError
from leopard_etl.mappings import CodeMatcher, load_mappings


@pytest.fixture(scope="module")
def m() -> CodeMatcher:
    return CodeMatcher(load_mappings())


@pytest.mark.parametrize(
    ("uri", "record", "key"),
    [
        ("urn:oid:2.16.840.1.113883.6.96", None, "snomed"),
        ("urn:oid:2.16.840.1.113883.6.1", None, "loinc"),
        ("urn:oid:2.16.840.1.113883.6.88", None, "rxnorm"),
        ("urn:oid:2.16.840.1.113883.6.90", None, "icd10cm"),
        ("urn:oid:2.16.840.1.113883.6.3", None, "icd10"),
        ("urn:oid:2.16.840.1.113883.6.73", None, "atc"),
        ("urn:oid:2.16.840.1.113883.6.12", None, "cpt"),
        ("urn:oid:2.16.840.1.113883.6.4", None, "icd10pcs"),
        ("urn:oid:2.16.840.1.113883.6.103", "Condition", "icd9cm"),
        ("urn:oid:2.16.840.1.113883.6.104", "Procedure", "icd9proc"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "Condition", "icd9cm"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "Procedure", "icd9proc"),
        ("http://hl7.org/fhir/sid/icd-9-cm", "Observation", None),
        ("http://loinc.org|2.74", None, "loinc"),
        ("http://snomed.info/sct|http://snomed.info/sct/900000000000207008/version/20230131", None, "snomed"),
        ("http://snomed.info/sct/11000274103", None, "snomed"),
        ("http://snomed.info/sct/900000000000207008/version/20230131", None, "snomed"),
        ("http://fhir.de/CodeSystem/bfarm/icd-10-gm", None, "icd10gm"),
        ("http://fhir.de/CodeSystem/dimdi/icd-10-gm", None, "icd10gm"),
        ("http://fhir.de/CodeSystem/bfarm/atc", None, "atc"),
        ("http://fhir.de/CodeSystem/bfarm/ops", None, "ops"),
        ("https://www.uicc.org/resources/tnm", None, "uicc"),
        ("http://example.org/unknown", None, None),
    ],
)
def test_system_aliases(m: CodeMatcher, uri: str, record: str | None, key: str | None) -> None:
    assert m.system_for_fhir(uri, record) == key


def test_icd9_diagnoses_and_procedures_never_meet(m: CodeMatcher) -> None:
    """162.2 (bronchus) vs 16.22 (orbit aspiration): the same text once the dot is gone."""
    dx, px = m.normalise("icd9cm", "162.2"), m.normalise("icd9proc", "16.22")
    assert dx == px == "1622"
    assert "nsclc_icd" in m.match("icd9cm", dx)[0]
    assert not m.match("icd9proc", px)[0]
    assert "radiotherapy" in m.match("icd9proc", m.normalise("icd9proc", "92.24"))[0]
    assert not m.match("icd9cm", m.normalise("icd9cm", "922.1"))[0]  # contusion of chest wall
    assert not m.match("icd9cm", "1620")[0]  # 162.0 trachea is not lung


@pytest.mark.parametrize(
    ("system", "code", "site"),
    [
        ("icd10", "C78.0", "lung"), ("icd10gm", "C79.3", "brain"), ("icd10gm", "C79.5", "bone"),
        ("icd10", "C78.1", "lymph_node_thoracic"), ("icd10", "C77.1", "lymph_node_thoracic"),
        ("icd10", "C77.3", "lymph_node_distant"), ("icd10gm", "C78.2", "pleura"),
        ("icd10gm", "C78.7", "liver"), ("icd10gm", "C79.7", "adrenal"),
        ("icd9cm", "197.0", "lung"), ("icd9cm", "197.1", "lymph_node_thoracic"),
        ("icd9cm", "196.1", "lymph_node_thoracic"), ("icd9cm", "196.5", "lymph_node_distant"),
        ("icd9cm", "197.2", "pleura"), ("icd9cm", "197.7", "liver"), ("icd9cm", "198.3", "brain"),
        ("icd9cm", "198.4", "meninges"), ("icd9cm", "198.5", "bone"), ("icd9cm", "198.7", "adrenal"),
    ],
)
def test_lesion_sites_of_the_v2_families(m: CodeMatcher, system: str, code: str, site: str) -> None:
    norm = m.normalise(system, code)
    assert "lesion" in m.match(system, norm)[0]
    assert (m.site(system, norm) or ("other",))[0] == site


def test_peritoneum_is_reported_as_other_and_unknown_c78_c79_are_other(m: CodeMatcher) -> None:
    assert m.site("icd9cm", "1976") == ("peritoneum", None)
    assert m.mappings.report_site("peritoneum") == "other"
    assert m.site("icd9cm", "1988") is None and "lesion" in m.match("icd9cm", "1988")[0]


def test_gm_marks_and_laterality_only_for_icd10cm(m: CodeMatcher) -> None:
    assert m.normalise("icd10gm", "C79.3+") == "C793"
    assert m.code_laterality("icd10cm", "C3411") == "right"
    assert m.code_laterality("icd10gm", "C3411") is None


@pytest.mark.parametrize(
    ("system", "code", "text", "stage"),
    [
        ("snomed", "261638004", None, "IIIA"),
        ("snomed", "261639007", None, "IIIB"),
        ("uicc", "IIIA", None, "IIIA"),
        ("ajcc", "c3A", None, "IIIA"),
        ("ajcc", "p3B", None, "IIIB"),
        (None, None, "Stadio IIIA", "IIIA"),
        (None, None, "Stadium IIIB", "IIIB"),
        (None, None, "stage 3c", "IIIC"),
        (None, None, "IV", "IV"),
    ],
)
def test_stage_values(
    m: CodeMatcher, system: str | None, code: str | None, text: str | None, stage: str
) -> None:
    assert m.stage_value(system, code, text) == stage


def test_stage_display_must_match_the_whole_pattern(m: CodeMatcher) -> None:
    assert m.stage_display("Stadio IIIA") == "IIIA"
    assert m.stage_display("Stage III B") is None  # not the spec's pattern: kept as recorded elsewhere
    assert m.stage_display("cT3 N2") is None


def test_synthea_stage_conditions(m: CodeMatcher) -> None:
    for code, stage in (("424132000", "I"), ("425048006", "II"), ("422968005", "III"), ("423121009", "IV")):
        groups, _ = m.match("snomed", code)
        assert {"nsclc", "stage_condition"} <= groups and m.entry_stage("snomed", code) == stage


def test_radiotherapy_chemo_procedure_and_stereotactic(m: CodeMatcher) -> None:
    assert "radiotherapy" in m.match("snomed", "33195004")[0]
    assert "radiotherapy" in m.match("snomed", "441799006")[0]  # IMRT (mCODE technique VS)
    assert "radiotherapy" in m.match("ops", "8-522.91")[0]
    assert not m.match("ops", "8-529.0")[0]  # planning would move the course start
    assert not m.match("icd9proc", "9227")[0] and not m.match("icd9proc", "9228")[0]
    assert "stereotactic" in m.match("icd9proc", "9231")[0]
    assert "chemo_procedure" in m.match("snomed", "367336001")[0]
    assert "chemo_procedure" in m.match("icd9proc", "9925")[0]
    assert "chemo_procedure" in m.match("ops", "8-543.21")[0]
    assert not m.match("cpt", "96413")[0] and not m.match("ops", "8-541.0")[0]


def test_drug_products_names_and_routes(m: CodeMatcher) -> None:
    groups, ingredient = m.match("rxnorm", "597195")  # carboplatin 10 MG/ML Injectable Solution
    assert {"platinum", "chemo"} <= groups and ingredient == "carboplatin"
    assert m.route("rxnorm", "597195") == "product" and m.route("rxnorm", "40048") == "code"
    assert m.match_name("CARBOPLATINO TEVA 10 mg/ml")[1] == "carboplatin"
    assert m.match_name("Imfinzi 50 mg/ml")[0] == {"durvalumab"}
    assert m.match_name("vinorelbina")[1] == "vinorelbine"
    assert m.match_name("carboplatinum")[1] is None  # whole words only


def test_a_site_systems_file_adds_uris_to_a_builtin_key(tmp_path: Path) -> None:
    (tmp_path / "systems.yaml").write_text(
        "format_version: 1\nsystems:\n  icd10cm:\n    fhir: [https://hospital.example/cs/diagnoses]\n"
    )
    site = CodeMatcher(load_mappings(extra_dirs=[tmp_path]))
    assert site.system_for_fhir("https://hospital.example/cs/diagnoses") == "icd10cm"
    assert site.system_for_fhir("http://hl7.org/fhir/sid/icd-10-cm") == "icd10cm"  # kept
    assert "nsclc_icd" in site.match("icd10cm", site.normalise("icd10cm", "C34.11"))[0]


def test_names_for_an_unknown_ingredient_are_refused(tmp_path: Path) -> None:
    (tmp_path / "names.yaml").write_text("format_version: 1\ndrug_names:\n  aspirin: [aspirin]\n")
    with pytest.raises(ConfigError, match="unknown ingredient"):
        load_mappings(extra_dirs=[tmp_path])
