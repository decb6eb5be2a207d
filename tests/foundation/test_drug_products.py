"""mappings/drug_products.yaml (spec §2.1 v2) and the script that generates it."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
YAML_FILE = ROOT / "mappings" / "drug_products.yaml"
SCRIPT = ROOT / "scripts" / "drug_products.py"

STUDY_DRUGS = {
    "cisplatin": "2555",
    "carboplatin": "40048",
    "etoposide": "4179",
    "pemetrexed": "68446",
    "paclitaxel": "56946",
    "vinorelbine": "39541",
    "docetaxel": "72962",
    "durvalumab": "1919503",
    "pembrolizumab": "1547545",
    "nivolumab": "1597876",
    "osimertinib": "1721560",
}
TTYS = {"SCD", "SBD", "SCDC", "SBDC", "GPCK", "BPCK"}


@pytest.fixture(scope="module")
def products() -> list[dict[str, Any]]:
    data = yaml.safe_load(YAML_FILE.read_text(encoding="utf-8"))
    assert data["format_version"] == 1
    spec = data["drug_products"]
    assert spec["source"]
    assert isinstance(spec["products"], list) and spec["products"]
    return spec["products"]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("drug_products_script", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_rows_are_well_formed(products: list[dict[str, Any]]) -> None:
    for p in products:
        assert set(p) <= {"code", "tty", "ingredient", "name", "also"}, p
        assert isinstance(p["code"], str) and p["code"].isdigit(), p
        assert p["ingredient"] in STUDY_DRUGS, p
        assert p["tty"] in TTYS, p
        assert p["name"], p
        assert p["code"] not in STUDY_DRUGS.values(), "ingredient codes live in drugs.yaml"
        for other in p.get("also", []):
            assert other in STUDY_DRUGS and other != p["ingredient"], p


def test_no_code_twice(products: list[dict[str, Any]]) -> None:
    codes = [p["code"] for p in products]
    assert len(codes) == len(set(codes))


def test_sorted_by_ingredient_then_code(products: list[dict[str, Any]]) -> None:
    keys = [(p["ingredient"], int(p["code"])) for p in products]
    assert keys == sorted(keys)


@pytest.mark.parametrize(
    ("code", "ingredient", "tty"),
    [
        ("597195", "carboplatin", "SCD"),
        ("1736854", "cisplatin", "SCD"),
        ("583214", "paclitaxel", "SCD"),
        ("1919507", "durvalumab", "SCD"),
        ("1919512", "durvalumab", "SBD"),
        ("1919515", "durvalumab", "SCD"),
        ("1919516", "durvalumab", "SBD"),
        ("1734340", "etoposide", "SCD"),
    ],
)
def test_spec_examples(products: list[dict[str, Any]], code: str, ingredient: str, tty: str) -> None:
    by_code = {p["code"]: p for p in products}
    assert code in by_code
    assert by_code[code]["ingredient"] == ingredient
    assert by_code[code]["tty"] == tty


def test_spec_example_name(products: list[dict[str, Any]]) -> None:
    by_code = {p["code"]: p for p in products}
    assert by_code["597195"]["name"] == "carboplatin 10 MG/ML Injectable Solution"


def test_every_study_drug_has_products(products: list[dict[str, Any]]) -> None:
    assert {p["ingredient"] for p in products} == set(STUDY_DRUGS)


def test_header_names_sources_and_inferred_tty() -> None:
    header = YAML_FILE.read_text(encoding="utf-8").split("format_version:")[0]
    assert "davidanderson3/rxnorm-ingredients@" in header
    assert "scripts/drug_products.py" in header
    assert "INFERRED" in header
    assert re.search(r"Generated \d{4}-\d{2}-\d{2}", header)


def test_names_agree_with_tty(script: ModuleType, products: list[dict[str, Any]]) -> None:
    """Stated or inferred, each TTY fits its name's pattern; inferred rows are marked."""
    for p in products:
        assert script.infer_tty(p["name"]) == p["tty"], p
    lines = YAML_FILE.read_text(encoding="utf-8").splitlines()
    assert any(line.endswith("# tty inferred") for line in lines)


