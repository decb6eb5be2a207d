"""Helpers of the check tests: find lines, and prove that nothing changed on disk."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

from leopard_etl.check import CheckLine


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def folder_state(folder: Path) -> dict[str, str]:
    """Every file of a folder with its sha256: equal before and after means nothing changed there."""
    return {str(p.relative_to(folder)): digest(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def part(lines: Sequence[CheckLine], name: str) -> list[CheckLine]:
    return [line for line in lines if line.part == name]


def one(lines: Sequence[CheckLine], name: str, status: str | None = None) -> CheckLine:
    """The one line of ``name`` (with ``status`` if given); fails listing every line otherwise."""
    found = [x for x in part(lines, name) if status is None or x.status == status]
    assert len(found) == 1, "\n".join(str(x) for x in lines)
    return found[0]


def failures(lines: Sequence[CheckLine]) -> list[CheckLine]:
    return [line for line in lines if line.failed]
