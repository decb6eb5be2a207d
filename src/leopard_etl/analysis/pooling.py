"""Pool several sites' site-summary.json files into one results.json (issue 16; docs/pooling.md).

Everything here works on the summaries alone — no patient data. What is pooled and how:

* **counts** add up; a site's suppressed cell (``"<k"``) makes the pooled count a range
  ``[sum of exact, sum of exact + Σ(k-1)]``: written ``"<hi+1"`` with the range in ``pooling.bounds``;
* **Kaplan–Meier** from the summed event tables on the grid: ``S`` at the end of interval ``i`` is
  ``Π(1 - D/N)``, Greenwood variance, log(−log) 95% CI (lifelines' formulas). A site's merged
  interval is spread evenly over its grid intervals (its totals stay exact; only the position of its
  events inside the merged interval is assumed), its open last interval over ``2·exposure/at_risk``;
* **log-rank oligo vs poly stratified by site** on each site's own intervals (exact, hypergeometric
  variance as R ``survdiff``), summed over sites;
* **Cox HR** poly vs oligo: inverse-variance fixed effect and DerSimonian–Laird random effects of the
  sites' log-HR (with Cochran's Q, τ² and I²);
* **piecewise-exponential (Poisson) model** with a baseline per site × interval and a poly indicator,
  as a check on the Cox estimate (Newton–Raphson on the profile likelihood; statsmodels is not a
  dependency).
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from statistics import NormalDist
from typing import Any

import numpy as np

from leopard_etl.analysis.disclosure import percent
from leopard_etl.analysis.patients import (
    FIELD_CATEGORIES,
    PATTERNS,
    SALVAGE_CATEGORIES,
    SITE_CATEGORIES,
    ordered,
)
from leopard_etl.analysis.results import ATTRITION_STEPS
from leopard_etl.analysis.site_summary import FORMAT, FORMAT_VERSION, SCHEMA_VERSION, content_sha256
from leopard_etl.errors import ConfigError

__all__ = [
    "Count",
    "LogRankResult",
    "MetaResult",
    "PooledCurve",
    "check_summaries",
    "load_summary",
    "meta_analysis",
    "poisson_hr",
    "pool_summaries",
    "pooled_curve",
    "site_label",
    "stratified_logrank",
    "sum_counts",
]

Z95 = NormalDist().inv_cdf(0.975)
_FIX_SUMMARY = "pass the site-summary.json a `leopard-etl run` wrote, unedited"


# --------------------------------------------------------------------------- reading and refusing


def load_summary(path: Path) -> dict[str, Any]:
    """Read one site-summary.json; refuse anything that is not one (one-line :class:`ConfigError`)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read {path}: {exc.strerror or exc}", fix="check the path") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON ({exc})", fix=_FIX_SUMMARY) from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise ConfigError(f"{path} is not a LEOPARD site summary (no \"format\": \"{FORMAT}\")",
                          fix=_FIX_SUMMARY)
    if data.get("format_version") != FORMAT_VERSION:
        raise ConfigError(
            f"{path} has format_version {data.get('format_version')!r};"
            f" this leopard-etl reads {FORMAT_VERSION}",
            fix="write every site's summary with the same leopard-etl release",
        )
    required = ("spec_version", "schema_version", "site", "content_sha256", "grid", "small_cell", "attrition",
                "counts", "survival", "logrank_oligo_vs_poly", "cox")
    missing = [key for key in required if key not in data]
    if missing:
        raise ConfigError(f"{path} lacks {', '.join(missing)}", fix=_FIX_SUMMARY)
    if content_sha256(data) != data["content_sha256"]:
        raise ConfigError(f"{path}: content does not match its content_sha256 (edited after it was written?)",
                          fix="ask the site for the file as `leopard-etl run` wrote it")
    data["_path"] = str(path)
    return data


def site_label(summary: Mapping[str, Any]) -> str:
    site = summary.get("site") or {}
    return str(site.get("name") or site.get("id") or "?")


def _where(summary: Mapping[str, Any]) -> str:
    return str(summary.get("_path") or site_label(summary))


