"""Spark on Delta without the Java jars: a pyspark Python Data Source named `deltalake`.

delta-rs (`deltalake`) owns the Delta log; Spark does the compute.
- Reading: the driver lists the snapshot's files (optionally at a version) and Spark reads them in
  parallel with pyarrow, a few files per task, adding the partition values from the log.
- Writing: each Spark task writes parquet files into the table folder and reports them; the
  driver validates every written file's schema against the table's schema, then commits them in
  ONE Delta commit (append, overwrite, or replace the partitions matching a predicate). On any
  failure the written files are deleted and the table is left unchanged.

Storage settings (URI, S3 endpoint and keys) travel as options, because Spark runs this code in
worker processes that do not see the driver's environment. Use `read_table` / `write_table`.
"""
from __future__ import annotations

import base64
import datetime as dt
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pyarrow as pa
from pyspark.sql.datasource import (
    DataSource,
    DataSourceArrowWriter,
    DataSourceReader,
    InputPartition,
    WriterCommitMessage,
)

# A read task reads files until it holds about this many bytes: few tasks for many small files.
TARGET_SPLIT_BYTES = 64 * 1024 * 1024


class DeltaWriteError(RuntimeError):
    """A Spark write to a Delta table was refused or failed; the table was left unchanged."""


# ---------------------------------------------------------------------------------------------
# Public helpers: what pipeline code calls.

def read_table(spark, name: str, version: int | None = None, settings=None):
    """A DataFrame over catalog table `name` (at `version`, or the latest); created empty if new."""
    from tweetops.core.storage import storage_options, table_uri
    from tweetops.core.settings import load_settings

    settings = settings or load_settings()
    _ensure_table(name, settings)
    reader = (spark.read.format(DeltaDataSource.name())
              .option("storage_options", json.dumps(storage_options(settings)))
              .option("min_partitions", str(spark.sparkContext.defaultParallelism)))
    if version is not None:
        reader = reader.option("version", str(int(version)))
    return reader.load(table_uri(name, settings))


def write_table(df, name: str, mode: str = "append", replace_where: str | None = None, settings=None,
                commit_metadata: dict[str, str] | None = None) -> int:
    """Write `df` to catalog table `name` as ONE Delta commit and return the new table version.

    mode "append" adds the rows; "overwrite" replaces the whole table, or with `replace_where`
    (a SQL predicate on partition columns, e.g. "event_date >= '2026-11-01' AND event_date <
    '2026-11-02'") exactly the partitions it matches: rerunning the same job gives the same table.
    `commit_metadata` is added to the commit's custom metadata (which step wrote it, and with what).
    """
    from deltalake import DeltaTable

    from tweetops.core.storage import storage_options, table_uri
    from tweetops.core.settings import load_settings

    if mode not in ("append", "overwrite"):
        raise ValueError(f"write_table mode {mode!r}: expected 'append' or 'overwrite'")
    if replace_where and mode != "overwrite":
        raise ValueError("write_table replace_where needs mode='overwrite' (it replaces the matching partitions)")
    settings = settings or load_settings()
    table = _ensure_table(name, settings)
    uri, options = table_uri(name, settings), storage_options(settings)
    check_schema(df.schema, pa.schema(table.schema().to_arrow()), name)
    write_id = uuid.uuid4().hex
    writer = (df.write.format(DeltaDataSource.name()).mode(mode)
              .option("storage_options", json.dumps(options))
              .option("write_id", write_id))
    if replace_where:
        writer = writer.option("replace_where", replace_where)
    if commit_metadata:
        writer = writer.option("commit_metadata", json.dumps(commit_metadata))
    try:
        writer.save(uri)
    except Exception as exc:
        if _version_of_write(DeltaTable(uri, storage_options=options), write_id) is None:
            _sweep_failed_write(spark=df.sparkSession, uri=uri, options=options, write_id=write_id)
        # Spark wraps our refusal in a Python worker traceback: surface the one line that matters.
        marker = "DeltaWriteError: "
        message = str(exc)
        if marker in message:
            raise DeltaWriteError(f"{name}: " + message.split(marker, 1)[1].splitlines()[0]) from None
        raise
    table = DeltaTable(uri, storage_options=options)
    version = _version_of_write(table, write_id)
    return table.version() if version is None else version  # None: an empty append, nothing committed


