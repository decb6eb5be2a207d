"""Load and validate the declarative code mappings (``mappings/*.yaml``) and match codes.

The mapping files are the only place codes live (brief: never codes buried in
Python). A site adds its local codes with its own folder of files in the same
format (``extra_dirs``) without editing ours; the loader merges them and refuses
contradictions with a one-line :class:`~leopard_etl.errors.ConfigError`.

:class:`CodeMatcher` is shared by both adapters, so a FHIR coding and an OMOP
concept with the same (system, code) land in the same groups, site and laterality.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .paths import mappings_dir

__all__ = ["FORMAT_VERSION", "SCREENING_GROUPS", "CodeMatcher", "GroupEntry", "Mappings", "load_mappings"]

#: Groups whose records can screen a patient in (spec §2 "nsclc": SNOMED codes, and ICD-10
#: C34.* unless small-cell histology); readers push these down to find the patients.
SCREENING_GROUPS: frozenset[str] = frozenset({"nsclc", "nsclc_icd"})

FORMAT_VERSION = 1

#: Groups that one code may never belong to together (a contradiction, not an overlap).
EXCLUSIVE_GROUPS: tuple[frozenset[str], ...] = (
    frozenset({"nsclc", "small_cell"}),
    frozenset({"nsclc_icd", "small_cell"}),
    frozenset({"durvalumab", "immunotherapy"}),
    frozenset({"durvalumab", "chemo"}),
    frozenset({"durvalumab", "targeted"}),
    frozenset({"lesion", "progression"}),
)

_ROMAN = {"1": "I", "2": "II", "3": "III", "4": "IV", "0": "0"}


@dataclass(frozen=True)
class GroupEntry:
    """One mapping row: a code (exact, prefix or ``?`` pattern) in one group."""

    group: str
    system: str
    code: str
    match: str = "exact"
    meaning: str = ""
    source: str = ""
    ingredient: str | None = None
    stage: str | None = None
    values: tuple[tuple[str, str], ...] = ()
    file: str = ""
    #: how a drug coding reaches its ingredient (events.ROUTES): ``code`` (the ingredient's own
    #: code, an ATC code) or ``product`` (an RxNorm product rolled up, drug_products.yaml)
    route: str = "code"


@dataclass
class SystemInfo:
    key: str
    family: str
    fhir: tuple[str, ...]
    omop: tuple[str, ...]
    strip_dots: bool = False
    by_concept_id: bool = False
    #: URI stems that mean this system with anything after them (SNOMED edition URIs)
    fhir_prefix: tuple[str, ...] = ()
    #: record types (FHIR resource types, OMOP tables) this key applies to; empty = all
    records: tuple[str, ...] = ()


@dataclass
class Mappings:
    """Everything in mappings/: systems, group entries, sites, stage values."""

    systems: dict[str, SystemInfo]
    entries: list[GroupEntry]
    group_meta: dict[str, dict[str, Any]]
    sites: list[tuple[str, str, str, str, str, str | None]]  # site, system, code, match, role, laterality
    laterality_prefixes: list[tuple[str, str]]
    laterality_qualifiers: dict[tuple[str, str], str]
    stage_values: dict[tuple[str, str], str]
    stage_iii_text: str
    cancer_modifier_stage_name: str
    files: list[str] = field(default_factory=list)
    #: *(v2)* stage text / display pattern (spec §2.1); group 1 = the stage, group 2 = the letter
    stage_text: str = r"^(?:(?:stage|stadio|stadium)\s*)?[cpy]?(I{1,3}|IV|[1-4])([ABC])?$"
    #: *(v2)* ingredient -> INN (English, Italian) and brand names, matched as whole words (spec §2.1)
    drug_names: dict[str, tuple[str, ...]] = field(default_factory=dict)
    #: internal site -> category written to outputs (peritoneum -> other)
    site_report_as: dict[str, str] = field(default_factory=dict)

    def report_site(self, site: str) -> str:
        return self.site_report_as.get(site, site)

    def groups(self) -> list[str]:
        return sorted(self.group_meta)

    def omop_descendants(self, group: str) -> bool:
        return bool(self.group_meta.get(group, {}).get("omop_descendants", False))


def _fail(file: str, message: str, fix: str = "correct the mapping file") -> ConfigError:
    return ConfigError(f"mappings {file}: {message}", fix=fix)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise _fail(path.name, f"invalid YAML{where}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise _fail(path.name, "top level must be a mapping")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise _fail(path.name, f"format_version {version!r} is not {FORMAT_VERSION}", "set format_version: 1")
    return data


def _code(value: Any, file: str) -> str:
    if value is None or isinstance(value, bool | dict | list):
        raise _fail(file, f"bad code {value!r}")
    return str(value).strip()


def load_mappings(extra_dirs: Sequence[Path] = (), base_dir: Path | None = None) -> Mappings:
    """Read our mappings plus any site folders; validate; return one :class:`Mappings`."""
    dirs = [base_dir or mappings_dir(), *extra_dirs]
    files: list[Path] = []
    for d in dirs:
        if not d.is_dir():
            raise ConfigError(
                f"mappings folder {d} does not exist", fix="check the mappings path in the config"
            )
        files.extend(sorted(d.glob("*.yaml")) + sorted(d.glob("*.yml")))
    systems: dict[str, SystemInfo] = {}
    raw: list[tuple[Path, dict[str, Any]]] = [(f, _read_yaml(f)) for f in files]
    for f, data in raw:
        for key, info in (data.get("systems") or {}).items():
            if not isinstance(info, dict):
                raise _fail(f.name, f"system {key!r} must be a mapping")
            _merge_system(systems, str(key), info)
    if not systems:
        raise ConfigError(
            "no systems.yaml found among the mapping files", fix="restore mappings/systems.yaml"
        )
    families = {s.family for s in systems.values()} | set(systems)
    m = Mappings(
        systems=systems,
        entries=[],
        group_meta={},
        sites=[],
        laterality_prefixes=[],
        laterality_qualifiers={},
        stage_values={},
        stage_iii_text=r"^(stage\s*)?(III|3)[ABC]?$",
        cancer_modifier_stage_name=r"(?i)\bstage\s*(IV|III|II|I|[0-4])([A-C]\d?)?\b",
        files=[str(f.name) for f in files],
    )

    def system_of(item: dict[str, Any], file: str) -> str:
        sysk = item.get("system")
        if sysk not in families:
            raise _fail(file, f"unknown code system {sysk!r}", f"use one of {sorted(families)}")
        return str(sysk)

    products: list[tuple[Any, str]] = []  # read after every group entry: they copy their ingredient's groups
    for f, data in raw:
        name = f.name
        for group, spec in (data.get("groups") or {}).items():
            meta = m.group_meta.setdefault(group, {})
            for k in ("description", "omop_descendants", "includes"):
                if k in spec:
                    meta[k] = spec[k]
            for item in spec.get("entries") or []:
                if not isinstance(item, dict):
                    raise _fail(name, f"group {group}: entry {item!r} is not a mapping")
                match = item.get("match", "exact")
                if match not in ("exact", "prefix", "pattern"):
                    raise _fail(name, f"group {group}: match {match!r} must be exact, prefix or pattern")
                sysk = system_of(item, name)
                values = tuple(
                    (system_of(v, name), _norm(systems, system_of(v, name), _code(v.get("code"), name)))
                    for v in item.get("values") or []
                )
                m.entries.append(
                    GroupEntry(
                        group=group,
                        system=sysk,
                        code=_norm(systems, sysk, _code(item.get("code"), name)),
                        match=match,
                        meaning=str(item.get("meaning", "")),
                        source=str(item.get("source", "")),
                        ingredient=item.get("ingredient"),
                        stage=item.get("stage"),
                        values=values,
                        file=name,
                        route="product" if item.get("tty") else "code",
                    )
                )
        if data.get("drug_products"):
            products.append((data["drug_products"], name))
        for ingredient, names in (data.get("drug_names") or {}).items():
            if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
                raise _fail(name, f"drug_names {ingredient!r} must be a list of names")
            known = m.drug_names.get(str(ingredient), ())
            m.drug_names[str(ingredient)] = tuple(dict.fromkeys([*known, *(n.strip() for n in names)]))
        for site, items in (data.get("sites") or {}).items():
            for item in items:
                sysk = system_of(item, name)
                if item.get("report_as"):
                    m.site_report_as[site] = str(item["report_as"])
                m.sites.append(
                    (
                        site,
                        sysk,
                        _norm(systems, sysk, _code(item.get("code"), name)),
                        item.get("match", "exact"),
                        item.get("role", "lesion"),
                        item.get("laterality"),
                    )
                )
        for item in data.get("laterality_prefixes") or []:
            sysk = system_of(item, name)
            m.laterality_prefixes.append((sysk, _norm(systems, sysk, _code(item.get("code"), name))))
        for item in data.get("laterality_qualifiers") or []:
            sysk = system_of(item, name)
            m.laterality_qualifiers[(sysk, _code(item.get("code"), name))] = str(item["laterality"])
        for item in data.get("stage_values") or []:
            sysk = system_of(item, name)
            m.stage_values[(sysk, _code(item.get("code"), name).upper())] = str(item["stage"])
        if "stage_iii_text" in data:
            m.stage_iii_text = str(data["stage_iii_text"])
        if "stage_text" in data:
            m.stage_text = str(data["stage_text"])
        if "cancer_modifier_stage_name" in data:
            m.cancer_modifier_stage_name = str(data["cancer_modifier_stage_name"])
    for spec, name in products:
        m.entries.extend(_product_entries(m.entries, spec, name))
    _validate(m)
    return m


def _merge_system(systems: dict[str, SystemInfo], key: str, info: dict[str, Any]) -> None:
    """Add a system, or extend a known one with more URIs / vocabularies (a site's aliases).

    A site's systems.yaml that names a built-in key adds its URIs to it (spec §1 v2); the
    attributes it does not state (family, dots, record types) stay as they were.
    """

    def merged(old: tuple[str, ...], name: str) -> tuple[str, ...]:
        new = [str(x) for x in (info.get(name) or ())]
        return tuple(dict.fromkeys([*old, *new]))

    old = systems.get(key)
    if old is None:
        old = SystemInfo(key=key, family=str(info.get("family", key)), fhir=(), omop=())
    systems[key] = SystemInfo(
        key=key,
        family=str(info.get("family", old.family)),
        fhir=merged(old.fhir, "fhir"),
        omop=merged(old.omop, "omop"),
        strip_dots=bool(info.get("strip_dots", old.strip_dots)),
        by_concept_id=bool(info.get("by_concept_id", old.by_concept_id)),
        fhir_prefix=merged(old.fhir_prefix, "fhir_prefix"),
        records=merged(old.records, "records"),
    )


def _norm(systems: dict[str, SystemInfo], system: str, code: str) -> str:
    info = systems.get(system)
    strip = info.strip_dots if info else any(s.strip_dots for s in systems.values() if s.family == system)
    if strip:
        return code.replace(".", "").upper().rstrip("+*!† ")
    return code


def _product_entries(entries: list[GroupEntry], spec: Any, file: str) -> list[GroupEntry]:
    """RxNorm products (drug_products.yaml) as entries in every group of their ingredient.

    Read after every file's group entries, so a product lands in the groups its ingredient
    has (a site's own groups included); a product of an ingredient no group knows is refused.
    """
    if not isinstance(spec, dict) or not isinstance(spec.get("products"), list):
        raise _fail(file, "drug_products needs a products list")
    groups_of: dict[str, set[str]] = {}
    for e in entries:
        if e.ingredient:
            groups_of.setdefault(e.ingredient, set()).add(e.group)
    source = str(spec.get("source", ""))
    out: list[GroupEntry] = []
    for item in spec["products"]:
        if not isinstance(item, dict) or not item.get("code") or not item.get("ingredient"):
            raise _fail(file, f"product {item!r} needs code and ingredient")
        ingredient = str(item["ingredient"])
        if ingredient not in groups_of:
            raise _fail(file, f"product {item['code']} names unknown ingredient {ingredient!r}")
        for group in sorted(groups_of[ingredient]):
            out.append(
                GroupEntry(
                    group=group,
                    system="rxnorm",
                    code=_code(item["code"], file),
                    meaning=f"{item.get('name', '')} ({item.get('tty', 'product')})",
                    source=source,
                    ingredient=ingredient,
                    file=file,
                    route="product",
                )
            )
    return out


def _validate(m: Mappings) -> None:
    seen: dict[tuple[str, str, str, str], GroupEntry] = {}
    by_code: dict[tuple[str, str, str], list[GroupEntry]] = {}
    for e in m.entries:
        key = (e.group, e.system, e.code, e.match)
        if key in seen and (seen[key].values == e.values):
            prev = seen[key]
            if prev.ingredient != e.ingredient or prev.stage != e.stage:
                raise _fail(
                    e.file,
                    f"{e.system} {e.code} appears twice in group {e.group} with different meaning "
                    f"(also in {prev.file})",
                    "keep one entry",
                )
        seen[key] = e
        by_code.setdefault((e.system, e.code, e.match), []).append(e)
    for (system, code, _match), es in by_code.items():
        groups = {e.group for e in es}
        for pair in EXCLUSIVE_GROUPS:
            if pair <= groups:
                files = sorted({e.file for e in es})
                raise _fail(
                    ", ".join(files),
                    f"{system} {code} is in conflicting groups {sorted(pair)}",
                    "a code can be in only one of these groups",
                )
        ingredients = {e.ingredient for e in es if e.ingredient}
        if len(ingredients) > 1:
            raise _fail(es[0].file, f"{system} {code} maps to several ingredients {sorted(ingredients)}")
    site_keys: dict[tuple[str, str, str, str], str] = {}
    for site, system, code, match, role, _lat in m.sites:
        k = (system, code, match, role)
        if k in site_keys and site_keys[k] != site:
            raise _fail(
                "sites",
                f"{system} {code} is in two site categories ({site_keys[k]}, {site})",
                "a code can name one site only",
            )
        site_keys[k] = site
    for g, meta in m.group_meta.items():
        for inc in meta.get("includes", []) or []:
            if inc not in m.group_meta:
                raise _fail("groups", f"group {g} includes unknown group {inc!r}")
    for ingredient in m.drug_names:
        if not any(e.ingredient == ingredient for e in m.entries):
            fix = "name an ingredient of drugs.yaml"
            raise _fail("drug_names", f"names for unknown ingredient {ingredient!r}", fix)
    try:
        re.compile(m.stage_iii_text, re.IGNORECASE)
        if re.compile(m.stage_text, re.IGNORECASE).groups < 2:
            raise _fail("stage.yaml", "stage_text needs two groups (the stage, then the letter)")
        cm = re.compile(m.cancer_modifier_stage_name)
    except re.error as exc:
        raise _fail("stage.yaml", f"bad regular expression: {exc}") from None
    if cm.groups < 1:
        raise _fail("stage.yaml", "cancer_modifier_stage_name needs a group for the stage (then the letter)")


class CodeMatcher:
    """Fast (system, code) → groups / site / laterality / stage lookups.

    Exact codes are dict lookups; prefix and ``?`` pattern entries are few and
    checked after. ``system`` arguments are the short keys of systems.yaml; use
    :meth:`system_for_fhir` / :meth:`system_for_omop` to translate.
    """

    def __init__(self, mappings: Mappings) -> None:
        self.mappings = m = mappings
        #: URI -> (key, record types it applies to) for every key that lists the URI
        self._fhir_keys: dict[str, list[tuple[str, frozenset[str]]]] = {}
        self._fhir_prefix: list[tuple[str, str, frozenset[str]]] = []
        self._fhir_cache: dict[tuple[str, str | None], str | None] = {}
        self._omop_vocab: dict[str, str] = {}
        for s in m.systems.values():
            for uri in s.fhir:
                self._fhir_keys.setdefault(uri, []).append((s.key, frozenset(s.records)))
            for stem in s.fhir_prefix:
                self._fhir_prefix.append((stem, s.key, frozenset(s.records)))
            for v in s.omop:
                self._omop_vocab[v] = s.key
        self._fhir_prefix.sort(key=lambda t: -len(t[0]))
        self._name_rx = _names_pattern(m)
        self._name_ingredient = {n.casefold(): ing for ing, ns in m.drug_names.items() for n in ns}
        self._name_groups: dict[str, frozenset[str]] = {}
        for e in m.entries:
            if e.ingredient and e.ingredient in m.drug_names:
                self._name_groups[e.ingredient] = self._name_groups.get(e.ingredient, frozenset()) | {e.group}
        self._stage_text_rx = re.compile(m.stage_text, re.IGNORECASE)
        self._family = {k: s.family for k, s in m.systems.items()}
        self._strip = {k for k, s in m.systems.items() if s.strip_dots}
        includes: dict[str, set[str]] = {}
        for g, meta in m.group_meta.items():
            for inc in meta.get("includes", []) or []:
                includes.setdefault(inc, set()).add(g)
        self._implied = includes
        self._exact: dict[tuple[str, str], list[GroupEntry]] = {}
        self._prefix: list[GroupEntry] = []
        self._pattern: list[tuple[re.Pattern[str], GroupEntry]] = []
        for e in m.entries:
            if e.match == "exact":
                self._exact.setdefault((e.system, e.code), []).append(e)
            elif e.match == "prefix":
                self._prefix.append(e)
            else:
                rx = re.compile("^" + re.escape(e.code).replace(r"\?", ".") + ".*$")
                self._pattern.append((rx, e))
        self._site_exact: dict[tuple[str, str, str], tuple[str, str | None]] = {}
        self._site_prefix: list[tuple[str, str, str, str, str | None]] = []
        for site, system, code, match, role, lat in m.sites:
            if match == "prefix":
                self._site_prefix.append((role, system, code, site, lat))
            else:
                self._site_exact[(role, system, code)] = (site, lat)
        self._site_prefix.sort(key=lambda t: -len(t[2]))
        self._stage_rx = re.compile(m.stage_iii_text, re.IGNORECASE)
        self._cm_stage_rx = re.compile(m.cancer_modifier_stage_name)
        self._cache: dict[tuple[str, str, str | None, str | None], tuple[frozenset[str], str | None]] = {}
        self._site_cache: dict[tuple[str, str, str], tuple[str, str | None] | None] = {}
        self._keys_cache: dict[str, tuple[str, ...]] = {}

    # --- systems -----------------------------------------------------------
    def system_for_fhir(self, uri: str | None, record_type: str | None = None) -> str | None:
        """The system key of a FHIR coding's ``system`` as written (spec §1 v2 aliases).

        Exact URIs and OIDs first, then the URI without its ``|version`` suffix, then the
        longest ``fhir_prefix`` stem (SNOMED editions). A key restricted to record types
        (ICD-9-CM diagnoses vs procedures) is chosen only for those types.
        """
        if not uri or not isinstance(uri, str):
            return None
        ck = (uri, record_type)
        if ck in self._fhir_cache:
            return self._fhir_cache[ck]
        found = self._resolve_fhir(uri, record_type)
        if len(self._fhir_cache) < 10_000:
            self._fhir_cache[ck] = found
        return found

    def _resolve_fhir(self, uri: str, record_type: str | None) -> str | None:
        base = uri.split("|", 1)[0].strip()
        candidates = self._fhir_keys.get(uri) or self._fhir_keys.get(base)
        if candidates is None:
            candidates = [(key, recs) for stem, key, recs in self._fhir_prefix if base.startswith(stem)][:1]
        for key, records in candidates or ():
            if not records or (record_type is not None and record_type in records):
                return key
        return None

    def system_for_omop(self, vocabulary_id: str | None) -> str | None:
        return self._omop_vocab.get(vocabulary_id) if vocabulary_id else None

    def normalise(self, system: str, code: str) -> str:
        """ICD codes without dot, upper case, and without ICD-10-GM's dagger/asterisk/``!`` marks."""
        code = code.strip()
        return code.replace(".", "").upper().rstrip("+*!† ") if system in self._strip else code

    def _keys(self, system: str) -> tuple[str, ...]:
        hit = self._keys_cache.get(system)
        if hit is None:
            fam = self._family.get(system, system)
            hit = self._keys_cache[system] = (system,) if fam == system else (system, fam)
        return hit

    # --- groups ------------------------------------------------------------
    def _entries(self, system: str, code: str) -> list[GroupEntry]:
        out: list[GroupEntry] = []
        for key in self._keys(system):
            out.extend(self._exact.get((key, code), ()))
        for e in self._prefix:
            if e.system in self._keys(system) and code.startswith(e.code):
                out.append(e)
        for rx, e in self._pattern:
            if e.system in self._keys(system) and rx.match(code):
                out.append(e)
        return out

    def match(
        self, system: str, code: str, value_system: str | None = None, value_code: str | None = None
    ) -> tuple[frozenset[str], str | None]:
        """Groups of a normalised (system, code), and the drug ingredient if any.

        Entries with ``values`` (progression: LOINC 97509-4) match only when the
        record's coded value is one of them.
        """
        key = (system, code, value_system, value_code)
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        groups: set[str] = set()
        ingredient: str | None = None
        for e in self._entries(system, code):
            if e.values:
                if value_system is None or value_code is None:
                    continue
                if not any(vs in self._keys(value_system) and vc == value_code for vs, vc in e.values):
                    continue
            groups.add(e.group)
            ingredient = ingredient or e.ingredient
        for g in list(groups):
            groups |= self._implied.get(g, set())
        result = (frozenset(groups), ingredient)
        if len(self._cache) < 200_000:
            self._cache[key] = result
        return result

    def match_any(
        self, codings: Iterable[tuple[str, str]], value: tuple[str, str] | None = None
    ) -> tuple[frozenset[str], str | None, tuple[str, str] | None]:
        """Union of groups over several codings; returns also the first coding that matched."""
        groups: frozenset[str] = frozenset()
        ingredient: str | None = None
        first: tuple[str, str] | None = None
        vs, vc = value if value else (None, None)
        for system, code in codings:
            g, ing = self.match(system, code, vs, vc)
            if g:
                groups |= g
                ingredient = ingredient or ing
                first = first or (system, code)
        return groups, ingredient, first

    def route(self, system: str, code: str) -> str:
        """How a drug coding matched (``code`` or ``product``): the most direct entry wins."""
        routes = {e.route for e in self._entries(system, code) if e.ingredient}
        return "code" if "code" in routes or not routes else "product"

    def match_name(self, text: str | None) -> tuple[frozenset[str], str | None]:
        """Groups and ingredient of a drug named in free text (INN or brand, whole word; spec §2.1).

        The last resort for a drug record none of whose codings matched: the first name found
        in the text decides (a combination product names its first study ingredient).
        """
        if not text or self._name_rx is None:
            return frozenset(), None
        mo = self._name_rx.search(text)
        if not mo:
            return frozenset(), None
        ingredient = self._name_ingredient[mo.group(0).casefold()]
        groups = set(self._name_groups.get(ingredient, frozenset()))
        for g in list(groups):
            groups |= self._implied.get(g, set())
        return frozenset(groups), ingredient

    def entry_stage(self, system: str, code: str) -> str | None:
        """Stage stated by the code itself (stage_condition / stage_modifier entries)."""
        for e in self._entries(system, code):
            if e.stage:
                return e.stage
        return None

    # --- sites and laterality ---------------------------------------------
    def site(self, system: str, code: str, role: str = "lesion") -> tuple[str, str | None] | None:
        """(site category, laterality from a lateralised concept) of a lesion or body-site code."""
        key3 = (system, code, role)
        if key3 in self._site_cache:
            return self._site_cache[key3]
        hit = self._site(system, code, role)
        if len(self._site_cache) < 200_000:
            self._site_cache[key3] = hit
        return hit

    def _site(self, system: str, code: str, role: str) -> tuple[str, str | None] | None:
        for key in self._keys(system):
            hit = self._site_exact.get((role, key, code))
            if hit:
                return hit
        for r, s, prefix, site, lat in self._site_prefix:
            if r == role and s in self._keys(system) and code.startswith(prefix):
                return site, lat
        return None

    def code_laterality(self, system: str, code: str) -> str | None:
        """ICD-10-CM 5th-character laterality for the prefixes that carry it."""
        for s, prefix in self.mappings.laterality_prefixes:
            if s in self._keys(system) and code.startswith(prefix) and len(code) >= 5:
                return {"1": "right", "2": "left"}.get(code[4])
        return None

    def qualifier_laterality(self, system: str, code: str) -> str | None:
        return self.mappings.laterality_qualifiers.get((system, code))

    # --- stage -------------------------------------------------------------
    def stage_value(self, system: str | None, code: str | None, text: str | None) -> str | None:
        """Normalised stage (``IIIA``, ``III``, ``II``, ``IV`` …) from a coded or text value.

        Text is stage III only when it matches ``stage_iii_text`` (spec §2); other text is
        normalised for stages I/II/IV but a III-like text outside the pattern is kept as
        recorded, so it never counts as stage III.
        """
        if system and code:
            hit = self.mappings.stage_values.get((system, code.strip().upper()))
            if hit:
                return hit
            if system in ("ajcc", "uicc"):
                return self._text_stage(code)
        if text:
            return self._text_stage(text)
        return None

    def stage_display(self, text: str | None) -> str | None:
        """*(v2 §2.1)* A stage read from a coding's display or a value text, only when it matches
        ``stage_text`` (``Stadio IIIA`` → IIIA, ``cT3`` no); ``None`` otherwise."""
        if not text:
            return None
        mo = self._stage_text_rx.match(" ".join(text.split()))
        if not mo:
            return None
        return _normalise_stage_text(mo.group(1) + (mo.group(2) or ""))

    def _text_stage(self, text: str) -> str | None:
        hit = self.stage_display(text)
        if hit:
            return hit
        norm = _normalise_stage_text(text)
        if norm and norm.startswith("III") and not self._stage_rx.match(text.strip()):
            return " ".join(text.strip().upper().split())
        return norm

    def is_stage_iii_text(self, text: str) -> bool:
        return bool(self._stage_rx.match(text.strip()))

    def cancer_modifier_stage(self, concept_name: str) -> str | None:
        """The stage an OMOP Cancer Modifier concept name names (``AJCC/UICC Stage 3A`` → ``IIIA``)."""
        mo = self._cm_stage_rx.search(concept_name)
        if not mo:
            return None
        return _normalise_stage_text(mo.group(1) + (mo.group(2) or ""))


def _names_pattern(m: Mappings) -> re.Pattern[str] | None:
    names = sorted({n for ns in m.drug_names.values() for n in ns}, key=lambda n: (-len(n), n))
    if not names:
        return None
    return re.compile(r"(?<!\w)(?:" + "|".join(re.escape(n) for n in names) + r")(?!\w)", re.IGNORECASE)


def _normalise_stage_text(text: str) -> str | None:
    """``"Stage 3a"`` → ``IIIA``; ``"IV"`` → ``IV``; anything unreadable → stripped upper text."""
    t = re.sub(r"^\s*(AJCC\s*)?(STAGE\s*)?", "", text.strip().upper())
    t = t.replace(" ", "")
    if not t:
        return None
    mo = re.match(r"^([0-4])([A-C]?\d?)$", t)
    if mo:
        return _ROMAN[mo.group(1)] + mo.group(2)
    return t
