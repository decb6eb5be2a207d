"""Bundle files streamed entry by entry give what the whole-document Python reader gives.

The scanner is checked against orjson on hand-made documents cut into blocks of every size
(strings holding brackets, quotes and backslashes, non-object entries, other arrays after the
entries); the streamed read against ``read_fhir_files`` with the columnar dispatch off
(events, patients, quarantine rows, stats), with ``STREAM_BYTES`` lowered so that small test
files stream. Documents that are not well-formed Bundles go to the whole-document reader.
"""

from __future__ import annotations

import gzip
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fhir"))
from fhir_samples import ICD10CM, LOINC, RXNORM, cc, condition, med_admin, medication, patient
from test_columnar_equivalence import assert_same, python_reader

from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.sources.fhir import columnar
from leopard_etl.sources.fhir.bundle_stream import NotStreamable, Scanner

Resource = dict[str, Any]


@pytest.fixture(scope="module")
def matcher() -> CodeMatcher:
    return CodeMatcher(load_mappings())


@pytest.fixture(autouse=True)
def stream_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(columnar, "STREAM_BYTES", 0)


def scan(doc: bytes, block: int) -> tuple[list[tuple[int, Any]], bytes]:
    sc = Scanner()
    out = []
    for i in range(0, len(doc), block):
        out += sc.feed(doc[i : i + block])
    return [(i, orjson.loads(e)) for i, e in out], sc.finish()


ODD_DOCS: list[Any] = [
    {
        "resourceType": "Bundle",
        "entry": [
            {"resource": {"a": 'x"}{[', "b": "\\"}},
            None,
            5,
            {"fullUrl": "u"},
            "s,{",
            {"x": {"entry": [1]}},
        ],
        "link": [{"relation": "]"}],
    },
    {"resourceType": "Bundle", "entry": []},
    {"meta": {"entry": [{"x": 1}]}, "entry": [{"a": {"b": {"c": [{}]}}}], "resourceType": "Bundle"},
]


@pytest.mark.parametrize("doc", ODD_DOCS)
@pytest.mark.parametrize("block", [1, 2, 3, 7, 64, 1 << 20])
def test_scanner_finds_the_entries_orjson_finds(doc: Any, block: int) -> None:
    for option in (0, orjson.OPT_INDENT_2):
        raw = orjson.dumps(doc, option=option)
        entries, skeleton = scan(raw, block)
        assert entries == [(i, e) for i, e in enumerate(doc["entry"]) if isinstance(e, dict)]
        assert orjson.loads(skeleton)["resourceType"] == "Bundle"


@pytest.mark.parametrize(
    "raw",
    [
        b'{"entry":[{"a":1}]',
        b'{"entry":[{"a":1}]}}',
        b'{"entry":[]} {}',
        b'[{"entry":[]}]',
        b'x{"entry":[]}',
        b'{"entry":[{"a":"1}]}',
    ],
)
def test_scanner_refuses_what_is_not_one_object(raw: bytes) -> None:
    with pytest.raises(NotStreamable):
        scan(raw, 3)


def urn(rtype: str, rid: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, rtype + '/' + rid)}"


