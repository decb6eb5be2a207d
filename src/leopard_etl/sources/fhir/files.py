"""FHIR files → events: NDJSON (``.ndjson``, ``.ndjson.gz``), Bundle / resource JSON files, directories.

NDJSON is streamed line by line with orjson (gzip through :func:`gzip.open`), so
a file is never held in memory whole; here a Bundle file is one JSON document and is
parsed whole, its ``fullUrl`` index resolving ``urn:uuid:`` references (the columnar
dispatch streams large Bundles entry by entry instead: :mod:`.bundle_stream`). Every
line or Bundle entry is one record; a broken line is quarantined as ``file:line`` and
the read goes on. Files named ``Patient*`` and
``Medication.*`` are read first (the bulk-export naming), which keeps the
reader's pending buffers (events waiting for their Patient or Medication) empty
in the common case; any order still gives the same result. Unless asked to
validate, NDJSON and large Bundles take the columnar path (:mod:`.columnar`), which
gives the same events, patients, quarantine rows and counts as the Python reader below.
"""

from __future__ import annotations

import gzip
import logging
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from ...errors import SourceError
from ...events import EventSink
from ...mappings import CodeMatcher
from .columnar_rows import BOM
from .parse import FhirRecordReader
from .references import UrnIndex

__all__ = [
    "FHIR_SUFFIXES",
    "expand_paths",
    "feed_file",
    "is_export_log",
    "read_fhir_files",
    "skip_export_log",
]

log = logging.getLogger(__name__)

#: read NDJSON with the columnar reader when not validating (False: the Python reader for everything)
COLUMNAR = True

FHIR_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz", ".json", ".json.gz")


def read_fhir_files(
    paths: Sequence[Path], matcher: CodeMatcher, sink: EventSink, *, validate: bool = False
) -> None:
    """Read NDJSON / Bundle files and directories of them into ``sink`` (spec §1).

    Without validation, NDJSON and large Bundles go through the columnar reader (:mod:`.columnar`:
    same result, faster, memory flat in the input — docs/performance.md); ``validate=True`` needs
    every resource as a dict.
    """
    if COLUMNAR and not validate:
        from .columnar import read_ndjson_columnar

        read_ndjson_columnar(paths, matcher, sink)
        return
    reader = FhirRecordReader(matcher, sink, validate=validate, track_touched=False)  # no one reads it
    given = {Path(p) for p in paths}
    for path in expand_paths(paths):
        feed_file(reader, path, found_in_folder=path not in given)
    reader.finish()


def _order(path: Path) -> tuple[int, str]:
    name = path.name
    if name.startswith("Patient"):
        return 0, str(path)
    if name.startswith(("Medication.", "Medication-", "Medication_")):
        return 1, str(path)
    return 2, str(path)


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """Files to read: the given files plus every FHIR file under the given directories."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            found.extend(f for f in p.rglob("*") if f.is_file() and f.name.endswith(FHIR_SUFFIXES))
        elif p.is_file():
            found.append(p)
        else:
            raise SourceError(f"FHIR input {p} does not exist", fix="check the --fhir path")
    return sorted(found, key=_order)


def is_export_log(path: Path) -> bool:
    """A Bulk export client's log (``log.ndjson``, ``*.log.ndjson``): not patient data (spec §1 v2)."""
    name = path.name.removesuffix(".gz")
    return name == "log.ndjson" or name.endswith(".log.ndjson")


def skip_export_log(reader: FhirRecordReader, path: Path) -> None:
    """Count every line of an export log as read and out of scope, with the file's name."""
    stats = reader.sink.stats
    reason = f"export log {path.name}"
    try:
        with _open(path) as fh:
            for line in fh:
                if line.strip():
                    stats.read += 1
                    stats.skip(reason)
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(
            f"cannot read {path}: {type(exc).__name__}: {exc}",
            fix="check the file is complete (a truncated .gz cannot be read)",
        ) from None


