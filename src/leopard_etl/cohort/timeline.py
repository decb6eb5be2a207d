"""Per-patient timelines built once, vectorised, from the adapters' event frame.

Spec §3 rules are per patient, but a per-patient DataFrame slice costs ~100 µs, far too
slow for 100k patients. So the frame is prepared once: dates become integer days since
1970-01-01 (cheap arithmetic, no ``datetime`` objects), code groups become a bit mask
(computed once per distinct ``groups`` string), the cutoff is applied, ignored
MedicationRequests are masked, the last-alive date is a vectorised group maximum, and
the rows each rule needs are pre-split into categories sorted by (patient, start).
:func:`iter_timelines` then walks patients in chunks, turning only the chunk's rows into
small :class:`Rec` tuples, so memory stays bounded whatever the input size.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import starmap
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from leopard_etl.config import Rules
from leopard_etl.errors import SourceError
from leopard_etl.events import EVENT_COLUMNS, PATIENT_COLUMNS, Event
from leopard_etl.mappings import Mappings

__all__ = [
    "CATEGORIES",
    "CHEMO",
    "CHEMO_PROCEDURE",
    "DRUG_KINDS",
    "DURVALUMAB",
    "GROUP_BITS",
    "IMMUNOTHERAPY",
    "LESION",
    "NSCLC",
    "PLATINUM",
    "PROGRESSION",
    "RADIOTHERAPY",
    "SMALL_CELL",
    "STAGE",
    "STEREOTACTIC",
    "SURGERY",
    "TARGETED",
    "Prepared",
    "Rec",
    "Timeline",
    "default_cutoff",
    "events_frame",
    "iter_timelines",
    "prepare",
    "to_date",
    "to_day",
]

NSCLC, SMALL_CELL, STAGE, RADIOTHERAPY, STEREOTACTIC = 1, 2, 4, 8, 16
PLATINUM, CHEMO, DURVALUMAB, IMMUNOTHERAPY, TARGETED = 32, 64, 128, 256, 512
SURGERY, PROGRESSION, LESION = 1024, 2048, 4096
NSCLC_ICD = 8192  # ICD-10 C34.*: NSCLC unless small-cell histology
CHEMO_PROCEDURE = 16384  # v2: chemotherapy administered, no drug named
#: event kinds that are drug records (spec §2.1 chemo_procedure rule)
DRUG_KINDS = frozenset({"drug_admin", "drug_request"})

#: code group (mappings/) -> bit; the three stage groups are one rule input (decisions.md)
GROUP_BITS: dict[str, int] = {
    "nsclc": NSCLC,
    "nsclc_icd": NSCLC_ICD,
    "small_cell": SMALL_CELL,
    "stage_group": STAGE,
    "stage_condition": STAGE,
    "stage_modifier": STAGE,
    "radiotherapy": RADIOTHERAPY,
    "stereotactic": STEREOTACTIC,
    "platinum": PLATINUM,
    "chemo": CHEMO,
    "durvalumab": DURVALUMAB,
    "immunotherapy": IMMUNOTHERAPY,
    "targeted": TARGETED,
    "surgery": SURGERY,
    "progression": PROGRESSION,
    "lesion": LESION,
    "chemo_procedure": CHEMO_PROCEDURE,
}

THERAPY = RADIOTHERAPY | STEREOTACTIC | CHEMO | CHEMO_PROCEDURE | IMMUNOTHERAPY | TARGETED | SURGERY

#: rule inputs: timeline attribute -> bits any of which puts a row there
CATEGORIES: dict[str, int] = {
    "nsclc": NSCLC | NSCLC_ICD,
    "stage": STAGE,
    "rt": RADIOTHERAPY,
    "platinum": PLATINUM | CHEMO | CHEMO_PROCEDURE,  # the CRT rule's inputs (courses.crt_type)
    "durvalumab": DURVALUMAB,
    "disease": PROGRESSION | LESION,
    "therapy": THERAPY,
}

_EPOCH = dt.date(1970, 1, 1)
_EPOCH_ORD = _EPOCH.toordinal()
NO_DAY = np.iinfo(np.int64).min
_CHUNK_ROWS = 400_000
#: normalised stage values that are stage III (spec §3.2)
STAGE_III = frozenset({"III", "IIIA", "IIIB", "IIIC"})


def to_day(d: dt.date) -> int:
    return d.toordinal() - _EPOCH_ORD


def to_date(day: int) -> dt.date:
    return dt.date.fromordinal(day + _EPOCH_ORD)


class Rec(NamedTuple):
    """One event as the rules see it: dates are days since 1970-01-01, ``end`` ≥ ``start``."""

    start: int
    end: int
    bits: int
    kind: str
    system: str
    code: str
    site: str | None
    laterality: str | None
    value: str | None
    lesion_id: str | None
    fractions: Any
    dose_cgy: Any
    source: str
    precision: str


_REC_COLUMNS = (
    "start",
    "end",
    "bits",
    "kind",
    "system",
    "code",
    "site",
    "laterality",
    "value",
    "lesion_id",
    "fractions",
    "dose_cgy",
    "source",
    "precision",
)


@dataclass
class Timeline:
    """The records of one patient, split by rule input, each list sorted by start."""

    patient_id: str
    small_cell: bool
    nsclc: list[Rec] = field(default_factory=list)
    stage: list[Rec] = field(default_factory=list)
    rt: list[Rec] = field(default_factory=list)
    platinum: list[Rec] = field(default_factory=list)
    durvalumab: list[Rec] = field(default_factory=list)
    disease: list[Rec] = field(default_factory=list)
    therapy: list[Rec] = field(default_factory=list)
    last_alive: int | None = None
    last_alive_source: str | None = None
    death: int | None = None
    death_source: str | None = None
    #: *(v2)* the source says the patient died but gives no date (spec §3.12)
    death_unknown_date: bool = False
    birth_date: dt.date | None = None
    sex: str | None = None


@dataclass
class Prepared:
    """The whole input, prepared once: sorted category rows and per-patient facts."""

    patient_ids: list[str]
    cutoff: int
    frame: dict[str, np.ndarray]  # relevant rows sorted by (pcode, start): _REC_COLUMNS + pcode
    bounds: dict[str, np.ndarray]  # category -> row positions (into rows[cat]) per patient, len n+1
    rows: dict[str, np.ndarray]  # category -> positions into frame
    frame_bounds: np.ndarray  # row positions of each patient in frame, len n+1
    any_bits: np.ndarray  # OR of bits per patient (after cutoff, request fallback)
    last_alive: np.ndarray  # day or NO_DAY
    last_alive_source: list[str | None]
    patients: dict[str, tuple[dt.date | None, str | None, int | None, str, bool]]


def events_frame(events: Sequence[Event]) -> pd.DataFrame:
    """The adapters' frame from a list of :class:`Event` (tests, explain)."""
    return pd.DataFrame.from_records(list(events), columns=list(EVENT_COLUMNS))


