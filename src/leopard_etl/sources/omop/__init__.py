"""OMOP CDM 5.3 / 5.4 adapter: concept-set resolution, pushed-down extraction, rows → events.

``read_omop(url, matcher, sink, …)`` is the entry point (see docs/omop.md). Kept lazy so
that importing the package does not import SQLAlchemy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .extract import OmopReadReport, read_omop

__all__ = ["OmopReadReport", "read_omop"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from . import extract

        return getattr(extract, name)
    raise AttributeError(name)
