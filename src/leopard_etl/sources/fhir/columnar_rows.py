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

__all__ = ["BOM", "as_events", "chunks", "encode", "events_of", "line_starts", "object_array", "open_file"]

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
