"""report.html: offline (no external reference), the key tables present, small cells shown as <5."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from leopard_etl.analysis import compute_results
from leopard_etl.report import render_report

DATA = Path(__file__).parents[1] / "analysis" / "data" / "tiny_patients.csv"
ATTRITION = [("nsclc", 11), ("stage_iii", 10), ("crt", 10), ("durvalumab", 9)]


class _Cells(HTMLParser):
    """Collects table cell texts per table id, and every src/href/style value."""

    def __init__(self) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.refs: list[str] = []
        self._table: str | None = None
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.refs += [v for k, v in attrs if k in ("src", "href", "style", "action", "srcset") and v]
        if tag == "table":
            self._table = a.get("id") or "?"
            self.tables[self._table] = []
        elif tag == "tr" and self._table:
            self.tables[self._table].append([])
        elif tag in ("td", "th") and self._table:
            self._cell = []

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th") and self._cell is not None and self._table:
            self.tables[self._table][-1].append("".join(self._cell).strip())
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)


def _render(tmp_path: Path, small_cell: int, **kw: Any) -> tuple[str, _Cells]:
    frame = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    results = compute_results(frame, ATTRITION)
    patient = pd.DataFrame({"patient_id": frame["patient_id"], "birth_date": "1955-03-01",
                            "sex": ["female", "male"] * 5 + ["male"]})
    out = render_report(results, frame, tmp_path / f"report-{small_cell}.html", tables={"patient": patient},
                        small_cell=small_cell, **kw)
    text = out.read_text(encoding="utf-8")
    cells = _Cells()
    cells.feed(text)
    return text, cells


def _row(cells: _Cells, table: str, label: str) -> list[str]:
    return next(r for r in cells.tables[f"table-{table}"] if r and r[0] == label)


def test_report_is_offline_and_has_the_key_tables(tmp_path: Path) -> None:
    text, cells = _render(tmp_path, 5, run_info={"run_id": "r-1", "source": "<script>alert(1)</script>"})
    assert "http://" not in text and "https://" not in text
    css_urls = re.findall(r"url\(([^)]*)\)", text)
    external = [r for r in cells.refs + css_urls if re.match(r"\s*['\"]?\s*(https?:|//|ftp:|file:)", r)]
    assert external == []
    assert all(r.startswith("data:image/png;base64,") for r in cells.refs if r.startswith("data:"))
    # k=5: every group of this tiny cohort is below the small-cell threshold, so no curve is drawn
    # (issue 17: a curve shows each patient's event time); the tables say why
    assert text.count('src="data:image/png;base64,') == 0
    assert "not drawn: fewer than 5 patients" in text
    for table in ("baseline", "recurrence", "sites", "field", "salvage", "os", "prs_oligo", "prs_poly",
                  "tests", "run-info"):
        assert f"table-{table}" in cells.tables, table
    assert "<script>alert" not in text and "&lt;script&gt;" in text  # autoescaped
    assert "OS median (none): no events among 2 patients" in text
    assert _row(cells, "tests", "Log-rank p, oligo vs poly")[1] == "0.251"
    assert _row(cells, "tests", "Cox hazard ratio, poly vs oligo (95% CI)")[1] == "2.82 (0.45–17.68)"
    assert _row(cells, "tests", "Median follow-up (reverse Kaplan–Meier)")[1] == "50.0 months"
    # age at CRT start: median crt_start 2020-03-02 -> 23743 days / 365.25 = 65.0 years
    assert _row(cells, "baseline", "Age at CRT start, median (IQR)")[1].startswith("65.0 (")
    days = _row(cells, "baseline", "Days CRT end → first durvalumab, median (IQR)")[1]
    assert days == "24.0 (24.0–24.0) days"


def test_small_cells_show_as_less_than_five(tmp_path: Path) -> None:
    text, cells = _render(tmp_path, 5)
    assert _row(cells, "recurrence", "Recurrence (of cohort)")[1] == "7 (77.8%)"
    assert _row(cells, "recurrence", "oligo (of recurrences)")[1] == "<5"
    assert _row(cells, "sites", "lung") == ["lung", "<5", "<5", "<5"]
    assert _row(cells, "salvage", "chemo") == ["chemo", "<5", "<5", "<5"]
    assert _row(cells, "os", "oligo") == ["oligo", "<5", "<5", "30.0 (10.0–not reached)"]
    assert _row(cells, "baseline", "Sex: female")[1] == "5 (55.6%)"
    assert _row(cells, "baseline", "Sex: male")[1] == "<5"
    # no cell anywhere in the aggregate tables is a bare count 0-4, with or without a percentage
    for table in ("baseline", "recurrence", "sites", "field", "salvage", "os", "prs_oligo", "prs_poly"):
        for row in cells.tables[f"table-{table}"][1:]:
            for cell in row[1:]:
                assert not re.fullmatch(r"[0-4]( \(.*%\))?", cell), (table, row)
    flow = re.findall(r'<span class="n">([^<]*)</span>', text)
    assert flow == ["11", "10", "10", "9", "9"]
    # p11 is the only patient excluded at the durvalumab step
    assert "<span>no durvalumab</span><span>&minus;&lt;5</span>" in text


@pytest.mark.parametrize("small_cell", [1])
def test_exact_counts_without_suppression(tmp_path: Path, small_cell: int) -> None:
    _, cells = _render(tmp_path, small_cell)
    assert _row(cells, "recurrence", "oligo (of recurrences)")[1] == "4 (57.1%)"
    assert _row(cells, "sites", "lung") == ["lung", "3 (75.0%)", "1 (33.3%)", "4 (57.1%)"]
    assert _row(cells, "field", "both") == ["both", "1 (25.0%)", "1 (33.3%)", "2 (28.6%)"]
    assert _row(cells, "prs_poly", "chemo") == ["chemo", "3", "3", "3.0 (2.0–not reached)"]
