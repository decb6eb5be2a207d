#!/usr/bin/env python3
"""Regenerate ``mappings/drug_products.yaml``: every RxNorm product of each LEOPARD study drug.

Spec §2.1 (v2) wants every RxNorm product (TTY SCD, SBD, SCDC, SBDC, GPCK, BPCK) that contains a
study ingredient, shipped as data with its source. This script builds that table from public
GitHub repositories (no terminology server, no UMLS licence):

1. **Main source, TTY stated.** ``davidanderson3/rxnorm-ingredients`` at commit
   ``2810603af617bb0fba00c925a8d1e8c6153ba7af`` (the last commit that still holds the data; later
   commits deleted it), files ``web/data/{C,D,E,N,O,P,V}.json``. The repository's
   ``extract_rxnorm_ingredients.py`` wrote them from the RxNorm 10/06/2025 *Current Prescribable
   Content* RRF files (``Readme_Full_Prescribe_10062025.txt`` in the same repository). Each
   ingredient record nests its SCDCs, their SCDs, and each SCD's SBDs, GPCKs and BPCKs, each with
   RXCUI, name and TTY. That extraction has no SBDC and only current prescribable concepts.
2. **Supplement, TTY inferred from the name** (codes.md S9). ``nmdp-ig/cibmtr-reporting-ig`` at
   ``d15ab17bec72610a0faff2b03e6eaff3413ca5a1``, files
   ``build/input/fsh/terminology/medications/med-etoposide-valueset.fsh`` and
   ``med-form2400-prep-regimen-valueset.fsh``: ``$RXN#code "name"`` lines. They add SBDCs and
   older products of etoposide and carboplatin. A code belongs to an ingredient when the
   etoposide value set lists it, when S8 (below) lists it in the ingredient's family, or when its
   name has the ingredient's INN as a word. The TTY comes from the name pattern, see
   :func:`infer_tty`. Only SCD, SBD, SCDC, SBDC, GPCK and BPCK are kept.
3. **Cross-check only** (codes.md S8). ``mcode/clinical-trial-matching-service-trialjectory`` at
   ``e599c553115fe2bf70434e821aead2e097fa8659``, ``data/profile-system-codes.json`` lists each
   drug's RxNorm family as codes only (no names, no TTY). Codes of a family that neither source
   above names are listed in the output header as unresolved. They are not shipped, because their
   TTY is unknown (most are SCDF, SBDF, SCDG, SBDG, BN or SBDC).

Getting the sources: clone each repository (``git clone https://github.com/<owner>/<name>``) or
use a bare mirror. The script reads a git repository with ``git show <commit>:<path>``, with the
commit pinned above by default, so a checkout of any branch works. It can also read a plain
directory that holds the files at their repository paths. Append ``@<commit>`` to a path to
choose another commit (git), or to record the commit (plain directory).

Usage::

    python scripts/drug_products.py \\
        --prescribable ../rxnorm-ingredients \\
        --cibmtr ../cibmtr-reporting-ig \\
        --trialjectory ../clinical-trial-matching-service-trialjectory \\
        -o mappings/drug_products.yaml

Output is deterministic: rows are sorted by ingredient, then by code (numerically). The only
date is ``--date`` (default: today), written in the header. A product of two study ingredients
is listed once, under the first in alphabetical order, with ``also: [...]`` naming the others.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

#: Study drugs: lower-case English INN -> RxNorm ingredient RXCUI (codes.md Table D).
INGREDIENTS: dict[str, str] = {
    "carboplatin": "40048",
    "cisplatin": "2555",
    "docetaxel": "72962",
    "durvalumab": "1919503",
    "etoposide": "4179",
    "nivolumab": "1597876",
    "osimertinib": "1721560",
    "paclitaxel": "56946",
    "pembrolizumab": "1547545",
    "pemetrexed": "68446",
    "vinorelbine": "39541",
}
WANTED_TTY = ("SCD", "SBD", "SCDC", "SBDC", "GPCK", "BPCK")

PRESCRIBABLE_REPO = "davidanderson3/rxnorm-ingredients"
PRESCRIBABLE_COMMIT = "2810603af617bb0fba00c925a8d1e8c6153ba7af"
PRESCRIBABLE_DIR = "web/data"
CIBMTR_REPO = "nmdp-ig/cibmtr-reporting-ig"
CIBMTR_COMMIT = "d15ab17bec72610a0faff2b03e6eaff3413ca5a1"
CIBMTR_DIR = "build/input/fsh/terminology/medications"
CIBMTR_FILES = ("med-etoposide-valueset.fsh", "med-form2400-prep-regimen-valueset.fsh")
#: value-set file of the supplement -> the ingredient all of its codes belong to
CIBMTR_VS_INGREDIENT = {"med-etoposide-valueset.fsh": "etoposide"}
TRIALJECTORY_REPO = "mcode/clinical-trial-matching-service-trialjectory"
TRIALJECTORY_COMMIT = "e599c553115fe2bf70434e821aead2e097fa8659"
TRIALJECTORY_FILE = "data/profile-system-codes.json"

_FSH_CODE = re.compile(r'\$RXN#(\d+)\s+"([^"]*)"')
# a strength: a number, then an upper-case unit (MG, MG/ML, UNT/ML, ML, %, ...)
_STRENGTH = re.compile(r"(?<![\w.])\d+(?:\.\d+)?\s+(?:%|[A-Z]+(?:/[A-Z]+)*)(?=\s|$)")
_PACK = re.compile(r"^\{.*\}\s*Pack(?:\s*\[[^\]]+\])?$")
_BRAND = re.compile(r"\s*\[[^\]]+\]$")


class SourceError(Exception):
    """A source file is missing or unreadable."""


@dataclass
class Snapshot:
    """A repository snapshot: a git repository (read at ``commit``) or a plain directory."""

    repo: str
    path: Path
    commit: str | None
    git: bool

    @classmethod
    def open(cls, repo: str, spec: str, default_commit: str) -> Snapshot:
        path_s, commit = spec, None
        if "@" in spec:
            head, _, tail = spec.rpartition("@")
            if re.fullmatch(r"[0-9a-fA-F]{7,40}", tail):
                path_s, commit = head, tail
        path = Path(path_s)
        if not path.is_dir():
            raise SourceError(f"{repo}: {path} is not a directory")
        is_git = (path / ".git").exists() or ((path / "HEAD").is_file() and (path / "objects").is_dir())
        if is_git:
            rev = commit or default_commit
            try:
                full = subprocess.run(
                    ["git", "-C", str(path), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout.strip()
            except subprocess.CalledProcessError as exc:
                raise SourceError(f"{repo}: commit {rev} not in {path}: {exc.stderr.strip()}") from None
            return cls(repo, path, full, True)
        return cls(repo, path, commit, False)

    def read(self, rel: str) -> str | None:
        """The text of ``rel`` in the snapshot, or None when the file is not there."""
        if self.git:
            done = subprocess.run(
                ["git", "-C", str(self.path), "show", f"{self.commit}:{rel}"],
                capture_output=True,
                text=True,
            )
            return done.stdout if done.returncode == 0 else None
        file = self.path / rel
        return file.read_text(encoding="utf-8") if file.is_file() else None

    @property
    def label(self) -> str:
        return f"{self.repo}@{self.commit or 'unknown-commit'}"


@dataclass
class Product:
    code: str
    tty: str
    name: str
    ingredients: set[str] = field(default_factory=set)
    inferred: bool = False  # TTY inferred from the name (supplement), not stated by the source


def infer_tty(name: str) -> str | None:
    """The RxNorm term type implied by an RxNorm name's pattern (None: not a product TTY we keep).

    ``{...} Pack [Brand]`` BPCK, ``{...} Pack`` GPCK; ``<ingr> <strength> <dose form>`` SCD and with
    a trailing ``[Brand]`` SBD; ``<ingr> <strength>`` SCDC and with ``[Brand]`` SBDC. A name with no
    strength (ingredient, brand name, SCDF/SBDF, SCDG/SBDG) gives None.
    """
    s = name.strip()
    if _PACK.match(s):
        return "BPCK" if s.endswith("]") else "GPCK"
    branded = bool(_BRAND.search(s))
    core = _BRAND.sub("", s)
    strengths = list(_STRENGTH.finditer(core))
    if not strengths:
        return None
    has_form = bool(core[strengths[-1].end() :].strip())
    if has_form:
        return "SBD" if branded else "SCD"
    return "SBDC" if branded else "SCDC"


def _inn_in(name: str) -> set[str]:
    low = name.lower()
    return {i for i in INGREDIENTS if re.search(rf"(?<![a-z]){i}(?![a-z])", low)}


def _walk(node: dict, out: list[dict]) -> None:
    out.append(node)
    for key in ("SCDCs", "SCDs", "SBDs", "GPCKs", "BPCKs", "BNs"):
        for child in node.get(key) or []:
            _walk(child, out)


def read_prescribable(snap: Snapshot, warnings: list[str]) -> tuple[dict[str, Product], set[str], set[str]]:
    """Products under each study ingredient's record (TTY as stated), the ingredients found, and
    every code seen under them (brand names included)."""
    products: dict[str, Product] = {}
    found: set[str] = set()
    seen: set[str] = set()
    letters = sorted({i[0].upper() for i in INGREDIENTS})
    records: dict[str, dict] = {}
    for letter in letters:
        rel = f"{PRESCRIBABLE_DIR}/{letter}.json"
        text = snap.read(rel)
        if text is None:
            raise SourceError(f"{snap.label}: {rel} not found")
        for rec in json.loads(text):
            records.setdefault(str(rec.get("RXCUI")), rec)
    for ingredient, rxcui in INGREDIENTS.items():
        rec = records.get(rxcui)
        if rec is None:
            warnings.append(f"{ingredient} ({rxcui}): no ingredient record in {snap.label}")
            continue
        if rec.get("TTY") != "IN" or str(rec.get("Name", "")).lower() != ingredient:
            what = f"{rec.get('TTY')} {rec.get('Name')!r}"
            raise SourceError(f"{snap.label}: RXCUI {rxcui} is {what}, not IN {ingredient}")
        found.add(ingredient)
        nodes: list[dict] = []
        _walk(rec, nodes)
        for node in nodes[1:]:
            tty, code, name = str(node.get("TTY")), str(node.get("RXCUI")), str(node.get("Name"))
            seen.add(code)
            if tty not in WANTED_TTY or code in INGREDIENTS.values():
                continue
            p = products.setdefault(code, Product(code, tty, name))
            if (p.tty, p.name) != (tty, name):
                raise SourceError(f"{snap.label}: RXCUI {code} has two names or TTYs")
            p.ingredients.add(ingredient)
    return products, found, seen


def read_trialjectory(snap: Snapshot) -> dict[str, set[str]]:
    """S8: ingredient -> the codes of its RxNorm family (names are matched case-insensitively)."""
    text = snap.read(TRIALJECTORY_FILE)
    if text is None:
        raise SourceError(f"{snap.label}: {TRIALJECTORY_FILE} not found")
    data = json.loads(text)
    families: dict[str, set[str]] = {i: set() for i in INGREDIENTS}
    for key, systems in data.items():
        ingredient = key.strip().lower()
        if ingredient in families and isinstance(systems, dict):
            families[ingredient].update(str(c) for c in systems.get("RxNorm") or [])
    return families


def read_cibmtr(snap: Snapshot) -> tuple[dict[str, str], dict[str, set[str]]]:
    """S9: code -> name from the value-set files, and code -> ingredients its value set states."""
    names: dict[str, str] = {}
    stated: dict[str, set[str]] = {}
    for fname in CIBMTR_FILES:
        rel = f"{CIBMTR_DIR}/{fname}"
        text = snap.read(rel)
        if text is None:
            raise SourceError(f"{snap.label}: {rel} not found")
        for m in _FSH_CODE.finditer(text):
            code, name = m.group(1), m.group(2).strip()
            if names.setdefault(code, name) != name:
                raise SourceError(f"{snap.label}: RXCUI {code} has two names ({names[code]!r}, {name!r})")
            if fname in CIBMTR_VS_INGREDIENT:
                stated.setdefault(code, set()).add(CIBMTR_VS_INGREDIENT[fname])
    return names, stated


def build(
    prescribable: Snapshot,
    cibmtr: Snapshot | None = None,
    trialjectory: Snapshot | None = None,
    *,
    date: str,
) -> tuple[str, list[str]]:
    """The YAML text, and warnings for the operator."""
    warnings: list[str] = []
    products, found, seen = read_prescribable(prescribable, warnings)
    families = read_trialjectory(trialjectory) if trialjectory else {i: set() for i in INGREDIENTS}
    names: dict[str, str] = {}
    stated: dict[str, set[str]] = {}
    if cibmtr:
        names, stated = read_cibmtr(cibmtr)
    family_of: dict[str, set[str]] = {}
    for ingredient, codes in families.items():
        for code in codes:
            family_of.setdefault(code, set()).add(ingredient)

    # S8 families and S9 value sets also say which ingredient a main-source product has
    for code, p in products.items():
        p.ingredients |= family_of.get(code, set()) | stated.get(code, set())

    # supplement: S9 names, TTY inferred
    for code, name in sorted(names.items()):
        if code in products or code in INGREDIENTS.values():
            continue
        ingredients = family_of.get(code, set()) | stated.get(code, set()) | _inn_in(name)
        if not ingredients:
            continue
        tty = infer_tty(name)
        if tty is None:
            continue
        products[code] = Product(code, tty, name, set(ingredients), inferred=True)

    # S8 codes that no source names: unresolved
    unresolved: dict[str, list[str]] = {}
    for ingredient, codes in families.items():
        left = [c for c in codes if c not in seen and c not in names and c not in INGREDIENTS.values()]
        if left:
            unresolved[ingredient] = sorted(left, key=int)

    rows = sorted(products.values(), key=lambda p: (sorted(p.ingredients)[0], int(p.code)))
    for ingredient in INGREDIENTS:
        if not any(ingredient in p.ingredients for p in rows):
            warnings.append(f"{ingredient}: no products found")
    multi = [p for p in rows if len(p.ingredients) > 1]
    for p in multi:
        warnings.append(f"{p.code} {p.name!r} has several study ingredients: {sorted(p.ingredients)}")
    return _render(rows, prescribable, cibmtr, trialjectory, date, unresolved, found), warnings


def _q(s: str) -> str:
    return json.dumps(s, ensure_ascii=True)


def _comment(text: str, indent: str = "") -> list[str]:
    """``text`` as ``#`` comment lines of at most 100 characters."""
    return textwrap.wrap(
        text,
        width=100,
        initial_indent=f"# {indent}",
        subsequent_indent=f"# {indent}    ",
        break_long_words=False,
        break_on_hyphens=False,
    )


