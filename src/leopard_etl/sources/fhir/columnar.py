"""Columnar reader for bulk-export NDJSON: DuckDB parses, distinct values are judged once, Arrow builds rows.

Why: :func:`~.files.read_fhir_files` spends ~85% of its time in per-resource
Python (benchmarks/fhir_read, docs/performance.md). Here a file is read in large
byte chunks, cut into lines with numpy and handed to DuckDB as one Arrow string
column; :mod:`.columnar_sql` parses each line once, keeping the raw JSON of the
elements we read. Each *distinct* leaf (type, id, status, subject, date, dose
extension, coded signature) is judged once by :mod:`.columnar_codes` with the
Python reader's own helpers, and the answers are spread over the rows with Arrow
``take``: no Python per row. An :class:`~leopard_etl.spool.EventSpool` receives
the events as Arrow tables; another sink gets :class:`Event` tuples.

*(spec v2)* Activity records (dated records in no code group, of every read type,
Encounter and the other activity-only types included) are decided here too, per
distinct signature / day / subject like the grouped lines: they are most of a
hospital export.

The contract is the Python reader's: same events, PatientRecords, quarantine rows
and ReadStats. Patient, Medication and Bundle lines, undated records in a code group
(their Encounter dates them), and every line whose outcome is a quarantine or a wait
(for a Medication not read yet), are fed to one shared
:class:`~.parse.FhirRecordReader`, which also holds the patients read so far:
events of a patient it has not seen wait there, and :meth:`~.parse.FhirRecordReader.finish`
quarantines what never resolves. Within a chunk those lines go first, then the
chunk's events, so arrival order (``seq``) can differ from the Python reader's
inside a chunk; the derivation sorts and breaks ties on content, not arrival.
Top-level Medication lines of a chunk are read before its other lines, so a
reference to a Medication written later in the same chunk is decided here too.

Memory does not grow with the input: lines waiting for a Medication and the
Encounter starts (an undated record in a code group may name any Encounter of the
input) are kept in a DuckDB database in a scratch folder, not in Python; the leaf
caches are bounded; Bundle files are streamed entry by entry (:mod:`.bundle_stream`).
"""

from __future__ import annotations

import logging
import re
import tempfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import SourceError
from ...events import EVENT_COLUMNS, Event, EventSink
from ...mappings import CodeMatcher
from ...progress import for_files
from .bundle_stream import DiskUrns, NotStreamable, split_bundle
from .columnar_codes import UNDECIDED, WAIT, LeafJudge, lesion_id
from .columnar_rows import as_events, chunks, encode, events_of, line_starts, object_array, type_groups
from .columnar_sql import ID_SQL, TYPE_SQL, TYPED, entry_id_sql, entry_type_sql, type_sql
from .files import _entry_id, expand_paths, feed_bundle, feed_file, is_export_log, skip_export_log
from .parse import ACTIVITY_ONLY, EVENT_KIND, FhirRecordReader, _file_of, medication_codes

__all__ = ["CHUNK_BYTES", "DUCKDB_MEMORY", "NDJSON_SUFFIXES", "STREAM_BYTES", "read_ndjson_columnar"]

log = logging.getLogger(__name__)

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
#: bytes of (decompressed) input per DuckDB pass; bounds memory, keeps Arrow int32 offsets valid
CHUNK_BYTES = 16 << 20
#: a type group of fewer lines goes to the Python reader (cheaper than a DuckDB query)
SMALL_GROUP = 1_000
#: a ``.json`` document at least this large (uncompressed, estimated for ``.gz``) is streamed
STREAM_BYTES = 8 << 20
#: memory the reader's DuckDB connection may use before it spills to its scratch folder
DUCKDB_MEMORY = "128MB"
_MED_LINE = b'{"resourceType":"Medication",'

#: line outcomes: Python reader, out of scope, event, later (its Medication is not read yet)
_PY, _SKIP, _EVENT, _LATER, _OUTCOME = 0, 1, 2, 4, 5
_KIND = {"py": _PY, "skip": _SKIP, "read": _EVENT, "outcome": _OUTCOME}
_ALL_KINDS = {**EVENT_KIND, **ACTIVITY_ONLY}
_EMPTY = (None, None, None, None, None, None, None, None, False, None)
_TYPES = {name: pa.string() for name in EVENT_COLUMNS} | {
    "start": pa.date32(),
    "end": pa.date32(),
    "fractions": pa.int64(),
    "dose_cgy": pa.float64(),
}
_POOL = pa.default_memory_pool()
#: line index in a chunk → its ``file:line`` location
_Locate = Callable[[int], str]