def check_summaries(summaries: Sequence[Mapping[str, Any]]) -> None:
    """Refuse summaries that cannot be pooled: different spec or schema versions, different grids,
    the same site (or the same file) twice. One line, :class:`ConfigError` (exit 2)."""
    if not summaries:
        raise ConfigError("no site summaries to pool", fix="pass one site-summary.json per site")
    first = summaries[0]
    for key, what in (("spec_version", "spec version"), ("schema_version", "schema version")):
        values = {str(s.get(key)) for s in summaries}
        if len(values) > 1:
            shown = ", ".join(f"{_where(s)}: {s.get(key)}" for s in summaries)
            raise ConfigError(f"the summaries follow different {what}s ({shown})",
                              fix="re-run `leopard-etl run` at every site with the same leopard-etl release")
    if first.get("schema_version") != SCHEMA_VERSION:
        raise ConfigError(f"the summaries have schema_version {first.get('schema_version')!r};"
                          f" this leopard-etl reads {SCHEMA_VERSION}",
                          fix="pool with the leopard-etl release that wrote them")
    grids = {(s["grid"].get("unit"), float(s["grid"].get("step"))) for s in summaries}
    if len(grids) > 1:
        shown = ", ".join(f"{_where(s)}: {s['grid'].get('step')} {s['grid'].get('unit')}" for s in summaries)
        raise ConfigError(f"the summaries use different time grids ({shown})",
                          fix="ask every site for a summary on the same grid (grid_months)")
    seen: dict[str, str] = {}
    hashes: dict[str, str] = {}
    for s in summaries:
        site_id = str((s.get("site") or {}).get("id"))
        if site_id in seen:
            raise ConfigError(f"site {site_label(s)!r} appears twice ({seen[site_id]}, {_where(s)})",
                              fix="pass one summary per site (the latest)")
        seen[site_id] = _where(s)
        digest = str(s.get("content_sha256"))
        if digest in hashes:
            raise ConfigError(f"{hashes[digest]} and {_where(s)} hold the same summary (same content)",
                              fix="pass each site's summary once")
        hashes[digest] = _where(s)


# --------------------------------------------------------------------------- counts


@dataclass(frozen=True)
class Count:
    """A pooled count: exact when ``lo == hi``; else some sites' cells were suppressed."""

    lo: int
    hi: int

    @property
    def exact(self) -> bool:
        return self.lo == self.hi

    def shown(self) -> int | str:
        return self.lo if self.exact else f"<{self.hi + 1}"


def _site_count(value: Any, k: int) -> Count:
    if isinstance(value, bool):
        raise ConfigError(f"a count is {value!r}", fix=_FIX_SUMMARY)
    if isinstance(value, int):
        return Count(value, value)
    if isinstance(value, str) and value.startswith("<") and value[1:].isdigit():
        return Count(0, int(value[1:]) - 1)
    if value is None:  # category unknown to this site: it had none
        return Count(0, 0)
    raise ConfigError(f"unreadable count {value!r}", fix=_FIX_SUMMARY)


def _get(data: Mapping[str, Any], path: Sequence[str]) -> Any:
    cur: Any = data
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def sum_counts(summaries: Sequence[Mapping[str, Any]], path: Sequence[str]) -> Count:
    lo = hi = 0
    for s in summaries:
        c = _site_count(_get(s, path), int(s["small_cell"]["threshold"]))
        lo, hi = lo + c.lo, hi + c.hi
    return Count(lo, hi)


class _Counts:
    """Pooled counts with their ranges, recorded under the results.json path they fill."""

    def __init__(self, summaries: Sequence[Mapping[str, Any]]) -> None:
        self.summaries = summaries
        self.bounds: dict[str, list[float]] = {}

    def count(self, where: str, path: Sequence[str]) -> Count:
        c = sum_counts(self.summaries, path)
        if not c.exact:
            self.bounds[where] = [c.lo, c.hi]
        return c

    def pct(self, where: str, num: Count, den: Count) -> float | None:
        if num.exact and den.exact:
            return percent(num.lo, den.lo)
        if den.exact and den.lo > 0:
            self.bounds[where] = [percent(num.lo, den.lo) or 0.0, min(100.0, percent(num.hi, den.lo) or 0.0)]
        return None


# --------------------------------------------------------------------------- survival tables


def _step(summaries: Sequence[Mapping[str, Any]]) -> float:
    return float(summaries[0]["grid"]["step"])


