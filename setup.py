"""Build hook: ship the top-level data folders inside the package.

The repository keeps ``mappings/`` and ``sql/`` at its top level (design card); an
installed wheel has no repository around it, so ``build_py`` copies both into
``leopard_etl/_data/`` of the build. ``leopard_etl.paths`` finds that copy when
neither ``LEOPARD_HOME`` nor a source checkout is there. The sdist carries the two
folders (MANIFEST.in), so a wheel built from the sdist has the same contents as one
built from the tree. Everything else is declared in pyproject.toml.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = Path(__file__).resolve().parent
DATA_DIRS = ("mappings", "sql")
PACKAGE_DATA = Path("leopard_etl") / "_data"


def _data_files() -> list[tuple[Path, Path]]:
    """(source file, path inside the package) of every file shipped from the data folders."""
    files = []
    for name in DATA_DIRS:
        source = HERE / name
        if not source.is_dir():
            raise SystemExit(f"setup.py: {source} is missing; the wheel would have no {name}/")
        for path in sorted(source.rglob("*")):
            rel = path.relative_to(HERE)
            hidden = any(part.startswith((".", "__pycache__")) for part in rel.parts)
            if path.is_file() and not hidden and path.suffix != ".pyc":
                files.append((path, PACKAGE_DATA / rel))
    return files


class BuildPyWithData(build_py):
    """``build_py`` plus a copy of mappings/ and sql/ into ``leopard_etl/_data``."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the checkout's own folders
        shutil.rmtree(Path(self.build_lib) / PACKAGE_DATA, ignore_errors=True)  # no stale files
        for source, rel in _data_files():
            dest = Path(self.build_lib) / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest)

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = list(super().get_outputs(include_bytecode))
        if not getattr(self, "editable_mode", False):
            outputs += [str(Path(self.build_lib) / rel) for _, rel in _data_files()]
        return outputs


setup(cmdclass={"build_py": BuildPyWithData})
