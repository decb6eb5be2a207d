"""Bundle files read entry by entry: memory does not grow with the Bundle (issue 14).

A Bundle file is one JSON document, and ``orjson.loads`` of a 500 MB transaction
Bundle holds several GB of Python objects. Here the file is read in blocks and cut
into its ``entry`` elements by a vectorised structural scan (numpy: quotes not
escaped, string parity, bracket depth), so no more than a block and one entry is
ever held. The first pass writes the entries as NDJSON lines (one entry per line)
into the read's scratch folder, indexes ``fullUrl`` → (type, id) in DuckDB for
``urn:uuid:`` references, and checks that the document is valid JSON (everything
but the entries' insides is parsed by orjson as a *skeleton*, the entries by DuckDB,
with orjson deciding the ones DuckDB would accept and orjson not: trailing commas,
``NaN``). The second pass is the columnar reader's, over those lines
(:mod:`.columnar`, entry mode); entries it cannot decide go to the Python reader
with the index as their ``UrnIndex``.

A file that is not a well-formed Bundle document (not JSON, NDJSON with a ``.json``
name, a single resource, a second ``entry`` key, ids or request urls of unusual JSON
types) is left to :func:`.files.feed_file`, which reads it as before.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

import numpy as np
import orjson
import pyarrow as pa

from .columnar_rows import BOM, open_file

__all__ = ["BLOCK_BYTES", "DiskUrns", "NotStreamable", "Scanner", "split_bundle"]

#: bytes of the Bundle file scanned at a time
BLOCK_BYTES = 8 << 20
_WS = b" \t\r\n"
#: the bytes that can change depth or separate elements: { } [ ] ,
_STRUCTURAL = np.zeros(256, dtype=bool)
_STRUCTURAL[[123, 125, 91, 93, 44]] = True


class NotStreamable(Exception):
    """The file is not a well-formed Bundle document: the whole-document reader takes it."""


class Scanner:
    """Cuts a JSON document, fed in blocks, into the object elements of its top-level ``entry`` array.

    :meth:`feed` returns ``(element index, entry bytes)`` for every entry completed in the
    block; :meth:`skeleton` is the document with each entry's inside removed (``{}``), for
    orjson to check the rest of the document.
    """

    def __init__(self) -> None:
        self.in_str = 0
        self.bs_run = 0
        self.depth = 0
        self.mode = 0  # 0 before the entry array, 1 inside it, 2 after it
        self.element = 0  # index of the current element of the entry array (commas at depth 2)
        self.done = False  # the top-level value is complete
        self.started = False  # its opening brace was seen
        self.cur: list[bytes] | None = None  # an entry crossing blocks
        self.cur_index = 0
        self.skel: list[bytes] = []
        self.tail = b""

    def feed(self, block: bytes) -> list[tuple[int, bytes]]:
        n = len(block)
        if not n:
            return []
        if self.done:
            if block.strip(_WS):
                raise NotStreamable("more than one JSON value")
            return []
        b = np.frombuffer(block, dtype=np.uint8)
        qpos = np.flatnonzero(b == 34)
        # a quote is escaped when an odd run of backslashes precedes it (rare: counted one by one)
        after_bs = qpos[(qpos > 0) & (b[np.maximum(qpos - 1, 0)] == 92)]
        escaped = [q for q in after_bs.tolist() if self._run(block, q) % 2]
        if len(qpos) and qpos[0] == 0 and self.bs_run % 2:
            escaped.append(0)
        real = qpos
        if escaped:
            real = np.setdiff1d(qpos, np.array(escaped, dtype=qpos.dtype), assume_unique=True)
        self.bs_run = self._run(block, n) if block.endswith(b"\\") else 0
        cand = np.flatnonzero(_STRUCTURAL[b])
        outside = (np.searchsorted(real, cand) + self.in_str) % 2 == 0
        cand = cand[outside]
        ch = b[cand]
        delta = np.where((ch == 123) | (ch == 91), 1, np.where((ch == 125) | (ch == 93), -1, 0))
        after = self.depth + np.cumsum(delta)
        before = after - delta
        self.in_str = (self.in_str + len(real)) % 2
        if len(after):
            if after.min() < 0:
                raise NotStreamable("unbalanced brackets")
            self.depth = int(after[-1])
        out: list[tuple[int, bytes]] = []
        pos = 0  # bytes of the block before ``pos`` are accounted for (skeleton or entries)
        lo = 0
        if self.mode == 0:
            if not self.started:
                head = block[: cand[0]] if len(cand) else block
                if head.strip(_WS) or (len(cand) and ch[0] != 123):
                    raise NotStreamable("not a JSON object")
                self.started = bool(len(cand))
            opens = np.flatnonzero((ch == 91) & (before == 1))
            found = -1
            for k in opens.tolist():
                if self._is_entry_key(block, int(cand[k])):
                    found = k
                    break
            if found < 0:
                self._end_check(block, cand, after)
                self._skel(block)
                return out
            self.mode, lo = 1, found + 1
            pos = int(cand[found]) + 1
            self.skel.append(block[:pos])
        if self.mode == 1:
            close = np.flatnonzero((ch[lo:] == 93) & (after[lo:] == 1))
            hi = lo + int(close[0]) if len(close) else len(cand)
            sub_ch, sub_b, sub_a, sub_pos = ch[lo:hi], before[lo:hi], after[lo:hi], cand[lo:hi]
            commas = sub_pos[(sub_ch == 44) & (sub_b == 2)]
            starts = sub_pos[(sub_ch == 123) & (sub_b == 2)]
            ends = sub_pos[(sub_ch == 125) & (sub_a == 2)]
            if self.cur is not None:
                if not len(ends):  # the entry goes on past this block
                    self.cur.append(block[pos : hi if hi < len(cand) else n])
                    if hi < len(cand):
                        raise NotStreamable("entry array closed inside an entry")
                    self.element += len(commas)
                    self._keep_tail(block)
                    return out
                e = int(ends[0])
                self.cur.append(block[pos : e + 1])
                out.append((self.cur_index, b"".join(self.cur)))
                self.cur = None
                self.skel.append(b"}")
                pos = e + 1
                ends = ends[1:]
            # starts and ends alternate at depth 2: start k ends at ends[k]; the last may stay open
            index = (self.element + np.searchsorted(commas, starts)).tolist()
            s_list, e_list = starts.tolist(), ends.tolist()
            for k, st in enumerate(s_list):
                self.skel.append(block[pos : st + 1])
                if k < len(e_list):
                    e = e_list[k]
                    out.append((index[k], block[st : e + 1]))
                    self.skel.append(b"}")
                    pos = e + 1
                else:
                    self.cur, self.cur_index = [block[st:]], index[k]
                    pos = n
            self.element += len(commas)
            if hi < len(cand):
                if self.cur is not None:
                    raise NotStreamable("entry array closed inside an entry")
                self.mode = 2
                lo = hi
            else:
                if self.cur is None:
                    self.skel.append(block[pos:])
                self._keep_tail(block)
                return out
        # mode 2: after the entry array
        if len(np.flatnonzero((ch[lo:] == 91) & (before[lo:] == 1))):
            for k in np.flatnonzero((ch[lo:] == 91) & (before[lo:] == 1)).tolist():
                if self._is_entry_key(block, int(cand[lo + k])):
                    raise NotStreamable("a second entry array")
        self._end_check(block[pos:], cand[lo:] - pos, after[lo:])
        self.skel.append(block[pos:])
        self._keep_tail(block)
        return out

    def _run(self, block: bytes, at: int) -> int:
        """Backslashes right before ``at`` (with those ending the previous block)."""
        start = at
        while start > 0 and block[start - 1] == 92:
            start -= 1
        return at - start + (self.bs_run if start == 0 else 0)

    def _end_check(self, block: bytes, cand: Any, after: Any) -> None:
        zero = np.flatnonzero(after == 0)
        if len(zero):
            end = int(cand[zero[0]])
            if block[end + 1 :].strip(_WS) or len(zero) > 1:
                raise NotStreamable("more than one JSON value")
            self.done = True

    def _skel(self, block: bytes) -> None:
        self.skel.append(block)
        self._keep_tail(block)

    def _keep_tail(self, block: bytes) -> None:
        self.tail = (self.tail + block[-256:])[-256:]

    def _is_entry_key(self, block: bytes, at: int) -> bool:
        before = (self.tail + block[max(0, at - 256) : at]).rstrip(_WS)
        if not before.endswith(b":"):
            return False
        key = before[:-1].rstrip(_WS)
        return key.endswith(b'"entry"') and not key[:-7].endswith(b"\\")

    def finish(self) -> bytes:
        """The skeleton, once the whole document was fed (``NotStreamable`` when it is incomplete)."""
        if self.mode == 1 or self.cur is not None or self.depth != 0 or self.in_str:
            raise NotStreamable("incomplete document")
        return b"".join(self.skel)


#: ``src`` (entry) → what the ``fullUrl`` index and the validity check need, per entry
_INDEX_SQL = """
WITH p AS (
    SELECT entry, try(from_json(entry, '{"fullUrl": "JSON", "request": {"method": "JSON", "url": "JSON"},
        "resource": {"resourceType": "JSON", "id": "JSON"}}')) AS j FROM src
)
SELECT j IS NULL AS bad,
    contains(entry, ',}') OR contains(entry, ',]') OR regexp_matches(entry, ',\\s*[\\]}]')
        OR contains(entry, 'NaN') OR contains(entry, 'Infinity') AS doubt,
    json_type(j.fullUrl) AS full_type, j.fullUrl ->> '$' AS "full",
    json_type(j.resource.resourceType) AS rt_type, j.resource.resourceType ->> '$' AS rtype,
    json_type(j.resource.id) AS id_type, j.resource.id ->> '$' AS id,
    j.request.method = '"PUT"' AS put, json_type(j.request.url) AS url_type, j.request.url ->> '$' AS url
FROM p
"""

#: the id a Bundle entry is known by (files._entry_id): its own, else the PUT url's, else the fullUrl's tail
_URN_SQL = """
SELECT "full" AS url, rtype, rid, i FROM (
    SELECT "full", rtype, i, CASE
        WHEN id_type = 'VARCHAR' AND id <> '' THEN id
        WHEN put AND url_type = 'VARCHAR' AND len(string_split(split_part(url, '?', 1), '/')) = 2
            AND string_split(split_part(url, '?', 1), '/')[2] <> ''
            THEN string_split(split_part(url, '?', 1), '/')[2]
        WHEN full_type = 'VARCHAR' AND "full" <> '' THEN regexp_extract("full", '[^:/]*$')
    END AS rid
    FROM idx WHERE full_type = 'VARCHAR' AND rt_type = 'VARCHAR'
) WHERE rid IS NOT NULL AND rid <> ''
"""


def split_bundle(path: Path, folder: Path, con: Any, table: str, *, block_bytes: int = BLOCK_BYTES) -> int:
    """First pass over a Bundle file: its entries as lines of ``folder/entries.ndjson`` (their element
    indexes in ``entries.index``, int64), the ``fullUrl`` index in DuckDB table ``table``
    (url, rtype, rid, i); returns the number of entries.

    ``NotStreamable`` when the file is not a well-formed Bundle document (nothing is fed then).
    """
    scanner = Scanner()
    con.execute(f"CREATE OR REPLACE TABLE {table} (url VARCHAR, rtype VARCHAR, rid VARCHAR, i BIGINT)")
    count = 0
    with (
        open_file(path) as fh,
        (folder / "entries.ndjson").open("wb") as out,
        (folder / "entries.index").open("wb") as index_out,
    ):
        first = True
        while True:
            block = fh.read(block_bytes)
            if first:
                block, first = block.removeprefix(BOM), False
            if not block:
                break
            found = scanner.feed(block)
            if found:
                count += len(found)
                _index(found, con, table, out, index_out)
    skeleton = scanner.finish()
    try:
        doc = orjson.loads(skeleton)
    except orjson.JSONDecodeError:
        raise NotStreamable("invalid JSON") from None
    if (
        not isinstance(doc, dict)
        or doc.get("resourceType") != "Bundle"
        or not isinstance(doc.get("entry"), list)
    ):
        raise NotStreamable("not a Bundle")
    return count


def _index(
    found: list[tuple[int, bytes]], con: Any, table: str, out: IO[bytes], index_out: IO[bytes]
) -> None:
    entries = pa.array([e for _i, e in found], pa.binary())
    try:
        texts = entries.cast(pa.string())  # invalid UTF-8: orjson would refuse the document
    except pa.ArrowInvalid:
        raise NotStreamable("not UTF-8") from None
    con.register("src", pa.table({"entry": texts}))
    try:
        idx = con.sql(_INDEX_SQL).to_arrow_table()
    finally:
        con.unregister("src")
    bad = np.asarray(idx.column("bad").to_numpy(zero_copy_only=False), dtype=bool)
    doubt = np.asarray(idx.column("doubt").fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)
    for k in np.flatnonzero(bad | doubt).tolist():
        try:
            orjson.loads(found[k][1])
        except orjson.JSONDecodeError:
            raise NotStreamable("invalid JSON") from None
        if bad[k]:  # valid for orjson, not parsed by DuckDB: leave the file to the whole-document reader
            raise NotStreamable("an entry DuckDB cannot parse")
    for name, kinds in (
        ("id_type", ("VARCHAR", "NULL")),
        ("url_type", ("VARCHAR", "NULL")),
        ("full_type", ("VARCHAR", "NULL")),
    ):
        seen = set(idx.column(name).drop_null().unique().to_pylist())
        if not seen <= set(kinds):
            raise NotStreamable(f"entries with a {name} of JSON type {sorted(seen)}")
    positions = np.array([i for i, _e in found], dtype=np.int64)
    con.register("idx", idx.append_column("i", pa.array(positions)))
    try:
        con.execute(f"INSERT INTO {table} {_URN_SQL}")
    finally:
        con.unregister("idx")
    for _i, e in found:
        out.write(e.replace(b"\n", b" ").replace(b"\r", b" ") + b"\n")
    index_out.write(positions.tobytes())


class DiskUrns(Mapping[str, tuple[str, str]]):
    """A Bundle's ``fullUrl`` index (parse's ``UrnIndex``) kept in DuckDB (one row per fullUrl)."""

    def __init__(self, con: Any, table: str, size: int) -> None:
        self._con, self._table, self._size = con, table, size
        self._cache: dict[str, tuple[str, str] | None] = {}
        #: Medications are few and looked up per coded signature: held
        self._medications = {
            str(url): (str(rtype), str(rid))
            for url, rtype, rid in con.execute(
                f"SELECT url, rtype, rid FROM {table} WHERE rtype = 'Medication' LIMIT 100000"
            ).fetchall()
        }

    def _lookup(self, key: str) -> tuple[str, str] | None:
        hit = self._medications.get(key)
        if hit is not None:
            return hit
        if key in self._cache:
            return self._cache[key]
        if len(self._cache) > 4096:
            self._cache.clear()
        rows = self._con.execute(f"SELECT rtype, rid FROM {self._table} WHERE url = ?", [key]).fetchall()
        hit = (str(rows[0][0]), str(rows[0][1])) if rows else None
        self._cache[key] = hit
        return hit

    def get(self, key: object, default: Any = None) -> Any:
        if not isinstance(key, str):
            return default
        hit = self._lookup(key)
        return default if hit is None else hit

    def __getitem__(self, key: str) -> tuple[str, str]:
        hit = self.get(key)
        if hit is None:
            raise KeyError(key)
        return hit

    def __contains__(self, key: object) -> bool:
        return self.get(key) is not None

    def __len__(self) -> int:
        return self._size

    def __bool__(self) -> bool:
        return self._size > 0

    def __iter__(self) -> Iterator[str]:
        for (full,) in self._con.execute(f"SELECT url FROM {self._table}").fetchall():
            yield str(full)
