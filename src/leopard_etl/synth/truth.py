"""The latent synthetic patients: one ground truth that every rendering (FHIR, OMOP) is drawn from.

A :class:`TruthPatient` is a list of dated :class:`Fact` s in clinical terms (a diagnosis,
a radiotherapy course, a drug administration, a lesion …) plus the rendering *style* its
centre uses (ICD vs SNOMED, daily fractions vs course summary …). Renderers turn facts
into records one-to-one (a daily-fraction course into one record per fraction);
``expected.py`` applies the spec rules to the same facts. Everything is drawn from one
``numpy.random.Generator(PCG64(seed))`` in a fixed order, so a seed fixes the output.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import numpy as np

from .calibration import MONTH_DAYS, Calibration, oligo_rest_median

__all__ = ["RUN_DAY", "Fact", "Strata", "TruthPatient", "pick", "simulate", "weekdays_from"]

#: The earliest day a run of the tool can happen (the spec v2 date). Every synthetic date is
#: earlier, except the deliberate "date in the future" records (decades later, spec §3.12) and
#: the far-future end dates sites write for open stays.
RUN_DAY = dt.date(2026, 11, 30)


@dataclass(frozen=True)
class Fact:
    """One clinical fact; ``excluded`` facts exist only in FHIR (entered-in-error, not-done, cancelled).

    kind: nsclc | small_cell | stage | rt | combined | drug | progression | lesion | surgery |
    chemo_proc (a chemotherapy administration without a drug) | activity (a record in no code
    group: a visit, an ECOG score, a lab value …; ``variant`` names which, see idioms.py).
    ``variant`` picks the code idiom the renderers use (see vocabulary.py); ``coding`` a spec-v2
    coding idiom on top of it (idiom_codes.py); ``status`` the FHIR status of an excluded
    activity record; ``encounter_end`` marks a record dated only through its Encounter
    (period ``start`` … ``encounter_end``).
    """

    kind: str
    start: dt.date
    end: dt.date | None = None
    precision: str = "day"
    variant: str = ""
    laterality: str | None = None
    site: str | None = None
    lesion_id: str | None = None
    ingredient: str | None = None
    request: bool = False
    stage: str | None = None
    fractions: int | None = None
    dose_cgy: float | None = None
    days: tuple[dt.date, ...] = ()
    stereotactic: bool = False
    excluded: bool = False
    ref: str = ""
    coding: str = ""
    status: str = ""
    encounter_end: dt.date | None = None

    def evolve(self, **changes: object) -> Fact:
        """A copy with ``changes`` (``dataclasses.replace`` without its per-call field checks: the
        generator makes one per record)."""
        new = object.__new__(Fact)
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    @property
    def number(self) -> int:
        """The number in the fact's ref: a stable per-record choice for the renderers' variations."""
        tail = self.ref.rsplit("-", 1)[-1]
        return int(tail) if tail.isdigit() else 0


@dataclass
class TruthPatient:
    """A latent patient: facts, death, rendering style and the design intent (for diagnostics).

    ``death_known`` False: the death is recorded without its date (FHIR deceasedBoolean, an OMOP
    death row with NULL death_date); ``death_date`` keeps the latent date. ``end`` is the last
    contact (or the death) the history was laid out to; ``idioms`` the spec-v2 idioms it carries.
    """

    patient_id: str
    centre: int
    sex: str
    birth_date: dt.date
    death_date: dt.date | None
    design: str
    facts: list[Fact] = field(default_factory=list)
    style: dict[str, str] = field(default_factory=dict)
    intent: dict[str, str] = field(default_factory=dict)
    death_known: bool = True
    end: dt.date | None = None
    idioms: list[str] = field(default_factory=list)


def weekdays_from(start: dt.date, n: int, step: int = 1) -> tuple[dt.date, ...]:
    """``n`` treatment days Mon–Fri from ``start`` (every ``step``-th weekday)."""
    days: list[dt.date] = []
    d = start
    k = 0
    while len(days) < n:
        if d.weekday() < 5:
            if k % step == 0:
                days.append(d)
            k += 1
        d += dt.timedelta(days=1)
    return tuple(days)


#: Rendering profiles by centre (centre 1 uses profile 0 …); per patient some keys vary.
_PROFILES: tuple[dict[str, str], ...] = (
    {
        "dx": "snomed",
        "stage": "ajcc",
        "rt": "summary",
        "drug_code": "rxnorm_in",
        "drug_form": "cc",
        "lesion": "snomed_site",
        "ref": "relative",
        "omop_lesion": "cond",
        "omop_prog": "episode",
        "omop_stage": "cm",
        "prog_date": "effective",
        "file": "typed",
        "request_only": "",
    },
    {
        "dx": "icd_dot",
        "stage": "text",
        "rt": "daily",
        "drug_code": "rxnorm_scd",
        "drug_form": "reference",
        "lesion": "icd_dot",
        "ref": "absolute",
        "omop_lesion": "cm",
        "omop_prog": "measurement",
        "omop_stage": "loinc",
        "prog_date": "issued",
        "file": "typed",
        "request_only": "carboplatin",
    },
    {
        "dx": "dual",
        "stage": "snomed",
        "rt": "summary",
        "drug_code": "atc",
        "drug_form": "contained",
        "lesion": "icd_nodot",
        "ref": "relative",
        "omop_lesion": "cond",
        "omop_prog": "episode",
        "omop_stage": "loinc",
        "prog_date": "effective",
        "file": "mixed",
        "request_only": "",
    },
    {
        "dx": "synthea",
        "stage": "synthea",
        "rt": "daily",
        "drug_code": "dual",
        "drug_form": "cc",
        "lesion": "snomed_pre",
        "ref": "relative",
        "omop_lesion": "cm",
        "omop_prog": "measurement",
        "omop_stage": "cm",
        "prog_date": "effective",
        "file": "typed",
        "request_only": "pemetrexed",
    },
    {
        "dx": "icd_nodot",
        "stage": "ajcc_roman",
        "rt": "summary",
        "drug_code": "rxnorm_scd",
        "drug_form": "reference",
        "lesion": "snomed_site",
        "ref": "absolute",
        "omop_lesion": "cm",
        "omop_prog": "episode",
        "omop_stage": "cm",
        "prog_date": "issued",
        "file": "mixed",
        "request_only": "",
    },
)


def _style(rng: np.random.Generator, centre: int) -> dict[str, str]:
    style = dict(_PROFILES[(centre - 1) % len(_PROFILES)])
    # within-centre variation, so every idiom shows up at every centre size
    if rng.random() < 0.3:
        style["drug_form"] = str(rng.choice(["cc", "contained", "reference"]))
    if rng.random() < 0.25:
        style["lesion"] = str(rng.choice(["icd_dot", "icd_nodot", "snomed_site", "snomed_pre"]))
    if rng.random() < 0.2:
        style["rt"] = "daily" if style["rt"] == "summary" else "summary"
    if style["stage"] == "ajcc" and rng.random() < 0.2:
        style["stage"] = "snomed"
    style["durvalumab_request"] = "yes" if rng.random() < 0.3 else "no"
    return style


class Strata:
    """Stratified uniforms: each block of ``block`` draws has one value in each 1/block stratum.

    Design decisions (pattern, site, salvage, survival quantile) draw from their own
    stream, so the marginals of a few thousand patients sit close to the calibration
    instead of wandering by binomial noise from seed to seed.
    """

    def __init__(self, seed: np.random.SeedSequence, block: int = 40) -> None:
        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._block = block
        self._buf: list[float] = []

    def next(self) -> float:
        if not self._buf:
            strata = self._rng.permutation(self._block)
            self._buf = list((strata + self._rng.random(self._block)) / self._block)
        return self._buf.pop()


def pick(u: float, probs: dict[str, float]) -> str:
    """Category whose cumulative probability interval holds ``u``."""
    total = sum(probs.values())
    acc = 0.0
    for key, p in probs.items():
        acc += p / total
        if u < acc:
            return key
    return list(probs)[-1]


def _weibull_days(u: float, median_months: float, offset_days: float, shape: float) -> float:
    median_x = max(median_months * MONTH_DAYS - offset_days, 30.0)
    scale = median_x / np.log(2) ** (1 / shape)
    return float(scale * (-np.log1p(-u)) ** (1 / shape))


_STREAMS = ("population", "crt", "recurrence", "pattern", "salvage", "site", "lesions", "survival")


def simulate(
    patients: int, seed: int, centres: int = 8, calibration: Calibration | None = None
) -> list[TruthPatient]:
    """Draw ``patients`` latent patients over ``centres`` centres; pure and deterministic."""
    from .history import build_history  # local: history imports this module's types
    from .idioms import IdiomAssigner

    cal = calibration or Calibration()
    if patients < 0 or centres < 1:
        raise ValueError("patients must be >= 0 and centres >= 1")
    # the idioms draw from a stream of their own (the last child), so the underlying cohort of a
    # seed is the same with or without them
    seeds = np.random.SeedSequence(seed).spawn(len(_STREAMS) + 2)
    rng = np.random.Generator(np.random.PCG64(seeds[0]))
    draws = {name: Strata(s) for name, s in zip(_STREAMS, seeds[1 : len(_STREAMS) + 1], strict=True)}
    survival: dict[str, Strata] = {}
    rest_median = oligo_rest_median(cal)
    idioms = IdiomAssigner(np.random.Generator(np.random.PCG64(seeds[-1])), cal)
    out: list[TruthPatient] = []
    counters = [0] * centres
    for i in range(patients):
        centre = i % centres + 1
        counters[centre - 1] += 1
        pid = str(centre * 1_000_000 + counters[centre - 1])
        design = pick(draws["population"].next(), cal.population)
        intent: dict[str, str] = {}
        if design == "cohort":
            intent["crt"] = "sequential" if draws["crt"].next() < cal.sequential_crt else "concurrent"
            if draws["recurrence"].next() < cal.recurrence:
                pattern = pick(draws["pattern"].next(), cal.pattern)
                table = {"oligo": cal.oligo_salvage, "poly": cal.poly_salvage}.get(
                    pattern, cal.unclassified_salvage
                )
                stream = draws.setdefault(f"salvage_{pattern}", Strata(seeds[5].spawn(1)[0]))
                intent.update(pattern=pattern, salvage=pick(stream.next(), table))
            else:
                intent["pattern"] = "none"
        sex = "male" if rng.random() < 0.65 else "female"
        style = _style(rng, centre)
        enrol_days = (cal.enrol_end - cal.enrol_start).days
        anchor = cal.enrol_start + dt.timedelta(days=int(rng.integers(0, enrol_days)))
        pattern = intent.get("pattern", "excluded")
        group = pattern
        if pattern == "oligo":
            salvage = intent["salvage"]
            group = f"oligo_{salvage}" if salvage in ("rt", "crt") else "oligo_rest"
        median = rest_median if group == "oligo_rest" else cal.median_os.get(group, cal.median_os["excluded"])
        stream = survival.setdefault(group, Strata(seeds[8].spawn(1)[0]))
        x_days = _weibull_days(stream.next(), median, 41 + cal.os_offset_days, cal.weibull_shape)
        last_contact = cal.study_end - dt.timedelta(days=int(rng.integers(0, 90)))
        lost = rng.random() < cal.lost_to_follow_up
        lost_days = int(rng.integers(150, 900))
        age_days = int(rng.integers(50 * 365, 80 * 365))
        patient = TruthPatient(
            pid, centre, sex, anchor - dt.timedelta(days=age_days), None, design, style=style, intent=intent
        )
        build_history(rng, patient, cal, draws, anchor, x_days, last_contact, lost_days if lost else None)
        idioms.assign(i, patient)
        out.append(patient)
    return out
