"""Survival analyses of spec §4 and the results.json of spec §5 (pure: plain frames in, dicts out)."""

from __future__ import annotations

from leopard_etl.analysis.results import compute_results, write_results

__all__ = ["compute_results", "write_results"]
