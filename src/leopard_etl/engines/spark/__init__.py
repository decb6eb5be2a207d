"""``run --engine spark``: the same run on Apache Spark (``pip install 'leopard-etl[spark]'``, Java 17).

FHIR NDJSON (local, ``hdfs://``, ``s3a://`` …) is read by Spark tasks through the one FHIR reader;
an OMOP CDM held as Spark tables (``spark:DB``) or Parquet / Delta folders (``parquet:/path``) is
read by the one OMOP reader, its SQL run by Spark SQL; the unchanged cohort rules run per group of
patients in Spark tasks. Only the derived tables come back to the driver, for the default writers.
See docs/spark.md. Importing this package does not import pyspark.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import SparkSettings

if TYPE_CHECKING:
    from .run import SparkRun, run_spark

__all__ = ["SparkRun", "SparkSettings", "run_spark"]


def __getattr__(name: str) -> Any:
    if name in ("SparkRun", "run_spark"):
        from . import run

        return getattr(run, name)
    raise AttributeError(name)
