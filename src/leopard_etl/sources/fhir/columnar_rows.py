"""Bytes and columns for the columnar reader: NDJSON chunks and line offsets, row ↔ value-index helpers.

Kept apart from :mod:`.columnar` (the decisions) because these are plain mechanics
over numpy / Arrow buffers: cutting a file into chunks that end on a line break,
finding line offsets without a Python object per line, dictionary-encoding a
column into (row → distinct value) indexes, and turning columns into
:class:`~leopard_etl.events.Event` tuples without Python code per row.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator, Sequence
from itertools import repeat
from pathlib import Path
from typing import IO, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ...events import EVENT_COLUMNS, Event

__all__ = [
    "BOM",
    "as_events",
    "chunks",
    "encode",
    "events_of",
    "line_starts",
    "object_array",
    "open_file",
    "type_groups",
]

#: a UTF-8 byte-order mark: ignored at the start of a file (spec §1 v2)
BOM = b"\xef\xbb\xbf"


def open_file(path: Path) -> IO[bytes]:
    if path.name.endswith(".gz"):
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return path.open("rb")


def chunks(path: Path, size: int) -> Iterator[bytes]:
    """The file's bytes in pieces of about ``size`` that end on a line break (the last may not).

    A byte-order mark at the start of the file is dropped.
    """
    with open_file(path) as fh:
        rest = b""
        first = True
        while True:
            block = fh.read(size)
            if first:
                block, first = block.removeprefix(BOM), False
            if not block:
                if rest:
                    yield rest
                return
            data = rest + block if rest else block
            cut = data.rfind(b"\n")
            if cut < 0:
                rest = data
                continue
            yield data[: cut + 1]
            rest = data[cut + 1 :]


def line_starts(data: bytes) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Offsets where each line starts, plus ``len(data)``: line i = data[s[i]:s[i+1]] (newline included)."""
    buf = np.frombuffer(data, dtype=np.uint8)
    breaks = np.flatnonzero(buf == 10) + 1
    if len(breaks) and breaks[-1] == len(data):
        breaks = breaks[:-1]
    return np.concatenate(([0], breaks, [len(data)])).astype(np.int64)


def object_array(values: Sequence[Any]) -> np.ndarray[Any, Any]:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def as_events(rows: Iterator[tuple[Any, ...]]) -> list[Event]:
    """Event tuples from plain tuples in field order (C-level ``tuple.__new__``: no Python per row)."""
    return list(map(tuple.__new__, repeat(Event), rows))


def events_of(table: pa.Table) -> list[Event]:
    return as_events(zip(*(table.column(c).to_pylist() for c in EVENT_COLUMNS), strict=True))


def encode(column: pa.ChunkedArray) -> tuple[np.ndarray[Any, Any], list[Any]]:
    """(index of each row's value in the distinct values, ``len(values)`` for null; the distinct values)."""
    enc = pc.dictionary_encode(column.combine_chunks())
    values = enc.dictionary.to_pylist()
    return np.asarray(
        enc.indices.fill_null(len(values)).to_numpy(zero_copy_only=False), dtype=np.int64
    ), values


_PREFIX = b'{"resourceType":"'
#: distinct prefixes looked for in one chunk before the rest is left to DuckDB
_MAX_TYPES = 24


def type_groups(data: bytes, starts: np.ndarray[Any, Any]) -> dict[str, np.ndarray[Any, Any]]:
    """Line indexes by resource type, from the ``{"resourceType":"T",`` prefix bulk exports write.

    Lines without that prefix are under ``""`` (their type is asked of DuckDB). A prefix only
    groups: the type is checked again when the line is parsed. Vectorised: one byte comparison
    per distinct prefix over the lines not grouped yet (a bulk-export file holds one type).
    """
    buf = np.frombuffer(data, dtype=np.uint8)
    n = len(starts) - 1
    lengths = np.diff(starts)
    todo = np.arange(n, dtype=np.int64)
    groups: dict[str, list[np.ndarray[Any, Any]]] = {}
    rest: list[np.ndarray[Any, Any]] = []
    for _ in range(_MAX_TYPES):
        if not len(todo):
            break
        first = int(starts[todo[0]])
        head = data[first : first + 80]
        close = head.find(b'"', len(_PREFIX))
        if not head.startswith(_PREFIX) or close < 0 or head[close + 1 : close + 2] != b",":
            rest.append(todo[:1])
            todo = todo[1:]
            continue
        pattern = np.frombuffer(head[: close + 2], dtype=np.uint8)
        width = len(pattern)
        long_enough = lengths[todo] >= width
        cand = todo[long_enough]
        at = starts[cand][:, None] + np.arange(width)
        hit = np.zeros(len(todo), dtype=bool)
        hit[long_enough] = (buf[at] == pattern).all(axis=1)
        groups.setdefault(head[len(_PREFIX) : close].decode("utf-8", "replace"), []).append(todo[hit])
        todo = todo[~hit]
    if len(todo):
        rest.append(todo)
    out = {name: np.sort(np.concatenate(parts)) for name, parts in groups.items()}
    if rest:
        out[""] = np.sort(np.concatenate(rest))
    return out
