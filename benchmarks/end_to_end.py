"""End to end: ``leopard-etl run --fhir`` as a subprocess at N and 10×N patients; wall time, peak RSS.

The input has the shape of a held-out site cohort (issue 14, :mod:`benchmarks.cohort`): NDJSON
(one file gzip) plus one large transaction Bundle holding an eighth of the patients. Two figures
carry targets: the run's resources/s against a bare ``orjson.loads`` loop over the same files
(each NDJSON line, each ``.json`` document whole; timed just before and after the 10×N run,
the mean is the baseline) must reach 0.5, and RSS(10×N) / RSS(N) must stay ≤ 1.3 (memory flat
in the input).

Peak RSS: Linux carries the parent's memory high-water mark into a forked child
(``ru_maxrss`` survives ``exec``), and this process holds hundreds of MiB of
datasets, so the run is started through a tiny Python launcher that reads the
grandchild's own ``ru_maxrss`` with ``os.wait4``; the launcher's ~10 MiB is the
floor of the figure and its start (~20 ms) is inside the wall time. The target is that
memory grows sub-linearly: RSS(10×N) / RSS(N) ≤ 1.3, i.e. a streaming pipeline.
"""

from __future__ import annotations

import gzip
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import orjson

from .datasets import Datasets, Size
from .measure import Figure, Skip, need, ratio, skipped

BENCH = "end_to_end"
#: a run this small measures the fixed cost (imports, interpreter), the floor of every RSS figure
FLOOR_PATIENTS = 20
#: targets of issue 14: memory flat in the input, reading costs little more than parsing
RSS_TARGET = 1.3
RATE_TARGET = 0.5
_LINES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
_DOCS = (".json", ".json.gz")


def _open(path: Path) -> IO[bytes]:
    return gzip.open(path, "rb") if path.name.endswith(".gz") else path.open("rb")  # type: ignore[return-value]


def orjson_floor(folder: Path) -> tuple[int, float]:
    """(resources, seconds) of a bare orjson loop over the input: each NDJSON line, each document whole.

    A Bundle's entries count as resources (as the run reads them); the loop keeps nothing.
    """
    n = bad = 0
    start = time.perf_counter()
    for path in sorted(folder.rglob("*")):
        if path.name.endswith(_LINES):
            with _open(path) as fh:
                for line in fh:
                    if line.strip():
                        n += 1
                        try:
                            orjson.loads(line)
                        except orjson.JSONDecodeError:
                            bad += 1
        elif path.name.endswith(_DOCS):
            with _open(path) as fh:
                doc = orjson.loads(fh.read())
            entries = doc.get("entry") if isinstance(doc, dict) else None
            n += len(entries) if isinstance(entries, list) else 1
            del doc, entries
    return n, time.perf_counter() - start


def cli_command() -> list[str]:
    """The venv's ``leopard-etl`` script when it is installed, else ``python -m leopard_etl.cli``."""
    script = Path(sys.executable).with_name("leopard-etl")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "leopard_etl.cli"]


def run_child(args: list[str]) -> tuple[float, int, int, str]:
    """Wall seconds, peak RSS (KiB, Linux), exit code and the last stderr line of one child."""
    start = time.perf_counter()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()  # drain before waiting so a chatty child cannot block on a full pipe
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    lines = err.decode("utf-8", "replace").strip().splitlines()
    return wall, int(usage.ru_maxrss), proc.returncode, lines[-1] if lines else ""


#: started from a small interpreter so the measured child's high-water mark starts small
_LAUNCHER = """
import os, sys
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ,
                     file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run_measured(args: list[str]) -> tuple[float, int, int, str]:
    """Like :func:`run_child`, with the peak RSS (KiB) of ``args`` alone, via the launcher."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _LAUNCHER, *args], capture_output=True, check=False)
    wall = time.perf_counter() - start
    err = proc.stderr.decode("utf-8", "replace").strip().splitlines()
    out = proc.stdout.decode("utf-8", "replace").split()
    rss = int(out[-1]) if out and out[-1].isdigit() else 0
    return wall, rss, proc.returncode, err[-1] if err else ""


