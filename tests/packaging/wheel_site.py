"""Helpers of the packaging tests (fixtures in conftest.py): building, a fresh venv, running in it."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

#: What the Dockerfile's build stage copies into the build context, and all a wheel needs.
BUILD_INPUTS = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "src", "mappings", "sql")

#: The data folders the wheel carries as leopard_etl/_data/<name>.
DATA_DIRS = ("mappings", "sql")

SKIP = shutil.ignore_patterns("__pycache__", "*.py[cod]", "*.egg-info", ".*")


def run(
    argv: Sequence[str | Path], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    """Run a command, capture its output; the caller asserts on the result."""
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    """Assert exit code 0, showing the end of the output otherwise."""
    assert proc.returncode == 0, (
        f"{' '.join(proc.args)} → exit {proc.returncode}\n"
        f"stdout: {proc.stdout[-2000:]}\nstderr: {proc.stderr[-3000:]}"
    )
    return proc


def data_files(root: Path = REPO) -> dict[str, bytes]:
    """Files of mappings/ and sql/ (as paths relative to ``root``) → their bytes."""
    out = {}
    for name in DATA_DIRS:
        for path in sorted((root / name).rglob("*")):
            rel = path.relative_to(root)
            hidden = any(p.startswith((".", "__pycache__")) for p in rel.parts)
            if path.is_file() and not hidden and path.suffix != ".pyc":
                out[rel.as_posix()] = path.read_bytes()
    return out


@dataclass(frozen=True)
class Dists:
    tree: Path  # the copy of BUILD_INPUTS built from (the working tree may change meanwhile)
    sdist: Path
    wheel: Path  # built from the sdist (what `python -m build` and the Dockerfile do)
    tree_wheel: Path  # built straight from the tree (what `pip install .` does)
    seconds: float


@dataclass
class Site:
    """A fresh venv with the wheel installed; commands run from an empty folder outside the repo."""

    venv: Path
    home: Path
    env: dict[str, str]
    wheel: Path
    #: `leopard-etl run --omop postgresql+psycopg://…` before the postgres extra was installed
    without_driver: subprocess.CompletedProcess[str] | None = None
    psycopg_before_extra: str = ""
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def bin(self) -> Path:
        return self.venv / "bin"

    def run(
        self,
        *argv: str | Path,
        cwd: Path | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command of the venv (``leopard-etl``, ``python``…) with only the venv on PATH."""
        exe = self.bin / str(argv[0])
        cmd = [str(exe) if exe.exists() else str(argv[0]), *map(str, argv[1:])]
        return run(cmd, cwd=cwd or self.home, env={**self.env, **(env or {})}, timeout=timeout)

    def workdir(self, name: str) -> Path:
        d = self.home / name
        d.mkdir()
        return d


def clean_env(venv: Path) -> dict[str, str]:
    """The environment without anything pointing at the source tree or this test's venv."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP", "PYTHONSAFEPATH"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("LEOPARD_")}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and not p.startswith(str(REPO))]
    env["PATH"] = os.pathsep.join([str(venv / "bin"), *path])
    env["PYTHONNOUSERSITE"] = "1"
    env["VIRTUAL_ENV"] = str(venv)
    return env
