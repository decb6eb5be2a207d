"""Bulk FHIR NDJSON → events: our reader against a bare orjson loop, fhir.resources and DuckDB.

The bare loop (open, split lines, ``orjson.loads``) is the floor any Python NDJSON
reader sits on; the reader's share of it says how much our per-resource work costs.
Validating every resource with the fhir.resources R4B models is the expensive
alternative a site might reach for; it is timed on an evenly spread sample (every
k-th line, same resource mix) and compared per resource. DuckDB ``read_ndjson`` with
an explicit column schema (single thread) is a reference for a columnar reader. The
Python reader (``read_fhir_files`` with the columnar dispatch off) and the columnar
reader (into a plain EventSink, and into the Parquet EventSpool a file run uses) are
timed interleaved with the orjson loop, so all their ratios come from the same run.
"""

from __future__ import annotations

import gzip
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from .datasets import Datasets, Size
from .measure import Figure, Skip, interleaved, median_time, need, ratio, skipped

BENCH = "fhir_read"
SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")

#: Columns common to the resource types we read; everything else DuckDB skips.
DUCKDB_COLUMNS = {
    "resourceType": "VARCHAR",
    "id": "VARCHAR",
    "status": "VARCHAR",
    "subject": "STRUCT(reference VARCHAR)",
    "patient": "STRUCT(reference VARCHAR)",
    "code": "JSON",
    "bodySite": "JSON",
    "valueCodeableConcept": "JSON",
    "medicationCodeableConcept": "JSON",
    "medicationReference": "STRUCT(reference VARCHAR)",
    "onsetDateTime": "VARCHAR",
    "recordedDate": "VARCHAR",
    "performedDateTime": "VARCHAR",
    "performedPeriod": "STRUCT(\"start\" VARCHAR, \"end\" VARCHAR)",
    "effectiveDateTime": "VARCHAR",
    "effectivePeriod": "STRUCT(\"start\" VARCHAR, \"end\" VARCHAR)",
    "authoredOn": "VARCHAR",
    "birthDate": "VARCHAR",
    "deceasedDateTime": "VARCHAR",
}


def ndjson_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")  # type: ignore[return-value]


def _lines(files: list[Path]) -> Iterator[bytes]:
    for path in files:
        with _open(path) as fh:
            for line in fh:
                if line.strip():
                    yield line


def orjson_loop(files: list[Path]) -> int:
    """The floor: stream every line through ``orjson.loads``; returns lines seen."""
    n = bad = 0
    for line in _lines(files):
        n += 1
        try:
            orjson.loads(line)
        except orjson.JSONDecodeError:
            bad += 1
    return n


def _sample(files: list[Path], total: int, wanted: int) -> list[dict[str, Any]]:
    step = max(1, math.ceil(total / wanted))
    out: list[dict[str, Any]] = []
    for i, line in enumerate(_lines(files)):
        if i % step:
            continue
        try:
            res = orjson.loads(line)
        except orjson.JSONDecodeError:
            continue
        if isinstance(res, dict) and isinstance(res.get("resourceType"), str):
            out.append(res)
    return out


def _validate_all(resources: list[dict[str, Any]]) -> int:
    model_class = need("fhir.resources.R4B", "get_fhir_model_class")
    ok = 0
    for res in resources:
        try:
            model_class(res["resourceType"]).model_validate(res)
            ok += 1
        except Exception:  # invalid resources cost the same validation work
            pass
    return ok


def _duckdb_read(files: list[Path]) -> int:
    duckdb = need("duckdb")
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        names = [str(p) for p in files]
        # materialise, so projection pushdown cannot skip the parse
        con.execute(
            "CREATE TEMP TABLE r AS SELECT * FROM read_ndjson(?, columns = ?, ignore_errors = true,"
            " format = 'newline_delimited')",
            [names, DUCKDB_COLUMNS],
        )
        row = con.execute("SELECT count(*) FROM r").fetchone()
        return int(row[0]) if row else 0
    finally:
        con.close()


def _python_reader(files_mod: Any, folder: Path, matcher: Any, sink: Any) -> None:
    """``read_fhir_files`` with the columnar dispatch off: the per-resource Python reader."""
    saved, files_mod.COLUMNAR = getattr(files_mod, "COLUMNAR", False), False
    try:
        files_mod.read_fhir_files([folder], matcher, sink)
    finally:
        files_mod.COLUMNAR = saved


