"""site-summary.json: versioned, schema-valid, exact where it must be, nothing that identifies a patient."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pandas as pd
import pytest
from pooling_cohort import Cohort, K, attrition_of

from leopard_etl.analysis.site_summary import (
    FORMAT_VERSION,
    SCHEMA_VERSION,
    content_sha256,
    site_summary,
    write_site_summary,
)
from leopard_etl.errors import ConfigError

DOCS = Path(__file__).parents[2] / "docs"
SCHEMA = json.loads((DOCS / "site-summary.schema.json").read_text(encoding="utf-8"))
VALIDATOR = jsonschema.Draft202012Validator(SCHEMA)
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _tables(summary: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for endpoint, groups in summary["survival"].items():
        for name, table in groups.items():
            yield endpoint, name, table


def test_schema_and_versions(cohort: Cohort) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    for summaries in cohort.summaries.values():
        for s in summaries:
            VALIDATOR.validate(s)
            versions = (s["format_version"], s["schema_version"], s["spec_version"])
            assert versions == (FORMAT_VERSION, SCHEMA_VERSION, "2")
            assert s["content_sha256"] == content_sha256(s)
            assert s["small_cell"]["event_tables"] == "merge-forward-v1"
            assert s["grid"]["step"] == 1.0


def test_no_patient_id_no_date(cohort: Cohort, tmp_path: Path) -> None:
    """Written files hold no patient id (as a whole token) and nothing that looks like a date."""
    ids = set(cohort.patients["patient_id"])
    for i, s in enumerate(cohort.summaries[K]):
        path = tmp_path / f"site{i}.json"
        write_site_summary(s, path)
        text = path.read_text(encoding="utf-8")
        assert not DATE.search(text)
        tokens = set(re.findall(r"[A-Za-z0-9_.-]+", text))
        assert not ids & tokens


def _check_counts(value: Any, k: int, where: str) -> None:
    if isinstance(value, dict):
        for key, v in value.items():
            _check_counts(v, k, f"{where}.{key}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            _check_counts(v, k, f"{where}[{i}]")
    elif isinstance(value, bool):
        return
    elif isinstance(value, int):
        assert value >= k, f"{where} = {value} is below the threshold"
    elif isinstance(value, str):
        assert value == f"<{k}", f"{where} = {value!r}"


def test_no_cell_below_the_threshold(cohort: Cohort) -> None:
    """Counts are >= k or '<k'; every number of an event table is 0 or >= k; model statistics only
    for groups of >= k patients and deaths."""
    for s in cohort.summaries[K]:
        _check_counts(s["counts"], K, "counts")
        _check_counts([x["n"] for x in s["attrition"]], K, "attrition")
        _check_counts(s["cox"]["n"], K, "cox.n")
        _check_counts(s["cox"]["events"], K, "cox.events")
        for endpoint, name, table in _tables(s):
            where = f"{endpoint}.{name}"
            if table.get("withheld"):
                assert table["n"] == f"<{K}", where
                continue
            tallies = [table["n"], table["at_risk_stop"]]
            for block in table["blocks"]:
                tallies += [block["at_risk"], block["censored"]] + [sub[1] for sub in block["events"]]
            bad = [x for x in tallies if 0 < x < K]
            assert not bad, f"{where}: {bad}"


def _grid_index(months: pd.Series) -> np.ndarray:
    return np.rint(months.astype(float).to_numpy() * 100).astype(np.int64) // 100


def test_tables_are_exact(cohort: Cohort) -> None:
    """Every published number equals the count made directly from the site's patients."""
    for site, s in zip(sorted(cohort.patients["site"].unique()), cohort.summaries[K], strict=True):
        frame = cohort.site_frame(site)
        rows = frame[frame["in_cohort"] == "true"]
        for pattern, table in s["survival"]["os"].items():
            group = rows[rows["pattern"] == pattern]
            idx, dead = _grid_index(group["os_months"]), (group["death"] == "true").to_numpy()
            if table.get("withheld"):
                assert len(group) < K
                continue
            assert table["n"] == len(group)
            assert table["at_risk_stop"] == int((idx >= table["stop"]).sum())
            starts = [b["start"] for b in table["blocks"]] + [table["stop"]]
            for block, stop in zip(table["blocks"], starts[1:], strict=True):
                assert block["at_risk"] == int((idx >= block["start"]).sum())
                inside = (idx >= block["start"]) & (idx < stop)
                assert block["censored"] == int((inside & ~dead).sum())
                subs = [sub[0] for sub in block["events"]] + [stop]
                for (u, d, mean), v in zip(block["events"], subs[1:], strict=True):
                    mine = (idx >= u) & (idx < v) & dead
                    assert d == int(mine.sum())
                    if d:
                        assert mean == pytest.approx(group["os_months"].astype(float)[mine].mean(), abs=0.006)