def _sweep_failed_write(spark, uri: str, options: dict[str, str], write_id: str, wait_s: float = 60) -> None:
    """Delete every file a failed write left behind. When a job fails, Spark cancels its other
    tasks, but a task that was finishing may still close a file after `abort()` ran: wait until
    the cluster is idle, then delete the files named after this write."""
    deadline = time.monotonic() + wait_s
    tracker = spark.sparkContext.statusTracker()
    while tracker.getActiveStageIds() and time.monotonic() < deadline:
        time.sleep(0.2)
    _delete_files(uri, options, _files_of_write(uri, options, write_id))


def _files_of_write(uri: str, options: dict[str, str], write_id: str) -> list[str]:
    from pyarrow.fs import FileSelector

    filesystem, base = _filesystem(uri, options)
    prefix = f"part-{write_id}-"
    return [info.path[len(base) + 1:] for info in filesystem.get_file_info(FileSelector(base, recursive=True))
            if info.base_name.startswith(prefix)]


def _ensure_table(name: str, settings):
    """ensure_table, also on a fresh S3 root whose bucket does not exist yet."""
    from tweetops.core.storage import ensure_bucket
    from tweetops.core.tables import ensure_table

    try:
        return ensure_table(name, settings)
    except OSError as exc:
        if "NoSuchBucket" not in str(exc):
            raise
        ensure_bucket(settings)
        return ensure_table(name, settings)


def check_schema(spark_schema, table_schema: pa.Schema, name: str) -> None:
    """Refuse a DataFrame whose columns or types differ from the table's, before any job runs.
    (Nullability is checked on the data itself, while writing.)"""
    from pyspark.sql.pandas.types import to_arrow_schema

    try:
        arrow = to_arrow_schema(spark_schema, timezone="UTC")
    except Exception as exc:
        raise DeltaWriteError(f"{name}: the DataFrame has a type the table cannot hold: {exc}") from None
    problems = []
    missing = [f.name for f in table_schema if arrow.get_field_index(f.name) < 0]
    extra = [f.name for f in arrow if table_schema.get_field_index(f.name) < 0]
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unknown columns {extra}")
    for f in table_schema:
        i = arrow.get_field_index(f.name)
        if i >= 0 and arrow.field(i).type != f.type and not (
                pa.types.is_timestamp(f.type) and pa.types.is_timestamp(arrow.field(i).type)):
            problems.append(f"column {f.name!r} is {arrow.field(i).type}, the table expects {f.type}")
    if problems:
        raise DeltaWriteError(f"{name}: the DataFrame does not match the table schema: " + "; ".join(problems)
                              + " (select and cast the columns to the schema in tweetops/core/tables.py)")


def _version_of_write(table, write_id: str) -> int | None:
    """The version our commit got (others may have committed since), found by its write id;
    None if this write committed nothing."""
    for commit in table.history(limit=100):
        if commit.get("tweetops.writeId") == write_id:
            return int(commit["version"])
    return None


# ---------------------------------------------------------------------------------------------
# Storage access from worker processes.

