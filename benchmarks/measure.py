"""Figures, repeats and reporting shared by every benchmark.

A :class:`Figure` is one row of the result table: a measured value, the baseline
measured in the same run, their ratio and the target the ratio (or, for start-up
time, the value itself) is held to. Benchmarks never raise for a missing module or a
failing run: they return a skipped row carrying the reason, so ``all`` always ends.
"""

from __future__ import annotations

import importlib
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

RESULTS_DIR = Path(__file__).resolve().parent / "results"


class Skip(Exception):
    """Raised inside a benchmark when what it measures is not there (yet)."""


@dataclass
class Figure:
    """One measured figure against its same-run baseline."""

    bench: str
    figure: str
    value: float | None = None
    unit: str = ""
    baseline: float | None = None
    baseline_label: str = ""
    #: value / baseline unless the benchmark defines it otherwise (see ``note``)
    ratio: float | None = None
    target_op: Literal[">=", "<=", ""] = ""
    target: float | None = None
    #: what the target applies to: the ratio or the value itself
    target_on: Literal["ratio", "value"] = "ratio"
    note: str = ""
    skipped: str | None = None
    samples: dict[str, list[float]] = field(default_factory=dict)
    #: long text kept in the JSON only (a profile listing)
    detail: str = ""

    @property
    def met(self) -> bool | None:
        if self.skipped is not None or self.target is None or not self.target_op:
            return None
        got = self.ratio if self.target_on == "ratio" else self.value
        if got is None:
            return None
        return got >= self.target if self.target_op == ">=" else got <= self.target

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["met"] = self.met
        return data


def skipped(bench: str, figure: str, reason: str) -> Figure:
    return Figure(bench=bench, figure=figure, skipped=reason)


def need(module: str, attr: str | None = None) -> Any:
    """Import ``module`` (and get ``attr``) or raise :class:`Skip` saying what is missing."""
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        raise Skip(f"{module} not importable ({exc})") from None
    if attr is None:
        return mod
    try:
        return getattr(mod, attr)
    except AttributeError:
        raise Skip(f"{module}.{attr} does not exist yet") from None


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def median_time(fn: Callable[[], Any], repeats: int) -> tuple[float, list[float], Any]:
    """Median wall time of ``repeats`` calls, all samples, and the last call's result."""
    samples: list[float] = []
    out: Any = None
    for _ in range(repeats):
        seconds, out = timed(fn)
        samples.append(seconds)
    return statistics.median(samples), samples, out


def interleaved(fns: Sequence[Callable[[], Any]], repeats: int) -> list[list[float]]:
    """Time several callables in turn, ``repeats`` rounds, so machine drift hits them alike."""
    samples: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for i, fn in enumerate(fns):
            samples[i].append(timed(fn)[0])
    return samples


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or baseline is None or baseline == 0:
        return None
    return value / baseline


def machine() -> dict[str, Any]:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (0.0, 0.0, 0.0)
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "loadavg_1m_at_start": round(load[0], 2),
    }


def write_results(name: str, size: str, figures: Sequence[Figure], extra: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{name}.json"
    payload = {
        "benchmark": name,
        "size": size,
        "measured_at_unix": int(time.time()),
        "machine": machine(),
        **extra,
        "figures": [f.as_dict() for f in figures],
    }
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n", encoding="utf-8")
    return path


def _num(x: float | None, unit: str = "") -> str:
    if x is None:
        return "—"
    if abs(x) >= 1000:
        text = f"{x:,.0f}"
    elif abs(x) >= 10:
        text = f"{x:.1f}"
    else:
        text = f"{x:.3g}"
    return f"{text} {unit}".strip()


def rows_for_table(figures: Sequence[Figure]) -> list[list[str]]:
    rows = []
    for f in figures:
        if f.skipped is not None:
            rows.append([f.bench, f.figure, f"skipped: {f.skipped}", "", "", "", ""])
            continue
        target = f"{f.target_op} {f.target:g}" if f.target is not None else "—"
        if f.target is not None and f.target_on == "value":
            target += f" {f.unit}"
        met = {True: "yes", False: "NO", None: "—"}[f.met]
        base = f"{_num(f.baseline)} ({f.baseline_label})" if f.baseline_label else _num(f.baseline)
        ratio_text = "—" if f.ratio is None else f"{f.ratio:.3g}"
        rows.append([f.bench, f.figure, _num(f.value, f.unit), base, ratio_text, target, met])
    return rows


HEADERS = ["bench", "figure", "value", "baseline", "ratio", "target", "met?"]


def print_table(figures: Sequence[Figure], title: str) -> None:
    rows = rows_for_table(figures)
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain aligned text
        widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
        print(title)
        for r in [HEADERS, *rows]:
            print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))
        return
    table = Table(title=title)
    for h in HEADERS:
        table.add_column(h, overflow="fold")
    for r in rows:
        table.add_row(*r)
    Console(width=160).print(table)