def read_ndjson_columnar(
    paths: Sequence[Path],
    matcher: CodeMatcher,
    sink: EventSink,
    *,
    chunk_bytes: int = CHUNK_BYTES,
    threads: int = 1,
) -> None:
    """Read FHIR files and folders into ``sink`` exactly as ``read_fhir_files`` would (no validation).

    NDJSON files and Bundle documents (streamed entry by entry, :mod:`.bundle_stream`) take the
    columnar path; other ``.json`` documents the Python reader's.
    """
    reader = FhirRecordReader(matcher, sink, track_touched=False)
    given = {Path(p) for p in paths}
    files = expand_paths(paths)
    with (
        tempfile.TemporaryDirectory(prefix="leopard-read-") as scratch,
        _Columnar(reader, Path(scratch), chunk_bytes=chunk_bytes, threads=threads) as columnar,
        for_files(files) as progress,  # a terminal shows bytes of the total, resources/s, time left
    ):
        for path in files:
            before = sink.stats.read
            if is_export_log(path):
                skip_export_log(reader, path)
            elif path.name.endswith((".json", ".json.gz")):
                columnar.feed_document(path, found_in_folder=path not in given)
            else:
                columnar.feed_file(path)
            progress.advance(_size(path), resources=sink.stats.read - before)
        columnar.read_later()
        columnar.resolve_encounters()
    reader.finish()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Columnar:
    """One DuckDB connection (on disk, in ``scratch``) and the leaf caches, shared by every file of a read."""

    def __init__(self, reader: FhirRecordReader, scratch: Path, *, chunk_bytes: int, threads: int) -> None:
        self.reader = reader
        self.sink = reader.sink
        self.chunk_bytes = chunk_bytes
        self.scratch = scratch
        self.judge = LeafJudge(reader)
        self.con = duckdb.connect(str(scratch / "read.duckdb"))
        self.con.execute(f"SET threads = {max(1, int(threads))}")
        self.con.execute(f"SET memory_limit = '{DUCKDB_MEMORY}'")
        self.con.execute(f"SET temp_directory = '{_sql_path(scratch / 'tmp')}'")
        self.con.execute("SET preserve_insertion_order = true")
        #: Encounter id → its raw ``period.start`` (JSON text) in arrival order: undated records in a
        #: code group take their Encounter's start, and may come before or after it
        self.con.execute("CREATE TABLE encounter_start (id VARCHAR, start VARCHAR, seq BIGINT)")
        self._encounters = self._mark = 0
        self._bundles = 0
        #: bound relations by SQL text (binding one of the type queries costs more than a small chunk)
        self._relations: dict[str, Any] = {}
        self.arrow_sink = getattr(self.sink, "event_table", None)
        #: lines naming a Medication not read yet (read again at the end), with their locations
        self._later: tuple[IO[bytes], IO[bytes]] | None = (
            (scratch / "later.ndjson").open("wb"),
            (scratch / "later.locations").open("wb"),
        )
        self._n_later = 0

    def __enter__(self) -> _Columnar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._later is not None:
            for fh in self._later:
                fh.close()
        self.con.close()

    # --- files and chunks -----------------------------------------------------
    def feed_file(self, path: Path) -> None:
        where, first = str(path), 1
        try:
            for data in chunks(path, self.chunk_bytes):
                first = self._chunk(data, where, first)
                self.resolve_encounters()
                _POOL.release_unused()  # a chunk's Arrow buffers back to the system: RSS stays flat
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceError(
                f"cannot read {path}: {type(exc).__name__}: {exc}",
                fix="check the file is complete (a truncated .gz cannot be read)",
            ) from None

    def feed_document(self, path: Path, *, found_in_folder: bool) -> None:
        """A ``.json`` document: a large Bundle is streamed (two passes), anything else read whole.

        A small file is read whole (:data:`STREAM_BYTES`): a few DuckDB queries per file would cost more
        than the Python reader on a per-patient Bundle, and its memory is bounded by the file.
        """
        size = path.stat().st_size * (8 if path.name.endswith(".gz") else 1)
        if size < STREAM_BYTES:
            feed_file(self.reader, path, found_in_folder=found_in_folder)
            return
        self._bundles += 1
        folder = self.scratch / f"bundle-{self._bundles}"
        folder.mkdir()
        table = f"urns_{self._bundles}"
        try:
            n = split_bundle(path, folder, self.con, f"{table}_all")
        except NotStreamable as why:
            log.debug("%s read whole: %s", path, why)
            feed_file(self.reader, path, found_in_folder=found_in_folder)
            return
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceError(
                f"cannot read {path}: {type(exc).__name__}: {exc}",
                fix="check the file is complete (a truncated .gz cannot be read)",
            ) from None
        self.con.execute(
            f"CREATE TABLE {table} AS SELECT url, arg_max(rtype, i) AS rtype, arg_max(rid, i) AS rid "
            f"FROM {table}_all GROUP BY url"
        )
        self.con.execute(f"DROP TABLE {table}_all")
        (count,) = self.con.execute(f"SELECT count(*) FROM {table}").fetchall()[0]
        urns = DiskUrns(self.con, table, int(count))
        where = str(path)
        with (folder / "entries.index").open("rb") as index:
            for data in chunks(folder / "entries.ndjson", self.chunk_bytes) if n else ():
                starts = line_starts(data)
                element = np.frombuffer(index.read(8 * (len(starts) - 1)), dtype=np.int64)
                bundle = _Bundle(self, urns, self._bundles, table, where, element)
                self._entries(data, starts, bundle)
                self.resolve_encounters()
                _POOL.release_unused()
        for name in ("entries.ndjson", "entries.index"):
            (folder / name).unlink()

    def _entries(self, data: bytes, starts: Any, bundle: _Bundle) -> None:
        """The entries of a Bundle (one per line): grouped by their resource's type, Medications first."""
        n = len(starts) - 1
        lines = pa.StringArray.from_buffers(n, pa.py_buffer(starts.astype(np.int32)), pa.py_buffer(data))
        idx, values = encode(self._query(entry_type_sql(), lines).column("rt"))
        names = [self.judge.resource_type(v)[1] for v in values] + [""]
        groups: dict[str, list[Any]] = {}
        for j, name in enumerate(names):
            found = np.flatnonzero(idx == j)
            if len(found):
                groups.setdefault(name if name in TYPED else "", []).append(found)
        for rtype in sorted(groups, key=lambda t: t in TYPED):  # Patients and Medications first
            rows = np.sort(np.concatenate(groups[rtype]))
            group = _EntryRows(data, starts, rows, bundle)
            if self._to_python(rtype, group, len(rows)):
                continue
            sub = lines if len(rows) == n else lines.take(pa.array(rows))
            sql = type_sql(rtype, bundle.serial, bundle.table) if rtype in TYPED else entry_id_sql()
            self._decide(self._query(sql, sub), group, rtype in TYPED)

    def _chunk(self, data: bytes, where: str, first: int) -> int:
        """Read the lines of ``data`` numbered from ``first``; returns the next line number."""
        starts = line_starts(data)
        n = len(starts) - 1
        self._lines(data, starts, lambda i: f"{where}:{first + i}")
        return first + n

    def read_later(self) -> None:
        """Read the lines that named a Medication not read then; still unknown now, they go to the reader."""
        if self._later is None:
            return
        for fh in self._later:
            fh.close()
        self._later = None
        if not self._n_later:
            return
        with (self.scratch / "later.locations").open("rb") as locations:
            for data in chunks(self.scratch / "later.ndjson", self.chunk_bytes):
                starts = line_starts(data)
                where = [locations.readline().rstrip(b"\n").decode("utf-8") for _ in range(len(starts) - 1)]
                self._lines(data, starts, where.__getitem__)

    def resolve_encounters(self) -> None:
        """Give the reader the start of the Encounters that records wait for, as it would have read them.

        The Python reader dates a waiting record with the first version of its Encounter read after
        it, or, when the Encounter came before, with the last version read before; ``mark`` is how
        many Encounters were kept at the previous call (once per chunk).
        """
        mark, self._mark = self._mark, self._encounters
        if not self._encounters:
            return
        missing = self.reader.missing_encounters()
        if not missing:
            return
        self.con.register("_missing", pa.table({"id": pa.array(missing, pa.string())}))
        try:
            rows = self.con.execute(
                "SELECT e.id, coalesce(arg_min(e.start, e.seq) FILTER (e.seq >= $mark), "
                "arg_max(e.start, e.seq)) FROM encounter_start e "
                "JOIN _missing m ON m.id = e.id GROUP BY e.id ORDER BY e.id",
                {"mark": mark},
            ).fetchall()
        finally:
            self.con.unregister("_missing")
        for rid, start in rows:
            self.reader.encounter_read(rid, {"period": {"start": orjson.loads(start)}})

    def _lines(self, data: bytes, starts: Any, locate: _Locate) -> None:
        n = len(starts) - 1
        lines = pa.StringArray.from_buffers(n, pa.py_buffer(starts.astype(np.int32)), pa.py_buffer(data))
        try:
            lines.validate(full=True)
        except pa.ArrowInvalid:
            log.debug("%s to %s: not valid UTF-8, read by the Python reader", locate(0), locate(n - 1))
            self._python_lines(data, starts, locate, range(n))
            return
        done = self._medications_first(data, starts, locate)
        if done is None:  # a Medication id redefined differently: only the line order decides, keep it
            self._python_lines(data, starts, locate, range(n))
            return
        groups = type_groups(data, starts)
        rest = groups.pop("", None)
        if rest is not None:  # no usual prefix: DuckDB says which type
            idx, values = encode(self._query(TYPE_SQL, lines.take(pa.array(rest))).column("rt"))
            names = [self.judge.resource_type(v) for v in values] + [("py", "")]
            for j, (_kind, name) in enumerate(names):
                found = rest[idx == j]
                if len(found):
                    key = name if name in TYPED else ""
                    groups[key] = np.sort(np.concatenate([groups[key], found])) if key in groups else found
        for rtype in sorted(groups, key=lambda t: t in TYPED):  # Patients first: their events need not wait
            rows = groups[rtype]
            group = _Rows(self, data, starts, rows, locate, done)
            if self._to_python(rtype, group, len(rows)):
                continue
            sub = lines if len(rows) == n else lines.take(pa.array(rows))
            table = self._query(type_sql(rtype) if rtype in TYPED else ID_SQL, sub)
            self._decide(table, group, rtype in TYPED)

    @staticmethod
    def _to_python(rtype: str, group: _Rows | _EntryRows, n: int) -> bool:
        """Feed a group to the Python reader when a query would cost more than reading it there:
        Patients and Medications (the reader keeps them), and groups of a few lines (a DuckDB
        query has a fixed cost of several ms; a small file or a mixed chunk's rare types)."""
        if n >= SMALL_GROUP and rtype not in ("Patient", "Medication"):
            return False
        for k in range(n):
            group.python(k)
        return True

    def _query(self, sql: str, lines: pa.Array) -> pa.Table:
        """Run ``sql`` over ``lines`` as table ``src``; a relation is bound once per SQL text and re-run."""
        self.con.register("src", pa.table({"line": lines}))
        try:
            rel = self._relations.get(sql)
            if rel is None:
                rel = self._relations[sql] = self.con.sql(sql)
            return rel.to_arrow_table()
        finally:
            self.con.unregister("src")

    def _medications_first(self, data: bytes, starts: Any, locate: _Locate) -> set[int] | None:
        """Feed the chunk's top-level Medication lines (bulk-export form) first; their line indexes.

        ``None`` when one redefines a Medication id with other codings (then line order matters).
        """
        found: list[int] = []
        pos = 0 if data.startswith(_MED_LINE) else data.find(b"\n" + _MED_LINE)
        while pos >= 0:
            start = pos if data.startswith(_MED_LINE, pos) else pos + 1
            found.append(int(np.searchsorted(starts, start, side="right")) - 1)
            pos = data.find(b"\n" + _MED_LINE, start)
        if not found:
            return set()
        meds = self.reader.medications
        seen: dict[str, Any] = {}
        for i in found:
            try:
                res = orjson.loads(data[starts[i] : starts[i + 1]])
                mid, code_list = res["id"], medication_codes(res, self.reader.matcher)
            except Exception:
                continue
            if not isinstance(mid, str):
                continue
            before = seen.get(mid, meds.get(mid))
            if before is not None and before != code_list:
                return None
            seen[mid] = code_list
        self._python_lines(data, starts, locate, found)
        return set(found)

    def _python_lines(self, data: bytes, starts: Any, locate: _Locate, indexes: Any) -> None:
        for i in indexes:
            self._python_line(data[starts[i] : starts[i + 1]], locate(i))

    def _python_line(self, line: bytes, location: str) -> None:
        """One line through the Python reader, exactly as ``files._feed_lines`` does."""
        if not line.strip():
            return
        try:
            res = orjson.loads(line)
        except orjson.JSONDecodeError:
            self.reader.bad_record(location, "invalid JSON", line)
            return
        if isinstance(res, dict) and res.get("resourceType") == "Bundle":
            feed_bundle(self.reader, res, location)
        else:
            self.reader.feed(res, location)

    # --- decisions ------------------------------------------------------------
    def _decide(self, t: pa.Table, lines: _Rows | _EntryRows, typed: bool) -> None:
        """Per line: event, out of scope (with reason), Python reader, or later (Medication not read yet).

        The checks follow the Python reader's order (parse._feed / _clinical): id and type, status,
        coded content, dates (an activity record without any is out of scope), subject, future date.
        """
        judge, n = self.judge, t.num_rows
        outcome = np.full(n, _EVENT, dtype=np.int8)
        outcome[_bools(t, "odd")] = _PY  # blank lines too: the Python path skips them
        reason = np.full(n, None, dtype=object)

        rt_idx, rt_values = encode(t.column("rt"))
        verdicts = [judge.resource_type(v) for v in rt_values] + [("py", "")]
        rt_kind = np.array([_KIND[v[0]] for v in verdicts], dtype=np.int8)[rt_idx]
        rt_name = np.array([v[1] for v in verdicts], dtype=object)
        row_type = rt_name[rt_idx]
        live = outcome == _EVENT
        outcome[live & ((rt_kind == _PY) | ~t.column("rid").is_valid().to_numpy(zero_copy_only=False))] = _PY
        skip = (outcome == _EVENT) & (rt_kind == _SKIP)
        outcome[skip], reason[skip] = _SKIP, row_type[skip]
        if lines.entries:  # a Bundle's OperationOutcome entry is not a record (files.feed_bundle)
            outcome[(outcome == _EVENT) & (rt_kind == _OUTCOME)] = _PY
        for i in np.flatnonzero((outcome == _EVENT) & (rt_kind == _OUTCOME)).tolist():
            outcome[i], reason[i] = _SKIP, f"OperationOutcome in {_file_of(lines.locate(i))}"
        if not typed:  # only type and id were read: the reader decides the rest
            outcome[outcome == _EVENT] = _PY

        # status (spec §1 "Excluded" and the v2 activity table), per distinct (type, raw status)
        st_idx, st_values = encode(t.column("status"))
        keys = rt_idx * (len(st_values) + 1) + st_idx
        live = outcome == _EVENT
        uniq, inverse = np.unique(keys[live], return_inverse=True)
        st_verdict = np.zeros(len(uniq), dtype=np.int8)
        st_reason = np.full(len(uniq), None, dtype=object)
        for j, key in enumerate(uniq.tolist()):
            r, s = divmod(key, len(st_values) + 1)
            ok, why = judge.status(rt_name[r], st_values[s] if s < len(st_values) else None)
            st_verdict[j] = _EVENT if ok and why is None else (_SKIP if ok else _PY)
            st_reason[j] = why
        rows = np.flatnonzero(live)
        outcome[rows] = st_verdict[inverse]
        reason[rows] = st_reason[inverse]
        self._keep_encounter_starts(t, (row_type == "Encounter") & (outcome != _PY))

        # coded content, per signature (judged on the first line carrying it)
        live = outcome == _EVENT
        rows = np.flatnonzero(live)
        uniq, first_row, sig_of = np.unique(
            t.column("sig").to_numpy()[live], return_index=True, return_inverse=True
        )
        coded: list[Any] = []
        for sig, r in zip(uniq.tolist(), first_row.tolist(), strict=True):
            i = rows[r]
            coded.append(judge.coded(sig, lines.resource(i)))
        kinds = np.array([_coded_kind(c) for c in coded] or [_EVENT], dtype=np.int8)
        outcome[rows] = kinds[sig_of] if len(rows) else outcome[rows]
        plain = [c if isinstance(c, tuple) else _EMPTY for c in coded] + [_EMPTY]
        row_sig = np.full(n, len(plain) - 1, dtype=np.int64)
        row_sig[rows] = sig_of
        grouped = np.array([bool(c[0]) for c in plain], dtype=bool)[row_sig]

        # dates: an activity record without any is out of scope; a bad one is the reader's
        start_idx, start_vals = self._dates(t.column("date_raw"))
        end_idx, end_vals = self._dates(t.column("end_raw"))
        start_ord = np.array([d.toordinal() if d else -1 for d, _p in start_vals], dtype=np.int64)[start_idx]
        end_ord = np.array([d.toordinal() if d else -1 for d, _p in end_vals], dtype=np.int64)[end_idx]
        has_start = t.column("date_raw").is_valid().to_numpy(zero_copy_only=False)
        has_end = t.column("end_raw").is_valid().to_numpy(zero_copy_only=False)
        undated = (outcome == _EVENT) & ~grouped & ~has_start
        outcome[undated], reason[undated] = _SKIP, "no code group and no date"
        bad = (start_ord < 0) | (has_end & (end_ord < 0))
        outcome[(outcome == _EVENT) & bad] = _PY
        end_idx = np.where(end_ord < start_ord, len(end_vals) - 1, end_idx)  # ends on its start

        # subject, then a date in the future (spec §3.12 v2)
        subj_idx, subj_values = encode(t.column("subject"))
        pids = [judge.subject(v) for v in subj_values] + [None]
        subj_ok = np.array([p is not None for p in pids], dtype=bool)[subj_idx]
        outcome[(outcome == _EVENT) & ~subj_ok] = _PY
        if self.sink.cutoff is None and self.sink.run_day is not None:
            outcome[(outcome == _EVENT) & (start_ord > self.sink.run_day.toordinal())] = _PY

        # RT dose extension: read only on a Procedure in a code group
        ext_idx, ext_values = encode(t.column("ext"))
        doses = [judge.dose(v) for v in ext_values] + [judge.dose(None)]
        ext_idx[~grouped] = len(ext_values)
        dose_ok = np.array([d is not None for d in doses], dtype=bool)[ext_idx]
        outcome[(outcome == _EVENT) & grouped & (row_type == "Procedure") & ~dose_ok] = _PY

        # lesion ids: only lesion rows look at identifier
        lesion_of_sig = np.array([c[8] for c in plain], dtype=bool)
        lesion = np.full(n, None, dtype=object)
        ident, rid = t.column("ident"), t.column("rid")
        for i in np.flatnonzero((outcome == _EVENT) & lesion_of_sig[row_sig]).tolist():
            lesion[i] = lesion_id(ident[i].as_py(), rid[i].as_py())
            if lesion[i] is None:
                outcome[i] = _PY

        self._account(outcome, reason)
        for i in np.flatnonzero((outcome == _PY) | (outcome == _LATER)).tolist():
            lines.python(i, later=outcome[i] == _LATER)
        ev = np.flatnonzero(outcome == _EVENT)
        if not len(ev):
            return
        sig_cols = list(zip(*plain, strict=True))
        rt_names = [v[1] for v in verdicts]
        spread = {  # column → (distinct values, row → value index)
            "patient_id": (pids, subj_idx),
            "kind": ([_ALL_KINDS.get(v) for v in rt_names], rt_idx),
            "groups": (sig_cols[0], row_sig),
            "system": (sig_cols[1], row_sig),
            "code": (sig_cols[2], row_sig),
            "start": ([d for d, _p in start_vals], start_idx),
            "end": ([d for d, _p in end_vals], end_idx),
            "precision": ([p for _d, p in start_vals], start_idx),
            "site": (sig_cols[3], row_sig),
            "laterality": (sig_cols[4], row_sig),
            "body_site": (sig_cols[5], row_sig),
            "value": (sig_cols[6], row_sig),
            "ingredient": (sig_cols[7], row_sig),
            "route": (sig_cols[9], row_sig),
            "fractions": ([d[0] if d else None for d in doses], ext_idx),
            "dose_cgy": ([d[1] if d else None for d in doses], ext_idx),
        }
        evi = pa.array(ev)
        source = pc.binary_join_element_wise(
            "fhir:",
            pc.take(pa.array(rt_names, pa.string()), pa.array(rt_idx[ev])),
            "/",
            pc.take(rid, evi),
            "",
        )
        if self.arrow_sink is not None:
            columns = {
                name: pc.take(pa.array(list(values), type=_TYPES[name]), pa.array(index[ev]))
                for name, (values, index) in spread.items()
            }
            columns["lesion_id"] = pa.array(lesion[ev], type=pa.string())
            columns["source"] = source
            table = pa.table({name: columns[name] for name in EVENT_COLUMNS})
            self._emit_table(table, ev.tolist(), lines.locate)
        else:
            lists = {
                name: object_array(values)[index[ev]].tolist() for name, (values, index) in spread.items()
            }
            lists["lesion_id"] = lesion[ev].tolist()
            lists["source"] = source.to_pylist()
            events = as_events(zip(*(lists[name] for name in EVENT_COLUMNS), strict=True))
            self._emit_events(events, ev.tolist(), lines.locate)

    def _keep_encounter_starts(self, t: pa.Table, mask: np.ndarray[Any, Any]) -> None:
        """Keep the raw ``period.start`` of the Encounters decided here (the reader keeps its own)."""
        if not mask.any():
            return
        idx = pa.array(np.flatnonzero(mask))
        starts = pc.take(t.column("enc_start"), idx)
        keep = pc.is_valid(starts)
        batch = pa.table(
            {
                "id": pc.filter(pc.take(t.column("rid"), idx), keep),
                "start": pc.filter(starts, keep).cast(pa.string()),
            }
        )
        if not batch.num_rows:
            return
        seq = pa.array(np.arange(self._encounters, self._encounters + batch.num_rows, dtype=np.int64))
        self._encounters += batch.num_rows
        self.con.register("_enc", batch.append_column("seq", seq))
        try:
            self.con.execute("INSERT INTO encounter_start SELECT id, start, seq FROM _enc")
        finally:
            self.con.unregister("_enc")

    def _hold(self, line: bytes, location: str) -> None:
        assert self._later is not None
        lines, locations = self._later
        lines.write(line if line.endswith(b"\n") else line + b"\n")
        locations.write(location.encode("utf-8") + b"\n")
        self._n_later += 1

    def _dates(self, column: pa.ChunkedArray) -> tuple[np.ndarray[Any, Any], list[tuple[Any, Any]]]:
        idx, values = encode(column)
        parsed = [self.judge.date(v) for v in values]
        return idx, [p if p else (None, None) for p in parsed] + [(None, None)]

    def _account(self, outcome: np.ndarray[Any, Any], reason: np.ndarray[Any, Any]) -> None:
        stats = self.sink.stats
        skipped = outcome == _SKIP
        stats.read += int(skipped.sum() + (outcome == _EVENT).sum())
        if skipped.any():
            values, counts = np.unique(reason[skipped].astype(str), return_counts=True)
            for value, count in zip(values.tolist(), counts.tolist(), strict=True):
                stats.out_of_scope += count
                stats.out_of_scope_reasons[value] = stats.out_of_scope_reasons.get(value, 0) + count

    def _emit_table(self, table: pa.Table, lines: list[int], locate: _Locate) -> None:
        """Events of known patients to the spool as one Arrow table; the others wait for their Patient."""
        known = self.reader.known_patients
        pids = table.column("patient_id")
        unknown = [p for p in pc.unique(pids).to_pylist() if p not in known]  # a chunk's patients, not all
        if unknown:
            mask = pc.invert(pc.is_in(pids, value_set=pa.array(unknown, pa.string())))
            keep = np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool)
            for e, i in zip(
                events_of(table.filter(pc.invert(mask))), np.asarray(lines)[~keep].tolist(), strict=True
            ):
                self.reader.accept_event(e, locate(i))
            table = table.filter(mask)
        if table.num_rows:
            self.arrow_sink(table)  # type: ignore[misc]
            self.sink.stats.in_scope += table.num_rows

    def _emit_events(self, events: list[Event], lines: list[int], locate: _Locate) -> None:
        """Events of known patients to the sink; the others wait for their Patient."""
        known, sink = self.reader.known_patients, self.sink
        fast = type(sink).event is EventSink.event
        if fast and all(e.patient_id in known for e in events):
            sink.events.extend(events)
            sink.stats.in_scope += len(events)
            return
        for e, i in zip(events, lines, strict=True):
            if e.patient_id in known:
                sink.event(e)
                sink.stats.in_scope += 1
            else:
                self.reader.accept_event(e, locate(i))


