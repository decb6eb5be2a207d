"""Driving ``leopard-etl`` as a scheduler does — a real process — and reading back what it left.

A warehouse is compared by its rows as plain Python values, sorted (row order is not
part of the contract). ``spawn`` starts a run that stops at a write checkpoint
(``LEOPARD_PAUSE_AT``); the test then kills it, or resumes it with a line on stdin.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from leopard_etl.warehouse import Warehouse
from leopard_etl.warehouse.schema import DERIVED_TABLES

CLI = [sys.executable, "-m", "leopard_etl.cli"]
TIMEOUT = 180


@dataclass(frozen=True)
class Target:
    """A warehouse: URL and schema (None = the engine's default schema)."""

    url: str
    schema: str | None

    def env(self) -> dict[str, str]:
        return {"LEOPARD_WAREHOUSE_SCHEMA": self.schema} if self.schema else {}

    def open(self) -> Warehouse:
        return Warehouse(self.url, self.schema)


def _env(target: Target | None, extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LEOPARD_")}
    return {**env, **(target.env() if target else {}), **(extra or {})}


def run_args(source: list[str], target: Target, out: Path, *more: str) -> list[str]:
    return ["run", *source, "--warehouse", target.url, "--out", str(out), *more]


def cli(args: list[str], target: Target | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI to its end."""
    return subprocess.run(
        CLI + args, capture_output=True, text=True, env=_env(target), timeout=TIMEOUT, check=False
    )


def cli_ok(args: list[str], target: Target) -> subprocess.CompletedProcess[str]:
    done = cli(args, target)
    assert done.returncode == 0, f"exit {done.returncode}: {done.stderr[-3000:]}"
    return done


def spawn(args: list[str], target: Target, pause: str) -> subprocess.Popen[str]:
    """Start the CLI so that it stops at checkpoint ``pause``."""
    return subprocess.Popen(
        CLI + args,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(target, {"LEOPARD_PAUSE_AT": pause}),
    )


def wait_paused(proc: subprocess.Popen[str], point: str) -> None:
    """Read the child's stderr until it says it paused at ``point``."""
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if line.startswith(f"leopard-etl: paused at {point} "):
            return
    proc.wait(TIMEOUT)
    raise AssertionError(f"run exited {proc.returncode} before pausing at {point}: {''.join(seen)[-3000:]}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == -signal.SIGKILL


def resume(proc: subprocess.Popen[str]) -> tuple[int, str]:
    """Let a paused run go on; returns its exit code and remaining stderr."""
    _, err = proc.communicate("\n", timeout=TIMEOUT)
    return proc.returncode, err


def _cell(value: Any) -> Any:
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, float):
        return round(value, 9)
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def rows(df: pd.DataFrame, drop: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    cols = [c for c in df.columns if c not in drop]
    out = [tuple(_cell(v) for v in rec) for rec in df[cols].itertuples(index=False, name=None)]
    return sorted(out, key=lambda r: tuple((v is None, str(v)) for v in r))


def state(target: Target, tables: tuple[str, ...] = DERIVED_TABLES) -> dict[str, list[tuple[Any, ...]]]:
    """Rows of ``tables`` (run ids left out: they name the run, not the data)."""
    with target.open() as wh:
        return {name: rows(wh.read_table(name), drop=("run_id",)) for name in tables}


def store(target: Target) -> dict[str, list[tuple[Any, ...]]]:
    """The event store (events and patients) without run ids."""
    return state(target, ("source_event", "source_patient"))


def runs(target: Target) -> list[dict[str, Any]]:
    """etl_run rows, oldest first."""
    with target.open() as wh:
        return list(reversed(wh.runs(100)))


def patients_csv(out: Path) -> str:
    return (out / "patients.csv").read_text(encoding="utf-8")


def reference_run(args: list[str], target: Target, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same CLI in this process (no interpreter start-up): the clean run results are compared with."""
    from leopard_etl.cli import main

    for name in [k for k in os.environ if k.startswith("LEOPARD_")]:
        monkeypatch.delenv(name)
    for name, value in target.env().items():
        monkeypatch.setenv(name, value)
    assert main(args) == 0
