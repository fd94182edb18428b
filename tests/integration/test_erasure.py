"""`tweetops forget`: a user's tweets leave every table, every readable Delta version and storage,
on local disk and on S3; the erasure is logged; model versions trained on them are listed and
tagged; a consumer appending at the same time loses and duplicates nothing."""
from __future__ import annotations

import json
import subprocess
import threading
from datetime import date, datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable, write_deltalake

from ml.erasure import ERASURE_LOG, NEEDS_RETRAIN_TAG, Subject, erasable_tables, forget
from tweetops.core.storage import pyarrow_filesystem, storage_options, table_uri
from tweetops.core.tables import ensure_table, spec
from tests.conftest import TWEETOPS

pytestmark = pytest.mark.integration

USER = "forget_me"
NOW = datetime(2026, 3, 1, 12, tzinfo=timezone.utc)
DEFAULTS = {pa.string(): "x", pa.int32(): 0, pa.int64(): 0, pa.float64(): 0.5, pa.bool_(): False,
            pa.date32(): date(2026, 3, 1), pa.timestamp("us", tz="UTC"): NOW, pa.binary(): b""}


def rows(name: str, tweets: list[tuple[str, str]], offset: int = 0, **extra) -> pa.Table:
    """Rows of a table for (id, user) pairs, every other column a plain default."""
    schema = spec(name).schema
    out = []
    for i, (tweet_id, user) in enumerate(tweets):
        row = {f.name: DEFAULTS[f.type] for f in schema}
        row.update({"id": tweet_id, "user": user, "kafka_offset": offset + i, "text": f"tweet {tweet_id} by {user}",
                    **extra})
        out.append({f.name: row[f.name] for f in schema})
    return pa.Table.from_pylist(out, schema=schema)


def dead_letters(messages: list[tuple[bytes, bytes | None]], offset: int) -> pa.Table:
    schema = spec("bronze_dead_letters").schema
    return pa.Table.from_pylist([{"raw": raw, "kafka_key": key, "reason": "schema", "kafka_topic": "tweets",
                                  "kafka_partition": 0, "kafka_offset": offset + i, "received_at": NOW,
                                  "ingest_date": date(2026, 3, 1)} for i, (raw, key) in enumerate(messages)],
                                schema=schema)


def build_lakehouse(settings) -> None:
    """Two commits per tweet table (the user's tweets in both), a compaction (so an older version
    reads other files than the newest), and dead letters that name the user three ways."""
    first = [("1", USER), ("2", "alice"), ("3", "bob")]
    second = [("4", USER), ("5", "alice")]
    for name in erasable_tables():
        table = ensure_table(name, settings)
        if name == "bronze_dead_letters":
            write_deltalake(table, dead_letters([
                (json.dumps({"id": "6", "user": USER, "text": "no created_at"}).encode(), b"6"),   # parsed JSON
                (b'{"id": "7", "user": "' + USER.encode() + b'", "text": "trunc', b"7"),           # broken JSON
                (b'\xff\xfe not json at all', b"8"),                                               # someone else
                (json.dumps({"id": "9", "user": "carol"}).encode(), b"9"),
            ], offset=0), mode="append")
            continue
        if not {"id"} & set(spec(name).schema.names):
            continue
        write_deltalake(table, rows(name, first), mode="append")
        write_deltalake(table, rows(name, second, offset=10), mode="append")
        table.update_incremental()
        table.optimize.compact()


def user_rows(data: pa.Table) -> list:
    """The user's rows in a table or file: by user, by id (gold tables have no user column) or raw bytes."""
    found = []
    for row in data.to_pylist():
        if row.get("user") == USER or row.get("id") in {"1", "4", "6", "7"}:
            found.append(row)
        elif USER.encode() in (row.get("raw") or b""):
            found.append(row)
    return found


def every_version(name: str, settings):
    """(version, its rows or the error reading it) for every version still in the log."""
    uri, options = table_uri(name, settings), storage_options(settings)
    latest = DeltaTable(uri, storage_options=options).version()
    for version in range(latest + 1):
        try:
            yield version, DeltaTable(uri, version=version, storage_options=options).to_pyarrow_table()
        except Exception as exc:  # its files are gone: time travel to it fails, it shows nothing
            yield version, exc