def run(data: Datasets, size: Size) -> list[Figure]:
    try:
        need("leopard_etl.cli", "main")
        need("leopard_etl.pipeline", "run_pipeline")
    except Skip as why:
        return [skipped(BENCH, "run --fhir wall time and peak RSS", str(why))]
    small, big = size.e2e_patients
    measured: dict[int, tuple[float, int]] = {}
    floor_runs: list[tuple[int, float]] = []
    for n in (FLOOR_PATIENTS, small, big):
        folder = data.get("fhir-cohort", n)
        out = data.scratch(f"e2e-out-{n}")
        args = [*cli_command(), "run", "--fhir", str(folder), "--out", str(out)]
        if n == big:
            floor_runs.append(orjson_floor(folder))
        wall, rss, code, last = run_measured(args)
        if n == big:
            floor_runs.append(orjson_floor(folder))
        if code != 0:
            reason = f"run at {n} patients exited {code}: {last}"
            return [skipped(BENCH, "run --fhir wall time and peak RSS", reason)]
        measured[n] = (wall, rss)
    (t_small, rss_small), (t_big, rss_big) = measured[small], measured[big]
    t_floor, floor = measured[FLOOR_PATIENTS]
    summary = data.summaries.get(("fhir-cohort", big), {})
    resources = floor_runs[0][0]
    t_loop = sum(t for _n, t in floor_runs) / len(floor_runs)
    bundle_mb = summary.get("bundle_bytes", 0) / 1e6
    shape = (
        f"{resources:,} resources at {big} patients, one transaction Bundle of {bundle_mb:.0f} MB "
        f"({summary.get('bundle_entries', 0):,} entries)"
    )
    # one run each: when noise exceeds the small run's own work, the ratio above the floor means nothing
    above = f"{(t_big - t_floor) / (t_small - t_floor):.1f}×" if t_small - t_floor > 0.5 else "not measurable"
    return [
        Figure(
            BENCH,
            f"run --fhir at {big} patients vs bare orjson loop",
            resources / t_big,
            "resources/s",
            resources / t_loop,
            "orjson resources/s",
            ratio(t_loop, t_big),
            ">=",
            RATE_TARGET,
            note=f"{shape}; whole run (start, read, derive, outputs) against orjson.loads of every line and "
            f"document, mean of {len(floor_runs)} loops around the run ({t_loop:.1f} s)",
            samples={"run_s": [t_big], "orjson_s": [t for _n, t in floor_runs]},
        ),
        Figure(
            BENCH,
            f"peak RSS at {big} vs {small} patients",
            rss_big / 1024,
            "MiB",
            rss_small / 1024,
            f"MiB at {small}",
            ratio(rss_big, rss_small),
            "<=",
            RSS_TARGET,
            note=f"{shape}; one run each; ru_maxrss of the run alone (launcher + wait4)",
        ),
        Figure(
            BENCH,
            f"RSS above the {FLOOR_PATIENTS}-patient floor, {big} vs {small}",
            (rss_big - floor) / 1024,
            "MiB",
            (rss_small - floor) / 1024,
            f"MiB at {small}",
            ratio(rss_big - floor, rss_small - floor),
            note=f"floor (imports, {FLOOR_PATIENTS} patients) {floor / 1024:.0f} MiB; linear growth would be "
            f"{big / small:g}; {(rss_big - floor) / 1024 / big * 1000:.0f} MiB per 1000 patients at {big}",
        ),
        Figure(
            BENCH,
            f"wall time at {big} vs {small} patients",
            t_big,
            "s",
            t_small,
            f"s at {small}",
            ratio(t_big, t_small),
            note=f"linear scaling would be {big / small:g}; the fixed cost ({FLOOR_PATIENTS} patients: "
            f"{t_floor:.2f} s) flattens it; above that floor {above}; "
            f"{big / t_big:.0f} patients/s, {resources / t_big:,.0f} resources/s at {big}",
        ),
    ]
