"""Fixtures of the packaging tests: the sdist and wheels as `python -m build` makes them, and a
fresh virtual environment with the wheel installed, far from the source tree.

The build runs on a copy of exactly the files the Dockerfile's build stage copies
(``BUILD_INPUTS``; test_container.py checks the two lists agree), so what is tested is
what the image installs. Both steps are session-scoped: they cost about a minute together.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from wheel_site import BUILD_INPUTS, REPO, SKIP, Dists, Site, clean_env, ok, run


@pytest.fixture(scope="session")
def dists() -> Iterator[Dists]:
    import time

    t0 = time.perf_counter()
    with _own_tmp("build") as base:
        yield _build(base, t0)


def _own_tmp(name: str) -> tempfile.TemporaryDirectory[str]:
    """A temporary folder of our own: pytest's basetemp rotation (another pytest run on the same
    machine keeps only the last three) must not delete a venv this session still uses."""
    return tempfile.TemporaryDirectory(prefix=f"leopard-{name}-", ignore_cleanup_errors=True)


def _build(base_dir: str, t0: float) -> Dists:
    import time

    base = Path(base_dir)
    tree = base / "tree"
    tree.mkdir()
    for name in BUILD_INPUTS:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, tree / name, ignore=SKIP)
        else:
            shutil.copy2(src, tree / name)
    # `python -m build` without --sdist/--wheel: the sdist, then the wheel built from the sdist
    ok(run([sys.executable, "-m", "build", "--outdir", base / "dist", tree], cwd=base))
    ok(run([sys.executable, "-m", "build", "--wheel", "--outdir", base / "tree-dist", tree], cwd=base))
    (sdist,) = (base / "dist").glob("leopard_etl-*.tar.gz")
    (wheel,) = (base / "dist").glob("leopard_etl-*.whl")
    (tree_wheel,) = (base / "tree-dist").glob("leopard_etl-*.whl")
    return Dists(tree, sdist, wheel, tree_wheel, time.perf_counter() - t0)


@pytest.fixture(scope="session")
def site(dists: Dists) -> Iterator[Site]:
    """``python -m venv`` + ``pip install <wheel>``, the missing-driver check, then ``<wheel>[postgres]``.

    The image installs the same way (Dockerfile: venv, ``pip install "<wheel>[postgres]"``).
    """
    with _own_tmp("site") as root:
        yield _install(dists, Path(root))


def _install(dists: Dists, root: Path) -> Site:
    import time

    venv, home = root / "venv", root / "home"
    home.mkdir()
    s = Site(venv=venv, home=home, env=clean_env(venv), wheel=dists.wheel)
    t0 = time.perf_counter()
    ok(run([sys.executable, "-m", "venv", venv], cwd=home))
    # --no-compile: the only difference from the Dockerfile's install; saves ~30 s of CPU
    ok(s.run("python", "-m", "pip", "install", "--no-input", "--no-compile", dists.wheel))
    s.seconds["install"] = time.perf_counter() - t0
    probe = ok(s.run("python", "-c", "import importlib.util as u; print(u.find_spec('psycopg'))"))
    s.psycopg_before_extra = probe.stdout.strip()
    s.without_driver = s.run(
        "leopard-etl", "run", "--omop", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres",
        "--out", s.workdir("no-driver"), timeout=300,
    )  # fmt: skip
    t0 = time.perf_counter()
    ok(s.run("python", "-m", "pip", "install", "--no-input", "--no-compile", f"{dists.wheel}[postgres]"))
    s.seconds["install_postgres_extra"] = time.perf_counter() - t0
    return s
