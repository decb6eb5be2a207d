"""In-field / out-of-field call per lesion and per patient (spec §3.10, decisions.md).

No code captures the RT volume, so the field is the RT course's body-site categories,
or the default thoracic field; lung lesions additionally need the primary's side.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from leopard_etl.config import Rules

__all__ = ["field_relation", "irradiated_field", "patient_field"]


def irradiated_field(course_sites: Iterable[str], rules: Rules) -> frozenset[str]:
    sites = frozenset(course_sites)
    return sites if sites else frozenset(rules.default_field)


def field_relation(
    site: str, laterality: str | None, field_sites: Iterable[str], primary_laterality: str | None
) -> str:
    """``in`` / ``out`` / ``unknown`` for one lesion.

    A lung lesion is in field only on the primary's side; unknown laterality on either
    side is ``unknown``; ``bilateral`` matches only a bilateral primary. Other sites in
    the field are in without a laterality check.
    """
    if site not in set(field_sites):
        return "out"
    if site != "lung":
        return "in"
    if not laterality or not primary_laterality:
        return "unknown"
    return "in" if laterality == primary_laterality else "out"


def patient_field(relations: Sequence[str]) -> str:
    """in_field / out_of_field / both / unknown (nothing determinable) / none (no lesions)."""
    if not relations:
        return "none"
    known = {r for r in relations if r != "unknown"}
    if not known:
        return "unknown"
    if known == {"in"}:
        return "in_field"
    if known == {"out"}:
        return "out_of_field"
    return "both"
