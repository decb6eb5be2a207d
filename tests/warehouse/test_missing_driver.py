"""A warehouse URL whose driver is not installed names the install that fixes it (issue 12)."""

from __future__ import annotations

import sys

import pytest

from leopard_etl.errors import ConfigError
from leopard_etl.warehouse.store import Warehouse


def test_postgres_warehouse_without_psycopg_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "psycopg" or m.startswith("psycopg.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ModuleNotFoundError
    with pytest.raises(ConfigError) as err:
        Warehouse("postgresql+psycopg://etl:secret@127.0.0.1:5432/leopard")
    assert err.value.exit_code == 2
    assert "pip install 'leopard-etl[postgres]'" in str(err.value) and "secret" not in str(err.value)
