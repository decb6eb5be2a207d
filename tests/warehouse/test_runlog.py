"""Run log: statuses, watermarks of successful runs only, abandoned runs, quarantine, no secrets."""

from __future__ import annotations

from leopard_etl.events import Quarantined
from leopard_etl.warehouse import Warehouse


def test_run_log_and_quarantine(wh_target: tuple[str, str]) -> None:
    with Warehouse(*wh_target) as wh:
        wh.migrate()
        src = "https://user:hunter2@fhir.example.org/R4?_token=abc&_count=100"
        first = wh.begin_run(src, "fhir", "full")
        wh.end_run(
            first,
            "ok",
            {
                "read": 10,
                "in_scope": 7,
                "quarantined": 2,
                "out_of_scope": 1,
                "out_of_scope_reasons": {"no code group": 1},
                "events": 7,
            },
            watermark="2024-05-01T00:00:00Z",
            n_patients_changed=3,
        )
        second = wh.begin_run(src, "fhir", "incremental")
        wh.end_run(
            second, "failed", {"read": 1}, watermark="2024-06-01T00:00:00Z", error="SourceError: down\nmore"
        )
        dangling = wh.begin_run(src, "fhir", "incremental")  # never ended: the process "died"
        latest = wh.begin_run(src, "fhir", "incremental")
        assert wh.last_watermark(src) == "2024-05-01T00:00:00Z"
        assert wh.last_watermark("other") is None
        runs = wh.runs(10)
        assert [r["run_id"] for r in runs] == [latest, dangling, second, first]
        assert [r["status"] for r in runs] == ["running", "failed", "failed", "ok"]
        assert runs[2]["error"] == "SourceError: down"
        assert (runs[3]["n_read"], runs[3]["n_events"], runs[3]["n_quarantined"]) == (10, 7, 2)
        assert runs[3]["out_of_scope_reasons"] == '{"no code group": 1}'
        assert "hunter2" not in runs[0]["source"] and "abc" not in runs[0]["source"]
        assert runs[0]["source"] == "https://user:***@fhir.example.org/R4?_token=***&_count=100"

        bad = [
            Quarantined("fhir", "a.ndjson:3", "invalid JSON", "{" * 10_000),
            {"source_system": "fhir", "location": "a.ndjson:9", "reason": "no subject", "record": None},
        ]
        assert wh.write_quarantine(latest, bad) == 2
        table = wh.read_table("quarantine")
        assert list(table["reason"]) == ["invalid JSON", "no subject"]
        assert len(table.loc[0, "record"]) == 4000 and table.loc[1, "record"] is None
