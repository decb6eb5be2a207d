"""Progress of long work: live on a terminal, periodic log records (with the counts as fields) in CI
and logs; wired into the REST read (pages, resources per type, patients) and Bulk $export (the
server's X-Progress, then files downloaded) — checked against the real sekmet server."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from leopard_etl import progress as progress_mod
from leopard_etl.logs import configure_logging
from leopard_etl.progress import Progress, for_files, interactive


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    handler = _Records()
    logger = logging.getLogger("leopard_etl.progress")
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_log_mode_reports_periodically_and_at_the_end(records: list[logging.LogRecord]) -> None:
    clock = _Clock()
    task = Progress("reading", total=300, unit="patients", mode="log", log_every=30, clock=clock)
    task.advance(100, Observation=1200, pages=6)
    assert records == []  # nothing before the interval
    clock.now += 31
    task.advance(50, Observation=300, pages=2)
    assert len(records) == 1
    record = records[0]
    fields = record.__dict__
    assert fields["progress"] == "reading" and fields["done"] == 150 and fields["total"] == 300
    assert fields["Observation"] == 1500 and fields["pages"] == 8 and fields["eta_s"] == pytest.approx(31.0)
    assert record.getMessage() == (
        "reading: 150 of 300 patients · Observation 1,500 · pages 8 · ETA 0:31"
    )
    clock.now += 1
    task.close()
    task.close()  # idempotent
    assert len(records) == 2 and records[1].getMessage().endswith("(done in 0:32)")


def test_json_log_line_carries_the_counts() -> None:
    stream = io.StringIO()
    handler = configure_logging(json=True, stream=stream)
    try:
        assert interactive() is False  # JSON logs: a scheduler reads stderr, no live display
        with Progress("FHIR $export download", total=3, unit="files", mode="log") as task:
            task.advance(1, bytes=2048)
    finally:
        logging.getLogger("leopard_etl").removeHandler(handler)
    entry = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert entry["progress"] == "FHIR $export download" and entry["done"] == 1 and entry["bytes"] == 2048
    assert entry["logger"] == "leopard_etl.progress"


def test_null_and_ci_are_quiet(records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch) -> None:
    with Progress.null() as task:
        task.advance(5, pages=1)
        task.update(total=10)
    assert records == []

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("CI", raising=False)
    for h in [h for h in logging.getLogger("leopard_etl").handlers if getattr(h, "_leopard", False)]:
        monkeypatch.setattr(h, "formatter", logging.Formatter())  # text logs
    assert interactive(Tty()) is True
    monkeypatch.setenv("CI", "true")
    assert interactive(Tty()) is False
    assert interactive(io.StringIO()) is False


def test_live_mode_draws_one_shared_display(monkeypatch: pytest.MonkeyPatch) -> None:
    from rich.console import Console

    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=150)
    monkeypatch.setattr(progress_mod, "_console", lambda: console)
    monkeypatch.setattr(progress_mod, "_REDRAW_EVERY", 0.0)
    with Progress("FHIR REST read", total=4, unit="patients", mode="live") as task:
        with Progress("FHIR $export download", total=2, unit="files", mode="live") as inner:
            assert progress_mod._live_users == 2
            inner.advance(2)
        task.advance(4, Condition=20, pages=3)
    assert progress_mod._live is None and progress_mod._live_users == 0
    out = screen.getvalue()
    assert "FHIR REST read" in out and "4 of 4 patients · Condition 20 · pages 3" in out
    assert "FHIR $export download" in out


def test_files_hook_shows_bytes_rate_and_eta(tmp_path: Path, records: list[logging.LogRecord]) -> None:
    files = [tmp_path / "a.ndjson", tmp_path / "b.ndjson"]
    files[0].write_bytes(b"x" * 3000)
    files[1].write_bytes(b"y" * 1000)
    task = for_files(files)
    assert task.total == 4000 and task.unit == "bytes" and task.rate_of == "resources"
    task.advance(3000, resources=30)
    detail = task.detail()
    assert detail.startswith("2.9 KB of 3.9 KB · resources 30 · ")
    assert "resources/s" in detail and "ETA" in detail
    task.close()
    assert records[-1].__dict__["resources_per_s"] > 0


# -- wired into the readers, against the real server ---------------------------------------------------
@pytest.fixture(scope="module")
def loaded(sekmet: Any, fhir_files: Path) -> Any:
    resources = []
    for path in sorted(fhir_files.glob("*.ndjson")):
        for line in path.read_bytes().splitlines():
            try:
                res = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # the synthetic export carries malformed lines on purpose
            if isinstance(res, dict) and res.get("resourceType") and res.get("id"):
                resources.append(res)
    sekmet.transaction(resources)
    return sekmet


@pytest.mark.fhir_server
def test_rest_read_reports_pages_resources_and_patients(
    loaded: Any, records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    from leopard_etl.events import EventSink
    from leopard_etl.mappings import CodeMatcher, load_mappings
    from leopard_etl.sources.fhir.rest import FhirRestClient

    monkeypatch.setenv("CI", "true")
    sink = EventSink()
    with FhirRestClient(loaded.base_url) as client:
        client.read(CodeMatcher(load_mappings()), sink)
    final = [r for r in records if r.__dict__.get("progress", "").startswith("FHIR REST read of")]
    assert final, [r.getMessage() for r in records]
    fields = final[-1].__dict__
    assert fields["unit"] == "patients" and fields["done"] == fields["total"] and fields["total"] > 0
    assert fields["pages"] >= 12 and fields["Observation"] > 0 and fields["Condition"] > 0
    assert "(done in" in final[-1].getMessage()


@pytest.mark.fhir_server
def test_bulk_export_reports_polls_and_files(
    loaded: Any, records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from leopard_etl.sources.fhir.bulk import bulk_export

    monkeypatch.setenv("CI", "true")
    files = bulk_export(loaded.base_url, tmp_path / "export", sleep=lambda s: None)
    done = [r.__dict__ for r in records if r.__dict__.get("progress") == "FHIR $export download"]
    assert done and done[-1]["done"] == done[-1]["total"] >= len(files) > 0
    assert done[-1]["bytes"] == sum(p.stat().st_size for p in (tmp_path / "export").rglob("*.ndjson"))
    assert any(r.__dict__.get("progress", "").startswith("FHIR $export at") for r in records)
