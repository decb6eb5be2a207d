"""The Spark session of a run: the one spark-submit or the platform made, else a new one from the settings."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from .settings import SparkSettings

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["find_java_home", "spark_session", "sql_conf"]

#: Java versions Spark 4 runs on, most preferred first
_JAVA_VERSIONS = ("17", "21")


def find_java_home() -> str | None:
    """``JAVA_HOME``, else a Java 17 / 21 under /usr/lib/jvm (Debian, Ubuntu), else None (java on PATH)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    root = Path("/usr/lib/jvm")
    if root.is_dir():
        for version in _JAVA_VERSIONS:
            for home in sorted(root.glob(f"*{version}*")):
                if (home / "bin" / "java").is_file():
                    return str(home)
    return None


def _import_pyspark() -> Any:
    try:
        import pyspark
    except ImportError:
        raise ConfigError(
            "the Spark engine needs pyspark", fix="pip install 'leopard-etl[spark]' (pyspark>=4 and Java 17)"
        ) from None
    return pyspark


def spark_session(settings: SparkSettings) -> SparkSession:
    """The active session (spark-submit, Databricks, a notebook), else one started from ``settings``.

    A session started here runs its Python workers on this interpreter (``local[*]``), so they see
    leopard-etl; on a cluster the platform decides and leopard-etl must be installed on every node.
    """
    _import_pyspark()
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        if settings.shuffle_partitions is not None:
            active.conf.set("spark.sql.shuffle.partitions", str(settings.shuffle_partitions))
        return active
    java = find_java_home()
    if java and not os.environ.get("JAVA_HOME"):
        os.environ["JAVA_HOME"] = java
    builder = SparkSession.builder.appName(settings.app_name)
    # Under spark-submit (YARN, Kubernetes) or on Databricks the JVM already runs with its master:
    # never override it. Otherwise this process starts Spark with the configured master.
    managed = bool(os.environ.get("PYSPARK_GATEWAY_PORT") or os.environ.get("DATABRICKS_RUNTIME_VERSION"))
    master = "" if managed else settings.master
    if master:
        builder = builder.master(master)
    if master.startswith("local"):
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    conf: dict[str, str] = {
        "spark.ui.enabled": str(settings.ui).lower(),
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
        "spark.sql.files.maxPartitionBytes": settings.max_partition_bytes,
    }
    if settings.driver_memory:
        conf["spark.driver.memory"] = settings.driver_memory
    if settings.executor_memory:
        conf["spark.executor.memory"] = settings.executor_memory
    if settings.shuffle_partitions is not None:
        conf["spark.sql.shuffle.partitions"] = str(settings.shuffle_partitions)
    elif master.startswith("local"):
        conf["spark.sql.shuffle.partitions"] = str(2 * (os.cpu_count() or 2))
    if settings.local_dir:
        conf["spark.local.dir"] = settings.local_dir
    if settings.driver_java_options:
        conf["spark.driver.extraJavaOptions"] = settings.driver_java_options
    conf.update(settings.extra)
    for key, value in conf.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # the JVM did not start: say so in one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ConfigError(
            f"cannot start Spark ({master or 'spark-submit'}): {first}",
            fix="install Java 17 (or set JAVA_HOME) and check the spark settings",
        ) from None
    session.sparkContext.setLogLevel("WARN")
    return session


@contextmanager
def sql_conf(spark: SparkSession, **settings: str) -> Iterator[None]:
    """Set SQL settings for a block (dots as ``__``) and restore the session's own values after it."""
    names = {key.replace("__", "."): value for key, value in settings.items()}
    before: dict[str, str | None] = {name: spark.conf.get(name, None) for name in names}
    for name, value in names.items():
        spark.conf.set(name, value)
    try:
        yield
    finally:
        for name, old in before.items():
            if old is None:
                spark.conf.unset(name)
            else:
                spark.conf.set(name, old)
