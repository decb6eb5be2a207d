"""FHIR files on Spark: NDJSON (and ``.json`` documents) read by Spark tasks, resolved on the driver.

The work per line is the FHIR reader's (:mod:`.fhir_tasks`); Spark reads the bytes (any path its
Hadoop file systems read: local, ``hdfs://``, ``s3a://``, ``abfss://``), cuts the lines and spreads
them over tasks. What a task cannot decide alone is decided here, in this order:

1. Medication definitions (``M`` rows, few) are collected, and so are the starts (``N`` rows) of the
   Encounters that undated Conditions / Procedures wait for (only those ids); the waiting records
   (``W`` rows) are read again in one more narrow pass with all of them known (the latest
   definition before the record, else the first after it);
2. events of patients whose Patient resource was never read are quarantined with the reader's reason
   (a join with the patients read);
3. the patients are deduplicated keeping the last record read; locations get their line numbers.

Each ``--fhir`` source is its own read, as in the default run (references resolve within it).
The result is the same events, patients, quarantined records and counts as
:func:`leopard_etl.sources.fhir.read_fhir` on the same files (tests/spark).
"""

from __future__ import annotations

import datetime as dt
import pickle
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ...errors import SourceError
from ...events import EVENT_COLUMNS, PATIENT_COLUMNS, Quarantined, ReadStats
from ...mappings import CodeMatcher
from ...sources.fhir.files import FHIR_SUFFIXES, expand_paths, is_export_log
from ...sources.fhir.parse import RECORD_MAX
from .fhir_tasks import (
    OUT_SCHEMA,
    RANK_BASE,
    WAIT_ENCOUNTER,
    DefinitionTable,
    FileInfo,
    TaskSettings,
    norm_uri,
    read_documents,
    read_lines,
    read_waiting,
)

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["FhirRead", "list_inputs", "read_fhir_spark"]

SOURCE_SYSTEM = "fhir"
_MARKER = re.compile(r":@(\d+)\+(\d+)")
_POSITION = ("rank", "block", "line", "sub")


@dataclass
class FhirRead:
    """What the Spark FHIR read produced: Spark frames of the kept events and last patient records,
    the counts and the quarantined records (on the driver)."""

    events: DataFrame  #: EVENT_COLUMNS + rank, block, line, sub (read order)
    patients: DataFrame  #: PATIENT_COLUMNS + the same position columns, one row per patient
    stats: ReadStats
    quarantined: list[Quarantined]
    n_events: int = 0
    cached: list[DataFrame] = field(default_factory=list)  #: persisted frames to release after the run
    timings: dict[str, float] = field(default_factory=dict)  #: seconds per step

    def release(self) -> None:
        for frame in self.cached:
            frame.unpersist()


# --- the input files ----------------------------------------------------------------------------------
def _is_local(source: str) -> bool:
    return source.startswith("file:") or "://" not in source


def _local_path(source: str) -> Path:
    if source.startswith("file:"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(source).path))
    return Path(source)


def _kind(name: str) -> str:
    if is_export_log(Path(name)):
        return "log"
    return "document" if name.endswith((".json", ".json.gz")) else "ndjson"


def _order(name: str, display: str) -> tuple[int, str]:
    """The default reader's file order (``files._order``): Patient files, Medication files, the rest."""
    if name.startswith("Patient"):
        return 0, display
    if name.startswith(("Medication.", "Medication-", "Medication_")):
        return 1, display
    return 2, display


def _remote_files(spark: SparkSession, source: str) -> list[tuple[str, bool]]:
    """(URI, given) of the FHIR files at a Hadoop file-system URI (a file, or a folder searched deeply)."""
    jvm: Any = getattr(spark.sparkContext, "_jvm")  # noqa: B009 (py4j gateway)
    conf = getattr(spark.sparkContext, "_jsc").hadoopConfiguration()  # noqa: B009
    path = jvm.org.apache.hadoop.fs.Path(source)
    try:
        fs = path.getFileSystem(conf)
        status = fs.getFileStatus(path)
    except Exception as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise SourceError(
            f"FHIR input {source} cannot be read: {first[:200]}", fix="check the --fhir path"
        ) from None
    if status.isFile():
        return [(status.getPath().toString(), True)]
    found: list[tuple[str, bool]] = []
    files = fs.listFiles(path, True)
    while files.hasNext():
        uri = files.next().getPath().toString()
        if uri.rsplit("/", 1)[-1].endswith(FHIR_SUFFIXES):
            found.append((uri, False))
    return found


