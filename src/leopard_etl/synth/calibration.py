"""Parameters that calibrate the synthetic cohort to the LEOPARD headline figures.

Every proportion here is a *design* probability of the latent model; the ground truth is
then computed from the rendered facts by the rules (``expected.py``), so these numbers are
only as good as the calibration test that checks the resulting marginals (spec header:
recurrence 56 %, oligo 72 % of recurrences, oligo sites lung 34 % / brain 26 %, oligo
salvage RT 45 % / chemo 35 % / CRT 13 %, poly chemo 77 %, median OS oligo 41 / poly 19).

Survival is drawn as ``OS = CRT length + offset + X`` with ``X`` Weibull, so that a
recurrence, its salvage and some life after it always fit before death. The oligo
subgroups RT alone (25 months) and CRT (30 months) are set directly; the remaining oligo
salvage groups get the median that makes the oligo mixture median 41 months
(:func:`oligo_rest_median`); it comes out high (~90 months), which is the price of
holding all three published medians at once.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field

__all__ = ["Calibration", "oligo_rest_median", "weibull_median_cdf"]

MONTH_DAYS = 30.4375


@dataclass(frozen=True)
class Calibration:
    """Design probabilities and survival medians of the latent model."""

    #: screened-population mix (small_cell patients are not screened at all)
    population: dict[str, float] = field(
        default_factory=lambda: {
            "cohort": 0.80,
            "not_stage_iii": 0.07,
            "no_crt": 0.045,
            "no_durvalumab": 0.055,
            "small_cell": 0.03,
        }
    )
    sequential_crt: float = 0.12
    recurrence: float = 0.56
    #: pattern among recurrences (unclassified: progression without lesion records)
    pattern: dict[str, float] = field(
        default_factory=lambda: {"oligo": 0.72, "poly": 0.25, "unclassified": 0.03}
    )
    #: main site of an oligo recurrence (share of oligo patients)
    oligo_site: dict[str, float] = field(
        default_factory=lambda: {
            "lung": 0.34,
            "brain": 0.26,
            "bone": 0.13,
            "adrenal": 0.09,
            "lymph_node_thoracic": 0.10,
            "liver": 0.08,
        }
    )
    oligo_lesions: tuple[float, float, float] = (0.60, 0.25, 0.15)
    contralateral_lung: float = 0.70
    oligo_salvage: dict[str, float] = field(
        default_factory=lambda: {
            "rt": 0.45,
            "chemo": 0.35,
            "crt": 0.13,
            "other": 0.02,
            "immunotherapy": 0.02,
            "surgery": 0.01,
            "none": 0.02,
        }
    )
    poly_salvage: dict[str, float] = field(
        default_factory=lambda: {
            "chemo": 0.77,
            "immunotherapy": 0.08,
            "targeted": 0.03,
            "rt": 0.03,
            "other": 0.03,
            "none": 0.06,
        }
    )
    unclassified_salvage: dict[str, float] = field(default_factory=lambda: {"chemo": 0.6, "none": 0.4})
    #: median OS in months from crt_start
    median_os: dict[str, float] = field(
        default_factory=lambda: {
            "oligo": 41.0,
            "oligo_rt": 25.0,
            "oligo_crt": 30.0,
            "poly": 19.0,
            "unclassified": 25.0,
            "none": 140.0,
            "excluded": 40.0,
        }
    )
    weibull_shape: float = 1.3
    #: days added to the CRT length before the Weibull part of OS starts
    os_offset_days: int = 120
    enrol_start: dt.date = dt.date(2018, 1, 8)
    enrol_end: dt.date = dt.date(2021, 10, 31)
    study_end: dt.date = dt.date(2024, 6, 28)
    lost_to_follow_up: float = 0.05
    #: median recurrence time after crt_end (days), log-normal
    recurrence_median_days: int = 240


def weibull_median_cdf(t_days: float, median_days: float, shape: float) -> float:
    """CDF at ``t`` of a Weibull with the given median."""
    if t_days <= 0:
        return 0.0
    scale = median_days / math.log(2) ** (1 / shape)
    return 1 - math.exp(-((t_days / scale) ** shape))


def oligo_rest_median(cal: Calibration, typical_crt_days: float = 41.0) -> float:
    """Median OS (months) the oligo salvage groups other than RT and CRT need for the oligo median.

    Solves ``sum_g w_g F_g(41 months) = 0.5`` by bisection on the remaining group's median.
    """
    off = typical_crt_days + cal.os_offset_days
    t = cal.median_os["oligo"] * MONTH_DAYS - off
    w_rt, w_crt = cal.oligo_salvage["rt"], cal.oligo_salvage["crt"]
    w_rest = 1 - w_rt - w_crt

    def x_median(months: float) -> float:
        return months * MONTH_DAYS - off

    known = w_rt * weibull_median_cdf(
        t, x_median(cal.median_os["oligo_rt"]), cal.weibull_shape
    ) + w_crt * weibull_median_cdf(t, x_median(cal.median_os["oligo_crt"]), cal.weibull_shape)
    need = (0.5 - known) / w_rest
    if not 0 < need < 1:
        return cal.median_os["oligo"]
    lo, hi = cal.median_os["oligo"], 600.0
    for _ in range(60):
        mid = (lo + hi) / 2
        if weibull_median_cdf(t, x_median(mid), cal.weibull_shape) > need:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2
