"""Resolve the code groups of mappings/ to OMOP concept ids, the way the CodeMatcher will read them.

Groups are resolved through ``concept`` by (vocabulary_id, concept_code), never by
hard-coded ids (spec §1), except the ``omop`` system whose codes *are* concept ids.
Each resolved concept keeps the (system, code) codings the shared
:class:`~leopard_etl.mappings.CodeMatcher` understands: its own, plus, for a
descendant reached through ``concept_ancestor``, its ancestor entry's. The adapter
then calls the same ``match_any`` as the FHIR adapter, so a row classifies exactly
as a FHIR resource with those codings would.

Two Cancer Modifier rules have no code list: class ``Metastasis`` concepts are
lesions, and ``Staging/Grading`` concepts whose name names a stage are stage
records (value from the name). They become ``extra_groups`` / ``stages``.

The queries are SQLAlchemy Core (bound parameters, portable LIKE / IN); the result
is a plain :class:`ConceptSet` that the pure row code reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, String, and_, case, cast, column, func, or_, select, table
from sqlalchemy.engine import Connection
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import TableClause

from ...mappings import SCREENING_GROUPS, CodeMatcher, GroupEntry
from .columns import probe_types

__all__ = [
    "CANCER_MODIFIER",
    "SOURCE_VALUE_VOCABULARIES",
    "Coding",
    "ConceptSet",
    "resolve_concepts",
    "source_value_systems",
    "stage_from_name",
]

Coding = tuple[str, str]

CANCER_MODIFIER = "Cancer Modifier"
METASTASIS_CLASS = "Metastasis"
STAGING_CLASS = "Staging/Grading"
LESION_GROUP = "lesion"
STAGE_GROUP = "stage_modifier"

#: Lists in IN (...) stay below the smallest parameter limit we know of (SQL Server: 2100).
_BATCH = 1000


@dataclass
class ConceptSet:
    """The concepts a LEOPARD extraction needs, and how each one reads through the CodeMatcher."""

    codings: dict[int, tuple[Coding, ...]] = field(default_factory=dict)
    extra_groups: dict[int, frozenset[str]] = field(default_factory=dict)
    stages: dict[int, str] = field(default_factory=dict)
    nsclc: set[int] = field(default_factory=set)
    #: (table, LIKE pattern, is nsclc) that find ``*_source_value`` holding a code of a group
    source_patterns: list[tuple[str, str, bool]] = field(default_factory=list)
    #: table -> system keys its ``*_source_value`` is read as (SOURCE_VALUE_VOCABULARIES)
    source_systems: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: number of concepts resolved directly / as descendants / by Cancer Modifier class
    counts: dict[str, int] = field(default_factory=dict)
    #: codings a descendant holds from its ancestors (a drug matched through one is a ``product``)
    inherited: dict[int, frozenset[Coding]] = field(default_factory=dict)

    def add(self, concept_id: int, codings: Iterable[Coding]) -> None:
        merged = list(self.codings.get(concept_id, ()))
        for c in codings:
            if c not in merged:
                merged.append(c)
        self.codings[concept_id] = tuple(merged)

    def add_groups(self, concept_id: int, groups: Iterable[str]) -> None:
        self.extra_groups[concept_id] = self.extra_groups.get(concept_id, frozenset()) | frozenset(groups)


def stage_from_name(matcher: CodeMatcher, name: str) -> str | None:
    """``AJCC/UICC Stage 3A`` → ``IIIA``, ``Stage 2`` → ``II``; None when the name names no stage."""
    return matcher.cancer_modifier_stage(name)  # the pattern lives in mappings/stage.yaml


#: *(spec §1 v2)* ``*_source_value`` is read as code text of these vocabularies (OMOP vocabulary
#: ids, mapped to system keys through systems.yaml): diagnosis codes on condition_occurrence,
#: procedure codes on procedure_occurrence — ICD-9-CM diagnoses and procedures collide once the
#: dot is gone (162.2 / 16.22), so each is read only on its own table. The first key of a table
#: names the event's coding when several match (ICD-10-CM, as in v1).
SOURCE_VALUE_VOCABULARIES: dict[str, tuple[str, ...]] = {
    "condition_occurrence": ("ICD10CM", "ICD10", "ICD10GM", "ICD9CM"),
    "procedure_occurrence": ("CPT4", "ICD10PCS", "OPS", "ICD9Proc"),
}


def _dot_after(omop_vocabularies: Iterable[str], code: str) -> int:
    """Where a dot-stripped code gets its dot back in ``concept.concept_code``.

    ICD-10 and ICD-9-CM diagnoses after the 3-character category (``C34.11``, ``162.2``),
    ICD-9-CM E codes after 4 (``E888.9``), ICD-9-CM procedures after 2 (``92.21``).
    """
    vocabularies = set(omop_vocabularies)
    if "ICD9Proc" in vocabularies:
        return 2
    if "ICD9CM" in vocabularies and code.startswith("E"):
        return 4
    return 3


def _dotted(code: str, after: int = 3) -> str:
    """ICD codes sit in ``concept`` with their dot: ``C3411`` → ``C34.11``, ``9221`` → ``92.21``."""
    return code[:after] + "." + code[after:] if len(code) > after and "." not in code else code


def _like_escape(code: str) -> str:
    return code.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _patterns(
    entry: GroupEntry, strip_dots: bool, escape: bool = True, dot_after: int = 3
) -> tuple[set[str], set[str]]:
    """(exact codes, LIKE patterns) that find the entry's concepts in ``concept.concept_code``.

    Without ``escape`` a literal ``_`` or ``%`` in a code stays a wildcard: harmless over-inclusion
    for the source-value pre-filter, whose rows the CodeMatcher checks again.
    """
    esc = _like_escape if escape else (lambda c: c)
    if entry.match == "exact":
        return ({entry.code, _dotted(entry.code, dot_after)} if strip_dots else {entry.code}), set()
    if entry.match == "prefix":
        likes = {esc(entry.code) + "%"}
        if strip_dots:
            likes.add(esc(_dotted(entry.code, dot_after)) + "%")
        return set(), likes
    # pattern: "?" is one character (ICD-10-PCS D?2*), the rest a prefix
    return set(), {"_".join(esc(part) for part in entry.code.split("?")) + "%"}


def _batches(items: Sequence[int]) -> Iterator[Sequence[int]]:
    for i in range(0, len(items), _BATCH):
        yield items[i : i + _BATCH]


def resolve_concepts(
    conn: Connection, matcher: CodeMatcher, vocab_schema: str | None, code_type: str | None = None
) -> ConceptSet:
    """Resolve every group entry (plus descendants and Cancer Modifier classes) to concept ids.

    ``code_type`` is the type class of ``concept.concept_code`` (columns.py); a vocabulary loaded
    by type inference may hold it as a number, which is then compared as text.
    """
    m = matcher.mappings
    concept = table(
        "concept",
        column("concept_id"),
        column("concept_name"),
        column("vocabulary_id"),
        column("concept_class_id"),
        column("concept_code"),
        schema=vocab_schema,
    )
    ancestor = table(
        "concept_ancestor",
        column("ancestor_concept_id"),
        column("descendant_concept_id"),
        schema=vocab_schema,
    )
    code_col = _code_text(concept.c.concept_code, code_type)
    cs = ConceptSet()
    # system key -> vocabulary ids, and which keys are read by concept id (the "omop" system)
    by_id = {k for k, s in m.systems.items() if s.by_concept_id}
    probes: dict[str, tuple[set[str], set[str]]] = {}
    direct_ids: dict[int, list[Coding]] = {}
    for e in m.entries:
        members = [s for s in m.systems.values() if e.system in (s.key, s.family)]
        if e.system in by_id or any(s.by_concept_id for s in members):
            if e.code.isdigit():
                direct_ids.setdefault(int(e.code), []).append((e.system, e.code))
            continue
        for s in members:
            exact, likes = _patterns(e, s.strip_dots, dot_after=_dot_after(s.omop, e.code))
            for vocab in s.omop:
                ex, lk = probes.setdefault(vocab, (set(), set()))
                ex |= exact
                lk |= likes

    # 1. entries by (vocabulary_id, concept_code): exact codes, dotted or not, and prefixes via LIKE
    conditions: list[ColumnElement[bool]] = []
    for vocab, (exact, likes) in sorted(probes.items()):
        code_terms: list[ColumnElement[bool]] = [code_col.like(p, escape="\\") for p in sorted(likes)]
        if exact:
            code_terms.append(code_col.in_(sorted(exact)))
        conditions.append(and_(concept.c.vocabulary_id == vocab, or_(*code_terms)))
    direct = 0
    if conditions:
        q = select(concept.c.concept_id, concept.c.vocabulary_id, code_col).where(or_(*conditions))
        for raw_id, vocab, code in conn.execute(q):
            for own in _own_coding(matcher, by_id, int(raw_id), vocab, code):
                if matcher.match_any([own])[0] or _has_values_entry(matcher, own):
                    cs.add(int(raw_id), [own])
                    direct += 1
    for cid, id_codings in direct_ids.items():
        cs.add(cid, id_codings)
        direct += 1

    cm = _add_cancer_modifiers(conn, matcher, cs, concept)
    for cid, codings in cs.codings.items():
        for system, code in codings:
            stage = matcher.entry_stage(system, code)
            if stage and cid not in cs.stages:
                cs.stages[cid] = stage
    descendants = _add_descendants(conn, matcher, cs, concept, ancestor, by_id, code_col)
    cs.nsclc = {
        cid for cid, codings in cs.codings.items() if matcher.match_any(codings)[0] & SCREENING_GROUPS
    }
    _source_value_patterns(matcher, cs)
    cs.counts = {
        "direct": direct,
        "cancer_modifier": cm,
        "descendants": descendants,
        "total": len(cs.codings),
    }
    return cs


def _has_values_entry(matcher: CodeMatcher, coding: Coding) -> bool:
    """True for codes whose entry needs a coded value (LOINC 97509-4): they match only with it."""
    system, code = coding
    return any(
        e.values and e.code == code and e.system in (system, _family(matcher, system))
        for e in matcher.mappings.entries
    )


def _family(matcher: CodeMatcher, system: str) -> str:
    info = matcher.mappings.systems.get(system)
    return info.family if info else system


def _wants_descendants(matcher: CodeMatcher, cs: ConceptSet, cid: int) -> bool:
    groups = set(matcher.match_any(cs.codings[cid])[0]) | set(cs.extra_groups.get(cid, ()))
    return any(matcher.mappings.omop_descendants(g) for g in groups)


def source_value_systems(matcher: CodeMatcher) -> dict[str, tuple[str, ...]]:
    """Table -> the system keys its ``*_source_value`` is read as (those systems.yaml has).

    A key restricted to some record types (``records`` in systems.yaml) is used only on those.
    """
    out: dict[str, tuple[str, ...]] = {}
    for record, vocabularies in SOURCE_VALUE_VOCABULARIES.items():
        keys: list[str] = []
        for vocabulary in vocabularies:
            key = matcher.system_for_omop(vocabulary)
            info = matcher.mappings.systems.get(key) if key else None
            records = tuple(getattr(info, "records", ()) or ())
            if key and key not in keys and (not records or record in records):
                keys.append(key)
        out[record] = tuple(keys)
    return out


def _source_value_patterns(matcher: CodeMatcher, cs: ConceptSet) -> None:
    """LIKE patterns that find ``*_source_value`` holding a code of a group, per table."""
    m = matcher.mappings
    cs.source_systems = source_value_systems(matcher)
    patterns: dict[tuple[str, str], bool] = {}
    for record, keys in cs.source_systems.items():
        for e in m.entries:
            for k in keys:
                info = m.systems[k]
                if e.system not in (k, info.family):
                    continue
                exact, likes = _patterns(
                    e, info.strip_dots, escape=False, dot_after=_dot_after(info.omop, e.code)
                )
                for p in sorted(exact | likes):
                    key = (record, p)
                    patterns[key] = patterns.get(key, False) or e.group in SCREENING_GROUPS
    cs.source_patterns = sorted((t, p, n) for (t, p), n in patterns.items())


def _code_text(col: ColumnElement[Any], code_type: str | None) -> ColumnElement[Any]:
    """``concept.concept_code`` as text whatever its stored type (a number when loaded by inference)."""
    if code_type in (None, "text"):
        return col
    if code_type == "float":
        return case((col == func.floor(col), cast(cast(col, BigInteger), String)), else_=cast(col, String))
    return cast(col, String)


def _own_coding(
    matcher: CodeMatcher, by_id: set[str], cid: int, vocab: str | None, code: object
) -> list[Coding]:
    """The concept's own coding as the CodeMatcher reads it (concept id for the ``omop`` system)."""
    system = matcher.system_for_omop(vocab)
    if system is None or code is None:
        return []
    return [(system, str(cid)) if system in by_id else (system, matcher.normalise(system, str(code)))]