def _filesystem(uri: str, options: dict[str, str]):
    """A pyarrow filesystem and the path of `uri` on it (S3 or local)."""
    from pyarrow import fs

    if uri.startswith("s3://"):
        endpoint = options.get("AWS_ENDPOINT_URL")
        s3 = fs.S3FileSystem(
            access_key=options.get("AWS_ACCESS_KEY_ID") or None,
            secret_key=options.get("AWS_SECRET_ACCESS_KEY") or None,
            region=options.get("AWS_REGION", "us-east-1"),
            endpoint_override=endpoint.split("://", 1)[-1] if endpoint else None,
            scheme="http" if endpoint and endpoint.startswith("http://") else "https",
            force_virtual_addressing=options.get("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "false") == "true",
        )
        return s3, uri.removeprefix("s3://")
    return fs.LocalFileSystem(), uri.removeprefix("file://")


def _delete_files(root: str, options: dict[str, str], relative_paths: list[str]) -> None:
    filesystem, base = _filesystem(root, options)
    for path in relative_paths:
        try:
            filesystem.delete_file(f"{base}/{path}")
        except (FileNotFoundError, OSError):
            pass  # already gone: deleting is idempotent


def _schema_b64(schema: pa.Schema) -> str:
    return base64.b64encode(schema.serialize().to_pybytes()).decode()


def _schema_from_b64(text: str) -> pa.Schema:
    return pa.ipc.read_schema(pa.py_buffer(base64.b64decode(text)))


def _partition_string(value) -> str | None:
    """A partition value as the Delta log stores it."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _partition_value(text: str | None, dtype: pa.DataType) -> pa.Scalar:
    if text is None:
        return pa.scalar(None, type=dtype)
    if pa.types.is_date(dtype):
        return pa.scalar(dt.date.fromisoformat(text), type=dtype)
    if pa.types.is_timestamp(dtype):
        return pa.scalar(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc), type=dtype)
    if pa.types.is_boolean(dtype):
        return pa.scalar(text == "true", type=dtype)
    if pa.types.is_string(dtype):
        return pa.scalar(text, type=dtype)
    return pa.scalar(text).cast(dtype)


# ---------------------------------------------------------------------------------------------
# The data source.

class DeltaDataSource(DataSource):
    """`spark.read.format("deltalake").load(uri)` and `df.write.format("deltalake").save(uri)`.

    Options: storage_options (JSON of delta-rs storage options), version (time travel, reads),
    replace_where (overwrite only the partitions matching a predicate), min_partitions (reads).
    """

    @classmethod
    def name(cls) -> str:
        return "deltalake"

    def _uri(self) -> str:
        uri = self.options.get("path")
        if not uri:
            raise ValueError("the deltalake data source needs a table URI: .load(uri) / .save(uri)")
        return uri.rstrip("/")

    def _storage_options(self) -> dict[str, str]:
        return json.loads(self.options.get("storage_options") or "{}")

    def _table(self, version: int | None = None):
        from deltalake import DeltaTable
        from deltalake.exceptions import TableNotFoundError

        try:
            return DeltaTable(self._uri(), version=version, storage_options=self._storage_options())
        except TableNotFoundError:
            raise ValueError(f"no Delta table at {self._uri()} (create it first, e.g. with "
                             "tweetops.core.tables.ensure_table)") from None

    def _version(self) -> int | None:
        version = self.options.get("version")
        return int(version) if version not in (None, "") else None

    def schema(self):
        from pyspark.sql.pandas.types import from_arrow_schema

        return from_arrow_schema(pa.schema(self._table(self._version()).schema().to_arrow()))

    def reader(self, schema):
        table = self._table(self._version())
        return DeltaReader(self._uri(), self._storage_options(), table,
                           int(self.options.get("min_partitions") or 2))

    def writer(self, schema, overwrite: bool):
        return DeltaWriter(self._uri(), self._storage_options(), self._table(), overwrite,
                           self.options.get("replace_where") or None, self.options.get("write_id") or uuid.uuid4().hex,
                           json.loads(self.options.get("commit_metadata") or "{}"))


class FileSplit(InputPartition):
    """The files one read task reads: (relative path, {partition column: value as logged})."""

    def __init__(self):
        super().__init__(None)
        self.files: list[tuple[str, dict[str, str | None]]] = []
        self.size = 0


class DeltaReader(DataSourceReader):
    """Reads one snapshot. No filter pushdown on purpose: Spark filters after the scan."""

    def __init__(self, uri: str, options: dict[str, str], table, min_partitions: int):
        self.uri, self.options = uri, options
        schema = pa.schema(table.schema().to_arrow())
        self.schema_b64 = _schema_b64(schema)
        self.partition_columns = list(table.metadata().partition_columns)
        actions = pa.table(table.get_add_actions(flatten=True)).to_pylist()
        files = [(a["path"], {c: _partition_string(a.get(f"partition.{c}")) for c in self.partition_columns},
                  int(a["size_bytes"])) for a in actions]
        self.splits = self._plan(files, min_partitions)

    @staticmethod
    def _plan(files, min_partitions: int) -> list[FileSplit]:
        """Bin-pack files (largest first) into splits of about TARGET_SPLIT_BYTES, at least
        `min_partitions` of them so every core has work."""
        if not files:
            return []
        total = sum(size for _, _, size in files)
        target = max(1, min(TARGET_SPLIT_BYTES, total // max(1, min_partitions)))
        splits: list[FileSplit] = []
        for path, values, size in sorted(files, key=lambda f: -f[2]):
            emptiest = min(splits, key=lambda s: s.size) if splits else None
            if emptiest is None or (emptiest.size + size > target and len(splits) < len(files)):
                emptiest = FileSplit()
                splits.append(emptiest)
            emptiest.files.append((path, values))
            emptiest.size += size
        return splits

    def partitions(self):
        # Spark needs at least one partition, even for an empty table.
        return self.splits or [FileSplit()]

    def read(self, partition: FileSplit) -> Iterator[pa.RecordBatch]:
        import pyarrow.parquet as pq

        schema = _schema_from_b64(self.schema_b64)
        filesystem, base = _filesystem(self.uri, self.options)
        for path, values in partition.files:
            from urllib.parse import unquote

            with filesystem.open_input_file(f"{base}/{unquote(path)}") as handle:
                for batch in pq.ParquetFile(handle).iter_batches(batch_size=65536):
                    yield _conform(batch, schema, values)


def _conform(batch: pa.RecordBatch, schema: pa.Schema, partition_values: dict[str, str | None]) -> pa.RecordBatch:
    """A file's batch in the table's column order, with partition columns filled from the log."""
    columns = []
    for f in schema:
        if f.name in partition_values:
            columns.append(pa.repeat(_partition_value(partition_values[f.name], f.type), batch.num_rows))
        elif f.name in batch.schema.names:
            column = batch.column(f.name)
            columns.append(column if column.type == f.type else column.cast(f.type))
        else:  # a column added to the table after this file was written
            columns.append(pa.nulls(batch.num_rows, f.type))
    return pa.RecordBatch.from_arrays(columns, schema=schema.remove_metadata())


@dataclass
class WrittenFiles(WriterCommitMessage):
    """What one write task wrote: Delta add actions as plain dicts."""
    adds: list[dict]


class _OpenFile:
    """A parquet file being written by one task, with the stats of what went in. Rows are
    buffered into row groups of ROW_GROUP_ROWS: Spark hands over small batches (10k rows), split
    further by partition, and a row group per batch would make slow files."""

    ROW_GROUP_ROWS = 128 * 1024

    def __init__(self, path: str, sink, schema: pa.Schema):
        import pyarrow.parquet as pq

        self.path, self.sink, self.schema, self.stats = path, sink, schema, []
        self.writer = pq.ParquetWriter(sink, schema, compression="snappy")
        self.pending: list[pa.RecordBatch] = []
        self.pending_rows = 0

    def write(self, batch: pa.RecordBatch) -> None:
        self.pending.append(batch)
        self.pending_rows += batch.num_rows
        if self.pending_rows >= self.ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if not self.pending:
            return
        table = pa.Table.from_batches(self.pending, schema=self.schema).combine_chunks()
        self.writer.write_table(table, row_group_size=max(table.num_rows, 1))
        self.stats.append(_stats(table))
        self.pending, self.pending_rows = [], 0

    def close(self, quietly: bool = False) -> int:
        """Write what is buffered and close the file; return its size in bytes."""
        try:
            self._flush()
            self.writer.close()
            size = self.sink.tell()
            self.sink.close()
            return size
        except Exception:
            if not quietly:
                raise
            return 0


class DeltaWriter(DataSourceArrowWriter):
    def __init__(self, uri: str, options: dict[str, str], table, overwrite: bool,
                 replace_where: str | None, write_id: str, commit_metadata: dict[str, str] | None = None):
        self.uri, self.options = uri, options
        self.commit_metadata = dict(commit_metadata or {})
        self.overwrite, self.replace_where, self.write_id = overwrite, replace_where, write_id
        self.read_version = table.version()
        schema = pa.schema(table.schema().to_arrow())
        self.schema_b64 = _schema_b64(schema)
        self.partition_columns = list(table.metadata().partition_columns)
        if replace_where and not overwrite:
            raise DeltaWriteError("replace_where needs mode('overwrite')")

    # -- on the executors ------------------------------------------------------------------
    def write(self, iterator: Iterator[pa.RecordBatch]) -> WrittenFiles:
        from pyarrow.fs import LocalFileSystem

        schema = _schema_from_b64(self.schema_b64)
        file_schema = pa.schema([f for f in schema if f.name not in self.partition_columns])
        filesystem, base = _filesystem(self.uri, self.options)
        files: dict[tuple, _OpenFile] = {}  # one open parquet file per partition value
        adds: list[dict] = []
        try:
            for batch in iterator:
                if batch.num_rows == 0:
                    continue
                batch = conform_to_table(batch, schema)
                for values, part in _split_by_partition(batch, self.partition_columns):
                    if values not in files:
                        directory = "/".join(f"{c}={v if v is not None else '__HIVE_DEFAULT_PARTITION__'}"
                                             for c, v in zip(self.partition_columns, values))
                        if directory and isinstance(filesystem, LocalFileSystem):
                            filesystem.create_dir(f"{base}/{directory}", recursive=True)
                        # Named after the write, so a failed write's leftovers can be found and deleted.
                        path = (f"{directory + '/' if directory else ''}"
                                f"part-{self.write_id}-{uuid.uuid4().hex[:16]}.snappy.parquet")
                        files[values] = _OpenFile(path, filesystem.open_output_stream(f"{base}/{path}"), file_schema)
                    files[values].write(part.select(file_schema.names).cast(file_schema))
            for values, file in files.items():
                adds.append({"path": file.path, "size": file.close(),
                             "partition_values": dict(zip(self.partition_columns, values)),
                             "stats": _merge_stats(file.stats, file_schema)})
        except BaseException:
            for file in files.values():
                file.close(quietly=True)
            _delete_files(self.uri, self.options, [file.path for file in files.values()])
            raise
        return WrittenFiles(adds)

    # -- on the driver ---------------------------------------------------------------------
    def commit(self, messages: list[WrittenFiles | None]) -> None:
        adds = [a for m in messages if m is not None for a in m.adds]
        try:
            self._commit(adds)
        except BaseException:
            _delete_files(self.uri, self.options, [a["path"] for a in adds])
            raise

    def abort(self, messages: list[WrittenFiles | None]) -> None:
        reported = [a["path"] for m in messages if m is not None for a in m.adds]
        _delete_files(self.uri, self.options, reported)
        # Tasks that failed or were cancelled report nothing: find their files by name.
        _delete_files(self.uri, self.options, _files_of_write(self.uri, self.options, self.write_id))

    def _commit(self, adds: list[dict]) -> None:
        from deltalake import DeltaTable
        from deltalake.transaction import AddAction, CommitProperties, RemoveAction

        schema = _schema_from_b64(self.schema_b64)
        self._validate_files(adds, schema)
        table = DeltaTable(self.uri, version=self.read_version, storage_options=self.options)
        removes = []
        if self.overwrite:
            self._check_replace_range(adds, schema)
            removed = table.file_uris(file_pruning_predicate=self.replace_where) if self.replace_where else None
            now = int(time.time() * 1000)
            for a in pa.table(table.get_add_actions(flatten=True)).to_pylist():
                if removed is None or any(uri.endswith("/" + a["path"]) for uri in removed):
                    removes.append(RemoveAction(
                        path=a["path"], data_change=True, deletion_timestamp=now, size=int(a["size_bytes"]),
                        partition_values={c: _partition_string(a.get(f"partition.{c}"))
                                          for c in self.partition_columns}))
        if not adds and not removes:
            return  # an empty append: nothing to commit
        now = int(time.time() * 1000)
        actions = [AddAction(a["path"], a["size"], a["partition_values"], now, True, a["stats"]) for a in adds]
        operation = ("replace_where " + self.replace_where) if self.replace_where else (
            "overwrite" if self.overwrite else "append")
        table.create_write_transaction(
            actions + removes, mode="append", schema=schema, partition_by=self.partition_columns or None,
            commit_properties=CommitProperties(custom_metadata={
                "tweetops.operation": operation, **self.commit_metadata,
                "tweetops.writeId": self.write_id, "engine": "spark"}))

    def _validate_files(self, adds: list[dict], schema: pa.Schema) -> None:
        """Every written file must hold exactly the table's columns and types: delta-rs would
        commit anything."""
        import pyarrow.parquet as pq

        expected = pa.schema([f for f in schema if f.name not in self.partition_columns])
        filesystem, base = _filesystem(self.uri, self.options)
        for a in adds:
            with filesystem.open_input_file(f"{base}/{a['path']}") as handle:
                written = pq.read_schema(handle).remove_metadata()
            if not written.equals(expected.remove_metadata()):
                raise DeltaWriteError(f"refusing to commit {a['path']} to {self.uri}: its schema\n{written}\n"
                                      f"differs from the table's\n{expected}")

    def _check_replace_range(self, adds: list[dict], schema: pa.Schema) -> None:
        """With replace_where, every new file must fall inside the replaced range, else the
        rows would land outside what a rerun replaces (and be duplicated)."""
        if not self.replace_where:
            return
        import duckdb

        partition_schema = pa.schema([schema.field(c) for c in self.partition_columns])
        if not self.partition_columns:
            raise DeltaWriteError(f"replace_where needs a partitioned table; {self.uri} has no partition columns")
        values = pa.Table.from_pylist(
            [{c: _partition_value(a["partition_values"].get(c), partition_schema.field(c).type).as_py()
              for c in self.partition_columns} for a in adds], schema=partition_schema)
        con = duckdb.connect()
        try:
            con.register("new_partitions", values)
            outside = con.execute(
                f"SELECT count(*) FROM new_partitions WHERE ({self.replace_where}) IS NOT TRUE").fetchone()[0]
        except duckdb.Error as exc:
            raise DeltaWriteError(f"replace_where {self.replace_where!r} is not a valid predicate on the "
                                  f"partition columns {self.partition_columns}: {exc}") from None
        finally:
            con.close()
        if outside:
            raise DeltaWriteError(f"{outside} written file(s) fall outside replace_where {self.replace_where!r}: "
                                  "filter the DataFrame to the replaced range")


def conform_to_table(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """Check a batch against the table schema: same column names, same types (timestamps in any
    time zone become UTC), no nulls in NOT NULL columns. Raises DeltaWriteError naming each
    problem; never casts silently between types."""
    problems = []
    names = batch.schema.names
    missing = [f.name for f in schema if f.name not in names]
    extra = [n for n in names if schema.get_field_index(n) < 0]
    if missing:
        problems.append(f"missing columns {missing}")
    if extra:
        problems.append(f"unknown columns {extra}")
    columns = []
    for f in schema:
        if f.name not in names:
            continue
        column = batch.column(f.name)
        if column.type != f.type:
            if pa.types.is_timestamp(column.type) and pa.types.is_timestamp(f.type) and column.type.tz:
                column = column.cast(f.type)
            else:
                problems.append(f"column {f.name!r} is {column.type}, the table expects {f.type}")
                continue
        if not f.nullable and column.null_count:
            problems.append(f"column {f.name!r} has {column.null_count} null(s) but is NOT NULL")
        columns.append(column)
    if problems:
        raise DeltaWriteError("the DataFrame does not match the table schema: " + "; ".join(problems))
    return pa.RecordBatch.from_arrays(columns, schema=schema)


def _split_by_partition(batch: pa.RecordBatch, partition_columns: list[str]):
    """(partition values as logged, rows) for each distinct partition in the batch."""
    if not partition_columns:
        yield (), batch
        return
    import pyarrow.compute as pc

    table = pa.Table.from_batches([batch])
    keys = table.select(partition_columns).group_by(partition_columns).aggregate([]).to_pylist()
    if len(keys) == 1:  # the usual case for a job over one data interval
        yield tuple(_partition_string(keys[0][c]) for c in partition_columns), batch
        return
    for key in keys:
        mask = None
        for c in partition_columns:
            condition = pc.is_null(table[c]) if key[c] is None else pc.equal(table[c], pa.scalar(key[c], table[c].type))
            mask = condition if mask is None else pc.and_(mask, condition)
        part = table.filter(mask).combine_chunks()
        for rows in part.to_batches():
            yield tuple(_partition_string(key[c]) for c in partition_columns), rows


def _stats(table: pa.Table) -> dict:
    """Per-column numRecords, nullCount and min/max (numbers, dates, timestamps) of one chunk."""
    import pyarrow.compute as pc

    stats = {"numRecords": table.num_rows, "nullCount": {}, "minValues": {}, "maxValues": {}}
    for name in table.column_names:
        column = table[name]
        stats["nullCount"][name] = column.null_count
        dtype = column.type
        if column.null_count == len(column) or not (
                pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_date(dtype)
                or pa.types.is_timestamp(dtype)):
            continue
        low, high = pc.min_max(column).values()
        stats["minValues"][name], stats["maxValues"][name] = low.as_py(), high.as_py()
    return stats


def _merge_stats(parts: list[dict], schema: pa.Schema) -> str:
    """One file's Delta stats JSON from its chunks' stats."""
    merged = {"numRecords": sum(p["numRecords"] for p in parts), "nullCount": {}, "minValues": {}, "maxValues": {}}
    for f in schema:
        merged["nullCount"][f.name] = sum(p["nullCount"].get(f.name, 0) for p in parts)
        lows = [p["minValues"][f.name] for p in parts if f.name in p["minValues"]]
        highs = [p["maxValues"][f.name] for p in parts if f.name in p["maxValues"]]
        if not lows:
            continue
        low, high = min(lows), max(highs)
        if isinstance(low, float) and (low != low or high != high):
            continue  # NaN has no place in JSON stats
        if isinstance(low, dt.datetime):
            # Delta stores timestamps to the millisecond: round the range outwards.
            low = low.replace(microsecond=low.microsecond // 1000 * 1000)
            if high.microsecond % 1000:
                high = high.replace(microsecond=high.microsecond // 1000 * 1000) + dt.timedelta(milliseconds=1)
            low, high = (v.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z" for v in (low, high))
        elif isinstance(low, dt.date):
            low, high = low.isoformat(), high.isoformat()
        merged["minValues"][f.name], merged["maxValues"][f.name] = low, high
    return json.dumps(merged)