def _days(col: pd.Series) -> np.ndarray:
    ts = pd.to_datetime(col, errors="coerce")
    out = ts.to_numpy(dtype="datetime64[D]").astype(np.int64)
    out[ts.isna().to_numpy()] = NO_DAY
    return out


def _bits_of(groups: str, includes: dict[str, list[str]]) -> int:
    names = set(groups.split(";")) if groups else set()
    grew = True
    while grew:
        extra = {i for g in names for inc, gs in includes.items() if g == inc for i in gs} - names
        grew = bool(extra)
        names |= extra
    b = 0
    for g in names:
        b |= GROUP_BITS.get(g, 0)
    return b


def _includes(mappings: Mappings) -> dict[str, list[str]]:
    """group -> groups that include it (platinum -> chemo), from mappings' ``includes``."""
    out: dict[str, list[str]] = {}
    for g, meta in mappings.group_meta.items():
        for inc in meta.get("includes", []) or []:
            out.setdefault(inc, []).append(g)
    return out


def _check_columns(events: pd.DataFrame, patients: pd.DataFrame) -> None:
    missing = [c for c in EVENT_COLUMNS if c not in events.columns]
    if missing:
        raise SourceError(f"event frame lacks columns {missing}", fix="build it with columns=EVENT_COLUMNS")
    missing = [c for c in PATIENT_COLUMNS if c not in patients.columns]
    if missing:
        raise SourceError(
            f"patient frame lacks columns {missing}", fix="build it with columns=PATIENT_COLUMNS"
        )


