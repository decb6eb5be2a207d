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

The contract is the Python reader's: same events, PatientRecords, quarantine rows
and ReadStats. Patient, Medication and Bundle lines, and every line whose outcome
is a quarantine or a wait (for a Medication not read yet), are fed to one shared
:class:`~.parse.FhirRecordReader`, which also holds the patients read so far:
events of a patient it has not seen wait there, and :meth:`~.parse.FhirRecordReader.finish`
quarantines what never resolves. Within a chunk those lines go first, then the
chunk's events, so arrival order (``seq``) can differ from the Python reader's
inside a chunk; the derivation sorts and breaks ties on content, not arrival.
Top-level Medication lines of a chunk are read before its other lines, so a
reference to a Medication written later in the same chunk is decided here too.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ...errors import SourceError
from ...events import EVENT_COLUMNS, Event, EventSink
from ...mappings import CodeMatcher
from .columnar_codes import NO_GROUP, UNDECIDED, WAIT, LeafJudge, lesion_id
from .columnar_rows import as_events, chunks, encode, events_of, line_starts, object_array
from .columnar_sql import CHUNK_SQL
from .files import expand_paths, feed_bundle, feed_file, is_export_log, skip_export_log
from .parse import EVENT_KIND, FhirRecordReader, medication_codes

__all__ = ["CHUNK_BYTES", "NDJSON_SUFFIXES", "read_ndjson_columnar"]

log = logging.getLogger(__name__)

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
#: bytes of (decompressed) input per DuckDB pass; bounds memory, keeps Arrow int32 offsets valid
CHUNK_BYTES = 64 << 20
_MED_LINE = b'{"resourceType":"Medication",'

