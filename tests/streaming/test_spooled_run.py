"""The bounded-memory ``run`` writes the same files as the in-memory path it replaced.

patients.csv, results.json (exact and shareable) and quarantine.csv are compared byte
for byte between :func:`pipeline.run_spooled` forced into many partitions and the
in-memory path (:func:`pipeline.frames` of a plain sink → :func:`pipeline.derive_and_write`).
"""

from __future__ import annotations

from pathlib import Path

from leopard_etl.config import load_config
from leopard_etl.events import EventSink
from leopard_etl.mappings import CodeMatcher, load_mappings
from leopard_etl.pipeline import date_bounds, derive_and_write, frames, run_spooled
from leopard_etl.sources.fhir import read_fhir
from leopard_etl.synth import generate

FILES = ("patients.csv", "results.json", "results-shareable.json", "quarantine.csv")


def test_spooled_run_writes_the_in_memory_outputs(tmp_path: Path) -> None:
    data = tmp_path / "fhir"
    generate(patients=250, seed=3, out=data, fmt="fhir-ndjson")
    matcher = CodeMatcher(load_mappings())

    spooled_cfg = load_config(None, {"fhir": [str(data)], "out": tmp_path / "spooled"}, {})
    summary = run_spooled(spooled_cfg, matcher, partition_rows=1_000)

    plain_cfg = load_config(None, {"fhir": [str(data)], "out": tmp_path / "plain"}, {})
    sink = EventSink()
    date_bounds(plain_cfg, sink)  # as every run: records dated after the day of the run are quarantined
    read_fhir(str(data), matcher, sink)
    expected = derive_and_write(plain_cfg, matcher, *frames(sink), "fhir", stats=sink.stats)

    assert summary["events"] == expected["events"] == len(sink.events) > 5_000
    assert summary["quarantined"] == expected["quarantined"] > 0
    assert summary["cohort"] == expected["cohort"] > 0
    assert summary["source_read"] == sink.stats.read
    for name in FILES:
        got = (tmp_path / "spooled" / name).read_bytes()
        assert got == (tmp_path / "plain" / name).read_bytes(), name
    assert (tmp_path / "spooled" / "report.html").stat().st_size > 10_000
