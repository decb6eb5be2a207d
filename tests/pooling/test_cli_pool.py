"""`leopard-etl pool SUMMARY.json … --out DIR`: end to end, and the one-line refusals (exit 2)."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path
from typing import Any

import pytest
from pooling_cohort import Cohort, K

from leopard_etl.analysis.site_summary import content_sha256, write_site_summary
from leopard_etl.cli import main


@pytest.fixture(scope="module")
def files(cohort: Cohort, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("summaries")
    paths = []
    for i, summary in enumerate(cohort.summaries[K], start=1):
        path = folder / f"site{i}" / "site-summary.json"
        write_site_summary(summary, path)
        paths.append(path)
    return paths


def test_pool_end_to_end(files: list[Path], tmp_path: Path, cohort: Cohort) -> None:
    out = tmp_path / "pooled"
    assert main(["pool", *map(str, files), "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text(encoding="utf-8"))
    assert results["n_cohort"] == cohort.single["n_cohort"] and len(results["sites"]) == 8
    html = (out / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", html, re.I)  # offline: no external URL
    for section in ('id="table-replication"', 'id="table-attrition"', 'id="forest"', 'id="os"', "Centre 8"):
        assert section in html
    assert html.count("data:image/png;base64,") >= 3  # forest plot and KM curves


def _write(tmp_path: Path, name: str, summary: dict[str, Any]) -> Path:
    path = tmp_path / name
    write_site_summary(summary, path)
    return path


@pytest.mark.parametrize("case", ["spec", "grid", "twice", "not a summary", "edited"])
def test_pool_refusals(files: list[Path], tmp_path: Path, capsys: pytest.CaptureFixture[str],
                       case: str) -> None:
    other = json.loads(files[1].read_text(encoding="utf-8"))
    if case == "spec":
        other["spec_version"] = "1"
    elif case == "grid":
        other["grid"]["step"] = 3.0
    elif case == "twice":
        other = copy.deepcopy(json.loads(files[0].read_text(encoding="utf-8")))
    if case == "not a summary":
        bad = tmp_path / "results.json"
        bad.write_text('{"n_cohort": 3}', encoding="utf-8")
    else:
        if case != "edited":
            other["content_sha256"] = content_sha256(other)
        else:
            other["counts"]["n_cohort"] = 999
        bad = _write(tmp_path, "other.json", other)
    code = main(["pool", str(files[0]), str(bad), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.startswith("leopard-etl: error: ") and "\n" not in err
    assert not (tmp_path / "out" / "results.json").exists()