def storage_files(name: str, settings) -> list[str]:
    from pyarrow.fs import FileSelector

    filesystem, _ = pyarrow_filesystem(settings)
    root = table_uri(name, settings).removeprefix("s3://")
    return [info.path for info in filesystem.get_file_info(FileSelector(root, recursive=True))
            if info.path.endswith(".parquet") and "/_delta_log/" not in info.path]


def test_forget_erases_every_table_version_and_file(any_lakehouse, cli_env):
    settings = any_lakehouse
    build_lakehouse(settings)
    tables = [n for n in erasable_tables() if n != ERASURE_LOG]
    before = {name: sum(len(user_rows(data)) for _, data in every_version(name, settings)
                        if isinstance(data, pa.Table)) for name in tables}
    assert all(before[name] for name in ("bronze_tweets", "silver_tweets", "silver_quarantine", "gold_features",
                                         "gold_predictions", "bronze_dead_letters")), before

    done = subprocess.run([*TWEETOPS, "forget", "--user", USER, "--no-registry", "--actor", "dpo", "--json"],
                          env=cli_env(**settings.as_env()), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    erasure = json.loads(done.stdout)
    assert erasure["rows"]["bronze_tweets"] == 2 and erasure["rows"]["gold_features"] == 2
    assert erasure["rows"]["bronze_dead_letters"] == 2  # the parsed one and the broken one; not carol's
    assert all(erasure["files_removed"][name] >= 1 for name in ("bronze_tweets", "gold_features"))

    for name in tables:
        for version, data in every_version(name, settings):
            if isinstance(data, pa.Table):
                assert not user_rows(data), (name, version)
        for path in storage_files(name, settings):  # nothing left in storage either, version or not
            filesystem, _ = pyarrow_filesystem(settings)
            assert not user_rows(pq.read_table(filesystem.open_input_file(path))), (name, path)
    # What others wrote is all still there, once.
    bronze = DeltaTable(table_uri("bronze_tweets", settings), storage_options=storage_options(settings))
    assert sorted(bronze.to_pyarrow_table().column("id").to_pylist()) == ["2", "3", "5"]
    dead = DeltaTable(table_uri("bronze_dead_letters", settings), storage_options=storage_options(settings))
    assert sorted(dead.to_pyarrow_table().column("kafka_key").to_pylist()) == [b"8", b"9"]

    # The SQL command, on every earlier version: an error (files gone) or no row of the user.
    for version in range(bronze.version() + 1):
        sql = subprocess.run([*TWEETOPS, "sql", "--format", "json", "--version", f"bronze_tweets={version}",
                              f"SELECT id FROM bronze_tweets WHERE \"user\" = '{USER}'"],
                             env=cli_env(**settings.as_env()), capture_output=True, text=True, timeout=120)
        assert sql.returncode != 0 or json.loads(sql.stdout) == [], (version, sql.stdout, sql.stderr)

    log = DeltaTable(table_uri(ERASURE_LOG, settings), storage_options=storage_options(settings)).to_pyarrow_table()
    [entry] = log.to_pylist()
    assert entry["actor"] == "dpo" and entry["rows_deleted"] == sum(erasure["rows"].values())
    assert USER not in json.dumps(entry, default=str)  # no personal data in the log


def test_a_foreign_reader_sees_none_of_it(local_lakehouse):
    """DuckDB's own Delta reader (delta_scan) on the newest version; its delta extension (1.4) has
    no time travel, so DuckDB also reads every data file left in storage, whatever version uses it."""
    import duckdb

    settings = local_lakehouse
    build_lakehouse(settings)
    forget(Subject(users=(USER,)), settings, check_registry=False, log=lambda *a: None)
    con = duckdb.connect(config={"autoinstall_known_extensions": False})
    con.execute(f"SET extension_directory = '{_extension_dir()}'")
    con.execute("LOAD delta")
    for name in ("bronze_tweets", "silver_tweets", "silver_quarantine"):
        path = table_uri(name, settings)
        ids = sorted(r[0] for r in con.execute(f"SELECT id FROM delta_scan('{path}')").fetchall())
        assert ids == ["2", "3", "5"], name
        files = con.execute(f"SELECT id, \"user\" FROM read_parquet('{path}/**/*.parquet', union_by_name = true)"
                            ).fetchall()
        assert files and not [row for row in files if row[1] == USER or row[0] in ("1", "4")], name


def _extension_dir() -> str:
    from pathlib import Path

    import duckdb

    # duckdb-ext-delta installs the extension next to duckdb, for offline LOAD
    return str(Path(duckdb.__file__).parent.parent / "duckdb_ext" / "extensions")


def test_concurrent_ingest_loses_and_duplicates_nothing(any_lakehouse):
    settings = any_lakehouse
    build_lakehouse(settings)
    stop, landed, errors = threading.Event(), [], []

    def consumer():  # the way streaming.landing appends: one commit per batch, retried on conflict
        table = ensure_table("bronze_tweets", settings)
        batch = 0
        while not stop.is_set() or batch < 5:
            ids = [f"c{batch}-{i}" for i in range(20)]
            try:
                write_deltalake(table, rows("bronze_tweets", [(i, "someone") for i in ids], offset=100 + batch * 20),
                                mode="append")
                landed.extend(ids)
                batch += 1
            except Exception as exc:  # a real consumer retries the batch: count it and retry
                errors.append(repr(exc))
                table.update_incremental()

    thread = threading.Thread(target=consumer)
    thread.start()
    try:
        erasure = forget(Subject(users=(USER,)), settings, check_registry=False, log=lambda *a: None)
    finally:
        stop.set()
        thread.join(timeout=120)
    assert erasure.rows["bronze_tweets"] == 2
    ids = DeltaTable(table_uri("bronze_tweets", settings),
                     storage_options=storage_options(settings)).to_pyarrow_table().column("id").to_pylist()
    assert sorted(ids) == sorted(["2", "3", "5"] + landed), errors  # nothing lost, nothing twice
    assert len(landed) >= 100


def test_affected_model_versions_are_listed_and_tagged(mlflow_server, local_lakehouse, monkeypatch):
    from ml import model_access
    from ml.features import seed_features_from_corpus
    from ml.train import train_model
    from tests.conftest import unique
    from tweetops.core.settings import load_settings

    monkeypatch.setenv("TWEETOPS_MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("TWEETOPS_MODEL_NAME", unique("erasure"))
    settings = load_settings()
    seed_features_from_corpus(settings, limit=1500)
    trained = train_model("baseline", settings, log=lambda *a: None)
    features = DeltaTable(table_uri("gold_features", settings)).to_pyarrow_table()
    tweet_id = features.column("id")[0].as_py()

    erasure = forget(Subject(ids=(tweet_id,)), settings, actor="dpo", log=lambda *a: None)
    assert erasure.model_versions == [trained.model_version]
    assert erasure.rows["gold_features"] == 1
    version = model_access.resolve(settings, trained.model_version)
    assert version.tags[NEEDS_RETRAIN_TAG] == "erasure"
    assert tweet_id not in DeltaTable(table_uri("gold_features", settings)).to_pyarrow_table().column("id").to_pylist()
    # A second erasure of the same tweet finds nothing; the version is already marked, so it is not listed again.
    again = forget(Subject(ids=(tweet_id,)), settings, log=lambda *a: None)
    assert sum(again.rows.values()) == 0 and again.model_versions == []


def test_erasure_dag_forgets_the_user_given_as_param(airflow_db, mlflow_server, local_lakehouse, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO, unique

    monkeypatch.setenv("TWEETOPS_MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("TWEETOPS_MODEL_NAME", unique("erasure-dag"))  # no versions: nothing to mark
    settings = local_lakehouse
    build_lakehouse(settings)
    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    dag_run = bag.get_dag("tweetops_erasure").test(run_conf={"user": USER})
    assert {ti.task_id: ti.state for ti in dag_run.get_task_instances()} == {"forget": "success"}
    bronze = DeltaTable(table_uri("bronze_tweets", settings)).to_pyarrow_table()
    assert sorted(bronze.column("id").to_pylist()) == ["2", "3", "5"]
    [entry] = DeltaTable(table_uri(ERASURE_LOG, settings)).to_pyarrow_table().to_pylist()
    assert entry["erasure_id"] == entry["actor"] and entry["actor"].startswith("airflow:tweetops_erasure/")