def _add_cancer_modifiers(
    conn: Connection, matcher: CodeMatcher, cs: ConceptSet, concept: TableClause
) -> int:
    """Metastasis-class concepts are lesions; Staging/Grading concepts naming a stage are stage records."""
    cm_system = matcher.system_for_omop(CANCER_MODIFIER)
    added = 0
    q = select(concept.c.concept_id, concept.c.concept_class_id, concept.c.concept_name).where(
        concept.c.vocabulary_id == CANCER_MODIFIER,
        or_(
            concept.c.concept_class_id == METASTASIS_CLASS,
            and_(concept.c.concept_class_id == STAGING_CLASS, concept.c.concept_name.ilike("%stage%")),
        ),
    )
    for raw_id, cls, name in conn.execute(q):
        cid = int(raw_id)
        own: list[Coding] = [(cm_system, str(cid))] if cm_system else []
        if cls == METASTASIS_CLASS:
            cs.add(cid, own)
            cs.add_groups(cid, [LESION_GROUP])
            added += 1
            continue
        stage = stage_from_name(matcher, str(name or ""))
        if stage:
            cs.add(cid, own)
            cs.add_groups(cid, [STAGE_GROUP])
            cs.stages[cid] = stage
            added += 1
    return added


def _id_columns(
    conn: Connection, concept: TableClause, ancestor: TableClause
) -> tuple[ColumnElement[Any], ColumnElement[Any], ColumnElement[Any]]:
    """concept_ancestor's ids and concept.concept_id, cast to integers where a loader typed them as
    text (a header-only CSV loaded by type inference: spec §1, column types are not trusted)."""
    types = probe_types(conn, ancestor.schema) or {}

    def as_int(col: ColumnElement[Any], table: str, name: str) -> ColumnElement[Any]:
        cls = types.get(table, {}).get(name)
        return col if cls in (None, "int") else cast(col, BigInteger)

    return (
        as_int(ancestor.c.ancestor_concept_id, "concept_ancestor", "ancestor_concept_id"),
        as_int(ancestor.c.descendant_concept_id, "concept_ancestor", "descendant_concept_id"),
        as_int(concept.c.concept_id, "concept", "concept_id"),
    )