def _screened_latest(
    pids: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    bits: np.ndarray,
    death_pids: np.ndarray,
    death: np.ndarray,
    bound: int,
    small_cell_excludes_icd: bool,
) -> int | None:
    """Spec §3.12 v2 default cutoff: the latest date ≤ ``bound`` (the day of the run) among the
    activity records (start, or end) and deaths of the *screened* patients; ``None`` when none.

    Screened = an nsclc record, or an ICD C34 record without small-cell histology (the rule of
    :func:`.diagnosis.diagnose`), over the records starting ≤ ``bound``.
    """
    dated = (start != NO_DAY) & (start <= bound)
    if not dated.any():
        return None
    frame = pd.DataFrame({"p": pids[dated], "b": bits[dated]})
    flags = frame.groupby("p", sort=False)["b"].agg(lambda b: int(np.bitwise_or.reduce(b.to_numpy())))
    icd_ok = (flags & NSCLC_ICD) != 0
    if small_cell_excludes_icd:
        icd_ok &= (flags & SMALL_CELL) == 0
    screened = flags.index[((flags & NSCLC) != 0) | icd_ok]
    if not len(screened):
        return None
    mine = dated & np.asarray(pd.Index(screened).get_indexer(pids) >= 0)
    ends = end[mine]
    candidates = [start[mine], ends[(ends != NO_DAY) & (ends <= bound)]]
    dmask = np.asarray(pd.Index(screened).get_indexer(death_pids) >= 0) & (death != NO_DAY) & (death <= bound)
    candidates.append(death[dmask])
    latest = [int(a.max()) for a in candidates if a.size]
    return max(latest) if latest else None


def _group_bits(groups: pd.Series, mappings: Mappings) -> np.ndarray:
    gcode, guniq = pd.factorize(groups.fillna("").astype(str).to_numpy(dtype=object))
    inc = _includes(mappings)
    return (
        np.array([_bits_of(str(g), inc) for g in guniq], dtype=np.int64)[gcode]
        if len(gcode)
        else np.zeros(0, np.int64)
    )


def _no_day(run_day: dt.date | None) -> int:
    return to_day(run_day) if run_day is not None else int(np.iinfo(np.int64).max)


def default_cutoff(
    events: pd.DataFrame, patients: pd.DataFrame, mappings: Mappings, rules: Rules, run_day: dt.date | None
) -> dt.date:
    """The cutoff when none is configured (spec §3.12 v2; see :func:`_screened_latest`).

    Without any screened patient's date the input has no cohort: the cutoff is then the day of
    the run (or today), a value that only labels the empty result.
    """
    _check_columns(events, patients)
    death = _days(patients["death_date"]) if len(patients) else np.zeros(0, np.int64)
    latest = _screened_latest(
        events["patient_id"].astype(str).to_numpy(dtype=object),
        _days(events["start"]),
        _days(events["end"]),
        _group_bits(events["groups"], mappings),
        patients["patient_id"].astype(str).to_numpy(dtype=object),
        death,
        _no_day(run_day),
        rules.small_cell_excludes_icd,
    )
    if latest is None:
        return run_day or dt.date.today()
    return to_date(latest)


