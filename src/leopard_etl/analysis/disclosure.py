"""Small-cell suppression and the one rounding rule for percentages.

Aggregates leave the hospital (results.json, report.html); a count below the site's threshold
could identify a patient, so it is written as ``"<k"`` and any percentage computed from it is
hidden (``None``). patients.csv is row-level and stays inside the site — it is never suppressed.
Zero is below the threshold too and is suppressed as well (the rule is literal: counts below k).

Percentages are rounded half-up on the exact fraction, so every site prints the same digit for
the same counts whatever the float representation (``round(12.25, 1)`` would give 12.2).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from leopard_etl.errors import ConfigError

__all__ = ["check_small_cell", "count", "is_suppressed", "percent", "shown_percent"]


def check_small_cell(small_cell: int | None) -> int | None:
    """Validate the threshold: ``None`` (exact figures) or an integer ≥ 1."""
    if small_cell is None:
        return None
    if isinstance(small_cell, bool) or not isinstance(small_cell, int) or small_cell < 1:
        raise ConfigError(f"small-cell threshold must be a whole number >= 1, got {small_cell!r}",
                          fix="set small_cell_threshold to e.g. 5, or leave it unset for exact figures")
    return small_cell


def is_suppressed(n: int, small_cell: int | None) -> bool:
    return small_cell is not None and n < small_cell


def count(n: int, small_cell: int | None) -> int | str:
    """``n`` itself, or ``"<k"`` when it is below the threshold ``k``."""
    return f"<{small_cell}" if is_suppressed(n, small_cell) else int(n)


def percent(numerator: int, denominator: int) -> float | None:
    """100·n/d with one decimal, half-up; ``None`` when the denominator is 0."""
    if denominator <= 0:
        return None
    exact = Fraction(100 * numerator, denominator)
    value = (Decimal(exact.numerator) / Decimal(exact.denominator)).quantize(Decimal("0.1"), ROUND_HALF_UP)
    return float(value)


def shown_percent(numerator: int, denominator: int, small_cell: int | None) -> float | None:
    """:func:`percent`, hidden (``None``) when the numerator count itself is suppressed."""
    if is_suppressed(numerator, small_cell):
        return None
    return percent(numerator, denominator)
