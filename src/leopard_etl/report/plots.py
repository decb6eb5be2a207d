"""Kaplan–Meier figures as base64 PNG, with the numbers at risk drawn under the curves.

PNG embedded as a ``data:`` URI keeps report.html a single offline file: no external reference can
appear (base64 has no ``:``), and the PNG's "Software" text chunk — which would carry
matplotlib's web address — is dropped. The Agg backend is forced so that no display is needed.
Numbers at risk are counts and obey the small-cell rule like every other cell of the report.

Disclosure (report.html is shareable): with a small-cell threshold ``k``, a group of fewer than
``k`` patients is not drawn at all — no curve, no censoring ticks, no legend entry, no numbers at
risk, and it does not stretch the time axis; its at-risk row says why instead
(:func:`not_drawn_reason`). Without a threshold (exact, site-only figures) every group is drawn.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np

from leopard_etl.analysis.disclosure import count
from leopard_etl.analysis.survival import SurvivalSample, at_risk, km_curve

__all__ = ["drawn_groups", "km_figure", "not_drawn_reason", "risk_times"]

#: Colour-blind-safe (Okabe–Ito) colours, assigned in group order.
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")


def risk_times(max_time: float) -> list[float]:
    """Tick times for the at-risk row: every 3, 6, 12 or 24 months up to the last follow-up."""
    for step in (3.0, 6.0, 12.0, 24.0):
        if max_time / step <= 10:
            break
    return [float(t) for t in np.arange(0.0, max_time + 1e-9, step)] or [0.0]


def drawn_groups(samples: Sequence[SurvivalSample],
                 small_cell: int | None) -> tuple[list[SurvivalSample], list[SurvivalSample]]:
    """(drawn, not drawn): with a threshold ``k`` a group of fewer than ``k`` patients is not drawn."""
    if small_cell is None:
        return list(samples), []
    return ([s for s in samples if s.n >= small_cell], [s for s in samples if s.n < small_cell])


def not_drawn_reason(sample: SurvivalSample, small_cell: int | None) -> str:
    """Why a group's curve is absent: ``not drawn: fewer than 5 patients`` (or no patients)."""
    return "not drawn: no patients" if sample.n == 0 else f"not drawn: fewer than {small_cell} patients"


def km_figure(samples: Sequence[SurvivalSample], *, title: str, xlabel: str = "Months",
              small_cell: int | None = None) -> str:
    """KM curves (step, with censoring ticks) of each group and an at-risk table; base64 PNG.

    ``title`` goes into the PNG metadata; the page shows it as the section heading. With
    ``small_cell`` a group below it is not drawn; its at-risk row says so (:func:`drawn_groups`).
    """
    drawn, _ = drawn_groups(samples, small_cell)
    shown = {id(s) for s in drawn}  # identity: samples hold arrays, == would compare them
    longest = max((float(s.durations.max()) for s in drawn if s.n), default=0.0)
    times = risk_times(longest if longest > 0 else 12.0)
    fig = plt.figure(figsize=(9.6, 4.6 + 0.28 * len(samples)), dpi=100)
    grid = fig.add_gridspec(2, 1, height_ratios=[4.2, 0.3 + 0.28 * len(samples)], hspace=0.35)
    ax = fig.add_subplot(grid[0])
    table = fig.add_subplot(grid[1], sharex=ax)
    for i, sample in enumerate(samples):
        colour = PALETTE[i % len(PALETTE)]  # by position among all groups: a group keeps its colour
        if id(sample) not in shown:
            table.text(0.0, len(samples) - 1 - i, not_drawn_reason(sample, small_cell), ha="left",
                       va="center", fontsize=8.5, color="#5a6470", style="italic")
            continue
        curve = km_curve(sample)
        label = f"{sample.group} (n={count(sample.n, small_cell)})"
        ax.step(curve.times, curve.survival, where="post", color=colour, lw=1.8, label=label)
        if len(samples) <= 3:  # more bands than that hide the curves
            ax.fill_between(curve.times, curve.lo, curve.hi, step="post", color=colour, alpha=0.12, lw=0)
        censored = sample.durations[~sample.events]
        if censored.size:
            idx = np.searchsorted(curve.times, censored, side="right") - 1
            s_at = curve.survival[np.clip(idx, 0, None)]
            ax.plot(censored, s_at, "|", color=colour, ms=7, mew=1.2)
        for t, n in zip(times, at_risk(sample, times), strict=True):
            table.text(t, len(samples) - 1 - i, str(count(n, small_cell)), ha="center", va="center",
                       fontsize=8.5, color=colour)
    ax.set_ylim(0, 1.02)
    ax.set_xlim(0, times[-1] * 1.02 if times[-1] > 0 else 1.0)
    ax.set_ylabel("Survival probability")
    ax.set_xticks(times)
    ax.grid(alpha=0.25)
    # outside the axes: curves fill the whole plot area, a legend inside hides them
    if drawn:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    style_at_risk(ax, table, xlabel, [s.group for s in samples], "Number at risk")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight", metadata={"Software": None, "Title": title})
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def style_at_risk(ax: Any, table: Any, xlabel: str, groups: list[str], title: str) -> None:
    """The curve axes' x label and the numbers-at-risk rows beneath them (one row per group, top first);
    shared by the single-site and the pooled report."""
    ax.tick_params(labelbottom=True)
    ax.set_xlabel(xlabel)
    table.set_ylim(-0.6, len(groups) - 0.4)
    table.set_yticks(range(len(groups)))
    table.set_yticklabels(list(reversed(groups)), fontsize=8.5)
    table.tick_params(axis="x", which="both", bottom=False, labelbottom=False)
    table.tick_params(axis="y", length=0, pad=18)
    for spine in table.spines.values():
        spine.set_visible(False)
    table.set_title(title, fontsize=9, loc="left")