@pytest.mark.parametrize(
    ("name", "tty"),
    [
        ("carboplatin 10 MG/ML Injectable Solution", "SCD"),
        ("2.4 ML durvalumab 50 MG/ML Injection [Imfinzi]", "SBD"),
        ("etoposide 20 MG/ML", "SCDC"),
        ("etoposide 100 MG [Vepesid]", "SBDC"),
        ("{1 (4 ML docetaxel 20 MG/ML Injection) / 1 (50 ML albumin 250 MG/ML Injection) } Pack", "GPCK"),
        ("{21 (osimertinib 80 MG Oral Tablet [Tagrisso]) } Pack [Tagrisso]", "BPCK"),
        ("etoposide Injection", None),  # SCDF
        ("Paraplatin Injectable Product", None),  # SBDG
        ("etoposide", None),
    ],
)
def test_infer_tty(script: ModuleType, name: str, tty: str | None) -> None:
    assert script.infer_tty(name) == tty


# --- the script on a tiny fixture ---------------------------------------------------------

PACK = "{1 (carboplatin 10 MG/ML Injectable Solution) / 1 (cisplatin 50 MG Injection) } Pack"
PRESCRIBABLE_C = [
    {
        "Name": "carboplatin",
        "RXCUI": "40048",
        "TTY": "IN",
        "SCDCs": [
            {
                "Name": "carboplatin 10 MG/ML",
                "RXCUI": "346209",
                "TTY": "SCDC",
                "SCDs": [
                    {
                        "Name": "carboplatin 10 MG/ML Injectable Solution",
                        "RXCUI": "597195",
                        "TTY": "SCD",
                        "SBDs": [
                            {
                                "Name": "carboplatin 10 MG/ML Injectable Solution [Paraplatin]",
                                "RXCUI": "686161",
                                "TTY": "SBD",
                                "BNs": [{"Name": "Paraplatin", "RXCUI": "152200", "TTY": "BN"}],
                            }
                        ],
                        "GPCKs": [{"Name": PACK, "RXCUI": "9000001", "TTY": "GPCK"}],
                    }
                ],
            }
        ],
    },
    {
        "Name": "cisplatin",
        "RXCUI": "2555",
        "TTY": "IN",
        "SCDCs": [
            {
                "Name": "cisplatin 50 MG",
                "RXCUI": "1736852",
                "TTY": "SCDC",
                "SCDs": [
                    {
                        "Name": "cisplatin 50 MG Injection",
                        "RXCUI": "1736854",
                        "TTY": "SCD",
                        "GPCKs": [{"Name": PACK, "RXCUI": "9000001", "TTY": "GPCK"}],
                    }
                ],
            }
        ],
    },
]
ETOPOSIDE_VS = (
    '* $RXN#4179 "etoposide"\n'
    '* $RXN#564108 "etoposide 100 MG [Vepesid]"\n'
    '* $RXN#1734339 "etoposide Injection"\n'
)
PREP_VS = (
    '* $RXN#573495 "carboplatin 10 MG/ML [Paraplatin]"\n* $RXN#105551 "busulfan 2 MG Oral Tablet [Myleran]"\n'
)
FAMILIES = {
    "carboplatin": {"RxNorm": ["40048", "597195", "573495", "152200", "378363"]},
    "Durvalumab": {"RxNorm": ["1919503", "1919509"]},
}

