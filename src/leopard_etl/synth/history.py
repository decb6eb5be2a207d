"""One patient's latent clinical history: diagnosis, CRT, durvalumab, recurrence, salvage, follow-up.

The history is laid out so that the design intent survives the rules (recurrence at least
45 days after crt_end, salvage 7–45 days after it, salvage RT far from the CRT course) while
still carrying the idioms the readers must handle: partial diagnosis dates, repeated lesion
records, later lesions outside the 30-day window, entered-in-error and not-done records,
MedicationRequest-only ingredients, a durvalumab pause longer than 60 days.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from .calibration import Calibration
from .truth import Fact, Strata, TruthPatient, pick, weekdays_from

__all__ = ["build_history"]

_D = dt.timedelta
_FIELD = "lung;lymph_node_thoracic"
_OTHER_OLIGO = ("bone", "adrenal", "liver")
_POLY_SITES = ("lung", "bone", "liver", "brain", "adrenal", "lymph_node_distant", "lymph_node_thoracic")
_HISTOLOGY = ("254637007", "254626006", "254634000", "254629004")


class _Builder:
    def __init__(self, rng: np.random.Generator, p: TruthPatient, draws: dict[str, Strata]) -> None:
        self.rng = rng
        self.p = p
        self.draws = draws
        self.facts: list[Fact] = []

    def u(self, lo: int, hi: int) -> int:
        """Uniform integer in [lo, hi]."""
        return int(self.rng.integers(lo, hi + 1))

    def chance(self, prob: float) -> bool:
        return bool(self.rng.random() < prob)

    def add(self, kind: str, start: dt.date, **kw: object) -> None:
        self.facts.append(Fact(kind, start, **kw))  # type: ignore[arg-type]

    def drug(self, ingredient: str, day: dt.date, **kw: object) -> None:
        style = self.p.style
        request = ingredient in style["request_only"].split(";") if style["request_only"] else False
        self.add(
            "drug",
            day,
            ingredient=ingredient,
            request=request,
            variant=f"{style['drug_code']}:{style['drug_form']}",
            **kw,
        )

    def cycles(self, ingredients: tuple[str, ...], first: dt.date, every: int, n: int) -> None:
        for k in range(n):
            for ing in ingredients:
                self.drug(ing, first + _D(days=k * every))


def _monday(d: dt.date) -> dt.date:
    return d + _D(days=(7 - d.weekday()) % 7)


def _diagnosis(b: _Builder, diag: dt.date, rt_start: dt.date | None, stage: str) -> None:
    style = b.p.style
    dx = style["dx"]
    if dx == "synthea" and stage not in ("III",):
        dx = "snomed"
    lat = None if dx == "synthea" or b.chance(0.04) else ("right" if b.chance(0.55) else "left")
    precision, start = "day", diag
    if rt_start is not None and dx != "synthea" and b.chance(0.16):
        month = dt.date(diag.year, diag.month, 15)
        year = dt.date(diag.year, 7, 1)
        if b.chance(0.3) and 0 <= (rt_start - year).days <= 180:
            precision, start = "year", year
        elif 0 <= (rt_start - month).days <= 180:
            precision, start = "month", month
    if dx == "synthea":
        b.add("nsclc", diag, variant="synthea:422968005", stage="III")
        b.add("nsclc", diag, variant="snomed:254637007")
        return
    lobe = str(b.rng.choice(["1", "3"]))
    histology = str(b.rng.choice(list(_HISTOLOGY)))
    code = {"snomed": f"snomed:{histology}", "dual": f"dual:{histology}:{lobe}"}.get(dx, f"{dx}:{lobe}")
    b.add("nsclc", start, precision=precision, variant=code, laterality=lat)
    if b.chance(0.3):  # pathology report a few days later, dual coded
        b.add("nsclc", diag + _D(days=b.u(3, 20)), variant=f"dual:{histology}:{lobe}", laterality=lat)


def _stage(b: _Builder, diag: dt.date, stage: str) -> None:
    style = b.p.style["stage"]
    if style == "synthea" and stage == "III":
        return  # the 422968005 condition states it
    if stage in ("II", "IV"):
        variant = "ajcc_roman"
    elif style == "snomed":
        variant = "snomed" if stage == "IIIC" else "ajcc"
    elif style == "synthea":
        variant = "ajcc"
    else:
        variant = style
    b.add("stage", diag + _D(days=b.u(0, 10)), variant=variant, stage=stage)


def _crt(b: _Builder, rt_start: dt.date, sequential: bool, chemo: bool) -> tuple[dt.date, dt.date]:
    """Lay out RT (+ platinum); returns (crt_start, crt_end)."""
    days = weekdays_from(rt_start, 30)
    variant = b.p.style["rt"]
    b.add("rt", rt_start, end=days[-1], variant=variant, fractions=30, dose_cgy=200.0, days=days, site=_FIELD)
    if b.p.style["dx"] == "synthea":
        b.add("combined", rt_start)
    if not chemo:
        return rt_start, days[-1]
    if sequential:
        first = rt_start - _D(days=b.u(20, 100))
        n = max(1, min(4, ((rt_start - first).days - 10) // 21 + 1))
        regimen = ("carboplatin", "paclitaxel") if b.chance(0.5) else ("cisplatin", "vinorelbine")
        b.cycles(regimen, first, 21, n)
        return first, days[-1]
    r = b.u(0, 2)
    if r == 0:
        b.cycles(("carboplatin", "paclitaxel"), rt_start, 7, 6)
    elif r == 1:
        b.cycles(("cisplatin", "etoposide"), rt_start, 28, 2)
    else:
        b.cycles(("cisplatin", "vinorelbine"), rt_start, 21, 2)
    return rt_start, days[-1]


def _durvalumab(b: _Builder, crt_end: dt.date, stop: dt.date, pause: bool) -> None:
    first = crt_end + _D(days=b.u(1, 42))
    every = 14 if b.chance(0.6) else 28
    day, k = first, 0
    while day <= min(stop, first + _D(days=364)):
        b.drug("durvalumab", day)
        k += 1
        day += _D(days=every + (75 if pause and k == 4 else 0))
    if b.p.style["durvalumab_request"] == "yes":
        b.add("drug", first, ingredient="durvalumab", request=True, variant="rxnorm_in:cc")


def _lesion(b: _Builder, day: dt.date, site: str, lat: str | None, n: int, repeat: bool = True) -> None:
    variant = b.p.style["lesion"]
    if site in ("meninges", "peritoneum") or (variant == "snomed_site" and site == "lymph_node_distant"):
        variant = "icd_dot"
    lid = f"{b.p.patient_id}-L{n}"
    b.add("lesion", day, variant=variant, site=site, laterality=lat, lesion_id=lid)
    if repeat and b.chance(0.2):
        b.add("lesion", day + _D(days=b.u(3, 12)), variant=variant, site=site, laterality=lat, lesion_id=lid)


def _lat_for(b: _Builder, site: str, primary: str | None, contralateral: float) -> str | None:
    if site == "lung":
        if b.chance(0.03):
            return None
        if primary is None:
            return "right" if b.chance(0.5) else "left"
        contra = b.chance(contralateral)
        return {"right": "left", "left": "right"}[primary] if contra else primary
    if site == "adrenal":
        return "right" if b.chance(0.5) else "left"
    return None


def _recurrence(b: _Builder, cal: Calibration, r: dt.date, end: dt.date, primary: str | None) -> None:
    pattern = b.p.intent["pattern"]
    if pattern == "unclassified" or b.chance(0.7):
        b.add("progression", r, variant=b.p.style["prog_date"])
    n_les = 0
    if pattern == "oligo":
        site = pick(b.draws["site"].next(), cal.oligo_site)
        count = int(pick(b.draws["lesions"].next(), dict(zip("123", cal.oligo_lesions, strict=True))))
        for k in range(count):
            s = site if k == 0 or b.chance(0.7) else str(b.rng.choice(_OTHER_OLIGO))
            _lesion(
                b,
                r + _D(days=0 if k == 0 else b.u(0, 14)),
                s,
                _lat_for(b, s, primary, cal.contralateral_lung),
                k + 1,
            )
        n_les = count
        if b.chance(0.1):  # would make it poly if it counted
            b.add(
                "lesion",
                r + _D(days=5),
                variant="snomed_site",
                site="pleura",
                lesion_id=f"{b.p.patient_id}-E1",
                excluded=True,
            )
    elif pattern == "poly":
        if b.chance(0.7):
            count = b.u(4, 8)
            sites = [str(b.rng.choice(_POLY_SITES)) for _ in range(count)]
        else:
            count = b.u(1, 3)
            sites = [str(b.rng.choice(["pleura", "meninges", "peritoneum"]))]
            sites += [str(b.rng.choice(_POLY_SITES)) for _ in range(count - 1)]
        for k, s in enumerate(sites):
            _lesion(
                b,
                r + _D(days=0 if k == 0 else b.u(0, 20)),
                s,
                _lat_for(b, s, primary, cal.contralateral_lung),
                k + 1,
            )
        n_les = count
    elif b.chance(0.5):  # unclassified: a lesion only after the 30-day window
        _lesion(b, r + _D(days=b.u(35, 60)), "bone", None, 1, repeat=False)
        n_les = 1
    if b.chance(0.25):  # later progression and a new lesion: outside the window, never counted
        b.add("progression", r + _D(days=b.u(90, 300)), variant=b.p.style["prog_date"])
        _lesion(b, r + _D(days=b.u(60, 300)), "liver", None, n_les + 1, repeat=False)
    _salvage(b, r, end, b.p.intent["salvage"])


def _salvage_rt(b: _Builder, start: dt.date, conventional: bool) -> None:
    if conventional:
        days = weekdays_from(start, 10)
        b.add("rt", days[0], end=days[-1], variant=b.p.style["rt"], fractions=10, dose_cgy=300.0, days=days)
    else:
        days = weekdays_from(start, 5, step=2)
        variant = "sbrt_cpt" if b.chance(0.5) else "sbrt_summary"
        b.add(
            "rt",
            days[0],
            end=days[-1],
            variant=variant,
            fractions=5,
            dose_cgy=1000.0,
            days=days,
            stereotactic=True,
        )


def _salvage(b: _Builder, r: dt.date, end: dt.date, category: str) -> None:
    s = r + _D(days=b.u(7, 45))
    if category == "rt":
        _salvage_rt(b, s, conventional=b.chance(0.3))
    elif category == "chemo":
        b.cycles(("carboplatin", "pemetrexed") if b.chance(0.6) else ("docetaxel",), s, 21, 4)
        if b.chance(0.15):  # planned RT that was not done
            b.add(
                "rt",
                s + _D(days=3),
                end=s + _D(days=3),
                variant="summary",
                fractions=1,
                dose_cgy=800.0,
                days=(s + _D(days=3),),
                excluded=True,
            )
    elif category == "crt":
        _salvage_rt(b, s, conventional=True)
        b.cycles(("carboplatin", "paclitaxel"), s, 7, 3)
    elif category == "immunotherapy":
        b.cycles(("pembrolizumab",) if b.chance(0.6) else ("nivolumab",), s, 21, 6)
    elif category == "targeted":
        b.add("drug", s, ingredient="osimertinib", request=True, variant="rxnorm_in:cc")
        b.add("drug", s + _D(days=30), ingredient="osimertinib", request=True, variant="rxnorm_in:cc")
    elif category == "surgery":
        b.add("surgery", s, variant=str(b.rng.choice(["snomed", "icd10pcs"])))
    elif category == "other":
        b.cycles(("pembrolizumab",), s, 21, 3)  # both start before the earliest possible end (R + 60)
        b.add("surgery", s + _D(days=7), variant="snomed")
    elif b.chance(0.4):  # none in the window; treated only later
        b.cycles(("docetaxel",), r + _D(days=b.u(100, 140)), 21, 2)
    del end


def _follow_up(b: _Builder, after: dt.date, end: dt.date, censored: bool) -> None:
    day = after + _D(days=b.u(30, 120))
    while day < end:
        b.add("nsclc", day, variant="followup")
        day += _D(days=b.u(60, 150))
    if censored:
        b.add("nsclc", end, variant="followup")


def _small_cell(b: _Builder, anchor: dt.date, end: dt.date) -> None:
    code = "icd_dot:1" if b.chance(0.5) else "icd_nodot:3"
    b.add("nsclc", anchor - _D(days=30), variant=code, laterality="right")
    b.add("small_cell", anchor - _D(days=25))
    b.cycles(("cisplatin", "etoposide"), anchor, 21, 4)
    del end


def build_history(
    rng: np.random.Generator,
    p: TruthPatient,
    cal: Calibration,
    draws: dict[str, Strata],
    anchor: dt.date,
    x_days: float,
    last_contact: dt.date,
    lost_days: int | None,
) -> None:
    """Fill ``p.facts`` and ``p.death_date`` from the design in ``p.design`` / ``p.intent``."""
    b = _Builder(rng, p, draws)
    rt_start = _monday(anchor)
    design = p.design
    sequential = p.intent.get("crt") == "sequential"
    stage = str(rng.choice(["IIIA", "IIIB", "IIIC"], p=[0.45, 0.40, 0.15]))
    if design == "not_stage_iii":
        stage = "II" if b.chance(0.4) else "IV"
    elif p.style["stage"] == "synthea":
        stage = "III"
    if design == "small_cell":
        _small_cell(b, rt_start, last_contact)
        crt_start, crt_end = rt_start, rt_start + _D(days=90)
    elif design == "not_stage_iii":
        diag = rt_start - _D(days=b.u(14, 60))
        _diagnosis(b, diag, None, stage)
        _stage(b, diag, stage)
        if stage == "IV":
            b.cycles(("carboplatin", "pemetrexed"), rt_start, 21, 4)
        else:
            b.add("surgery", rt_start, variant="snomed")
        crt_start, crt_end = rt_start, rt_start + _D(days=63)
    else:
        crt_start, crt_end = _crt(b, rt_start, sequential, chemo=design != "no_crt")
        # the diagnosis precedes the first platinum cycle (sequential) or RT
        diag = crt_start - _D(days=b.u(10, 40) if sequential else b.u(14, 60))
        _diagnosis(b, diag, rt_start, stage)
        _stage(b, diag, stage)
    crt_len = (crt_end - crt_start).days
    death = crt_start + _D(days=int(crt_len + cal.os_offset_days + x_days))
    if lost_days is not None:
        last_contact = min(last_contact, crt_end + _D(days=lost_days))
    censored = death > last_contact
    end = last_contact if censored else death
    p.death_date = None if censored else death
    p.end = end
    if design == "cohort":
        pattern = p.intent["pattern"]
        r: dt.date | None = None
        if pattern != "none":
            draw = int(rng.lognormal(np.log(cal.recurrence_median_days), 0.7))
            r = crt_end + _D(days=max(45, draw))
            r = max(min(r, end - _D(days=60)), crt_end + _D(days=45))
        pause = pattern == "none" and b.chance(0.05)
        _durvalumab(b, crt_end, (r - _D(days=1)) if r else end, pause)
        if r is not None:
            primary = next(
                (
                    f.laterality
                    for f in sorted(b.facts, key=lambda f: f.start)
                    if f.kind == "nsclc" and f.laterality
                ),
                None,
            )
            _recurrence(b, cal, r, end, primary)
    elif design == "no_durvalumab" and b.chance(0.3):
        b.add(
            "drug",
            crt_end + _D(days=20),
            ingredient="durvalumab",
            request=True,
            variant="rxnorm_in:cc",
            excluded=True,
        )
    if design != "small_cell":
        _follow_up(b, crt_end, end, censored)
    kept: list[Fact] = []
    for f in b.facts:
        if f.start > end:
            continue
        if f.days and f.days[-1] > end:
            days = tuple(d for d in f.days if d <= end)
            f = f.evolve(days=days, end=days[-1], fractions=len(days))
        kept.append(f)
    kept.sort(key=lambda f: (f.start, f.kind))
    p.facts = [f.evolve(ref=f"{f.kind.replace('_', '-')}-{i + 1}") for i, f in enumerate(kept)]