class _Rows:
    """The lines of one type group of an NDJSON chunk: group index → line, location, Python reader."""

    __slots__ = ("_col", "_data", "_done", "_locate", "_rows", "_starts")
    entries = False

    def __init__(
        self,
        col: _Columnar,
        data: bytes,
        starts: Any,
        rows: np.ndarray[Any, Any],
        locate: _Locate,
        done: set[int],
    ) -> None:
        self._col, self._data, self._starts, self._rows = col, data, starts, rows
        self._locate, self._done = locate, done

    def line(self, k: int) -> bytes:
        i = int(self._rows[k])
        return self._data[self._starts[i] : self._starts[i + 1]]

    def resource(self, k: int) -> bytes:
        return self.line(k)

    def locate(self, k: int) -> str:
        return self._locate(int(self._rows[k]))

    def python(self, k: int, *, later: bool = False) -> None:
        """The line to the Python reader, or held until the end when it waits for a Medication."""
        if int(self._rows[k]) in self._done:
            return
        if later and self._col._later is not None:
            self._col._hold(self.line(k), self.locate(k))
        else:
            self._col._python_line(self.line(k), self.locate(k))


class _Bundle:
    """One streamed Bundle file: its fullUrl index and the element indexes of a chunk's entries."""

    def __init__(
        self,
        col: _Columnar,
        urns: DiskUrns,
        serial: int,
        table: str,
        where: str,
        element: np.ndarray[Any, Any],
    ) -> None:
        self.col, self.urns, self.serial, self.table = col, urns, serial, table
        self.where, self.element = where, element