INFERRED = "  # tty inferred"
EXPECTED_BODY = "\n".join(
    [
        "format_version: 1",
        "drug_products:",
        '  source: "davidanderson3/rxnorm-ingredients@abc1234:web/data/{C,D,E,N,O,P,V}.json'
        " (RxNorm 10/06/2025 Current Prescribable Content; TTY stated);"
        " nmdp-ig/cibmtr-reporting-ig@unknown-commit:build/input/fsh/terminology/medications/"
        "{med-etoposide-valueset.fsh, med-form2400-prep-regimen-valueset.fsh}"
        ' (codes.md S9; TTY inferred from the name)"',
        "  products:",
        '    - {code: "346209", tty: SCDC, ingredient: carboplatin, name: "carboplatin 10 MG/ML"}',
        '    - {code: "573495", tty: SBDC, ingredient: carboplatin,'
        ' name: "carboplatin 10 MG/ML [Paraplatin]"}' + INFERRED,
        '    - {code: "597195", tty: SCD, ingredient: carboplatin,'
        ' name: "carboplatin 10 MG/ML Injectable Solution"}',
        '    - {code: "686161", tty: SBD, ingredient: carboplatin,'
        ' name: "carboplatin 10 MG/ML Injectable Solution [Paraplatin]"}',
        f'    - {{code: "9000001", tty: GPCK, ingredient: carboplatin, name: "{PACK}", also: [cisplatin]}}',
        '    - {code: "1736852", tty: SCDC, ingredient: cisplatin, name: "cisplatin 50 MG"}',
        '    - {code: "1736854", tty: SCD, ingredient: cisplatin, name: "cisplatin 50 MG Injection"}',
        '    - {code: "564108", tty: SBDC, ingredient: etoposide, name: "etoposide 100 MG [Vepesid]"}'
        + INFERRED,
        "",
    ]
)


def _fixture(root: Path) -> tuple[Path, Path, Path]:
    pres, cib, tj = root / "pres", root / "cib", root / "tj"
    data = pres / "web" / "data"
    data.mkdir(parents=True)
    for letter in "DENOPV":
        (data / f"{letter}.json").write_text("[]", encoding="utf-8")
    (data / "C.json").write_text(json.dumps(PRESCRIBABLE_C), encoding="utf-8")
    meds = cib / "build/input/fsh/terminology/medications"
    meds.mkdir(parents=True)
    (meds / "med-etoposide-valueset.fsh").write_text(ETOPOSIDE_VS, encoding="utf-8")
    (meds / "med-form2400-prep-regimen-valueset.fsh").write_text(PREP_VS, encoding="utf-8")
    (tj / "data").mkdir(parents=True)
    (tj / "data" / "profile-system-codes.json").write_text(json.dumps(FAMILIES), encoding="utf-8")
    return pres, cib, tj


def _run(script: ModuleType, pres: str, cib: Path, tj: Path, out: Path) -> str:
    argv = [
        "--prescribable",
        pres,
        "--cibmtr",
        str(cib),
        "--trialjectory",
        str(tj),
        "--date",
        "2000-01-01",
        "-o",
        str(out),
    ]
    assert script.main(argv) == 0
    return out.read_text(encoding="utf-8")


def test_script_on_fixture(script: ModuleType, tmp_path: Path) -> None:
    pres, cib, tj = _fixture(tmp_path)
    text = _run(script, f"{pres}@abc1234", cib, tj, tmp_path / "out.yaml")
    header, body = text.split("format_version: 1\n")
    assert "format_version: 1\n" + body == EXPECTED_BODY
    assert "# Generated 2000-01-01 from:" in header
    assert "#   carboplatin: 378363" in header  # S8 code no source names
    assert "#   durvalumab: 1919509" in header
    assert "152200" not in header  # a brand name the main source knows is not "unresolved"
    assert "No ingredient record in source 1 for: docetaxel," in header
    # deterministic
    assert _run(script, f"{pres}@abc1234", cib, tj, tmp_path / "again.yaml") == text
    # and the loader's shape
    assert yaml.safe_load(text)["drug_products"]["products"][4]["also"] == ["cisplatin"]


@pytest.mark.skipif(shutil.which("git") is None, reason="git not installed")
def test_script_reads_a_git_snapshot_at_a_commit(script: ModuleType, tmp_path: Path) -> None:
    pres, cib, tj = _fixture(tmp_path)

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-C", str(pres), *args], check=True, capture_output=True, text=True
        ).stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "data")
    commit = git("rev-parse", "HEAD")
    shutil.rmtree(pres / "web")  # later commits may delete the data: the pinned commit still has it
    text = _run(script, f"{pres}@{commit[:10]}", cib, tj, tmp_path / "out.yaml")
    assert f"davidanderson3/rxnorm-ingredients@{commit}:web/data/" in text
    assert text.split("  products:\n")[1] == EXPECTED_BODY.split("  products:\n")[1]