def _table(summary: Mapping[str, Any], endpoint: str, group: str) -> dict[str, Any] | None:
    table = _get(summary, ("survival", endpoint, group))
    return dict(table) if isinstance(table, Mapping) else None


def _window(mean: float, lo: float, hi: float) -> tuple[float, float]:
    """The widest window centred on ``mean`` inside ``[lo, hi)``."""
    h = max(min(mean - lo, hi - mean), 0.0)
    return mean - h, mean + h


def _spans(table: Mapping[str, Any]) -> list[tuple[int, int, Mapping[str, Any]]]:
    """(start, stop) in grid intervals of each block of a shared table."""
    blocks = list(table["blocks"])
    if not blocks:
        return []
    stops = [int(b["start"]) for b in blocks[1:]] + [int(table["stop"])]
    return [(int(b["start"]), stop, b) for b, stop in zip(blocks, stops, strict=True)]


def _spread(out: np.ndarray, total: float, mean: float | None, lo: int, hi: int, step: float) -> None:
    """Add ``total`` to grid intervals ``[lo, hi)``: evenly over the widest window centred on ``mean``
    (evenly over the whole span when no mean is known)."""
    if total == 0:
        return
    if mean is None:
        out[lo:hi] += total / (hi - lo)
        return
    w_lo, w_hi = _window(mean, lo * step, hi * step)
    if w_hi - w_lo <= 1e-9:
        i = min(max(math.floor(mean / step + 1e-9), lo), hi - 1)
        out[i] += total
        return
    edges = np.arange(lo, hi + 1) * step
    overlap = np.clip(np.minimum(edges[1:], w_hi) - np.maximum(edges[:-1], w_lo), 0.0, None)
    out[lo:hi] += total * overlap / overlap.sum()