def transaction(resources: list[Resource], *, urns: bool = True) -> Resource:
    entries: list[Any] = []
    for r in resources:
        entry: Resource = {"fullUrl": urn(r["resourceType"], str(r.get("id"))), "resource": r}
        if "id" in r:
            entry["request"] = {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def with_urns(r: Resource, pid: str) -> Resource:
    return {**r, "subject": {"reference": urn("Patient", pid)}}


def big_bundle() -> Resource:
    resources: list[Resource] = [patient("a"), patient("b"), medication("m1", "40048")]
    for i in range(40):
        resources += [
            with_urns(condition(f"dx{i}", "a", cc(ICD10CM, "C34.1"), onset=f"2020-01-{i % 28 + 1:02d}"), "a"),
            with_urns(
                {
                    "resourceType": "Observation",
                    "id": f"o{i}",
                    "status": "final",
                    "code": cc(LOINC, "8867-4"),
                    "effectiveDateTime": f"2021-02-{i % 28 + 1:02d}T10:00:00Z",
                },
                "b",
            ),
            with_urns(med_admin(f"ma{i}", "a", "2020-02-03", med_ref=urn("Medication", "m1")), "a"),
        ]
    resources += [
        with_urns(med_admin("ma-late", "a", "2020-02-03", med_ref=urn("Medication", "m2")), "a"),
        medication("m2", "1919503"),
        with_urns(med_admin("ma-ghost", "a", "2020-02-03", med_ref=urn("Medication", "none")), "a"),
        with_urns(
            {
                "resourceType": "Encounter",
                "id": "e1",
                "status": "finished",
                "period": {"start": "2020-05-01"},
            },
            "a",
        ),
        with_urns(
            condition(
                "dx-enc",
                "a",
                cc(ICD10CM, "C34.1"),
                onset=None,
                encounter={"reference": urn("Encounter", "e1")},
            ),
            "a",
        ),
        {
            "resourceType": "Condition",
            "subject": {"reference": urn("Patient", "a")},
            "code": cc(ICD10CM, "C34.1"),
            "onsetDateTime": "2020-01-01",
        },  # no id: the entry's PUT url / fullUrl names it
        {**condition("ghost", "zz", cc(ICD10CM, "C34.1")), "subject": {"reference": urn("Patient", "zz")}},
        {
            "resourceType": "Immunization",
            "id": "im",
            "status": "completed",
            "patient": {"reference": urn("Patient", "b")},
            "occurrenceDateTime": "2020-10-01",
            "vaccineCode": cc("http://hl7.org/fhir/sid/cvx", "140"),
        },
        {"resourceType": "OperationOutcome", "id": "oo"},
        {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": patient("nested")}]},
        {"resourceType": "Practitioner", "id": "dr"},
        with_urns(
            {
                "resourceType": "MedicationStatement",
                "id": "ms",
                "status": "active",
                "medicationCodeableConcept": cc(RXNORM, "197361"),
                "effectiveDateTime": "2020-03-01",
            },
            "b",
        ),
    ]
    bundle = transaction(resources)
    bundle["entry"] += [None, {"request": {"method": "DELETE", "url": "Patient/x"}}, {"resource": None}]
    return bundle


@pytest.mark.parametrize("indent", [0, orjson.OPT_INDENT_2])
@pytest.mark.parametrize("gz", [False, True])
def test_streamed_bundle_equals_the_python_reader(
    matcher: CodeMatcher, tmp_path: Path, indent: int, gz: bool
) -> None:
    raw = orjson.dumps(big_bundle(), option=indent)
    path = tmp_path / ("big.json.gz" if gz else "big.json")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    ref, col = EventSink(), EventSink()
    python_reader([path], matcher, ref)
    columnar.read_ndjson_columnar([path], matcher, col, chunk_bytes=4096)
    assert_same(ref, col)
    sources = {e.source for e in col.events}
    assert {
        "fhir:MedicationAdministration/ma-late",
        "fhir:Condition/dx-enc",
        "fhir:Immunization/im",
    } <= sources
    assert any(q.reason == "unresolvable medicationReference" for q in col.quarantined)


def test_streamed_bundle_beside_ndjson(matcher: CodeMatcher, tmp_path: Path) -> None:
    (tmp_path / "Bundle.json").write_bytes(orjson.dumps(big_bundle()))
    (tmp_path / "Condition.ndjson").write_bytes(
        orjson.dumps(
            condition("nd", "a", cc(ICD10CM, "C34.1"), encounter={"reference": "Encounter/e1"}, onset=None)
        )
        + b"\n"
    )
    ref, col = EventSink(), EventSink()
    python_reader([tmp_path], matcher, ref)
    columnar.read_ndjson_columnar([tmp_path], matcher, col)
    assert_same(ref, col)


@pytest.mark.parametrize(
    "raw",
    [
        b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p"}},]}',
        b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}]',
        b'{"resourceType": "Patient", "id": "p"}',
        b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": 5}}]}',
        b'{"resourceType":"Patient","id":"p"}\n{"resourceType":"Patient","id":"q"}\n{"x":1}\n',
        b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p", "x": NaN}}'
        b"]}",
        b'{"resourceType": "Bundle", "entry": [{"resource": {"resourceType": "Patient", "id": "p"}}],'
        b' "entry": []}',
    ],
)
def test_documents_that_are_not_plain_bundles(matcher: CodeMatcher, tmp_path: Path, raw: bytes) -> None:
    path = tmp_path / "doc.json"
    path.write_bytes(raw)
    ref, col = EventSink(), EventSink()
    python_reader([path], matcher, ref)
    columnar.read_ndjson_columnar([path], matcher, col)
    assert_same(ref, col)
