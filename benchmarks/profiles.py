"""One cProfile pass over the FHIR file reader and over ``cohort.derive``; top costs into profile.json.

Ratios say whether a target is met; a profile says where the time goes, which is
what closing a gap needs. cProfile (standard library) inflates per-call overhead of
small functions, so read the ranking, not the absolute seconds.
"""

from __future__ import annotations

import cProfile
import io
import pstats
from typing import Any

from .datasets import Datasets, Size
from .measure import Figure, Skip, need, skipped, timed

BENCH = "profile"
TOP = 18


def _report(prof: cProfile.Profile, title: str) -> str:
    """The top functions by own and by cumulative time, as pstats prints them."""
    out = io.StringIO()
    out.write(f"# {title}\n\n## by own time (tottime)\n")
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats("tottime").print_stats(TOP)
    out.write("\n## by cumulative time\n")
    pstats.Stats(prof, stream=out).strip_dirs().sort_stats("cumulative").print_stats(TOP)
    return out.getvalue()


def run(data: Datasets, size: Size) -> list[Figure]:
    try:
        read_fhir_files = need("leopard_etl.sources.fhir", "read_fhir_files")
        event_sink = need("leopard_etl.events", "EventSink")
        mappings = need("leopard_etl.mappings")
        matcher = mappings.CodeMatcher(mappings.load_mappings())
    except Skip as why:
        return [skipped(BENCH, "cProfile of read_fhir_files and derive", str(why))]
    folder = data.get("fhir-ndjson", size.profile_patients)
    sink = event_sink()
    prof = cProfile.Profile()
    seconds, _ = timed(lambda: prof.runcall(read_fhir_files, [folder], matcher, sink))
    figures = [
        Figure(
            BENCH, "cProfile read_fhir_files", seconds, "s",
            note=f"{len(sink.events)} events; listing in results/profile.json",
            detail=_report(prof, "read_fhir_files"),
        )
    ]
    try:
        frames = need("leopard_etl.pipeline", "frames")
        derive = need("leopard_etl.cohort", "derive")
        rules = need("leopard_etl.config", "Rules")()
        events, patients, _ = frames(sink)
        prof = cProfile.Profile()
        derived: list[Any] = []
        seconds, _ = timed(
            lambda: derived.append(prof.runcall(derive, events, patients, rules, matcher.mappings, "fhir"))
        )
        figures.append(
            Figure(
                BENCH, "cProfile cohort.derive", seconds, "s",
                note=f"{len(events)} events, {len(derived[0].patients_csv)} patients; "
                "listing in results/profile.json",
                detail=_report(prof, "cohort.derive"),
            )
        )
    except Skip as why:
        figures.append(skipped(BENCH, "cProfile cohort.derive", str(why)))
    return figures