def _render(
    rows: Iterable[Product],
    prescribable: Snapshot,
    cibmtr: Snapshot | None,
    trialjectory: Snapshot | None,
    date: str,
    unresolved: dict[str, list[str]],
    found: set[str],
) -> str:
    rows = list(rows)
    main = f"{prescribable.label}:{PRESCRIBABLE_DIR}/{{C,D,E,N,O,P,V}}.json"
    src = f"{main} (RxNorm 10/06/2025 Current Prescribable Content; TTY stated)"
    if cibmtr:
        files = ", ".join(CIBMTR_FILES)
        src += f"; {cibmtr.label}:{CIBMTR_DIR}/{{{files}}} (codes.md S9; TTY inferred from the name)"
    head: list[str] = [
        "# RxNorm products -> ingredient for every LEOPARD study drug (spec §2.1 v2): each SCD, SBD, SCDC,",
        "# SBDC, GPCK and BPCK that contains a study ingredient. GENERATED by scripts/drug_products.py;",
        "# do not edit by hand. The ingredient codes themselves are in mappings/drugs.yaml.",
        "#",
        f"# Generated {date} from:",
        f"#   1. {main}",
        "#      written by that repository's extract_rxnorm_ingredients.py from the RxNorm 10/06/2025",
        "#      Current Prescribable Content; TTY as stated there. It has no SBDC, and no obsolete or",
        "#      non-prescribable concept.",
    ]
    if cibmtr:
        head += [
            f"#   2. {cibmtr.label}:{CIBMTR_DIR}/",
            f"#      {{{', '.join(CIBMTR_FILES)}}} (codes.md S9).",
            "#      The TTY of these rows was INFERRED from the name pattern (marked '# tty inferred'):",
            "#      '<ingr> <strength> <form>' SCD, '... [Brand]' SBD, '<ingr> <strength>' SCDC,",
            "#      '<ingr> <strength> [Brand]' SBDC, '{...} Pack' GPCK, '{...} Pack [Brand]' BPCK.",
        ]
    if trialjectory:
        head += [
            f"#   Cross-check: {trialjectory.label}:{TRIALJECTORY_FILE}",
            "#      (codes.md S8, each drug's RxNorm family as codes only).",
        ]
    head += [
        "# Regenerate (each path a clone, bare mirror or copy of the repository; the commits above are",
        "# pinned in the script):",
        "#   python scripts/drug_products.py --prescribable <rxnorm-ingredients> \\",
        "#     --cibmtr <cibmtr-reporting-ig> \\",
        "#     --trialjectory <clinical-trial-matching-service-trialjectory> \\",
        "#     -o mappings/drug_products.yaml",
    ]
    missing = [i for i in INGREDIENTS if i not in found]
    if missing:
        head.append("#")
        head += _comment(f"No ingredient record in source 1 for: {', '.join(missing)}.")
    if unresolved:
        head.append("#")
        head += _comment(
            "Not shipped: codes of the S8 families that no source above names, so their TTY is unknown "
            "(most are SCDF, SBDF, SCDG, SBDG, BN or SBDC; any obsolete SCD/SBD among them is missed):"
        )
        for ingredient, codes in unresolved.items():
            head += _comment(f"{ingredient}: {', '.join(codes)}", indent="  ")
    out = [*head, "format_version: 1", "drug_products:", f"  source: {_q(src)}", "  products:"]
    for p in rows:
        ings = sorted(p.ingredients)
        item = f'    - {{code: "{p.code}", tty: {p.tty}, ingredient: {ings[0]}, name: {_q(p.name)}'
        if len(ings) > 1:
            item += f", also: [{', '.join(ings[1:])}]"
        item += "}"
        if p.inferred:
            item += "  # tty inferred"
        out.append(item)
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--prescribable",
        required=True,
        metavar="PATH[@COMMIT]",
        help=f"{PRESCRIBABLE_REPO} snapshot (default commit {PRESCRIBABLE_COMMIT[:12]})",
    )
    ap.add_argument(
        "--cibmtr",
        metavar="PATH[@COMMIT]",
        help=f"{CIBMTR_REPO} snapshot (default commit {CIBMTR_COMMIT[:12]})",
    )
    ap.add_argument(
        "--trialjectory",
        metavar="PATH[@COMMIT]",
        help=f"{TRIALJECTORY_REPO} snapshot (default commit {TRIALJECTORY_COMMIT[:12]})",
    )
    ap.add_argument("--date", default=dt.date.today().isoformat(), help="date written in the header")
    ap.add_argument("-o", "--output", default="-", help="output file (default: standard output)")
    args = ap.parse_args(argv)
    try:
        pres = Snapshot.open(PRESCRIBABLE_REPO, args.prescribable, PRESCRIBABLE_COMMIT)
        cib = Snapshot.open(CIBMTR_REPO, args.cibmtr, CIBMTR_COMMIT) if args.cibmtr else None
        tj = None
        if args.trialjectory:
            tj = Snapshot.open(TRIALJECTORY_REPO, args.trialjectory, TRIALJECTORY_COMMIT)
        text, warnings = build(pres, cib, tj, date=args.date)
    except SourceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for w in warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.output == "-":
        sys.stdout.write(text)
    else:
        Path(args.output).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
