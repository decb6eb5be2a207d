"""FHIR date / dateTime / instant → calendar date as written, with its precision.

Spec §1: the calendar date is taken as written — a ``dateTime`` with a timezone is
*not* converted (``2021-03-01T23:30:00-05:00`` stays 1 March), so two sites in
different zones derive the same dates. Partial dates are imputed: ``YYYY-MM`` → day
15, ``YYYY`` → 1 July, and the precision says so.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["parse_fhir_date"]

_DATE_RX = re.compile(r"^(\d{4})(?:-(\d{2})(?:-(\d{2}))?)?(?:T[0-9:.]+(?:Z|[+-]\d{2}:\d{2})?)?$")


def parse_fhir_date(value: object) -> tuple[dt.date, str]:
    """``(date, precision)`` of a FHIR date-ish string; ``ValueError`` when it is not one."""
    if not isinstance(value, str):
        raise ValueError(f"not a date string: {value!r}")
    # fast path: the overwhelmingly common full date (or dateTime) form
    if len(value) >= 10 and value[4] == "-" and value[7] == "-" and (len(value) == 10 or value[10] == "T"):
        try:
            d = dt.date(int(value[0:4]), int(value[5:7]), int(value[8:10]))
        except ValueError:
            raise ValueError(f"unparseable date {value!r}") from None
        if len(value) == 10 or _DATE_RX.match(value):
            return d, "day"
        raise ValueError(f"unparseable date {value!r}")
    mo = _DATE_RX.match(value)
    if not mo or (mo.group(2) is None and "T" in value):
        raise ValueError(f"unparseable date {value!r}")
    year, month = int(mo.group(1)), mo.group(2)
    try:
        if month is None:
            return dt.date(year, 7, 1), "year"
        return dt.date(year, int(month), 15), "month"
    except ValueError:
        raise ValueError(f"unparseable date {value!r}") from None
