"""Where the project's data folders (mappings/, sql/) live.

The repository keeps them at top level (design card). In order:

1. ``LEOPARD_HOME``: a folder holding mappings/ and sql/ (a site that ships its own copy);
2. the source checkout: the repository root beside ``src/`` (editable installs, tests);
3. the copy inside the installed package, ``leopard_etl/_data/`` (setup.py puts it in the wheel).
"""

from __future__ import annotations

import os
from importlib.resources import files
from pathlib import Path

__all__ = ["mappings_dir", "packaged_root", "project_root", "sql_dir"]

_DATA_DIRS = ("mappings", "sql")


def _has_data(root: Path) -> bool:
    return all((root / name).is_dir() for name in _DATA_DIRS)


def _checkout_root() -> Path:
    """The repository root if this module runs from ``<root>/src/leopard_etl/``."""
    return Path(__file__).resolve().parents[2]


def packaged_root() -> Path:
    """``leopard_etl/_data`` of the installed package (present in a wheel install only)."""
    return Path(str(files("leopard_etl").joinpath("_data")))


def project_root() -> Path:
    """The folder holding mappings/ and sql/."""
    env = os.environ.get("LEOPARD_HOME")
    if env:
        return Path(env)
    checkout = _checkout_root()
    in_checkout = Path(__file__).resolve().parent.parent.name == "src"
    if in_checkout and _has_data(checkout):
        return checkout
    packaged = packaged_root()
    if _has_data(packaged):
        return packaged
    # neither: the loaders' "… does not exist" then names the folder that should have been there
    return checkout if in_checkout else packaged


def mappings_dir() -> Path:
    return project_root() / "mappings"


def sql_dir() -> Path:
    return project_root() / "sql"