def prepare(
    events: pd.DataFrame,
    patients: pd.DataFrame,
    rules: Rules,
    mappings: Mappings,
    run_day: dt.date | None = None,
) -> Prepared:
    """Cutoff, request fallback, bits, sorting and category split (spec §3.12, decisions.md).

    ``run_day`` bounds the default cutoff (spec §3.12 v2: dates after the day of the run never
    count); ``None`` leaves it unbounded.
    """
    _check_columns(events, patients)
    start = _days(events["start"])
    end = _days(events["end"])
    dated = start != NO_DAY
    cutoff = (
        to_day(rules.cutoff)
        if rules.cutoff is not None
        else to_day(default_cutoff(events, patients, mappings, rules, run_day))
    )
    keep = dated & (start <= cutoff)
    ev = events.loc[keep]
    start, end = start[keep], end[keep]
    end = np.where((end == NO_DAY) | (end < start), start, end)

    pids = ev["patient_id"].astype(str).to_numpy(dtype=object)
    pcode, uniques = pd.factorize(pids, sort=True)
    patient_ids = [str(u) for u in uniques]
    n = len(patient_ids)
    bits = _group_bits(ev["groups"], mappings)

    # MedicationRequest counts only for an ingredient never administered to the patient.
    kind = ev["kind"].astype(str).to_numpy(dtype=object)
    is_req = kind == "drug_request"
    if is_req.any():
        ing = (
            ev["ingredient"].where(ev["ingredient"].notna(), ev["groups"]).astype(str).to_numpy(dtype=object)
        )
        key = pd.Index(pids.astype(str) + "\x1f" + ing.astype(str))
        admin = key[kind == "drug_admin"]
        shadowed = is_req & np.asarray(key.isin(admin))
        bits = np.where(shadowed, 0, bits)

    # Last alive: start, or end when it is not after the cutoff (vectorised group maximum).
    alive = np.where(end <= cutoff, end, start)
    order = np.lexsort((start, pcode))
    pc_sorted = pcode[order]
    bounds_all = np.searchsorted(pc_sorted, np.arange(n + 1))
    last_alive = np.full(n, NO_DAY, dtype=np.int64)
    any_bits = np.zeros(n, dtype=np.int64)
    alive_src: list[str | None] = [None] * n
    if len(order):
        alive_sorted = alive[order]
        nonempty = bounds_all[:-1] < bounds_all[1:]
        starts = bounds_all[:-1][nonempty]
        last_alive[nonempty] = np.maximum.reduceat(alive_sorted, starts)
        any_bits[nonempty] = np.bitwise_or.reduceat(bits[order], starts)
        best = pd.Series(alive_sorted).groupby(pc_sorted).idxmax().to_numpy()
        src = ev["source"].astype(str).to_numpy(dtype=object)[order]
        for p, i in zip(np.unique(pc_sorted).tolist(), best.tolist(), strict=True):
            alive_src[p] = src[i]

    relevant = order[bits[order] != 0]
    frame: dict[str, np.ndarray] = {
        "pcode": pcode[relevant],
        "start": start[relevant],
        "end": end[relevant],
        "bits": bits[relevant],
        **{c: ev[c].to_numpy(dtype=object)[relevant] for c in _REC_COLUMNS[3:]},
    }
    fbits, fpc = frame["bits"], frame["pcode"]
    # Only patients who can pass a step need the next step's rows as Python records: a
    # readable stage III value (or a coded stage) for treatment, durvalumab for recurrence.
    stage_rows = (fbits & STAGE) != 0
    values = pd.Series(frame["value"][stage_rows], dtype=object)
    maybe_iii = (
        values.isna().to_numpy() | values.astype(str).str.strip().str.upper().isin(STAGE_III).to_numpy()
    )
    treat = np.zeros(n, dtype=bool)
    treat[fpc[stage_rows][maybe_iii]] = True
    followed = treat & ((any_bits & DURVALUMAB) != 0)
    needs = {
        "nsclc": None,
        "stage": None,
        "rt": treat,
        "platinum": treat,
        "durvalumab": treat,
        "disease": followed,
        "therapy": followed,
    }
    rows: dict[str, np.ndarray] = {}
    bounds: dict[str, np.ndarray] = {}
    for cat, mask in CATEGORIES.items():
        hit = (fbits & mask) != 0
        need = needs[cat]
        if need is not None:
            hit &= need[fpc]
        pos = np.flatnonzero(hit)
        rows[cat] = pos
        bounds[cat] = np.searchsorted(fpc[pos], np.arange(n + 1))

    pat: dict[str, tuple[dt.date | None, str | None, int | None, str, bool]] = {}
    death_all = _days(patients["death_date"]) if len(patients) else np.zeros(0, np.int64)
    for rec, dday in zip(patients.itertuples(index=False), death_all.tolist(), strict=True):
        birth = rec.birth_date if isinstance(rec.birth_date, dt.date) else None
        if isinstance(birth, dt.datetime):
            birth = birth.date()
        death = dday if dday != NO_DAY else None
        pat[str(rec.patient_id)] = (
            birth,
            rec.sex if isinstance(rec.sex, str) else None,
            death,
            str(rec.source),
            bool(rec.deceased) and death is None if _known(rec.deceased) else False,
        )
    frame_bounds = np.searchsorted(fpc, np.arange(n + 1))
    return Prepared(
        patient_ids, cutoff, frame, bounds, rows, frame_bounds, any_bits, last_alive, alive_src, pat
    )


