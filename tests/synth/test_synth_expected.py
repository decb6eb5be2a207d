"""patients.csv format (spec §5, decisions.md) and the subtle rule outcomes on hand-made histories."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd

from leopard_etl.synth import COLUMNS, Fact, TruthPatient, expected_rows, generate
from leopard_etl.synth.expected import expected_row
from leopard_etl.synth.truth import weekdays_from

D = dt.date


def test_patients_csv_format(tmp_path: Path) -> None:
    generate(120, 5, tmp_path, "fhir-ndjson")
    text = (tmp_path / "expected" / "patients.csv").read_text()
    rows = pd.read_csv(tmp_path / "expected" / "patients.csv", dtype=str, keep_default_na=False)
    assert text.splitlines()[0] == ",".join(COLUMNS)
    assert list(rows["patient_id"]) == sorted(rows["patient_id"])
    iso = re.compile(r"^\d{4}-\d{2}-\d{2}$")
    for col in ("crt_start", "crt_end", "durvalumab_start", "recurrence_date", "last_alive_date"):
        assert rows[col].map(lambda v: v == "" or bool(iso.match(v))).all(), col
    for col in ("os_months", "prs_months"):
        assert rows[col].map(lambda v: v == "" or bool(re.match(r"^\d+\.\d{2}$", v))).all(), col
    assert set(rows["in_cohort"]) == {"true", "false"} and set(rows["death"]) <= {"true", "false"}
    cohort, excl = rows[rows["in_cohort"] == "true"], rows[rows["in_cohort"] == "false"]
    assert (cohort["exclusion_reason"] == "").all() and (cohort["os_months"] != "").all()
    assert (excl[["recurrence", "pattern", "salvage", "os_months", "durvalumab_start"]] == "").all().all()
    assert (excl[excl["exclusion_reason"] == "not_stage_iii"]["crt_type"] == "").all()
    assert (excl[excl["exclusion_reason"] == "no_durvalumab"]["crt_type"] != "").all()
    none = cohort[cohort["recurrence"] == "false"]
    assert (
        none[["pattern", "n_lesions", "field", "sites", "salvage"]].values == ["none", "0", "none", "", ""]
    ).all()
    assert (rows["last_alive_date"] != "").all()


def _base(facts: list[Fact], death: D | None = None) -> TruthPatient:
    rt_days = weekdays_from(D(2020, 1, 6), 30)
    base = [
        Fact("nsclc", D(2019, 11, 15), precision="month", variant="icd_dot:1", laterality="right", ref="a"),
        Fact("stage", D(2019, 12, 1), variant="ajcc", stage="IIIB", ref="b"),
        Fact(
            "rt",
            rt_days[0],
            end=rt_days[-1],
            variant="daily",
            fractions=30,
            dose_cgy=200.0,
            days=rt_days,
            site="lung;lymph_node_thoracic",
            ref="c",
        ),
        Fact("drug", D(2020, 1, 6), ingredient="carboplatin", request=True, variant="rxnorm_in:cc", ref="d"),
        Fact("drug", D(2020, 3, 1), ingredient="durvalumab", variant="rxnorm_in:cc", ref="e"),
        Fact("drug", D(2020, 3, 15), ingredient="durvalumab", variant="rxnorm_in:cc", ref="f"),
        Fact("drug", D(2020, 6, 1), ingredient="durvalumab", variant="rxnorm_in:cc", ref="g"),  # gap > 60 d
    ]
    return TruthPatient("1000001", 1, "male", D(1950, 1, 1), death, "cohort", [*base, *facts])


def test_rules_on_a_hand_made_history() -> None:
    r = D(2020, 5, 4)
    lesion = {"kind": "lesion", "variant": "icd_dot"}
    p = _base(
        [
            Fact("progression", r, ref="p1"),
            Fact(
                start=r, site="lung", laterality="left", lesion_id="L1", ref="l1", **lesion
            ),  # contralateral
            Fact(
                start=r + dt.timedelta(days=9),
                site="lung",
                laterality="left",
                lesion_id="L1",
                ref="l2",
                **lesion,
            ),
            Fact(start=r + dt.timedelta(days=2), site="brain", lesion_id="L2", ref="l3", **lesion),
            Fact(
                start=r + dt.timedelta(days=5),
                site="pleura",
                lesion_id="E",
                excluded=True,
                ref="l4",
                **lesion,
            ),
            Fact(
                start=r + dt.timedelta(days=31), site="liver", lesion_id="L3", ref="l5", **lesion
            ),  # outside window
            Fact(
                "rt",
                r + dt.timedelta(days=20),
                end=r + dt.timedelta(days=28),
                variant="sbrt_summary",
                fractions=5,
                dose_cgy=1000.0,
                days=weekdays_from(r + dt.timedelta(days=20), 5, 2),
                ref="s1",
            ),
            Fact(
                "drug",
                r + dt.timedelta(days=25),
                ingredient="docetaxel",
                excluded=True,
                variant="atc:cc",
                ref="x",
            ),
        ],
        death=D(2021, 5, 4),
    )
    row = expected_row(p, D(2024, 6, 30))
    assert row is not None
    assert row["crt_type"] == "concurrent"  # carboplatin only as MedicationRequest: it counts
    assert (row["crt_start"], row["crt_end"]) == ("2020-01-06", "2020-02-14")
    assert (row["durvalumab_start"], row["durvalumab_doses"]) == ("2020-03-01", "2")
    assert (row["pattern"], row["n_lesions"], row["sites"]) == ("oligo", "2", "brain;lung")
    assert row["field"] == "out_of_field" and row["salvage"] == "rt"
    assert row["death"] == "true" and row["last_alive_date"] == "2021-05-04"
    assert row["os_months"] == f"{(D(2021, 5, 4) - D(2020, 1, 6)).days / 30.4375:.2f}"


def test_administered_ingredient_hides_requests_and_small_cell_is_not_screened() -> None:
    p = _base([Fact("drug", D(2019, 6, 1), ingredient="carboplatin", variant="rxnorm_in:cc", ref="z")])
    assert expected_row(p, D(2024, 6, 30))["exclusion_reason"] == "no_crt"  # type: ignore[index]
    sc = TruthPatient(
        "1000002",
        1,
        "male",
        D(1950, 1, 1),
        None,
        "small_cell",
        [
            Fact("nsclc", D(2020, 1, 1), variant="icd_nodot:1", ref="a"),
            Fact("small_cell", D(2020, 1, 2), ref="b"),
        ],
    )
    assert expected_row(sc, D(2024, 6, 30)) is None
    assert len(expected_rows([sc])) == 0
