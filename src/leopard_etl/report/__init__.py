"""The offline HTML report of spec §5: attrition, tables and Kaplan–Meier figures in one file."""

from __future__ import annotations

from leopard_etl.report.html import render_report

__all__ = ["render_report"]