def _open(path: Path) -> IO[bytes]:  # gzip.GzipFile is a binary IO
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def feed_file(reader: FhirRecordReader, path: Path, *, found_in_folder: bool = False) -> None:
    """Feed one file to the reader (format by name: ``*.json[.gz]`` document, else NDJSON).

    A ``.json`` document found while scanning a folder that is not a FHIR resource
    (no ``resourceType``: a manifest, a summary) is skipped, not quarantined.
    """
    name = path.name
    if is_export_log(path):
        skip_export_log(reader, path)
        return
    try:
        if name.endswith((".json", ".json.gz")):
            _feed_document(reader, path, found_in_folder)
        else:
            with _open(path) as fh:
                _feed_lines(reader, fh, str(path))
    except (OSError, EOFError, zlib.error) as exc:
        raise SourceError(
            f"cannot read {path}: {type(exc).__name__}: {exc}",
            fix="check the file is complete (a truncated .gz cannot be read)",
        ) from None


def _feed_lines(reader: FhirRecordReader, lines: Iterator[bytes] | IO[bytes], where: str) -> None:
    for lineno, line in enumerate(lines, 1):
        if lineno == 1:
            line = line.removeprefix(BOM)
        if not line.strip():
            continue
        location = f"{where}:{lineno}"
        try:
            res = orjson.loads(line)
        except orjson.JSONDecodeError:
            reader.bad_record(location, "invalid JSON", line)
            continue
        if isinstance(res, dict) and res.get("resourceType") == "Bundle":
            feed_bundle(reader, res, location)
        else:
            reader.feed(res, location)


def _feed_document(reader: FhirRecordReader, path: Path, found_in_folder: bool) -> None:
    with _open(path) as fh:
        data = fh.read().removeprefix(BOM)
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        if data.count(b"\n") > 1:  # NDJSON written with a .json name
            _feed_lines(reader, iter(data.splitlines()), str(path))
        else:
            reader.bad_record(str(path), "invalid JSON", data)
        return
    if found_in_folder and not (isinstance(doc, dict) and "resourceType" in doc):
        log.info("skipping %s: a JSON file that is not a FHIR resource", path)
        return
    if isinstance(doc, dict) and doc.get("resourceType") == "Bundle":
        feed_bundle(reader, doc, str(path))
    else:
        reader.feed(doc, str(path))


def _entry_id(entry: dict[str, Any], res: dict[str, Any]) -> str | None:
    """Id of an entry's resource: its ``id``, else the PUT url's id, else the ``urn:uuid`` of its fullUrl."""
    rid = res.get("id")
    if isinstance(rid, str) and rid:
        return rid
    request = entry.get("request")
    if isinstance(request, dict) and request.get("method") == "PUT":
        parts = str(request.get("url") or "").split("?", 1)[0].split("/")
        if len(parts) == 2 and parts[1]:
            return parts[1]
    full = entry.get("fullUrl")
    if isinstance(full, str) and full:
        return full.rsplit(":", 1)[-1].rsplit("/", 1)[-1]
    return None


def feed_bundle(reader: FhirRecordReader, bundle: dict[str, Any], where: str) -> None:
    """Feed the entries of a collection / searchset / transaction / batch Bundle."""
    entries = bundle.get("entry")
    if not isinstance(entries, list):
        return
    urns: UrnIndex = {}
    ids: list[str | None] = []
    for entry in entries:
        res = entry.get("resource") if isinstance(entry, dict) else None
        rid = _entry_id(entry, res) if isinstance(res, dict) else None
        ids.append(rid)
        full = entry.get("fullUrl") if isinstance(entry, dict) else None
        if (
            isinstance(full, str)
            and rid
            and isinstance(res, dict)
            and isinstance(res.get("resourceType"), str)
        ):
            urns[full] = (res["resourceType"], rid)
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "resource" not in entry:
            continue  # e.g. a DELETE request entry: not a record
        res = entry["resource"]
        if isinstance(res, dict) and res.get("resourceType") == "OperationOutcome":
            continue  # searchset outcome entry
        if isinstance(res, dict) and res.get("resourceType") == "Bundle":
            feed_bundle(reader, res, f"{where}#entry[{i}]")  # a Bundle inside a Bundle: its entries count
            continue
        reader.feed(res, f"{where}#entry[{i}]", urns, ids[i])
