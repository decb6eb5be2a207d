"""Settings of the Spark engine (``run --engine spark``): where Spark runs and how big its pieces are.

Kept apart from the engine so that the configuration can name :class:`SparkSettings`
without importing pyspark. Every field has a default that runs on one machine
(``local[*]``); on a cluster, ``spark-submit`` (YARN, Kubernetes) or the platform
(Databricks) already made the session and these settings only fill what it left open
(see docs/spark.md).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SparkSettings"]


class SparkSettings(BaseModel):
    """How the Spark engine gets and sizes its session (``spark:`` section of the run config)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    master: str = Field(
        "local[*]",
        description="Spark master URL; ignored when a session already exists (spark-submit, Databricks)",
    )
    app_name: str = Field("leopard-etl", description="application name shown in the Spark UI")
    driver_memory: str | None = Field(
        None, description="spark.driver.memory for a session started here (e.g. 4g); None: Spark's default"
    )
    executor_memory: str | None = Field(
        None, description="spark.executor.memory (e.g. 8g); None: Spark's default"
    )
    shuffle_partitions: int | None = Field(
        None,
        ge=1,
        description="spark.sql.shuffle.partitions; None: 2 x the cores (local) or the session's value",
    )
    patients_per_task: int = Field(
        1_000,
        ge=1,
        description="screened patients derived together in one Python task (one cohort derive call)",
    )
    max_partition_bytes: str = Field(
        "128m", description="spark.sql.files.maxPartitionBytes: the size of one FHIR input split"
    )
    local_dir: str | None = Field(
        None, description="spark.local.dir (shuffle and spill files); None: Spark's"
    )
    ui: bool = Field(False, description="start the Spark UI for a session started here")
    extra: dict[str, str] = Field(
        default_factory=dict,
        description="any other spark.* settings, passed as they are (e.g. spark.jars.packages)",
    )
    driver_java_options: str | None = Field(
        None, description="spark.driver.extraJavaOptions for a session started here (tests: faster JVM start)"
    )