def _expand(table: Mapping[str, Any], step: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One site's group table on the grid: (at risk at the start, events, censored) per grid interval.

    The events of an event sub-interval, and the censored of a block, are spread evenly over the
    widest window centred on their mean time that fits the (sub-)interval. Numbers at risk at block
    starts and all totals are exact; only the position of events and censorings inside a merged
    interval is modelled. A group whose shared follow-up ends has nobody at risk from ``end`` on.
    """
    spans = _spans(table)
    length = max((stop for _, stop, _ in spans), default=0)
    at_risk, events, censored = np.zeros(length), np.zeros(length), np.zeros(length)
    for a, stop, block in spans:
        subs = block["events"]
        for i, (u, d, mean) in enumerate(subs):
            v = int(subs[i + 1][0]) if i + 1 < len(subs) else stop
            _spread(events, float(d), None if mean is None else float(mean), int(u), v, step)
        cmean = block.get("censored_mean")
        _spread(censored, float(block["censored"]), None if cmean is None else float(cmean), a, stop, step)
        leaving = np.cumsum(events[a:stop] + censored[a:stop])
        at_risk[a:stop] = float(block["at_risk"]) - np.concatenate([[0.0], leaving[:-1]])
    return at_risk, events, censored


@dataclass
class PooledCurve:
    """Pooled Kaplan–Meier of one group on the grid: ``survival[i]`` is S at ``times[i]`` (end of
    interval ``i``); ``at_risk[i]`` the pooled number at risk at the start of interval ``i``."""

    group: str
    step: float
    at_risk: np.ndarray
    events: np.ndarray
    censored: np.ndarray
    survival: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n: int
    sites_used: list[str] = field(default_factory=list)
    sites_withheld: list[str] = field(default_factory=list)
    sites_ended: list[str] = field(default_factory=list)

    @property
    def times(self) -> np.ndarray:
        return (np.arange(self.survival.size) + 1) * self.step

    @property
    def n_events(self) -> float:
        return float(self.events.sum())

    def _crossing(self, curve: np.ndarray) -> float | None:
        """Where ``curve`` (values at the grid times) reaches 0.5, interpolated linearly inside the
        crossing interval (the life-table median of grouped data); ``None`` when it never does."""
        hit = np.flatnonzero(curve <= 0.5 + 1e-12)
        if hit.size == 0:
            return None
        i = int(hit[0])
        before = 1.0 if i == 0 else float(curve[i - 1])
        after = float(curve[i])
        if after >= 0.5 - 1e-12 or before <= after:
            return float(self.times[i])
        return float(i * self.step + self.step * (before - 0.5) / (before - after))

    def median(self) -> tuple[float | None, float | None, float | None]:
        """Median and 95% CI where S (and the lower, upper band) cross 0.5, interpolated inside the
        grid interval; a CI bound where S has reached 0 is ``None`` (R reports NA there)."""
        med = self._crossing(self.survival)
        bounds: list[float | None] = []
        for band in (self.lower, self.upper):
            t = self._crossing(band)
            if t is not None:
                i = min(math.ceil(t / self.step - 1e-9), self.survival.size) - 1
                if i >= 0 and self.survival[i] <= 0.0:
                    t = None
            bounds.append(t)
        return med, bounds[0], bounds[1]

    def at_risk_at(self, t: float) -> float:
        i = round(t / self.step)
        return float(self.at_risk[i]) if 0 <= i < self.at_risk.size else 0.0

    def survival_at(self, t: float) -> float:
        i = math.floor(t / self.step + 1e-9)
        if i <= 0:
            return 1.0
        return float(self.survival[min(i, self.survival.size) - 1]) if self.survival.size else 1.0


def _km(at_risk: np.ndarray, events: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    with np.errstate(divide="ignore", invalid="ignore"):
        hazard = np.where(at_risk > 0, events / np.where(at_risk > 0, at_risk, 1.0), 0.0)
        surv = np.cumprod(1.0 - np.clip(hazard, 0.0, 1.0))
        left = at_risk - events
        safe_left = np.where(left > 0, left, 1.0)
        term = np.where((at_risk > 0) & (left > 1e-12), events / (at_risk * safe_left), 0.0)
        var = np.cumsum(term)
        v = np.log(surv)
        spread = Z95 * np.sqrt(var) / v  # v < 0 where S < 1
        lower = np.exp(-np.exp(np.log(-v) - spread))
        upper = np.exp(-np.exp(np.log(-v) + spread))
    lower = np.where(surv >= 1.0, 1.0, np.where(surv <= 0.0, 0.0, lower))
    upper = np.where(surv >= 1.0, 1.0, np.where(surv <= 0.0, 0.0, upper))
    return surv, np.nan_to_num(lower, nan=1.0), np.nan_to_num(upper, nan=1.0)


def pooled_curve(summaries: Sequence[Mapping[str, Any]], endpoint: str, group: str | Sequence[str],
                 *, reverse: bool = False) -> PooledCurve:
    """Pooled KM of ``group`` in ``survival.<endpoint>`` of every summary; a list of groups pools
    their tables together (the whole cohort's OS is its four pattern groups). ``reverse`` swaps
    events and censored, for the reverse-KM median follow-up."""
    step = _step(summaries)
    names = [group] if isinstance(group, str) else list(group)
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    used, withheld, ended = [], [], []
    n = 0
    for s in summaries:
        tables = [t for t in (_table(s, endpoint, name) for name in names) if t is not None]
        if not tables:
            continue
        label = site_label(s)
        if any(t.get("withheld") for t in tables):
            withheld.append(label)
        shared = [t for t in tables if not t.get("withheld")]
        if not shared:
            continue
        used.append(label)
        if any(int(t.get("at_risk_stop") or 0) > 0 for t in shared):
            ended.append(label)
        for t in shared:
            n += int(t["n"])
            parts.append(_expand(t, step))
    length = max((p[0].size for p in parts), default=0)
    at_risk, events, censored = np.zeros(length), np.zeros(length), np.zeros(length)
    for r, d, c in parts:
        at_risk[: r.size] += r
        events[: d.size] += d
        censored[: c.size] += c
    if reverse:
        events, censored = censored, events
    surv, lower, upper = _km(at_risk, events)
    label = names[0] if len(names) == 1 else "+".join(names)
    return PooledCurve(label, step, at_risk, events, censored, surv, lower, upper, n, used, withheld, ended)


# --------------------------------------------------------------------------- tests and models


@dataclass(frozen=True)
class LogRankResult:
    chi2: float | None
    p: float | None
    observed_minus_expected: float
    variance: float
    by_site: dict[str, dict[str, float]]


def _chi2_p(chi2: float) -> float:
    return math.erfc(math.sqrt(chi2 / 2.0))


def stratified_logrank(summaries: Sequence[Mapping[str, Any]]) -> LogRankResult:
    """Log-rank poly vs oligo (OS) stratified by site: ``(Σ_sites(O − E))² / Σ_sites V`` (1 df).

    Each site computed its ``O − E`` and ``V`` on its exact grid table (the table before merging;
    :func:`~leopard_etl.analysis.site_summary.logrank_contribution`), so the pooled statistic equals
    the stratified log-rank of the patient-level data on the grid.
    """
    total_oe = total_v = 0.0
    by_site: dict[str, dict[str, float]] = {}
    for s in summaries:
        lr = s.get("logrank_oligo_vs_poly") or {}
        oe, v = lr.get("observed_minus_expected_poly"), lr.get("variance")
        if oe is None or v is None:
            continue
        by_site[site_label(s)] = {"observed_minus_expected": float(oe), "variance": float(v)}
        total_oe += float(oe)
        total_v += float(v)
    if total_v <= 0:
        return LogRankResult(None, None, total_oe, total_v, by_site)
    chi2 = total_oe * total_oe / total_v
    return LogRankResult(chi2, _chi2_p(chi2), total_oe, total_v, by_site)


@dataclass(frozen=True)
class MetaResult:
    log_hr: float | None
    se: float | None
    k: int
    q: float | None = None
    tau2: float | None = None
    i2: float | None = None

    def hr(self) -> dict[str, float | None]:
        if self.log_hr is None or self.se is None:
            return {"hr": None, "lo": None, "hi": None}
        return {"hr": round(math.exp(self.log_hr), 4), "lo": round(math.exp(self.log_hr - Z95 * self.se), 4),
                "hi": round(math.exp(self.log_hr + Z95 * self.se), 4)}


def meta_analysis(estimates: Sequence[tuple[float, float]]) -> tuple[MetaResult, MetaResult, list[float],
                                                                      list[float]]:
    """Inverse-variance fixed effect and DerSimonian–Laird random effects of (log-HR, SE) pairs.

    Returns (fixed, random, fixed weights %, random weights %). I² = max(0, (Q − df)/Q)·100.
    """
    if not estimates:
        empty = MetaResult(None, None, 0)
        return empty, empty, [], []
    theta = np.array([e for e, _ in estimates], dtype=float)
    var = np.array([se * se for _, se in estimates], dtype=float)
    w = 1.0 / var
    fixed = float((w * theta).sum() / w.sum())
    k = len(estimates)
    q = float((w * (theta - fixed) ** 2).sum())
    df = k - 1
    c = float(w.sum() - (w * w).sum() / w.sum())
    tau2 = max(0.0, (q - df) / c) if df > 0 and c > 0 else 0.0
    i2 = max(0.0, (q - df) / q) * 100.0 if q > 0 else 0.0
    w_star = 1.0 / (var + tau2)
    random = float((w_star * theta).sum() / w_star.sum())
    fe = MetaResult(fixed, float(math.sqrt(1.0 / w.sum())), k, q, 0.0, i2)
    re = MetaResult(random, float(math.sqrt(1.0 / w_star.sum())), k, q, tau2, i2)
    return fe, re, list(100.0 * w / w.sum()), list(100.0 * w_star / w_star.sum())


def _common_cells(ta: Mapping[str, Any], tb: Mapping[str, Any]) -> list[tuple[float, float, float, float]]:
    """(events a, events b, exposure a, exposure b) on the cells between the block boundaries both
    groups share — sums of whole blocks, hence exact; the cell after the last shared boundary counts
    when both tables follow every patient to the end."""
    sa, sb = _spans(ta), _spans(tb)

    def cuts(spans: list[tuple[int, int, Mapping[str, Any]]], complete: bool) -> dict[int, int]:
        out = {a: i for i, (a, _, _) in enumerate(spans)}
        if spans:
            out[-1 if complete else spans[-1][1]] = len(spans)
        return out

    ca = cuts(sa, int(ta.get("at_risk_stop") or 0) == 0)
    cb = cuts(sb, int(tb.get("at_risk_stop") or 0) == 0)
    common = sorted(x for x in set(ca) & set(cb) if x >= 0)
    if -1 in ca and -1 in cb:
        common.append(-1)
    cells = []
    for lo, hi in itertools.pairwise(common):
        ia, ja, ib, jb = ca[lo], ca[hi], cb[lo], cb[hi]
        da = sum(float(sub[1]) for _, _, blk in sa[ia:ja] for sub in blk["events"])
        db = sum(float(sub[1]) for _, _, blk in sb[ib:jb] for sub in blk["events"])
        ea = sum(float(blk["exposure"]) for _, _, blk in sa[ia:ja])
        eb = sum(float(blk["exposure"]) for _, _, blk in sb[ib:jb])
        cells.append((da, db, ea, eb))
    return cells


def poisson_hr(summaries: Sequence[Mapping[str, Any]], a: str = "oligo", b: str = "poly",
               endpoint: str = "os") -> dict[str, Any]:
    """Piecewise-exponential model, baseline per site × interval, indicator ``b``: rate ratio b vs a.

    With the baselines profiled out the likelihood of β is binomial per stratum (events of ``b``
    among all events, odds ``E_b·e^β / E_a``), maximised by Newton–Raphson; SE from its information.
    """
    strata: list[tuple[float, float, float, float]] = []
    for s in summaries:
        ta, tb = _table(s, endpoint, a), _table(s, endpoint, b)
        if ta is None or tb is None or ta.get("withheld") or tb.get("withheld"):
            continue
        strata += _common_cells(ta, tb)
    out: dict[str, Any] = {"hr": None, "lo": None, "hi": None, "strata": len(strata),
                           "method": "piecewise-exponential Poisson, baseline per site x interval, "
                                     "profile Newton-Raphson"}
    if not strata or sum(x[0] for x in strata) == 0 or sum(x[1] for x in strata) == 0:
        out["note"] = "not estimable: no events in one group within the shared intervals"
        return out
    arr = np.array(strata)
    da, db, ea, eb = arr.T
    d = da + db
    beta = math.log((db.sum() / eb.sum()) / (da.sum() / ea.sum()))
    info = 0.0
    for _ in range(100):
        p = eb * math.exp(beta) / (ea + eb * math.exp(beta))
        score = float((db - d * p).sum())
        info = float((d * p * (1 - p)).sum())
        if info <= 0:
            out["note"] = "not estimable: no information"
            return out
        delta = score / info
        beta += delta
        if abs(delta) < 1e-12:
            break
    se = math.sqrt(1.0 / info)
    out.update(hr=round(math.exp(beta), 4), lo=round(math.exp(beta - Z95 * se), 4),
               hi=round(math.exp(beta + Z95 * se), 4), log_hr=beta, se=se)
    return out


# --------------------------------------------------------------------------- the pooled results.json


def _months(v: float | None) -> float | None:
    return None if v is None else round(v, 2)


def _median_entry(curve: PooledCurve, what: str, notes: list[str]) -> tuple[float | None, list[float | None]]:
    if not curve.sites_used:
        notes.append(f"{what} ({curve.group}): no site shared this table, median is null")
        return None, [None, None]
    med, lo, hi = curve.median()
    if curve.sites_withheld:
        notes.append(f"{what} ({curve.group}): {len(curve.sites_withheld)} site(s) withheld (part of) the"
                     " table (fewer patients than their small-cell threshold); pooled from what"
                     f" {len(curve.sites_used)} site(s) shared")
    if curve.n_events <= 0:
        notes.append(f"{what} ({curve.group}): no events in the shared tables, median is null")
    return _months(med), [_months(lo), _months(hi)]


def _survival_groups(summaries: Sequence[Mapping[str, Any]], family: str) -> list[str]:
    names = {g for s in summaries for g in (_get(s, ("survival", family)) or {})}
    patterns = ("oligo", "poly", "unclassified")
    out = []
    for p in patterns:
        mine = {n[len(p) + 1:] for n in names if n.startswith(p + "_")}
        out += [f"{p}_{sv}" for sv in ordered(mine, SALVAGE_CATEGORIES) if sv in mine]
    return out


def _site_entry(s: Mapping[str, Any], w_fe: float | None, w_re: float | None) -> dict[str, Any]:
    cox = s.get("cox") or {}
    log_hr, se = cox.get("log_hr"), cox.get("se")
    hr = MetaResult(log_hr, se, 1).hr() if log_hr is not None and se is not None else {
        "hr": None, "lo": None, "hi": None}
    return {
        "site": site_label(s),
        "id": (s.get("site") or {}).get("id"),
        "content_sha256": s.get("content_sha256"),
        "small_cell_threshold": s["small_cell"]["threshold"],
        "n_screened": s["counts"].get("n_screened"),
        "n_cohort": s["counts"].get("n_cohort"),
        "attrition": s.get("attrition"),
        "hr_poly_vs_oligo": hr,
        "log_hr": log_hr,
        "se": se,
        "cox_note": cox.get("note"),
        "weight_fixed_pct": None if w_fe is None else round(w_fe, 2),
        "weight_random_pct": None if w_re is None else round(w_re, 2),
    }


def pool_summaries(summaries: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The pooled results.json: the keys of results.json (docs/results.schema.json) plus ``sites``,
    ``pooling`` and ``os.hr_poly_vs_oligo_random``. Refuses incompatible summaries first."""
    check_summaries(summaries)
    notes: list[str] = []
    cnt = _Counts(summaries)
    n_screened = cnt.count("n_screened", ("counts", "n_screened"))
    n_cohort = cnt.count("n_cohort", ("counts", "n_cohort"))
    attrition = []
    for i, step in enumerate(ATTRITION_STEPS):
        lo = hi = 0
        for s in summaries:
            item = next((x for x in s["attrition"] if x.get("step") == step), {"n": 0})
            sc = _site_count(item["n"], int(s["small_cell"]["threshold"]))
            lo, hi = lo + sc.lo, hi + sc.hi
        c = Count(lo, hi)
        if not c.exact:
            cnt.bounds[f"attrition.{i}.n"] = [c.lo, c.hi]
        attrition.append({"step": step, "n": c.shown()})

    rec_n = cnt.count("recurrence.n", ("counts", "recurrence", "n"))
    pattern_n = {p: cnt.count(f"recurrence.{p}_n", ("counts", "recurrence", p))
                 for p in ("oligo", "poly", "unclassified")}
    site_names = {x for s in summaries for x in (_get(s, ("counts", "sites", "oligo")) or {})}
    sites_pct = {}
    for site in ordered(site_names, SITE_CATEGORIES):
        num = sum_counts(summaries, ("counts", "sites", "oligo", site))
        sites_pct[site] = cnt.pct(f"recurrence.sites_oligo_pct.{site}", num, pattern_n["oligo"])
    field_names = {x for s in summaries for x in (_get(s, ("counts", "field", "all")) or {})}
    fields = {f: cnt.count(f"recurrence.field.{f}", ("counts", "field", "all", f)).shown()
              for f in ordered(field_names, FIELD_CATEGORIES)}
    salvage_names = {x for s in summaries for p in ("oligo", "poly")
                     for x in (_get(s, ("counts", "salvage", p)) or {})}
    salvage: dict[str, dict[str, float | None]] = {}
    for p in ("oligo", "poly"):
        salvage[p] = {}
        for sv in ordered(salvage_names, SALVAGE_CATEGORIES):
            num = sum_counts(summaries, ("counts", "salvage", p, sv))
            salvage[p][sv] = cnt.pct(f"salvage.{p}.{sv}", num, pattern_n[p])

    follow = pooled_curve(summaries, "os", list(PATTERNS), reverse=True)
    follow_up = _median_entry(follow, "median follow-up (reverse KM on OS)", notes)[0]
    os_curves = {g: pooled_curve(summaries, "os", g) for g in ("oligo", "poly", "none")}
    os_est = {g: _median_entry(c, "OS median", notes) for g, c in os_curves.items()}
    lr = stratified_logrank(summaries)
    if lr.chi2 is None:
        notes.append("log-rank oligo vs poly: no site shared both tables with events, p is null")
    estimates, used = [], []
    for s in summaries:
        cox = s.get("cox") or {}
        if cox.get("log_hr") is not None and cox.get("se") is not None:
            estimates.append((float(cox["log_hr"]), float(cox["se"])))
            used.append(site_label(s))
        else:
            notes.append(f"Cox HR: site {site_label(s)!r} gave no estimate ({cox.get('note') or 'missing'});"
                         " left out of the meta-analysis")
    fe, re, w_fe, w_re = meta_analysis(estimates)
    if fe.log_hr is None:
        notes.append("Cox HR poly vs oligo: no site estimate to pool, HR is null")
    poisson = poisson_hr(summaries)
    prs = {g: _median_entry(pooled_curve(summaries, "prs", g), "PRS median", notes)[0]
           for g in _survival_groups(summaries, "prs")}
    os_salvage = {g: _median_entry(pooled_curve(summaries, "os_by_salvage", g), "OS median", notes)[0]
                  for g in _survival_groups(summaries, "os_by_salvage")}
    weights = dict(zip(used, zip(w_fe, w_re, strict=True), strict=True))
    for s in summaries:
        notes += [f"site {site_label(s)!r}: {w}" for w in s.get("warnings") or []]
    source_keys = ("read", "in_scope", "quarantined", "out_of_scope")
    route_keys = ("code", "product", "ingredient", "name")
    platinum = cnt.count("platinum_unverified_n", ("counts", "platinum_unverified_n"))
    if cnt.bounds:
        notes.append(f"{len(cnt.bounds)} pooled figure(s) include suppressed site cells: a count is shown"
                     " '<hi+1' and a percentage null; pooling.bounds holds each range")
    return {
        "n_screened": n_screened.shown(),
        "n_cohort": n_cohort.shown(),
        "attrition": attrition,
        "follow_up_median_months": follow_up,
        "recurrence": {
            "n": rec_n.shown(),
            "pct": cnt.pct("recurrence.pct", rec_n, n_cohort),
            "oligo_n": pattern_n["oligo"].shown(),
            "poly_n": pattern_n["poly"].shown(),
            "unclassified_n": pattern_n["unclassified"].shown(),
            "oligo_pct": cnt.pct("recurrence.oligo_pct", pattern_n["oligo"], rec_n),
            "sites_oligo_pct": sites_pct,
            "field": fields,
        },
        "salvage": salvage,
        "os": {
            "median_months": {g: e[0] for g, e in os_est.items()},
            "ci95": {g: e[1] for g, e in os_est.items()},
            "logrank_p_oligo_vs_poly": None if lr.p is None else float(f"{lr.p:.6g}"),
            "hr_poly_vs_oligo": fe.hr(),
            "hr_poly_vs_oligo_random": {
                **re.hr(),
                "tau2": None if re.tau2 is None else round(re.tau2, 6),
                "i2": None if re.i2 is None else round(re.i2, 1),
                "q": None if re.q is None else round(re.q, 4),
                "sites": re.k,
            },
        },
        "prs": {"median_months": prs},
        "os_by_salvage": {"median_months": os_salvage},
        "warnings": notes,
        "source": {key: sum(int(_get(s, ("source", key)) or 0) for s in summaries) for key in source_keys},
        "drug_match_routes": {key: int(sum(int(_get(s, ("drug_match_routes", key)) or 0) for s in summaries))
                              for key in route_keys},
        "platinum_unverified_n": platinum.shown(),
        "sites": [_site_entry(s, *(weights.get(site_label(s)) or (None, None))) for s in summaries],
        "pooling": {
            "n_sites": len(summaries),
            "spec_version": summaries[0]["spec_version"],
            "schema_version": summaries[0]["schema_version"],
            "format_version": summaries[0]["format_version"],
            "grid_months": _step(summaries),
            "small_cell_thresholds": sorted({int(s["small_cell"]["threshold"]) for s in summaries}),
            "logrank_oligo_vs_poly": {
                "stratified_by": "site",
                "chi2": None if lr.chi2 is None else round(lr.chi2, 6),
                "df": 1,
                "p": None if lr.p is None else float(f"{lr.p:.6g}"),
                "observed_minus_expected_poly": round(lr.observed_minus_expected, 6),
                "variance": round(lr.variance, 6),
            },
            "cox_fixed_effect": {"log_hr": fe.log_hr, "se": fe.se, "sites": fe.k},
            "cox_random_effects": {"log_hr": re.log_hr, "se": re.se, "tau2": re.tau2, "i2": re.i2, "q": re.q},
            "poisson_hr_poly_vs_oligo": poisson,
            "bounds": cnt.bounds,
        },
    }
