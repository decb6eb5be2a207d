"""``leopard-etl status`` connects with the password from ``warehouse_password_env`` (issue 13 point 8)."""

from __future__ import annotations

from typing import Any

import pytest

from leopard_etl.pipeline import warehouse_status


def test_status_uses_the_password_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    seen: list[str] = []

    class Spy:
        def __init__(self, url: str, schema: str | None = None) -> None:
            seen.append(url)

        def runs(self, limit: int) -> list[dict[str, Any]]:
            return []

    config = tmp_path / "leopard.yaml"
    config.write_text(
        "warehouse: postgresql+psycopg://etl@db.example:5432/leopard\nwarehouse_password_env: WH_PW\n"
    )
    monkeypatch.setenv("WH_PW", "s3cret")
    monkeypatch.setattr("leopard_etl.warehouse.Warehouse", Spy)
    assert warehouse_status(None, config, 5) == ["no runs yet"]
    assert seen and ":s3cret@" in seen[0]
