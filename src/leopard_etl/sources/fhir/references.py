"""FHIR literal references → (resource type, id), whatever form they are written in.

Spec §1: ``Patient/123``, ``https://host/fhir/Patient/123`` (also with
``/_history/2``) and ``urn:uuid:…`` (resolved through the Bundle entries'
``fullUrl``) name the same kind of target; ``#id`` names a contained resource.
"""

from __future__ import annotations

__all__ = ["UrnIndex", "reference_target"]

#: fullUrl → (type, id) for the entries of one Bundle
UrnIndex = dict[str, tuple[str, str]]


def reference_target(ref: object, urns: UrnIndex | None = None) -> tuple[str, str] | None:
    """``(type, id)`` named by a Reference's ``reference`` string, or ``None`` when it names nothing usable.

    Contained references come back as ``("#", id)``.
    """
    if not isinstance(ref, str) or not ref:
        return None
    if ref[0] == "#":
        return ("#", ref[1:]) if len(ref) > 1 else None
    if ref.startswith(("urn:uuid:", "urn:oid:")):
        return urns.get(ref) if urns else None
    if urns and ref in urns:  # an absolute fullUrl of an entry of the same Bundle
        return urns[ref]
    parts = ref.split("?", 1)[0].rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) < 2 or not parts[-2][:1].isupper() or not parts[-1]:
        return None
    return parts[-2], parts[-1]
