"""``check`` of the settings themselves: a bad setting, no or two sources, a bad mappings folder, an
unusable output folder — each one line with the configuration exit code (2)."""

from __future__ import annotations

from pathlib import Path

from check_helpers import one

from leopard_etl.check import CheckLine, check_request, format_line, verdict
from leopard_etl.errors import EXIT_CONFIG, EXIT_LOCK, EXIT_OK, EXIT_SOURCE


def test_a_bad_setting_is_one_config_line() -> None:
    lines = check_request(fhir=["x"], env={"LEOPARD_RULES__LESION_WINDOW_DAYS": "soon"})
    assert len(lines) == 1
    line = lines[0]
    assert line.part == "config" and line.exit_code == EXIT_CONFIG
    assert "LEOPARD_RULES__LESION_WINDOW_DAYS" in line.message
    assert verdict(lines) == EXIT_CONFIG


def test_no_source_or_two_sources(fhir_files: Path) -> None:
    lines = check_request(env={})
    assert "give exactly one source" in one(lines, "config", "fail").message
    assert verdict(lines) == EXIT_CONFIG
    both = check_request(fhir=[str(fhir_files)], omop="duckdb:///x.duckdb", env={})
    assert "both are set" in one(both, "config", "fail").message


def test_config_file_and_mappings(tmp_path: Path, fhir_files: Path) -> None:
    config = tmp_path / "leopard.yaml"
    config.write_text(f"fhir: [{fhir_files}]\nout: {tmp_path / 'out'}\n")
    lines = check_request(config, env={})
    assert one(lines, "config").message == f"settings valid (config file {config})"
    assert verdict(lines) == EXIT_OK
    lines = check_request(config, mappings=[tmp_path / "no-such-mappings"], env={})
    line = one(lines, "mappings", "fail")
    assert "does not exist" in line.message and line.exit_code == EXIT_CONFIG
    assert not [x for x in lines if x.part == "files"]  # the source needs the mappings: not reached


def test_verdict_and_format() -> None:
    fail = CheckLine("warehouse.lock", "fail", "held", "wait", EXIT_LOCK)
    assert verdict([fail]) == EXIT_LOCK
    assert verdict([fail, CheckLine("fhir", "fail", "down", "retry", EXIT_SOURCE)]) == EXIT_SOURCE
    assert verdict([CheckLine("x", "warn", "w"), CheckLine("y", "info", "i")]) == EXIT_OK
    assert format_line(fail) == "FAIL  warehouse.lock held — fix: wait"
    assert format_line(CheckLine("fhir", "ok", "fine", "unused")) == "ok    fhir         fine"