#: line outcomes: Python reader, out of scope, event, later (its Medication is not read yet)
_PY, _SKIP, _EVENT, _LATER = 0, 1, 2, 4
_KIND = {"py": _PY, "skip": _SKIP, "read": _EVENT}
_EVENT_KIND = dict(EVENT_KIND)
_EMPTY = (None, None, None, None, None, None, None, None, False, None)
_TYPES = {name: pa.string() for name in EVENT_COLUMNS} | {
    "start": pa.date32(),
    "end": pa.date32(),
    "fractions": pa.int64(),
    "dose_cgy": pa.float64(),
}
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

    NDJSON files take the columnar path; ``.json`` documents (Bundles) the Python reader's.
    """
    reader = FhirRecordReader(matcher, sink, track_touched=False)
    given = {Path(p) for p in paths}
    with _Columnar(reader, chunk_bytes=chunk_bytes, threads=threads) as columnar:
        for path in expand_paths(paths):
            if is_export_log(path):
                skip_export_log(reader, path)
            elif path.name.endswith((".json", ".json.gz")):
                feed_file(reader, path, found_in_folder=path not in given)
            else:
                columnar.feed_file(path)
        columnar.read_later()
    reader.finish()


class _Columnar:
    """One DuckDB connection and the leaf caches, shared by every file of a read."""

    def __init__(self, reader: FhirRecordReader, *, chunk_bytes: int, threads: int) -> None:
        self.reader = reader
        self.sink = reader.sink
        self.chunk_bytes = chunk_bytes
        self.judge = LeafJudge(reader)
        self.con = duckdb.connect()
        self.con.execute(f"SET threads = {max(1, int(threads))}")
        self.arrow_sink = getattr(self.sink, "event_table", None)
        #: lines naming a Medication not read yet, with their locations (read again at the end)
        self.later: list[tuple[bytes, str]] | None = []

    def __enter__(self) -> _Columnar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.con.close()

    # --- files and chunks -----------------------------------------------------
    def feed_file(self, path: Path) -> None:
        where, first = str(path), 1
        try:
            for data in chunks(path, self.chunk_bytes):
                first = self._chunk(data, where, first)
        except (OSError, EOFError, zlib.error) as exc:
            raise SourceError(
                f"cannot read {path}: {type(exc).__name__}: {exc}",
                fix="check the file is complete (a truncated .gz cannot be read)",
            ) from None

    def _chunk(self, data: bytes, where: str, first: int) -> int:
        """Read the lines of ``data`` numbered from ``first``; returns the next line number."""
        starts = line_starts(data)
        n = len(starts) - 1
        self._lines(data, starts, lambda i: f"{where}:{first + i}")
        return first + n

    def read_later(self) -> None:
        """Read the lines that named a Medication not read then; still unknown now, they go to the reader."""
        later, self.later = self.later or [], None
        if later:
            data = b"".join(line if line.endswith(b"\n") else line + b"\n" for line, _loc in later)
            self._lines(data, line_starts(data), lambda i: later[i][1])

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
        self.con.register("src", pa.table({"line": lines}))
        try:
            table = self.con.sql(CHUNK_SQL).to_arrow_table()
        finally:
            self.con.unregister("src")
        self._decide(table, data, starts, locate, done)

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
    def _decide(self, t: pa.Table, data: bytes, starts: Any, locate: _Locate, done: set[int]) -> None:
        """Per line: event, out of scope (with reason), Python reader, or later (Medication not read yet)."""
        judge, n = self.judge, t.num_rows
        outcome = np.full(n, _EVENT, dtype=np.int8)
        outcome[_bools(t, "odd")] = _PY  # blank lines too: the Python path skips them
        reason = np.full(n, None, dtype=object)

        rt_idx, rt_values = encode(t.column("rt"))
        verdicts = [judge.resource_type(v) for v in rt_values] + [("py", "")]
        rt_kind = np.array([_KIND[v[0]] for v in verdicts], dtype=np.int8)[rt_idx]
        rt_name = np.array([v[1] for v in verdicts], dtype=object)
        live = outcome == _EVENT
        outcome[live & ((rt_kind == _PY) | ~t.column("rid").is_valid().to_numpy(zero_copy_only=False))] = _PY
        skip = (outcome == _EVENT) & (rt_kind == _SKIP)
        outcome[skip], reason[skip] = _SKIP, rt_name[rt_idx[skip]]

        # status (spec §1 "Excluded"), per distinct (type, raw status)
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

        # coded content, per signature (judged on the first line carrying it)
        live = outcome == _EVENT
        rows = np.flatnonzero(live)
        uniq, first_row, sig_of = np.unique(
            t.column("sig").to_numpy()[live], return_index=True, return_inverse=True
        )
        coded: list[Any] = []
        for sig, r in zip(uniq.tolist(), first_row.tolist(), strict=True):
            i = rows[r]
            coded.append(judge.coded(sig, data[starts[i] : starts[i + 1]]))
        kinds = np.array([_coded_kind(c) for c in coded] or [_EVENT], dtype=np.int8)
        outcome[rows] = kinds[sig_of] if len(rows) else outcome[rows]
        reason[rows[kinds[sig_of] == _SKIP]] = "no code group"
        plain = [c if isinstance(c, tuple) else _EMPTY for c in coded] + [_EMPTY]
        row_sig = np.full(n, len(plain) - 1, dtype=np.int64)
        row_sig[rows] = sig_of

        # subject, dates, dose extension
        subj_idx, subj_values = encode(t.column("subject"))
        pids = [judge.subject(v) for v in subj_values] + [None]
        subj_ok = np.array([p is not None for p in pids], dtype=bool)[subj_idx]
        outcome[(outcome == _EVENT) & ~subj_ok] = _PY
        start_idx, start_vals = self._dates(t.column("date_raw"))
        end_idx, end_vals = self._dates(t.column("end_raw"))
        start_ord = np.array([d.toordinal() if d else -1 for d, _p in start_vals], dtype=np.int64)[start_idx]
        end_ord = np.array([d.toordinal() if d else -1 for d, _p in end_vals], dtype=np.int64)[end_idx]
        has_end = t.column("end_raw").is_valid().to_numpy(zero_copy_only=False)
        bad = (start_ord < 0) | (has_end & ((end_ord < 0) | (end_ord < start_ord)))
        if self.sink.cutoff is None and self.sink.run_day is not None:  # spec §3.12 v2: date in the future
            bad |= start_ord > self.sink.run_day.toordinal()
        outcome[(outcome == _EVENT) & bad] = _PY
        ext_idx, ext_values = encode(t.column("ext"))
        doses = [judge.dose(v) for v in ext_values] + [judge.dose(None)]
        dose_ok = np.array([d is not None for d in doses], dtype=bool)[ext_idx]
        outcome[(outcome == _EVENT) & (rt_name[rt_idx] == "Procedure") & ~dose_ok] = _PY

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
            if i in done:
                continue
            line = data[starts[i] : starts[i + 1]]
            if outcome[i] == _LATER and self.later is not None:
                self.later.append((line, locate(i)))
            else:
                self._python_line(line, locate(i))
        ev = np.flatnonzero(outcome == _EVENT)
        if not len(ev):
            return
        sig_cols = list(zip(*plain, strict=True))
        rt_names = [v[1] for v in verdicts]
        spread = {  # column → (distinct values, row → value index)
            "patient_id": (pids, subj_idx),
            "kind": ([_EVENT_KIND.get(v) for v in rt_names], rt_idx),
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
            self._emit_table(table, ev.tolist(), locate)
        else:
            lists = {
                name: object_array(values)[index[ev]].tolist() for name, (values, index) in spread.items()
            }
            lists["lesion_id"] = lesion[ev].tolist()
            lists["source"] = source.to_pylist()
            events = as_events(zip(*(lists[name] for name in EVENT_COLUMNS), strict=True))
            self._emit_events(events, ev.tolist(), locate)

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
        mask = pc.is_in(table.column("patient_id"), value_set=pa.array(list(known), pa.string()))
        if not pc.all(mask).as_py():
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


def _coded_kind(verdict: object) -> int:
    if verdict is NO_GROUP:  # an activity record (spec v2) or out of scope: the Python reader decides
        return _PY
    if verdict is WAIT:
        return _LATER
    return _PY if verdict is UNDECIDED else _EVENT


def _bools(t: pa.Table, name: str) -> np.ndarray[Any, Any]:
    return np.asarray(t.column(name).to_numpy(zero_copy_only=False), dtype=bool)
