"""Comparing warehouse contents: typed rows of every table, engine-neutral."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from leopard_etl.warehouse import Warehouse
from leopard_etl.warehouse.schema import DERIVED_TABLES, EVENT_STORE_TABLES, METADATA

LOADER = Path(__file__).with_name("warehouse_loader.py")


def _cell(value: Any) -> Any:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.date()
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    return value


def rows(df: pd.DataFrame, table: str) -> list[tuple[Any, ...]]:
    """Rows in schema column order, cells as plain Python values, sorted."""
    cols = [c.name for c in METADATA.tables[table].columns if c.name in df.columns]
    out = [tuple(_cell(v) for v in rec) for rec in df[cols].itertuples(index=False, name=None)]
    return sorted(out, key=lambda r: tuple((v is None, str(v)) for v in r))


def snapshot(
    wh: Warehouse, tables: tuple[str, ...] = DERIVED_TABLES + EVENT_STORE_TABLES
) -> dict[str, list[Any]]:
    return {name: rows(wh.read_table(name), name) for name in tables}


def expected(frames: dict[str, pd.DataFrame]) -> dict[str, list[Any]]:
    return {name: rows(df, name) for name, df in frames.items()}


def spawn(
    url: str, schema: str, action: str, variant: int = 0, pause: str | None = None
) -> subprocess.Popen[str]:
    args = [sys.executable, str(LOADER), url, schema, action, str(variant)] + ([pause] if pause else [])
    env = {**os.environ, "PYTHONPATH": str(LOADER.parent)}
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(proc: subprocess.Popen[str], marker: str) -> str:
    """Read the child's stdout until a line starting with ``marker`` (or its exit)."""
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith(marker):
            return line.strip()
    _, err = proc.communicate()
    raise AssertionError(f"child exited {proc.returncode} before {marker!r}: {err[-2000:]}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