def _add_descendants(
    conn: Connection,
    matcher: CodeMatcher,
    cs: ConceptSet,
    concept: TableClause,
    ancestor: TableClause,
    by_id: set[str],
    code_col: ColumnElement[Any],
) -> int:
    """Descendants (concept_ancestor) of the concepts of groups marked omop_descendants.

    A descendant keeps its own coding and gains its ancestor's, so a clinical drug reads as
    its ingredient (and gets the ingredient name) through the same CodeMatcher entries.
    """
    roots = sorted(cid for cid in cs.codings if _wants_descendants(matcher, cs, cid))
    added = 0
    anc_id, desc_id, concept_id = _id_columns(conn, concept, ancestor)
    for batch in _batches(roots):
        q = (
            select(anc_id, concept.c.concept_id, concept.c.vocabulary_id, code_col)
            .select_from(ancestor.join(concept, concept_id == desc_id))
            .where(anc_id.in_(list(batch)), desc_id != anc_id)
        )
        for raw_anc, raw_id, vocab, code in conn.execute(q):
            anc, cid = int(raw_anc), int(raw_id)
            if cid not in cs.codings:
                added += 1
            own = _own_coding(matcher, by_id, cid, vocab, code)
            from_ancestor = frozenset(cs.codings[anc]) - frozenset(own) - frozenset(cs.codings.get(cid, ()))
            cs.inherited[cid] = cs.inherited.get(cid, frozenset()) | from_ancestor
            cs.add(cid, own + list(cs.codings[anc]))
            if anc in cs.extra_groups:
                cs.add_groups(cid, cs.extra_groups[anc])
            if anc in cs.stages and cid not in cs.stages:
                cs.stages[cid] = cs.stages[anc]
    return added