def _one_group(times: list[float], deaths: list[bool], pattern: str = "oligo") -> pd.DataFrame:
    rows = []
    for i, (t, d) in enumerate(zip(times, deaths, strict=True)):
        rows.append({"patient_id": f"p{i:03d}", "in_cohort": "true", "exclusion_reason": "",
                     "recurrence": "true", "pattern": pattern, "sites": "lung", "field": "in_field",
                     "salvage": "rt", "death": "true" if d else "false", "os_months": f"{t:.2f}",
                     "prs_months": f"{t / 2:.2f}"})
    frame = pd.DataFrame(rows)
    for column in ("stage", "crt_type", "crt_start", "crt_end", "durvalumab_start", "durvalumab_doses",
                   "recurrence_date", "n_lesions", "last_alive_date"):
        frame[column] = ""
    return frame


def test_merge_rule_on_a_small_group() -> None:
    """12 deaths one a month then 3 censored: events merge into sub-intervals of >= 3 deaths; the 3
    censored sit in the block that closes when they are in; every tally is 0 or >= 3."""
    times = [m + 0.5 for m in range(12)] + [20.1, 21.2, 22.3]
    frame = _one_group(times, [True] * 12 + [False] * 3)
    s = site_summary(frame, attrition_of(frame), small_cell=3, site="A")
    table = s["survival"]["os"]["oligo"]
    assert table["n"] == 15 and table["at_risk_stop"] == 0 and table["stop"] == 23
    events = [sub[1] for block in table["blocks"] for sub in block["events"]]
    assert sum(events) == 12 and all(e == 0 or e >= 3 for e in events)
    assert sum(b["censored"] for b in table["blocks"]) == 3
    assert s["survival"]["os"]["poly"] == {"n": "<3", "withheld": True}


def test_few_censored_stop_the_table() -> None:
    """One censored patient among 10 (k=5) can never be shown: the table stops before its block and
    says how many were still at risk there."""
    times = [1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10.5]
    deaths = [True] * 5 + [False] + [True] * 4
    frame = _one_group(times, deaths)
    table = site_summary(frame, attrition_of(frame), small_cell=5)["survival"]["os"]["oligo"]
    assert table["at_risk_stop"] == 5 and table["stop"] == 6
    assert sum(sub[1] for block in table["blocks"] for sub in block["events"]) == 5


def test_site_id_and_refusals() -> None:
    frame = _one_group([m + 0.5 for m in range(10)], [True] * 10)
    named = site_summary(frame, attrition_of(frame), small_cell=5, site=" Centre A ")
    assert named["site"] == {"name": "Centre A", "id": "Centre A"}
    anonymous = site_summary(frame, attrition_of(frame), small_cell=5)
    assert anonymous["site"]["id"] == "sha256:" + anonymous["content_sha256"][:16]
    assert anonymous["content_sha256"] == named["content_sha256"]  # the name is not content
    for bad in ({"small_cell": None}, {"small_cell": 0}, {"small_cell": 5, "grid_months": 0.005},
                {"small_cell": 5, "grid_months": -1.0}, {"small_cell": 5, "site": "  "}):
        with pytest.raises(ConfigError):
            site_summary(frame, attrition_of(frame), **bad)  # type: ignore[arg-type]


def test_model_statistics_are_shared_with_enough_patients(cohort: Cohort) -> None:
    for s in cohort.summaries[K]:
        assert s["cox"]["log_hr"] is not None and s["cox"]["se"] > 0
        assert s["logrank_oligo_vs_poly"]["variance"] > 0
    frame = _one_group([m + 0.5 for m in range(10)], [True] * 10)
    alone = site_summary(frame, attrition_of(frame), small_cell=5)
    assert alone["cox"]["log_hr"] is None and "fewer than 5" in alone["cox"]["note"]
    assert alone["logrank_oligo_vs_poly"]["observed_minus_expected_poly"] is None