def _known(value: Any) -> bool:
    """A present flag (not None / NaN from a frame column)."""
    return value is not None and not (isinstance(value, float) and np.isnan(value))


def _records(frame: dict[str, np.ndarray], pos: np.ndarray) -> list[Rec]:
    cols = [frame[c][pos].tolist() for c in _REC_COLUMNS]
    return list(starmap(Rec, zip(*cols, strict=True)))


def iter_timelines(prep: Prepared, only: Sequence[int] | None = None) -> Iterator[Timeline]:
    """Timelines of screenable patients (any nsclc record), in patient_id order.

    ``only`` restricts to given patient codes (explain). Rows are materialised per chunk of
    patients so memory does not grow with the input.
    """
    n = len(prep.patient_ids)
    wanted = (
        np.flatnonzero(prep.any_bits & (NSCLC | NSCLC_ICD))
        if only is None
        else np.asarray(only, dtype=np.int64)
    )
    i = 0
    while i < len(wanted):
        j = i + 1
        first = int(wanted[i])
        while j < len(wanted):
            if int(prep.frame_bounds[int(wanted[j])] - prep.frame_bounds[first]) > _CHUNK_ROWS:
                break
            j += 1
        last = int(wanted[j - 1]) + 1
        chunk: dict[str, list[Rec]] = {}
        for cat in CATEGORIES:
            b = prep.bounds[cat]
            chunk[cat] = _records(prep.frame, prep.rows[cat][b[first] : b[last]])
        for p in wanted[i:j].tolist():
            pid = prep.patient_ids[p]
            birth, sex, death, death_src, unknown = prep.patients.get(pid, (None, None, None, "", False))
            la = int(prep.last_alive[p])
            tl = Timeline(
                patient_id=pid,
                small_cell=bool(prep.any_bits[p] & SMALL_CELL),
                last_alive=la if la != NO_DAY and p < n else None,
                last_alive_source=prep.last_alive_source[p],
                death=death,
                death_source=death_src or None,
                death_unknown_date=unknown,
                birth_date=birth,
                sex=sex,
            )
            for cat in CATEGORIES:
                b = prep.bounds[cat]
                lo, hi = int(b[p] - b[first]), int(b[p + 1] - b[first])
                setattr(tl, cat, chunk[cat][lo:hi])
            yield tl
        i = j
