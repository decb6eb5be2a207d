"""The runner's own decisions, without a process: when a read is complete, and the pause hook."""

from __future__ import annotations

import io

from leopard_etl.warehouse.runner import PAUSE_ENV, pause_checkpoint, read_is_complete


def test_only_a_fhir_read_from_a_watermark_is_partial() -> None:
    assert read_is_complete("fhir", None)
    assert not read_is_complete("fhir", "2025-01-01T00:00:00Z")
    # OMOP is always re-read whole: rows missing from it were deleted at the source
    assert read_is_complete("omop", "2024-06-30")


def test_pause_hook_stops_only_at_the_named_points_until_a_line_arrives() -> None:
    assert pause_checkpoint({}) is None
    stdin, stderr = io.StringIO("go\n"), io.StringIO()
    hook = pause_checkpoint({PAUSE_ENV: "commit, read"}, stdin=stdin, stderr=stderr)
    assert hook is not None
    hook("events:commit")
    assert stderr.getvalue() == "" and stdin.tell() == 0
    hook("read")
    assert stderr.getvalue().startswith("leopard-etl: paused at read (pid ")
    assert stdin.tell() == 3  # the resume line was consumed
