"""Disclosure-safe figures: in the shareable report a survival group below the small-cell threshold is
not drawn (no curve, no legend entry, no numbers at risk) and the table under the figure says why.

The tiny cohort (tests/analysis/data/tiny_patients.csv) has OS groups oligo 4, poly 3, none 2.
"""

from __future__ import annotations

import base64
import io
import re
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest

from leopard_etl.analysis import compute_results
from leopard_etl.analysis.survival import SurvivalSample
from leopard_etl.report import render_report
from leopard_etl.report.plots import PALETTE, drawn_groups, km_figure, not_drawn_reason

DATA = Path(__file__).parents[1] / "analysis" / "data" / "tiny_patients.csv"
ATTRITION = [("nsclc", 11), ("stage_iii", 10), ("crt", 10), ("durvalumab", 9)]


class _Figures(HTMLParser):
    """Per KM section: the figure's data attributes, the img alt text and src, and the notes."""

    def __init__(self) -> None:
        super().__init__()
        self.sections: dict[str, dict[str, str | list[str] | None]] = {}
        self._section: str | None = None
        self._note: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "section":
            self._section = a.get("id")
            self.sections[self._section or "?"] = {"groups": None, "not_drawn": None, "alt": None,
                                                   "src": None, "notes": []}
        elif self._section and tag == "figure":
            self.sections[self._section]["groups"] = a.get("data-groups")
            self.sections[self._section]["not_drawn"] = a.get("data-not-drawn")
        elif self._section and tag == "img":
            self.sections[self._section]["alt"] = a.get("alt")
            self.sections[self._section]["src"] = a.get("src")
        elif self._section and tag == "p" and "note" in (a.get("class") or ""):
            self._note = []

    def handle_endtag(self, tag: str) -> None:
        if tag == "p" and self._note is not None and self._section:
            notes = self.sections[self._section]["notes"]
            assert isinstance(notes, list)
            notes.append("".join(self._note).strip())
            self._note = None

    def handle_data(self, data: str) -> None:
        if self._note is not None:
            self._note.append(data)


def _report(tmp_path: Path, small_cell: int | None) -> dict[str, dict[str, str | list[str] | None]]:
    frame = pd.read_csv(DATA, dtype=str, keep_default_na=False)
    results = compute_results(frame, ATTRITION)
    out = render_report(results, frame, tmp_path / f"report-{small_cell}.html",
                        small_cell=small_cell)  # type: ignore[arg-type]
    parser = _Figures()
    parser.feed(out.read_text(encoding="utf-8"))
    return parser.sections


def _png(src: str | list[str] | None) -> np.ndarray:
    """The image of a data URI (the report) or of bare base64 (km_figure)."""
    assert isinstance(src, str)
    data = src.split(",", 1)[1] if src.startswith("data:image/png;base64,") else src
    return np.asarray(mpimg.imread(io.BytesIO(base64.b64decode(data)), format="png"))


def _has_colour(image: np.ndarray, hex_colour: str, tol: float = 0.03) -> bool:
    rgb = np.array([int(hex_colour[i : i + 2], 16) / 255 for i in (1, 3, 5)])
    return bool((np.abs(image[..., :3] - rgb).max(axis=-1) < tol).any())


def test_a_group_below_the_threshold_is_not_drawn(tmp_path: Path) -> None:
    os_section = _report(tmp_path, 3)["os"]
    assert os_section["groups"] == "oligo;poly"  # n=4 and n=3 are drawn at k=3 …
    assert os_section["not_drawn"] == "none"  # … n=2 is not
    alt = os_section["alt"]
    assert isinstance(alt, str)
    assert "groups drawn: oligo, poly" in alt and "not drawn (fewer than 3 patients): none" in alt
    assert "none: not drawn: fewer than 3 patients (small-cell rule)" in os_section["notes"]  # type: ignore[operator]
    image = _png(os_section["src"])
    # colours by group position: oligo blue, poly vermillion, none green — green appears nowhere
    # (no curve, no censoring tick, no legend line, no at-risk numbers of that group)
    assert _has_colour(image, PALETTE[0]) and _has_colour(image, PALETTE[1])
    assert not _has_colour(image, PALETTE[2])


def test_no_figure_when_every_group_is_small(tmp_path: Path) -> None:
    sections = _report(tmp_path, 5)
    for key in ("os", "prs_oligo", "prs_poly"):
        assert sections[key]["src"] is None, key
        notes = sections[key]["notes"]
        assert isinstance(notes, list)
        assert any(n.startswith("No curve drawn: every group has fewer than 5 patients") for n in notes), key
    assert "oligo: not drawn: fewer than 5 patients (small-cell rule)" in sections["os"]["notes"]  # type: ignore[operator]


@pytest.mark.parametrize("small_cell", [None, 1])
def test_exact_figures_draw_every_group(tmp_path: Path, small_cell: int | None) -> None:
    sections = _report(tmp_path, small_cell)
    assert sections["os"]["groups"] == "oligo;poly;none"
    assert sections["os"]["not_drawn"] == ""
    image = _png(sections["os"]["src"])
    assert all(_has_colour(image, PALETTE[i]) for i in range(3))
    assert not any("not drawn" in n for n in sections["os"]["notes"])  # type: ignore[union-attr]


def test_hidden_group_does_not_stretch_the_time_axis(monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    big = SurvivalSample.of("big", rng.uniform(1, 20, 30), rng.random(30) < 0.5)
    small = SurvivalSample.of("small", [150.0, 160.0], [False, True])  # far longer follow-up
    drawn, hidden = drawn_groups([big, small], 5)
    assert [s.group for s in drawn] == ["big"] and [s.group for s in hidden] == ["small"]
    assert not_drawn_reason(small, 5) == "not drawn: fewer than 5 patients"
    assert not_drawn_reason(SurvivalSample.of("empty", [], []), 5) == "not drawn: no patients"
    from leopard_etl.report import plots

    figures: list[Any] = []
    close = plots.plt.close
    monkeypatch.setattr(plots.plt, "close", lambda fig: (figures.append(fig), close(fig)))
    shareable = _png(km_figure([big, small], title="t", small_cell=5))
    exact = _png(km_figure([big, small], title="t", small_cell=None))
    assert not _has_colour(shareable, PALETTE[1]) and _has_colour(exact, PALETTE[1])
    # the x axis ends near the drawn group's follow-up (≤ 24 months), not near the hidden group's 160
    assert figures[0].axes[0].get_xlim()[1] < 30 and figures[1].axes[0].get_xlim()[1] > 140
    legend = [t.get_text() for t in figures[0].axes[0].get_legend().get_texts()]
    assert legend == ["big (n=30)"]


def test_report_without_patients_says_so(tmp_path: Path) -> None:
    frame = pd.read_csv(DATA, dtype=str, keep_default_na=False).iloc[0:0]
    results = compute_results(frame, [(step, 0) for step, _ in ATTRITION])
    out = render_report(results, frame, tmp_path / "empty.html", small_cell=5)
    text = out.read_text(encoding="utf-8")
    assert 'src="data:image/png' not in text
    assert re.search(r"No patients in this group\.", text)