def list_inputs(spark: SparkSession, sources: Iterable[str]) -> list[FileInfo]:
    """Every file the default run would read, in its order, named as it names them.

    Local paths are listed as :func:`~leopard_etl.sources.fhir.files.expand_paths` lists them (the same
    names in locations); other URIs through Spark's Hadoop file systems.
    """
    out: list[FileInfo] = []
    for i, source in enumerate(sources):
        if source.startswith(("http://", "https://")):
            raise SourceError(
                f"the Spark engine reads FHIR files, not a server ({source})",
                fix="export with --bulk on the default engine, or give the export folder",
            )
        if _is_local(source):
            root = _local_path(source)
            paths = expand_paths([root])  # SourceError when it does not exist
            # file:// + the plain path: Hadoop quotes it itself (as_uri's %-escapes it would not decode)
            entries = [(f"file://{p.resolve().as_posix()}", str(p), p == root) for p in paths]
        else:
            listed = _remote_files(spark, source)
            entries = sorted(
                ((uri, uri, given) for uri, given in listed),
                key=lambda e: _order(e[1].rsplit("/", 1)[-1], e[1]),
            )
        for j, (uri, display, given) in enumerate(entries):
            name = display.replace("\\", "/").rsplit("/", 1)[-1]
            out.append(FileInfo(uri, display, i * RANK_BASE + j, _kind(name), given))
    return out


# --- the read -------------------------------------------------------------------------------------------
def _ddl(schema: pa.Schema) -> str:
    types = {
        pa.string(): "string",
        pa.int32(): "int",
        pa.int64(): "bigint",
        pa.float64(): "double",
        pa.date32(): "date",
        pa.bool_(): "boolean",
        pa.binary(): "binary",
    }
    return ", ".join(f"`{f.name}` {types[f.type]}" for f in schema)


