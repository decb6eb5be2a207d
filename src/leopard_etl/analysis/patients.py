"""Read the string-typed patients.csv frame into typed columns, refusing inconsistent rows early.

patients.csv (spec §5, docs/decisions.md) carries every value as a string, '' when empty. The
analyses need booleans and floats; a malformed value there is a defect of the input, so it is
reported as a :class:`~leopard_etl.errors.ConfigError` naming the patients — never a traceback
from deep inside lifelines.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from leopard_etl.cohort.patients_csv import CSV_COLUMNS
from leopard_etl.errors import ConfigError

__all__ = [
    "FIELD_CATEGORIES",
    "PATIENT_COLUMNS",
    "PATTERNS",
    "SALVAGE_CATEGORIES",
    "SITE_CATEGORIES",
    "cohort_frame",
    "ordered",
    "split_sites",
]

#: spec §5 patients.csv columns: the contract is defined once, beside its writer
PATIENT_COLUMNS: tuple[str, ...] = CSV_COLUMNS

#: Recurrence patterns of spec §3.9 (``none`` = no recurrence).
PATTERNS: tuple[str, ...] = ("oligo", "poly", "unclassified", "none")
#: Site categories of spec §2, in the order the spec lists them.
SITE_CATEGORIES: tuple[str, ...] = (
    "lung",
    "brain",
    "bone",
    "liver",
    "adrenal",
    "lymph_node_thoracic",
    "lymph_node_distant",
    "pleura",
    "meninges",
    "other",
)
#: Field relations of spec §3.10.
FIELD_CATEGORIES: tuple[str, ...] = ("in_field", "out_of_field", "both", "unknown", "none")
#: Salvage categories of spec §3.11, in the order they are tried.
SALVAGE_CATEGORIES: tuple[str, ...] = (
    "crt",
    "rt",
    "chemo",
    "immunotherapy",
    "targeted",
    "surgery",
    "other",
    "none",
)

_FIX = "regenerate patients.csv with `leopard-etl run` or correct the listed rows"


def _ids(frame: pd.DataFrame, mask: pd.Series | np.ndarray) -> str:
    ids = sorted(frame.loc[mask, "patient_id"].astype(str))
    shown = ", ".join(ids[:10])
    return shown + (f" (+{len(ids) - 10} more)" if len(ids) > 10 else "")


def _booleans(frame: pd.DataFrame, column: str, *, allow_empty: bool) -> pd.Series:
    values = frame[column].str.strip().str.lower()
    ok = values.isin(["true", "false"] + ([""] if allow_empty else []))
    if not ok.all():
        raise ConfigError(
            f"patients.csv column {column!r} must be true/false; bad value for patient(s) {_ids(frame, ~ok)}",
            fix=_FIX,
        )
    return values == "true"


def _months(frame: pd.DataFrame, column: str, required: pd.Series, notes: list[str]) -> pd.Series:
    raw = frame[column].str.strip()
    numbers = pd.to_numeric(raw.where(raw != ""), errors="coerce")
    unreadable = (raw != "") & (numbers.isna() | ~np.isfinite(numbers.fillna(0.0)))
    if unreadable.any():
        raise ConfigError(
            f"patients.csv column {column!r} is not a number for patient(s) {_ids(frame, unreadable)}",
            fix=_FIX,
        )
    missing = required & numbers.isna()
    if missing.any():
        raise ConfigError(
            f"patients.csv column {column!r} is empty for patient(s) {_ids(frame, missing)} that need it",
            fix=_FIX,
        )
    negative = numbers < 0
    if negative.any():
        # Contradictory source data (a death before CRT): one patient must not stop the site's
        # analysis, so the time is left out of the survival fits. The warning gives a count only
        # (results files may be shared, spec §5); the ids go to the site-only warnings-patients.csv.
        reason = f"negative {column}"
        notes.append(
            f"{reason} for {int(negative.sum())} patient(s): the death or last-alive date lies before the"
            " start of the interval; left out of the survival analyses — check the death / last-alive"
            " dates against crt_start and recurrence_date (ids in warnings-patients.csv)"
        )
        flagged = frame.attrs.setdefault("warning_patients", [])
        flagged.extend((str(pid), reason) for pid in frame.loc[negative, "patient_id"])
        numbers = numbers.mask(negative)
    return numbers


def cohort_frame(patients_csv: pd.DataFrame) -> pd.DataFrame:
    """The in-cohort rows with typed columns: ``death``/``recurrence`` bool, ``os``/``prs`` float months.

    Raises :class:`ConfigError` for missing columns, unreadable booleans or numbers, and cohort
    rows without an OS time (or recurrent rows without a PRS time). Negative times become
    missing (left out of the fits) with a note in ``frame.attrs["warnings"]``.
    """
    notes: list[str] = []
    missing = [c for c in PATIENT_COLUMNS if c not in patients_csv.columns]
    if missing:
        raise ConfigError(f"patients.csv lacks column(s) {', '.join(missing)}", fix=_FIX)
    frame = patients_csv.loc[:, list(PATIENT_COLUMNS)].fillna("").astype(str)
    in_cohort = _booleans(frame, "in_cohort", allow_empty=False)
    cohort = frame.loc[in_cohort].reset_index(drop=True)
    death = _booleans(cohort, "death", allow_empty=False)
    recurrence = _booleans(cohort, "recurrence", allow_empty=False)
    pattern = cohort["pattern"].str.strip()
    bad_pattern = ~pattern.isin(PATTERNS) | (recurrence == (pattern == "none"))
    if bad_pattern.any():
        raise ConfigError(
            "patients.csv pattern must be oligo/poly/unclassified with a recurrence and none without;"
            f" inconsistent for patient(s) {_ids(cohort, bad_pattern)}",
            fix=_FIX,
        )
    out = pd.DataFrame(
        {
            "patient_id": cohort["patient_id"],
            "death": death,
            "recurrence": recurrence,
            "pattern": pattern,
            "sites": cohort["sites"].str.strip(),
            "field": cohort["field"].str.strip(),
            "salvage": cohort["salvage"].str.strip().where(recurrence, ""),
            "os": _months(cohort, "os_months", required=pd.Series(True, index=cohort.index), notes=notes),
            "prs": _months(cohort, "prs_months", required=recurrence, notes=notes),
        }
    )
    no_salvage = out["recurrence"] & (out["salvage"] == "")
    if no_salvage.any():
        raise ConfigError(
            f"patients.csv salvage is empty for recurrent patient(s) {_ids(cohort, no_salvage)}"
            " (use 'none' when no therapy started)",
            fix=_FIX,
        )
    out.attrs["warnings"] = notes
    out.attrs["warning_patients"] = list(cohort.attrs.get("warning_patients", []))
    return out


def split_sites(value: str) -> list[str]:
    """``'brain;lung'`` → ``['brain', 'lung']`` (empty string → no sites)."""
    return [s for s in (part.strip() for part in value.split(";")) if s]


def ordered(categories: Iterable[str], canonical: tuple[str, ...]) -> list[str]:
    """Canonical categories first (spec order), then any site-specific extras sorted."""
    seen = set(categories)
    return list(canonical) + sorted(seen - set(canonical))
