"""Spec v2 on OMOP: activity records, undated and future rows, death without date, ICD-9, read == count(*).

Every test runs on DuckDB and on PostgreSQL (the same v2 fixture CDM, omop_fixture_cdm.build_v2_cdm).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from pathlib import Path

import pytest
from omop_fixture_cdm import ORPHAN, P1, P2, P4, RUN_DAY, build_v2_cdm
from sqlalchemy import create_engine, inspect, text

from leopard_etl.events import Event, EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.omop import OmopReadReport, read_omop
from leopard_etl.sources.omop.cdm import CDM_TABLES

D = dt.date
#: the persons the v2 fixture screens (an nsclc condition), the orphan (no person row) included
SCREENED = (P1, P2, P4, ORPHAN)
_pg_built: set[str] = set()


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


@pytest.fixture
def v2_cdm(request: pytest.FixtureRequest, tmp_path: Path) -> Callable[[str], tuple[str, str, str]]:
    """``v2_cdm(backend)`` → (url, cdm schema, vocab schema) of the v2 fixture on ``duckdb``/``postgres``."""

    def build(backend: str) -> tuple[str, str, str]:
        if backend == "duckdb":
            url = f"duckdb:///{tmp_path / 'v2.duckdb'}"
            if not (tmp_path / "v2.duckdb").exists():
                engine = create_engine(url)
                with engine.begin() as conn:
                    build_v2_cdm(conn, "cdm", "vocab")
                engine.dispose()
            return url, "cdm", "vocab"
        pg_url: str = request.getfixturevalue("pg_url")
        if pg_url not in _pg_built:
            engine = create_engine(pg_url)
            with engine.begin() as conn:
                build_v2_cdm(conn, "v2cdm", "v2vocab")
            engine.dispose()
            _pg_built.add(pg_url)
        return pg_url, "v2cdm", "v2vocab"

    return build


BACKENDS = ["duckdb", pytest.param("postgres", marks=pytest.mark.postgres)]


def _read(
    url: str,
    cdm: str,
    vocab: str,
    matcher: CodeMatcher,
    run_day: dt.date | None = None,
    cutoff: dt.date | None = None,
) -> tuple[EventSink, OmopReadReport, dict[str, Event]]:
    sink = EventSink()
    sink.run_day, sink.cutoff = run_day, cutoff
    report = read_omop(url, matcher, sink, cdm_schema=cdm, vocab_schema=vocab, chunk_size=4)
    assert sink.stats.balanced(), sink.stats
    return sink, report, {e.source: e for e in sink.events}


def _quarantine(sink: EventSink) -> dict[str, str]:
    return {q.record_id: q.reason for q in sink.quarantined}


def _activity(sink: EventSink) -> dict[str, tuple[str, dt.date]]:
    return {
        e.source: (e.kind, e.start) for e in sink.events if e.groups == "" and e.kind != "observation_period"
    }


@pytest.mark.parametrize("backend", BACKENDS)
def test_run_day_without_cutoff(
    v2_cdm: Callable[[str], tuple[str, str, str]], matcher: CodeMatcher, backend: str
) -> None:
    sink, report, ev = _read(*v2_cdm(backend), matcher, run_day=RUN_DAY)
    future = sink.future_reason
    assert _quarantine(sink) == {
        "condition_occurrence/6": "person_id not in the person table",  # grouped, orphan
        "condition_occurrence/101": "no usable date",  # grouped, NULL date
        "condition_occurrence/102": future(D(2023, 2, 1)),  # grouped, after the day of the run
        "device_exposure/1": future(D(2023, 3, 1)),  # activity, after the day of the run
        "visit_occurrence/3": "person_id not in the person table",  # activity, orphan
    }
    q = next(q for q in sink.quarantined if q.record_id == "condition_occurrence/101")
    assert q.location == "omop:condition_occurrence/101" and "start=NULL" in q.record
    # an ungrouped row without a date is out of scope, never quarantined
    assert _others(sink.stats.out_of_scope_reasons)[0] == {"no date": 1}
    assert "omop:condition_occurrence/102" not in ev

    assert _activity(sink) == {
        f"omop:condition_occurrence/latest/{P1}": ("condition", D(2020, 2, 1)),  # 3; 100 has no date
        f"omop:condition_occurrence/latest/{P2}": ("condition", D(2019, 6, 2)),  # 922.4: not 92.24
        f"omop:procedure_occurrence/latest/{P2}": ("procedure", D(2019, 6, 3)),  # 16.22: not 162.2
        f"omop:drug_exposure/latest/{P1}": ("drug_admin", D(2021, 1, 1)),  # start only, not its end
        f"omop:measurement/latest/{P2}": ("observation", D(2019, 5, 7)),
        f"omop:observation/latest/{P2}": ("observation", D(2019, 9, 1)),
        # visit 1 ends 2022-05-03; visit 2 spans the day of the run: it counts by its start
        f"omop:visit_occurrence/latest/{P1}": ("encounter", D(2022, 12, 20)),
    }
    assert all(e.end is None and e.system == e.code == "" for e in sink.events if "/latest/" in e.source)

    # ICD-9-CM: diagnoses only on conditions, procedures only on procedures (spec §1 v2)
    assert ev["omop:condition_occurrence/110"].groups == "nsclc_icd"  # source value 162.3
    assert ev["omop:condition_occurrence/114"].groups == "nsclc_icd"  # ICD9CM source concept 162.5
    assert ev["omop:procedure_occurrence/112"].groups == "radiotherapy"  # source value 92.24
    assert ev["omop:procedure_occurrence/115"].groups == "radiotherapy"  # ICD9Proc concept 92.24
    assert (ev["omop:procedure_occurrence/112"].system, ev["omop:procedure_occurrence/112"].code) == (
        "icd9proc",
        "9224",
    )
    # a person screened by an ICD-9-CM source value alone
    assert ev["omop:condition_occurrence/120"].patient_id == str(P4)

    # death: dated, without a date, none
    people = {p.patient_id: p for p in sink.patients}
    assert set(people) == {str(P1), str(P2), str(P4)}
    assert (people[str(P1)].deceased, people[str(P1)].death_date) == (True, D(2022, 6, 30))
    assert (people[str(P2)].deceased, people[str(P2)].death_date) == (True, None)
    assert (people[str(P4)].deceased, people[str(P4)].death_date) == (False, None)

    unmatched = {(u["record_type"], u["system"], u["code"]): u for u in sink.unmatched_codes}
    assert unmatched[("condition_occurrence", "SNOMED", "73211009")]["n_records"] == 2  # undated included
    assert unmatched[("condition_occurrence", "", "922.4")]["display"] is None  # no concept: source value
    assert unmatched[("procedure_occurrence", "", "16.22")]["n_patients"] == 1
    assert unmatched[("drug_exposure", "RxNorm", "6809")]["display"] == "metformin"
    visit = unmatched[("visit_occurrence", "Visit", "IP")]
    assert (visit["n_records"], visit["n_patients"]) == (2, 1)  # the orphan's visit is quarantined
    assert not any(k[0] == "device_exposure" for k in unmatched)  # its only row is quarantined

    st = sink.stats
    others = _held(*v2_cdm(backend)[:2]) - 42  # rows of persons who are not screened: out of scope
    assert others > 0 and st.out_of_scope_reasons["condition_occurrence: person not screened"] > 0
    assert (st.read, st.in_scope, st.quarantined, st.out_of_scope) == (42 + others, 36, 5, 1 + others)
    assert (
        report.left["visit_occurrence"] == 2 + 1
    )  # aggregate rows of P1 and the orphan, one row quarantined


@pytest.mark.parametrize("backend", BACKENDS)
def test_explicit_cutoff_quarantines_nothing_for_its_date(
    v2_cdm: Callable[[str], tuple[str, str, str]], matcher: CodeMatcher, backend: str
) -> None:
    sink, _report, ev = _read(*v2_cdm(backend), matcher, run_day=D(2023, 6, 30), cutoff=RUN_DAY)
    assert set(_quarantine(sink)) == {
        "condition_occurrence/6",
        "condition_occurrence/101",
        "visit_occurrence/3",
    }
    lesion = ev["omop:condition_occurrence/102"]  # after the cutoff: kept, the rules ignore it
    assert (lesion.groups, lesion.start, lesion.lesion_id) == ("lesion", D(2023, 2, 1), "L7")
    activity = _activity(sink)
    assert activity[f"omop:visit_occurrence/latest/{P1}"] == ("encounter", D(2022, 12, 20))
    # the device row is read and in scope, but no date of it is on or before the cutoff: no event
    assert f"omop:device_exposure/latest/{P1}" not in activity
    others = _others(sink.stats.out_of_scope_reasons)[1]
    assert (sink.stats.read, sink.stats.quarantined, sink.stats.out_of_scope) == (42 + others, 3, 1 + others)
    unmatched = {(u["record_type"], u["code"]) for u in sink.unmatched_codes}
    assert ("device_exposure", "706070003") in unmatched


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_bound_takes_every_date(
    v2_cdm: Callable[[str], tuple[str, str, str]], matcher: CodeMatcher, backend: str
) -> None:
    """Without a run day or cutoff nothing is in the future and an interval counts by its end."""
    sink, _report, _ev = _read(*v2_cdm(backend), matcher)
    activity = _activity(sink)
    assert activity[f"omop:visit_occurrence/latest/{P1}"] == ("encounter", D(2023, 1, 10))
    assert activity[f"omop:device_exposure/latest/{P1}"] == ("device", D(2023, 3, 1))
    assert sink.stats.quarantined == 3


def _considered(url: str, cdm: str) -> int:
    """count(*) of the rows the reader considers (docs/omop.md, "Accounting"), straight from the CDM."""
    ids = ", ".join(str(p) for p in SCREENED)
    engine = create_engine(url)
    total = 0
    with engine.connect() as conn:
        tables = {t.lower() for t in inspect(conn).get_table_names(schema=cdm)}
        for t in [t for t in CDM_TABLES if t in tables and t not in ("episode_event", "death")]:
            total += conn.execute(
                text(f"SELECT COUNT(*) FROM {cdm}.{t} WHERE person_id IN ({ids})")
            ).scalar_one()
        total += conn.execute(
            text(
                f"SELECT COUNT(*) FROM {cdm}.death d WHERE d.person_id IN ({ids})"
                f" AND EXISTS (SELECT 1 FROM {cdm}.person p WHERE p.person_id = d.person_id)"
            )
        ).scalar_one()
    engine.dispose()
    return int(total)


def _held(url: str, cdm: str) -> int:
    """count(*) of every CDM table the reader reads (all persons): the source's own row count."""
    engine = create_engine(url)
    with engine.connect() as conn:
        tables = {t.lower() for t in inspect(conn).get_table_names(schema=cdm)}
        total = sum(
            conn.execute(text(f"SELECT COUNT(*) FROM {cdm}.{t}")).scalar_one()
            for t in CDM_TABLES
            if t in tables and t != "episode_event"
        )
    engine.dispose()
    return int(total)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_equals_count_of_considered_rows(
    v2_cdm: Callable[[str], tuple[str, str, str]], matcher: CodeMatcher, backend: str
) -> None:
    url, cdm, vocab = v2_cdm(backend)
    for run_day, cutoff in ((RUN_DAY, None), (None, RUN_DAY), (None, None)):
        sink, report, _ev = _read(url, cdm, vocab, matcher, run_day=run_day, cutoff=cutoff)
        # the considered rows (docs/omop.md) are read; the other persons' rows are counted out of scope,
        # so `read` is the CDM's own row count (issue 13: read balances against the source's counts)
        assert sum(report.read.values()) == _considered(url, cdm) == 42
        assert sink.stats.read == _held(url, cdm)
        assert sink.stats.balanced()


def test_optional_activity_tables_may_be_absent(
    v2_cdm: Callable[[str], tuple[str, str, str]], matcher: CodeMatcher
) -> None:
    url, cdm, vocab = v2_cdm("duckdb")
    engine = create_engine(url)
    with engine.begin() as conn:
        for t in ("visit_occurrence", "visit_detail", "device_exposure"):
            conn.exec_driver_sql(f"DROP TABLE {cdm}.{t}")
    engine.dispose()
    sink, report, _ev = _read(url, cdm, vocab, matcher, run_day=RUN_DAY)
    assert not {"visit_occurrence", "visit_detail", "device_exposure"} & set(report.read)
    assert _considered(url, cdm) == 42 - 4 and sink.stats.read == _held(url, cdm)
    assert not any(e.kind in ("encounter", "device") for e in sink.events)


def _others(reasons: dict[str, int]) -> tuple[dict[str, int], int]:
    """(the reasons of the considered rows, the count of the other persons' rows)."""
    own = {k: v for k, v in reasons.items() if not k.endswith("person not screened")}
    return own, sum(reasons.values()) - sum(own.values())
