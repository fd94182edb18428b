"""The SparkSession factory: one place that decides how TweetOps' Spark jobs run.

The master comes from TWEETOPS_SPARK_MASTER (`local[2]` by default; `spark://host:7077` or
`k8s://https://...` in production), so the same job scales out to a cluster unchanged. Delta tables
are read and written through the `deltalake` data source of lakehouse/spark_delta.py, registered
here on every session (the Java delta-spark jars are not available; see docs/lakehouse.md).
"""
from __future__ import annotations

import logging
import os
import sys

from tweetops.core.settings import REPO_ROOT, Settings, load_settings

# Sized for a laptop / CI runner with 2 cores; a cluster overrides these via spark-defaults.conf.
LOCAL_CONF = {
    "spark.sql.shuffle.partitions": "4",
    "spark.default.parallelism": "2",
    "spark.ui.enabled": "false",
    "spark.ui.showConsoleProgress": "false",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
    "spark.sql.adaptive.enabled": "true",
    "spark.driver.memory": "2g",
}


def spark_session(settings: Settings | None = None, app_name: str = "tweetops"):
    """A SparkSession on the configured master, with the Delta data source registered.

    Returns the active session if one exists (Spark allows one per process); its master is then
    whatever the first caller chose.
    """
    from pyspark.sql import SparkSession

    settings = settings or load_settings()
    # Executors run the data source's reader/writer code: they must import this project and use
    # the same Python as the driver (same pyarrow, deltalake).
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    python_path = os.pathsep.join(paths if str(REPO_ROOT) in paths else [str(REPO_ROOT), *paths])
    os.environ["PYTHONPATH"] = python_path
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)

    if settings.spark_master.startswith("local"):
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")  # loopback only; no hostname warning
    log_config = _quiet_log_config(settings)

    builder = SparkSession.builder.master(settings.spark_master).appName(app_name)
    conf = dict(LOCAL_CONF)
    conf["spark.sql.warehouse.dir"] = str(settings.home / "spark-warehouse")  # never in the repo
    conf["spark.executorEnv.PYTHONPATH"] = python_path
    conf["spark.driver.extraJavaOptions"] = (f"-Dderby.system.home={settings.home / 'spark-derby'} "
                                             f"-Dlog4j2.configurationFile=file:{log_config}")
    if not settings.spark_master.startswith("local"):
        # A cluster sizes itself: keep only what affects results, not resources.
        # The console progress bar and log settings only quiet the driver's output.
        conf = {k: v for k, v in conf.items() if k in (
            "spark.sql.session.timeZone", "spark.sql.execution.arrow.pyspark.enabled",
            "spark.executorEnv.PYTHONPATH", "spark.sql.warehouse.dir", "spark.ui.showConsoleProgress",
            "spark.driver.extraJavaOptions")}
    for key, value in conf.items():
        builder = builder.config(key, value)
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # py4j logs every connection it closes at INFO, down to interpreter exit.
    logging.getLogger("py4j").setLevel(logging.WARNING)
    register_delta(spark)
    return spark


# Errors only; a failed task's stack trace is repeated in the Python exception the caller gets.
_LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = stderr
appender.console.type = Console
appender.console.name = stderr
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{HH:mm:ss} %p %c{1}: %m%n
logger.repl.name = org.apache.spark.repl.Main
logger.repl.level = error
logger.tasks.name = org.apache.spark.util.Utils
logger.tasks.level = off
logger.executor.name = org.apache.spark.executor.Executor
logger.executor.level = off
logger.tsm.name = org.apache.spark.scheduler.TaskSetManager
logger.tsm.level = off
logger.v2write.name = org.apache.spark.sql.execution.datasources.v2
logger.v2write.level = off
"""


def _quiet_log_config(settings: Settings):
    path = settings.home / "spark" / "log4j2.properties"
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists() or path.read_text() != _LOG4J2:
        path.write_text(_LOG4J2)
    return path


def register_delta(spark) -> None:
    """Make `spark.read.format("deltalake")` and `df.write.format("deltalake")` available."""
    from lakehouse.spark_delta import DeltaDataSource

    spark.dataSource.register(DeltaDataSource)


def spread_over_cores(df):
    """`df` in at least one partition per core the session has, so every core works on the
    per-tweet Python (a day's silver is often one file: one read split, one busy core)."""
    cores = df.sparkSession.sparkContext.defaultParallelism
    return df if df.rdd.getNumPartitions() >= cores else df.repartition(cores)
