"""Where the project's data folders (mappings/, sql/) live.

The repository keeps them at top level (design card); an editable install sees them
there. ``LEOPARD_HOME`` points elsewhere for a site that ships its own copy.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["mappings_dir", "project_root", "sql_dir"]


def project_root() -> Path:
    """The folder holding mappings/ and sql/."""
    env = os.environ.get("LEOPARD_HOME")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2]


def mappings_dir() -> Path:
    return project_root() / "mappings"


def sql_dir() -> Path:
    return project_root() / "sql"