class _EntryRows:
    """The entries of one type group of a Bundle chunk (one entry per line)."""

    __slots__ = ("_bundle", "_data", "_rows", "_starts")
    entries = True

    def __init__(self, data: bytes, starts: Any, rows: np.ndarray[Any, Any], bundle: _Bundle) -> None:
        self._data, self._starts, self._rows, self._bundle = data, starts, rows, bundle

    def line(self, k: int) -> bytes:
        i = int(self._rows[k])
        return self._data[self._starts[i] : self._starts[i + 1]]

    def resource(self, k: int) -> Any:
        """Its resource; a ``medicationReference`` in the fullUrl index is written ``Medication/id``."""
        res = orjson.loads(self.line(k)).get("resource")
        ref = res.get("medicationReference") if isinstance(res, dict) else None
        target = ref.get("reference") if isinstance(ref, dict) else None
        if isinstance(ref, dict) and isinstance(target, str) and target and target[0] != "#":
            hit = self._bundle.urns.get(target)
            if hit is not None and hit[0] == "Medication" and _SIMPLE_ID.fullmatch(hit[1]):
                res = {**res, "medicationReference": {**ref, "reference": f"Medication/{hit[1]}"}}
        return res

    def locate(self, k: int) -> str:
        return f"{self._bundle.where}#entry[{int(self._bundle.element[int(self._rows[k])])}]"

    def python(self, k: int, *, later: bool = False) -> None:
        """The entry to the Python reader exactly as files.feed_bundle feeds it (with the fullUrl index)."""
        entry = orjson.loads(self.line(k))
        if not isinstance(entry, dict) or "resource" not in entry:
            return  # e.g. a DELETE request entry: not a record
        res, location = entry["resource"], self.locate(k)
        if isinstance(res, dict) and res.get("resourceType") == "OperationOutcome":
            return
        if isinstance(res, dict) and res.get("resourceType") == "Bundle":
            feed_bundle(self._bundle.col.reader, res, location)
            return
        rid = _entry_id(entry, res) if isinstance(res, dict) else None
        self._bundle.col.reader.feed(res, location, self._bundle.urns, rid)  # type: ignore[arg-type]


_SIMPLE_ID = re.compile(r"[A-Za-z0-9.-]{1,64}")


def _sql_path(path: Path) -> str:
    return str(path).replace("'", "''")


def _coded_kind(verdict: object) -> int:
    if verdict is WAIT:
        return _LATER
    return _PY if verdict is UNDECIDED else _EVENT


def _bools(t: pa.Table, name: str) -> np.ndarray[Any, Any]:
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=bool)
