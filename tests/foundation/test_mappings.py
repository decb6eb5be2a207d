"""The declarative mappings load, match as spec §2 says, and refuse contradictions."""

from __future__ import annotations

from pathlib import Path

import pytest

from leopard_etl.errors import ConfigError
from leopard_etl.mappings import CodeMatcher, load_mappings


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


@pytest.mark.parametrize(
    ("system", "code", "groups"),
    [
        ("icd10cm", "C3411", {"nsclc_icd"}),  # NSCLC unless small-cell (a group of its own)
        ("icd10", "C349", {"nsclc_icd"}),
        ("snomed", "422968005", {"nsclc", "stage_condition"}),
        ("rxnorm", "1736854", {"platinum", "chemo"}),  # product rolls up to cisplatin
        ("atc", "L01XA02", {"platinum", "chemo"}),
        ("rxnorm", "68446", {"chemo"}),
        ("rxnorm", "1919512", {"durvalumab"}),
        ("snomed", "703423002", {"radiotherapy", "chemo"}),  # not platinum (docs/decisions.md)
        ("cpt", "77373", {"radiotherapy", "stereotactic"}),
        ("cpt", "77435", {"stereotactic"}),
        ("icd10pcs", "DB22ZZZ", {"radiotherapy", "stereotactic"}),  # D?2*
        ("icd10pcs", "DB021ZZ", {"radiotherapy"}),
        ("icd10pcs", "0BTC0ZZ", {"surgery"}),
        ("icd10cm", "C7801", {"lesion"}),
        ("omop", "32677", {"progression"}),
        ("loinc", "97509-4", set()),  # only with a worsened value
        ("snomed", "12345", set()),
    ],
)
def test_groups(matcher: CodeMatcher, system: str, code: str, groups: set[str]) -> None:
    assert set(matcher.match(system, code)[0]) == groups


def test_progression_needs_value(matcher: CodeMatcher) -> None:
    assert matcher.match("loinc", "97509-4", "snomed", "271299001")[0] == {"progression"}
    assert matcher.match("loinc", "97509-4", "snomed", "268910001")[0] == frozenset()


def test_ingredient_and_dots(matcher: CodeMatcher) -> None:
    assert matcher.match("rxnorm", "583214")[1] == "paclitaxel"
    assert matcher.normalise("icd10cm", "c78.01") == "C7801"
    assert matcher.system_for_fhir("http://hl7.org/fhir/sid/icd-10-cm") == "icd10cm"
    assert matcher.system_for_omop("RxNorm Extension") == "rxnorm"


@pytest.mark.parametrize(
    ("system", "code", "role", "site"),
    [
        ("icd10cm", "C7801", "lesion", "lung"),
        ("icd10cm", "C771", "lesion", "lymph_node_thoracic"),
        ("icd10cm", "C774", "lesion", "lymph_node_distant"),  # longest prefix wins
        ("icd10cm", "C781", "lesion", "lymph_node_thoracic"),
        ("icd10cm", "C782", "lesion", "pleura"),
        ("icd10cm", "C7932", "lesion", "meninges"),
        ("icd10cm", "C7972", "lesion", "adrenal"),
        ("icd10cm", "C786", "lesion", "peritoneum"),
        ("snomed", "12738006", "body_site", "brain"),
        ("omop", "35225626", "lesion", "adrenal"),
    ],
)
def test_sites(matcher: CodeMatcher, system: str, code: str, role: str, site: str) -> None:
    hit = matcher.site(system, code, role)
    assert hit is not None and hit[0] == site


def test_laterality_and_stage(matcher: CodeMatcher) -> None:
    assert matcher.code_laterality("icd10cm", "C3411") == "right"
    assert matcher.code_laterality("icd10cm", "C7802") == "left"
    assert matcher.code_laterality("icd10cm", "C7951") is None  # 5th char is not laterality for bone
    assert matcher.qualifier_laterality("snomed", "7771000") == "left"
    assert matcher.site("omop", "35226292") == ("lung", "right")
    assert matcher.stage_value("ajcc", "3B", None) == "IIIB"
    assert matcher.stage_value("snomed", "1222806003", None) == "IIIC"
    assert matcher.stage_value(None, None, "Stage IIIA") == "IIIA"
    assert matcher.stage_value(None, None, "stage 4") == "IV"
    assert matcher.is_stage_iii_text("Stage 3b") and not matcher.is_stage_iii_text("IV")
    # spec §2: only text matching the stage_iii_text pattern is stage III; other III-like text stays as is
    assert matcher.stage_value(None, None, "Stage III B") == "STAGE III B"
    assert matcher.stage_value(None, None, "AJCC stage 3a") == "AJCC STAGE 3A"
    assert matcher.cancer_modifier_stage("AJCC/UICC Stage 3A") == "IIIA"
    assert matcher.cancer_modifier_stage("Stage 2") == "II"
    assert matcher.cancer_modifier_stage("Metastasis to lung") is None
    assert matcher.mappings.report_site("peritoneum") == "other"


def _copy_base(tmp_path: Path) -> Path:
    from leopard_etl.paths import mappings_dir

    base = tmp_path / "base"
    base.mkdir()
    for f in mappings_dir().glob("*.yaml"):
        (base / f.name).write_text(f.read_text())
    return base


def test_site_file_adds_local_codes(tmp_path: Path) -> None:
    local = tmp_path / "site"
    local.mkdir()
    (local / "local-drugs.yaml").write_text(
        "format_version: 1\ngroups:\n  chemo:\n    entries:\n"
        "      - {system: rxnorm, code: '999001', ingredient: gemcitabine, meaning: local, source: site}\n"
    )
    m = CodeMatcher(load_mappings(extra_dirs=[local]))
    assert m.match("rxnorm", "999001") == (frozenset({"chemo"}), "gemcitabine")
    assert m.match("rxnorm", "2555")[0] == {"platinum", "chemo"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "format_version: 1\ngroups:\n  durvalumab:\n    entries:\n"
            "      - {system: rxnorm, code: '1547545'}\n",
            "conflicting groups",
        ),
        (
            "format_version: 1\ngroups:\n  chemo:\n    entries:\n      - {system: nosuch, code: '1'}\n",
            "unknown code system",
        ),
        ("format_version: 2\n", "format_version"),
        ("format_version: 1\nsites:\n  liver:\n    - {system: icd10, code: C7931}\n", "two site categories"),
        ("groups: [oops\n", "invalid YAML"),
    ],
)
def test_contradictions_are_refused(tmp_path: Path, text: str, message: str) -> None:
    local = tmp_path / "site"
    local.mkdir()
    (local / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_mappings(extra_dirs=[local])


def test_every_entry_cites_a_source() -> None:
    m = load_mappings()
    missing = [(e.group, e.code) for e in m.entries if not e.source]
    assert missing == []
