"""The OMOP adapter on the hand-made CDM: classification, push-down, accounting, DuckDB = PostgreSQL."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import pytest

from leopard_etl.events import Event, EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.omop import OmopReadReport, read_omop

D = dt.date
UNMATCHED_KEYS = {"record_type", "system", "code", "display", "n_records", "n_patients"}


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


def _read(
    url: str, matcher: CodeMatcher, cdm: str | None, vocab: str | None, **kw: object
) -> tuple[EventSink, OmopReadReport, dict[str, Event]]:
    sink = EventSink()
    report = read_omop(url, matcher, sink, cdm_schema=cdm, vocab_schema=vocab, chunk_size=3, **kw)  # type: ignore[arg-type]
    return sink, report, {e.source: e for e in sink.events}


def _check_fixture(sink: EventSink, report: OmopReadReport, ev: dict[str, Event], version: str) -> None:
    # persons: only the two screened ones, with sex, birth and death
    people = {p.patient_id: p for p in sink.patients}
    assert set(people) == {"1000001", "1000002"}
    assert people["1000001"].sex == "male" and people["1000001"].death_date == D(2022, 6, 30)
    assert people["1000001"].birth_date == D(1955, 3, 9)
    assert people["1000002"].sex == "female" and people["1000002"].death_date is None

    # NSCLC via descendant SNOMED + ICD10CM source concept (laterality right), and via source value only
    c1 = ev["omop:condition_occurrence/1"]
    assert (
        {"nsclc", "nsclc_icd"} <= set(c1.groups.split(";"))
        and c1.laterality == "right"
        and c1.start == D(2020, 1, 10)
    )
    c4 = ev["omop:condition_occurrence/4"]
    assert (
        c4.groups == "nsclc_icd" and c4.laterality == "left" and (c4.system, c4.code) == ("icd10cm", "C3412")
    )
    # lesion condition without a source value: lesion id = row id; site from the SNOMED / ICD code
    c2 = ev["omop:condition_occurrence/2"]
    assert c2.groups == "lesion" and c2.site == "brain" and c2.lesion_id == "2"

    # radiotherapy: CPT standard concept with fractions; CPT source value; ICD-10-PCS D?2 pattern
    p10 = ev["omop:procedure_occurrence/10"]
    assert p10.groups == "radiotherapy" and p10.fractions == 30
    assert p10.end == (D(2020, 3, 15) if version == "5.4" else None)
    assert ev["omop:procedure_occurrence/11"].groups == "radiotherapy;stereotactic"
    assert ev["omop:procedure_occurrence/12"].groups == "radiotherapy;stereotactic"

    # drugs: product reached only through concept_ancestor; ATC source concept only; durvalumab product
    d20, d21, d22 = (ev[f"omop:drug_exposure/{i}"] for i in (20, 21, 22))
    assert (d20.kind, d20.groups, d20.ingredient) == ("drug_admin", "chemo;platinum", "cisplatin")
    assert (d21.groups, d21.ingredient) == ("chemo;platinum", "carboplatin")
    assert (d22.groups, d22.ingredient) == ("durvalumab", "durvalumab")

    # stage: Cancer Modifier names (3A → IIIA, 2 → II), LOINC 21908-9 with a SNOMED value (IIIC)
    assert ev["omop:measurement/30"].value == "IIIA"
    assert ev["omop:measurement/32"].groups == "stage_group" and ev["omop:measurement/32"].value == "IIIC"
    assert ev["omop:measurement/33"].value == "II"
    # Cancer Modifier metastases: in mappings (site lung) and class-only (no site); lesion id = source value
    m31, m35 = ev["omop:measurement/31"], ev["omop:measurement/35"]
    assert (m31.groups, m31.site, m31.lesion_id) == ("lesion", "lung", "L1")
    assert (m35.groups, m35.site, m35.lesion_id) == ("lesion", None, "K9")
    # progression: disease status worsened (measurement) and, on 5.4, the episode
    assert ev["omop:measurement/34"].groups == "progression"
    assert ("omop:episode/60" in ev) == (version == "5.4")
    if version == "5.4":
        assert ev["omop:episode/60"].groups == "progression" and ev["omop:episode/60"].kind == "episode"
    op = ev["omop:observation_period/50"]
    assert (op.kind, op.end) == ("observation_period", D(2022, 6, 30))

    # push-down: the diabetes rows, person 1000003's rows and the T-category never left the database
    # one by one: 1000003 is not screened, the others are activity records (spec §1 v2), aggregated
    for absent in ("condition_occurrence/3", "condition_occurrence/5", "drug_exposure/23", "measurement/36"):
        assert f"omop:{absent}" not in ev
    assert not any(e.patient_id == "1000003" for e in sink.events)
    activity = {e.source: e for e in sink.events if e.groups == "" and e.kind != "observation_period"}
    assert {s: (e.kind, e.start, e.end) for s, e in activity.items()} == {
        "omop:condition_occurrence/latest/1000001": ("condition", D(2020, 2, 1), None),
        "omop:measurement/latest/1000002": ("observation", D(2019, 5, 7), None),
        "omop:observation/latest/1000002": ("observation", D(2019, 9, 1), None),
    }
    # rows considered: every row of the screened persons (1000001, 1000002, the orphan 1000009)
    episode = 1 if version == "5.4" else 0
    assert report.read == {
        "person": 2,
        "death": 1,
        "observation_period": 2,
        "condition_occurrence": 5,
        "procedure_occurrence": 3,
        "drug_exposure": 3,
        "measurement": 7,
        "observation": 1,
        **({"episode": 1} if version == "5.4" else {}),
        "visit_occurrence": 0,  # the optional activity tables: present, empty
        "visit_detail": 0,
        "device_exposure": 0,
    }
    # rows that left: candidates one by one + one aggregate row per person and table with activity
    assert report.left["condition_occurrence"] == 4 + 1 and report.held["condition_occurrence"] == 6
    assert report.left["drug_exposure"] == 3 and report.held["drug_exposure"] == 4
    assert report.left["measurement"] == 6 + 1 and report.held["measurement"] == 7
    assert report.left["observation"] == 1 + 1 and report.held["observation"] == 1
    assert report.left["person"] == 2 and report.held["person"] == 3
    assert report.screened_persons == 2  # the orphan condition has no person row: not a screened person
    assert report.cdm_version == version

    # accounting: the orphan condition is quarantined; the disease status "improved" is activity
    st = sink.stats
    # the rows of persons who are not screened are counted out of scope, whole (docs/omop.md)
    others = sum(v for k, v in st.out_of_scope_reasons.items() if k.endswith("person not screened"))
    assert others == sum(
        max(0, report.held[t] - report.read.get(t, 0)) for t in report.held if t != "episode_event"
    )
    assert st.balanced() and st.quarantined == 1 and st.out_of_scope == others > 0
    assert st.read - others == sum(report.read.values()) == 24 + episode
    assert st.in_scope == st.read - 1 - others
    q = sink.quarantined[0]
    assert (q.location, q.record_id) == ("omop:condition_occurrence/6", "condition_occurrence/6")
    assert q.reason == "person_id not in the person table"
    assert sink.watermark == "2021-03-02"
    unmatched = {(u["record_type"], u["system"], u["code"]): u for u in sink.unmatched_codes}
    assert set(unmatched) == {
        ("condition_occurrence", "SNOMED", "73211009"),
        ("measurement", "Cancer Modifier", "c-8th_AJCC/UICC-T1a"),
        ("observation", "LOINC", "97509-4"),
    }
    diabetes = unmatched[("condition_occurrence", "SNOMED", "73211009")]
    assert (diabetes["display"], diabetes["n_records"], diabetes["n_patients"]) == ("Diabetes mellitus", 1, 1)
    assert all(set(u) == UNMATCHED_KEYS for u in unmatched.values())


@pytest.mark.parametrize("version", ["5.4", "5.3"])
def test_duckdb_fixture_classifies_every_path(
    duckdb_cdm: Callable[..., str], matcher: CodeMatcher, version: str
) -> None:
    url = duckdb_cdm(version)
    sink, report, ev = _read(url, matcher, "cdm", "vocab")
    _check_fixture(sink, report, ev, version)


def test_duckdb_default_schema(duckdb_cdm: Callable[..., str], matcher: CodeMatcher) -> None:
    url = duckdb_cdm("5.4", None, None)
    sink, report, ev = _read(url, matcher, None, None)
    _check_fixture(sink, report, ev, "5.4")


@pytest.mark.postgres
@pytest.mark.parametrize("version", ["5.4", "5.3"])
def test_postgres_equals_duckdb(
    pg_cdm: Callable[[str], tuple[str, str, str]],
    duckdb_cdm: Callable[..., str],
    matcher: CodeMatcher,
    version: str,
) -> None:
    url, cdm, vocab = pg_cdm(version)
    pg_sink, pg_report, pg_ev = _read(url, matcher, cdm, vocab)
    _check_fixture(pg_sink, pg_report, pg_ev, version)
    dk_sink, dk_report, _ = _read(duckdb_cdm(version), matcher, "cdm", "vocab")
    assert sorted(pg_sink.events) == sorted(dk_sink.events)
    assert sorted(pg_sink.patients) == sorted(dk_sink.patients)
    assert pg_report.as_dict() == dk_report.as_dict()


def test_since_keeps_later_rows_only(duckdb_cdm: Callable[..., str], matcher: CodeMatcher) -> None:
    sink, _report, ev = _read(duckdb_cdm("5.4"), matcher, "cdm", "vocab", since=D(2021, 1, 1))
    clinical = sorted(s for s, e in ev.items() if e.kind != "observation_period")
    assert clinical == ["omop:condition_occurrence/2", "omop:episode/60", "omop:measurement/31"]
    # no activity row starts on or after since: no activity event
    assert len(sink.patients) == 2 and sink.stats.balanced()


def test_episodes_are_read_without_episode_event(
    duckdb_cdm: Callable[..., str], matcher: CodeMatcher
) -> None:
    """episode_event links episodes to rows, which no rule needs: a 5.4 CDM without it keeps its episodes."""
    import sqlalchemy as sa

    url = duckdb_cdm("5.4")
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE cdm.episode_event")
    engine.dispose()
    sink, report, ev = _read(url, matcher, "cdm", "vocab")
    assert ev["omop:episode/60"].groups == "progression"
    assert "episode_event" not in report.as_dict()["tables"] and sink.stats.balanced()