def run(data: Datasets, size: Size) -> list[Figure]:
    folder = data.get("fhir-ndjson", size.fhir_patients)
    files = ndjson_files(folder)
    figures: list[Figure] = []
    try:
        files_mod = need("leopard_etl.sources.fhir.files")
        event_sink = need("leopard_etl.events", "EventSink")
        mappings = need("leopard_etl.mappings")
        matcher = mappings.CodeMatcher(mappings.load_mappings())
    except Skip as why:
        return [skipped(BENCH, "read_fhir_files vs orjson loop", str(why))]
    readers: dict[str, Any] = {}

    def python_reader() -> Any:
        sink = event_sink()
        _python_reader(files_mod, folder, matcher, sink)
        return sink

    readers["Python reader (parse.py)"] = python_reader
    try:
        columnar = need("leopard_etl.sources.fhir.columnar", "read_ndjson_columnar")
        spool_cls = need("leopard_etl.spool", "EventSpool")

        def columnar_sink() -> Any:
            sink = event_sink()
            columnar([folder], matcher, sink)
            return sink

        def columnar_spool() -> Any:
            with tempfile.TemporaryDirectory(prefix="leopard-bench-spool-") as tmp:
                spool = spool_cls(Path(tmp))
                columnar([folder], matcher, spool)
                spool.close()
                return spool

        readers["columnar reader -> EventSink"] = columnar_sink
        readers["columnar reader -> EventSpool (Parquet)"] = columnar_spool
    except Skip as why:
        figures.append(skipped(BENCH, "columnar reader vs orjson loop", str(why)))

    names = list(readers)
    samples = interleaved([*readers.values(), lambda: orjson_loop(files)], size.repeats)
    base_s = samples[-1]
    lines = orjson_loop(files)
    t_base = sorted(base_s)[len(base_s) // 2]
    rate_base = lines / t_base
    rates: dict[str, float] = {}
    for name, ours_s in zip(names, samples, strict=False):
        sink = readers[name]()
        t_ours = sorted(ours_s)[len(ours_s) // 2]
        rates[name] = rate_ours = lines / t_ours
        n_events = getattr(sink, "n_events", 0) or len(sink.events)
        figures.append(
            Figure(
                BENCH, f"{name} throughput vs bare orjson loop", rate_ours, "lines/s", rate_base,
                "orjson lines/s", ratio(rate_ours, rate_base), ">=", 0.5,
                note=f"{size.fhir_patients} patients, {lines} lines, {n_events} events, "
                f"{sink.stats.quarantined} quarantined; medians of {size.repeats}",
                samples={"ours_s": ours_s, "orjson_s": base_s},
            )
        )
    try:
        sample = _sample(files, lines, size.fhir_model_sample)
        t_model, model_s, _ = median_time(lambda: _validate_all(sample), size.repeats)
        rate_model = len(sample) / t_model
        for name, rate_ours in rates.items():
            figures.append(
                Figure(
                    BENCH, f"{name} vs fhir.resources R4B validation", rate_ours, "res/s", rate_model,
                    "R4B model_validate res/s", ratio(rate_ours, rate_model), ">=", 20,
                    note=f"R4B rate from every k-th line ({len(sample)} resources, same mix)",
                    samples={"model_s": model_s},
                )
            )
    except Skip as why:
        figures.append(skipped(BENCH, "readers vs fhir.resources R4B validation", str(why)))
    try:
        t_duck, duck_s, rows = median_time(lambda: _duckdb_read(files), size.repeats)
        rate_duck = rows / t_duck
        figures.append(
            Figure(
                BENCH, "reference: DuckDB read_ndjson (explicit columns, 1 thread)", rate_duck, "lines/s",
                rate_base, "orjson lines/s", ratio(rate_duck, rate_base),
                note=f"{rows} rows materialised; no events, no code matching",
                samples={"duckdb_s": duck_s},
            )
        )
    except Skip as why:
        figures.append(skipped(BENCH, "reference: DuckDB read_ndjson", str(why)))
    return figures
