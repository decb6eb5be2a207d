"""The warehouse: schema, migrations, event store, atomic loads and the run log.

``Warehouse`` is imported lazily so that ``leopard_etl.warehouse.schema`` (used by
DDL rendering and other packages) does not pull in pandas and pyarrow.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from leopard_etl.warehouse.store import Warehouse

__all__ = ["Warehouse"]


def __getattr__(name: str) -> Any:
    if name == "Warehouse":
        from leopard_etl.warehouse.store import Warehouse

        return Warehouse
    raise AttributeError(name)
