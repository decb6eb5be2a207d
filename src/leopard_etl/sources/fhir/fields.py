"""Element extraction shared by every resource type: codings, site, laterality, RT dose.

Kept apart from :mod:`.parse` (the per-type rules) because these walk optional,
repeated structures (bodySite, extensions) the same way for Condition,
Procedure and Observation. Pure functions over plain dicts.
"""

from __future__ import annotations

from typing import Any

from ...mappings import CodeMatcher

__all__ = ["codings", "extract_dose", "extract_laterality", "extract_site"]

SESSIONS_SUFFIX = "radiotherapy-sessions"
DOSE_SUFFIX = "radiotherapy-dose-delivered-to-volume"
_INT_VALUES = ("valueUnsignedInt", "valuePositiveInt", "valueInteger")


def codings(concept: Any, matcher: CodeMatcher, record_type: str | None = None) -> list[tuple[str, str]]:
    """(system key, normalised code) of the codings of a CodeableConcept in recognised systems.

    ``record_type`` picks between keys that share a URI (ICD-9-CM diagnoses on a Condition,
    procedures on a Procedure: spec §1 v2).
    """
    if not concept:
        return []
    if not isinstance(concept, dict):  # a malformed resource: the reader quarantines it
        raise TypeError(f"a CodeableConcept must be an object, not {type(concept).__name__}")
    out: list[tuple[str, str]] = []
    for c in concept.get("coding") or ():
        if not isinstance(c, dict):
            continue
        system = matcher.system_for_fhir(c.get("system"), record_type)
        code = c.get("code")
        if system and isinstance(code, str) and code:
            out.append((system, matcher.normalise(system, code)))
    return out


def _body_sites(res: dict[str, Any]) -> list[dict[str, Any]]:
    body = res.get("bodySite")
    if not body:
        return []
    return body if isinstance(body, list) else [body]  # Observation.bodySite is a single CodeableConcept


def extract_site(
    res: dict[str, Any], code_list: list[tuple[str, str]], matcher: CodeMatcher, *, field: bool = False
) -> tuple[str | None, str | None, str | None]:
    """(site, laterality of a lateralised site concept, body-site categories).

    Site = category of the lesion code, else of the body site (decisions.md). A
    radiotherapy record (``field=True``) treats all its body sites as its field, so
    its site is every body-site category, sorted and ``;``-joined (lung plus
    mediastinal nodes → ``lung;lymph_node_thoracic``).
    """
    site: str | None = None
    lat: str | None = None
    for system, code in code_list:
        hit = matcher.site(system, code)
        if hit:
            site, lat = hit
            break
    bodies: list[str] = []
    for concept in _body_sites(res):
        for system, code in codings(concept, matcher):
            hit = matcher.site(system, code, role="body_site")
            if hit:
                if hit[0] not in bodies:
                    bodies.append(hit[0])
                lat = lat or hit[1]
                break
    body = ";".join(sorted(bodies)) if bodies else None
    if field:
        return site or body, lat, body
    return site or (bodies[0] if bodies else None), lat, body


def extract_laterality(
    res: dict[str, Any], code_list: list[tuple[str, str]], matcher: CodeMatcher
) -> str | None:
    """ICD-10-CM 5th character, else a laterality qualifier in bodySite codings or a bodySite extension."""
    for system, code in code_list:
        lat = matcher.code_laterality(system, code)
        if lat:
            return lat
    for concept in _body_sites(res):
        for system, code in codings(concept, matcher):
            lat = matcher.qualifier_laterality(system, code)
            if lat:
                return lat
        for ext in concept.get("extension") or ():
            for system, code in codings(ext.get("valueCodeableConcept"), matcher):
                lat = matcher.qualifier_laterality(system, code)
                if lat:
                    return lat
    return None


def _int_value(ext: dict[str, Any]) -> int | None:
    for key in _INT_VALUES:
        if key in ext:
            return int(ext[key])
    return None


def extract_dose(res: dict[str, Any]) -> tuple[int | None, float | None]:
    """(fractions, total dose in cGy) from mCODE-style radiotherapy extensions, when present.

    ``…radiotherapy-sessions`` gives the fractions; ``…radiotherapy-dose-delivered-to-volume``
    gives ``totalDoseDelivered`` (cGy, or Gy × 100) and ``fractionsDelivered``. A unit
    we cannot convert leaves the dose unknown rather than guessing.
    """
    fractions: int | None = None
    dose: float | None = None
    for ext in res.get("extension") or ():
        url = ext.get("url") or ""
        if url.endswith(SESSIONS_SUFFIX):
            fractions = _int_value(ext)
        elif url.endswith(DOSE_SUFFIX):
            for sub in ext.get("extension") or ():
                if sub.get("url") == "totalDoseDelivered" and dose is None:
                    q = sub.get("valueQuantity") or {}
                    unit = str(q.get("code") or q.get("unit") or "").strip()
                    if "value" in q and unit in ("cGy", "Gy"):
                        dose = float(q["value"]) * (100.0 if unit == "Gy" else 1.0)
                elif sub.get("url") == "fractionsDelivered" and fractions is None:
                    fractions = _int_value(sub)
    return fractions, dose
