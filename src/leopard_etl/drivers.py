"""Which package brings a missing database driver: one answer for every database URL we open.

A site that points ``--omop`` or ``--warehouse`` at PostgreSQL without the ``postgres`` extra
gets ``ModuleNotFoundError: psycopg`` from SQLAlchemy; the fix is an install, not a URL change.
"""

from __future__ import annotations

from .errors import ConfigError

__all__ = ["missing_driver"]

#: Python module of a DBAPI driver -> what installs it
INSTALLS = {
    "psycopg": "pip install 'leopard-etl[postgres]'",
    "psycopg2": "pip install 'leopard-etl[postgres]' and use postgresql+psycopg://",
    "pymysql": "pip install PyMySQL",
    "MySQLdb": "pip install mysqlclient",
    "pyodbc": "pip install pyodbc",
    "pymssql": "pip install pymssql",
    "oracledb": "pip install oracledb",
    "cx_Oracle": "pip install oracledb and use oracle+oracledb://",
}


def missing_driver(where: str, exc: BaseException) -> ConfigError | None:
    """The one-line error for a driver module that is not installed; None for any other error.

    ``where`` names the database as it may be shown (no password).
    """
    if not isinstance(exc, ModuleNotFoundError) or not exc.name:
        return None
    module = exc.name.split(".")[0]
    return ConfigError(
        f"cannot use {where}: its driver (Python module {module!r}) is not installed",
        fix=INSTALLS.get(module, f"pip install the package that provides the module {module!r}"),
    )