def _tasks(
    fn: Callable[[Iterable[pa.RecordBatch], TaskSettings], Iterator[pa.RecordBatch]], settings: Any
) -> Callable[[Iterable[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """A mapInArrow function running ``fn`` with the broadcast settings."""

    def run(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        return fn(batches, settings.value)

    return run


def read_fhir_spark(
    spark: SparkSession,
    sources: list[str],
    matcher: CodeMatcher,
    *,
    run_day: dt.date | None,
    cutoff: dt.date | None,
) -> FhirRead:
    """Read FHIR files into Spark frames of events and patients (see the module docstring)."""
    from pyspark import StorageLevel
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    files = list_inputs(spark, sources)
    by_uri = {norm_uri(f.uri): f for f in files}
    if len(by_uri) != len(files):
        raise SourceError(
            "a FHIR file is named twice among the --fhir sources", fix="give each file or folder once"
        )
    sc = spark.sparkContext
    settings = TaskSettings(matcher, by_uri, run_day, cutoff)
    shared = sc.broadcast(settings)
    out_ddl = _ddl(OUT_SCHEMA)
    parts: list[DataFrame] = []
    lines = [f.uri for f in files if f.kind in ("ndjson", "log")]
    if lines:
        text = (
            spark.read.option("lineSep", "\n")
            .option("recursiveFileLookup", "true")
            .text(lines)
            .select(
                F.col("_metadata.file_path").alias("path"),
                F.col("_metadata.file_block_start").alias("block"),
                F.col("value").cast("binary").alias("line"),
            )
        )
        parts.append(text.mapInArrow(_tasks(read_lines, shared), out_ddl))
    documents = [f.uri for f in files if f.kind == "document"]
    if documents:
        docs = (
            spark.read.format("binaryFile")
            .option("recursiveFileLookup", "true")
            .load(documents)
            .select("path", "content")
        )
        parts.append(docs.mapInArrow(_tasks(read_documents, shared), out_ddl))
    empty = spark.createDataFrame([], out_ddl)
    first = empty
    for part in parts:
        first = first.unionByName(part)
    first = first.persist(StorageLevel.MEMORY_AND_DISK)

    # the few driver-side facts in one job: split line counts, task counts, Medications, quarantine
    stats = ReadStats()
    medications = DefinitionTable()
    small = first.where(
        "tag IN ('C', 'S', 'M', 'Q') OR (tag = 'W' AND kind = '" + WAIT_ENCOUNTER + "')"
    ).select("tag", *_POSITION, "key", "n", "payload", "location", "reason", "record", "record_id")
    counts, quarantine_rows = [], []
    waited: set[tuple[int, str]] = set()  # (source, Encounter id) an undated record waits for
    clock = time.perf_counter()
    timings: dict[str, float] = {}
    for row in small.collect():
        if row.tag == "C":
            counts.append(row)
        elif row.tag == "S":
            stats.merge(pickle.loads(row.payload))
        elif row.tag == "M":
            at = (row.rank, row.block, row.line, row.sub or "")
            medications.add(row.key, at, pickle.loads(row.payload))
        elif row.tag == "W":
            waited.add((row.rank // RANK_BASE, row.key))
        else:
            quarantine_rows.append(row)
    lines_of = _line_offsets(counts, by_uri)
    medications.sort()
    # the starts of the Encounters undated records wait for (Encounters are many: only those ids)
    encounters = DefinitionTable()
    if waited:
        wanted = spark.createDataFrame(sorted(waited), "n_src int, key string")
        starts = (
            first.where("tag = 'N'")
            .withColumn("n_src", (F.col("rank") / RANK_BASE).cast("int"))
            .join(F.broadcast(wanted), ["n_src", "key"], "left_semi")
            .select("key", *_POSITION, "text")
        )
        for row in starts.collect():
            encounters.add(row.key, (row.rank, row.block, row.line, row.sub or ""), row.text)
        encounters.sort()
    timings["read lines"], clock = time.perf_counter() - clock, time.perf_counter()

    # records that waited, read again with every Medication and their Encounter's starts known
    shared_again = sc.broadcast(TaskSettings(matcher, by_uri, run_day, cutoff, medications, encounters))
    second = (
        first.where("tag = 'W'")
        .mapInArrow(_tasks(read_waiting, shared_again), out_ddl)
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    for row in (
        second.where("tag IN ('S', 'Q')")
        .select("tag", *_POSITION, "payload", "location", "reason", "record", "record_id")
        .collect()
    ):
        if row.tag == "S":
            stats.merge(pickle.loads(row.payload))
        else:
            quarantine_rows.append(row)
    timings["read waiting"], clock = time.perf_counter() - clock, time.perf_counter()

    position = [F.col(c) for c in _POSITION]
    events = (
        first.where("tag = 'E'")
        .unionByName(second.where("tag = 'E'"))
        .select(*EVENT_COLUMNS, "location", *position)
        .withColumn("_src", (F.col("rank") / RANK_BASE).cast("int"))
    )
    patients_all = (
        first.where("tag = 'P'")
        .select(*PATIENT_COLUMNS, *position)
        .withColumn("_src", (F.col("rank") / RANK_BASE).cast("int"))
    )
    known = patients_all.select("_src", "patient_id").distinct().withColumn("_known", F.lit(True))
    flagged = events.join(known, ["_src", "patient_id"], "left").persist(StorageLevel.MEMORY_AND_DISK)
    unknown = (
        flagged.where(F.col("_known").isNull())
        .select("patient_id", "source", "location", *_POSITION)
        .collect()  # materialises the flagged events: one pass for both
    )
    kept = flagged.where(F.col("_known").isNotNull()).drop("_src", "location", "_known")
    n_events = kept.count()
    stats.in_scope += n_events
    timings["patients known"] = time.perf_counter() - clock
    last = Window.partitionBy("patient_id").orderBy(*[F.col(c).desc() for c in _POSITION])
    patients = (
        patients_all.withColumn("_last", F.row_number().over(last))
        .where("_last = 1")
        .drop("_last", "_src")
        .persist(StorageLevel.MEMORY_AND_DISK)
    )

    quarantined = [
        Quarantined(
            SOURCE_SYSTEM, _fix(row.location, lines_of), _fix(row.reason, lines_of), row.record, row.record_id
        )
        for row in sorted(quarantine_rows, key=lambda r: (r.rank, r.block, r.line, r.sub or ""))
    ]
    for row in sorted(unknown, key=lambda r: (r.rank, r.block, r.line, r.sub or "")):
        source = str(row.source)
        stats.quarantined += 1
        quarantined.append(
            Quarantined(
                SOURCE_SYSTEM,
                _fix(row.location, lines_of),
                f"reference to unknown Patient/{row.patient_id}",
                source[:RECORD_MAX],
                source[5:] if source.startswith("fhir:") else "",
            )
        )
    stats.out_of_scope_reasons = _fix_reasons(stats.out_of_scope_reasons, lines_of)
    return FhirRead(kept, patients, stats, quarantined, n_events, [first, second, flagged, patients], timings)


# --- line numbers ---------------------------------------------------------------------------------------
#: display name → [(split offset, lines before it)] sorted by offset
LineOffsets = dict[str, list[tuple[int, int]]]


def _line_offsets(rows: Iterable[Any], files: dict[str, FileInfo]) -> LineOffsets:
    counts: dict[str, list[tuple[int, int]]] = {}
    for row in rows:
        info = files.get(norm_uri(row.key))
        if info is not None:
            counts.setdefault(info.display, []).append((int(row.block), int(row.n)))
    out: LineOffsets = {}
    for display, splits in counts.items():
        splits.sort()
        before, acc = [], 0
        for block, n in splits:
            before.append((block, acc))
            acc += n
        out[display] = before
    return out


def _fix(text: str | None, offsets: LineOffsets) -> str:
    """``path:@split+index`` → ``path:line`` (the default reader's ``file:line``) wherever it occurs."""
    if not text or ":@" not in text:
        return text or ""

    def line(match: re.Match[str]) -> str:
        prefix = match.string[: match.start()]
        best = max((d for d in offsets if prefix.endswith(d)), key=len, default=None)
        block, index = int(match[1]), int(match[2])
        if best is None:
            return f":{index}" if block == 0 else match[0]
        before = dict(offsets[best]).get(block, 0)
        return f":{before + index}"

    return _MARKER.sub(line, text)


def _fix_reasons(reasons: dict[str, int], offsets: LineOffsets) -> dict[str, int]:
    out: dict[str, int] = {}
    for reason, n in reasons.items():
        fixed = _fix(reason, offsets)
        out[fixed] = out.get(fixed, 0) + n
    return out
