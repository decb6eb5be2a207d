"""Derivation by patient partitions with one data-wide cutoff: the bounded-memory half of a run.

Patients are independent under the rules of spec §3 once the cutoff is fixed, so the
cohort can be derived one partition of patients at a time and the outputs concatenated
(:func:`leopard_etl.cohort.derive.merge_derivations`). :func:`derive_spooled` does this for a
file run's :class:`~leopard_etl.spool.EventSpool`; the warehouse run feeds
:func:`derive_partitions` with partitions loaded from its event store.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .config import Rules
from .mappings import Mappings
from .spool import PARTITION_ROWS, EventSpool, SpooledEvents

__all__ = ["derive_partitions", "derive_spooled"]


def derive_spooled(
    spool: EventSpool,
    rules: Rules,
    mappings: Mappings,
    source_system: str,
    *,
    partition_rows: int = PARTITION_ROWS,
    tables: Mapping[str, Sequence[str] | None] | None = None,
    run_day: dt.date | None = None,
) -> Any:
    """The cohort derivation of everything in ``spool``, one patient partition at a time.

    ``tables`` names the derived tables to keep, each with the columns to keep (``None``: all
    columns); ``tables=None`` keeps every table whole. patients.csv and the attrition are always
    complete. Returns a :class:`leopard_etl.cohort.Derivation`.
    """
    with SpooledEvents(spool) as source:
        cutoff = source.cutoff(
            rules.cutoff, run_day=run_day, small_cell_excludes_icd=rules.small_cell_excludes_icd
        )
        return derive_partitions(
            source.partitions(partition_rows), rules, mappings, source_system, cutoff, tables=tables
        )


def derive_partitions(
    partitions: Iterable[tuple[pd.DataFrame, pd.DataFrame]],
    rules: Rules,
    mappings: Mappings,
    source_system: str,
    cutoff: dt.date,
    *,
    tables: Mapping[str, Sequence[str] | None] | None = None,
    each: Callable[[int, Any], None] | None = None,
) -> Any:
    """Derive each (events, patients) partition with ``cutoff`` fixed and merge the outputs.

    ``each(i, part)`` sees every partition's whole :class:`~leopard_etl.cohort.Derivation`
    (a warehouse run stores its tables) before it is cut down to ``tables``. Repeated values
    share one object across partitions, so the held output costs little more than its pointers.
    """
    from .cohort.derive import derive, merge_derivations

    fixed = rules.model_copy(update={"cutoff": cutoff})
    shared: dict[tuple[type, object], object] = {}
    parts = []
    for i, (events, patients) in enumerate(partitions):
        part = derive(events, patients, fixed, mappings, source_system)
        del events, patients
        if each is not None:
            each(i, part)
        part.tables = {
            name: _share_values(_columns(frame, None if tables is None else tables[name]), shared)
            for name, frame in part.tables.items()
            if tables is None or name in tables
        }
        part.patients_csv = _share_values(part.patients_csv, shared)
        parts.append(part)
    return merge_derivations(parts, cutoff)


def _columns(frame: pd.DataFrame, keep: Sequence[str] | None) -> pd.DataFrame:
    return frame if keep is None else frame[list(keep)]


def _share_values(frame: pd.DataFrame, shared: dict[tuple[type, object], object]) -> pd.DataFrame:
    """The same frame with equal values of object columns (``'true'``, dates) as one shared object.

    The pool is keyed by (type, value) so that ``True`` and ``1`` never stand for each other.
    """
    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if column.dtype != object or name == "patient_id":  # ids are unique: nothing to share
            continue
        values = [v if v is None else shared.setdefault((type(v), v), v) for v in column.to_numpy()]
        frame[name] = pd.Series(np.array(values, dtype=object), index=frame.index, dtype=object)
    return frame
