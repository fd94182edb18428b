"""Table maintenance while the consumer appends: no lost commit, no lost row, offsets preserved."""
from __future__ import annotations

import json
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import pytest

from lakehouse.maintenance import MaintenanceError, maintain, maintain_table
from tweetops.core.tables import open_table
from streaming.offsets import app_id, stored_offset
from tests.conftest import TWEETOPS
from tweetops.core.settings import load_settings

pytestmark = pytest.mark.integration

TOPIC = "maintained"
PARTITIONS = 3
PER_BATCH = 5  # messages per partition per batch: small files, as the consumer writes them


def tweet_value(partition: int, offset: int) -> bytes:
    created = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(hours=offset % 48)
    return json.dumps({"id": f"p{partition}-o{offset}", "text": f"tweet {offset} @united",
                       "created_at": created.isoformat(), "label": "neutral"}).encode()


class Consumer:
    """Lands batches through the consumer's own landing code (streaming.landing.Lander): each
    commit carries the partitions' last offsets as Delta app transactions."""

    def __init__(self, settings):
        from streaming.landing import Lander

        self.lander = Lander(settings, TOPIC)
        self.lander.load(list(range(PARTITIONS)))
        self.next_offset = {p: 0 for p in range(PARTITIONS)}
        self.batches = self.rows = 0

    def land_batch(self) -> None:
        from streaming.schema import decode_batch

        values, partitions, offsets = [], [], []
        for p in range(PARTITIONS):
            for o in range(self.next_offset[p], self.next_offset[p] + PER_BATCH):
                values.append(tweet_value(p, o))
                partitions.append(p)
                offsets.append(o)
            self.next_offset[p] += PER_BATCH
        batch = decode_batch(values, partitions, offsets, [None] * len(values), TOPIC, datetime.now(timezone.utc))
        self.lander.land(batch)
        self.batches += 1
        self.rows += len(values)


def test_compaction_while_the_consumer_appends(any_lakehouse):
    settings = any_lakehouse
    consumer = Consumer(settings)
    for _ in range(12):
        consumer.land_batch()
    files_before = len(open_table("bronze_tweets", settings).file_uris())
    assert files_before >= 12

    errors: list[BaseException] = []
    stop = threading.Event()

    def keep_consuming():
        try:
            while not stop.is_set() or consumer.batches < 30:
                consumer.land_batch()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)

    writer = threading.Thread(target=keep_consuming)
    writer.start()
    reports = []

    def overlapped() -> int:
        # A run commits once (compact; vacuum within the retention deletes nothing and commits nothing):
        # more means the consumer committed meanwhile.
        return sum(r["version_after"] - r["version_before"] > 1 for r in reports)

    try:
        while writer.is_alive() and overlapped() < 2 and len(reports) < 20:
            reports.append(maintain_table("bronze_tweets", settings))
    finally:
        stop.set()
        writer.join(timeout=120)
    assert not errors, f"the consumer failed while maintenance ran: {errors[0]!r}"
    assert overlapped() >= 2, reports
    assert reports[0]["files_compacted"] > 0

    final = maintain_table("bronze_tweets", settings)
    table = open_table("bronze_tweets", settings)
    rows = table.to_pyarrow_table(columns=["id", "kafka_partition", "kafka_offset"])
    # No lost commit, no lost or duplicated row.
    assert rows.num_rows == consumer.rows
    assert len(set(rows["id"].to_pylist())) == consumer.rows
    appends = [c for c in table.history() if c.get("operation") == "WRITE"]
    assert len(appends) == consumer.batches
    # The consumer's offsets survive compaction and the checkpoint (read back from a fresh snapshot).
    for p in range(PARTITIONS):
        assert stored_offset(table, app_id(TOPIC, p)) == consumer.next_offset[p] - 1
    # Compacted: fewer files than batches, and the next run has nothing left to do.
    assert final["files_after"] < consumer.batches
    assert maintain_table("bronze_tweets", settings)["files_compacted"] == 0

    # The safe retention keeps the compacted-away files: time travel still reads every version.
    assert final["vacuumed"] == 0
    assert open_table("bronze_tweets", settings, version=3).to_pyarrow_table().num_rows == 3 * PARTITIONS * PER_BATCH
    # A dry run with no retention would delete them, and deletes nothing.
    dry = maintain(["bronze_tweets"], settings, vacuum_retention_hours=0, allow_short_retention=True,
                   dry_run=True)[0]
    assert dry["vacuumed"] >= files_before and dry["version_after"] == dry["version_before"]
    assert open_table("bronze_tweets", settings, version=3).to_pyarrow_table().num_rows == 3 * PARTITIONS * PER_BATCH


def test_unsafe_retention_and_unknown_tables_are_refused(local_lakehouse, cli_env):
    with pytest.raises(MaintenanceError, match="under 168"):
        maintain(["bronze_tweets"], local_lakehouse, vacuum_retention_hours=1)
    with pytest.raises(MaintenanceError, match="unknown table"):
        maintain(["bronze_tweetz"], local_lakehouse)

    refused = subprocess.run([*TWEETOPS, "maintain", "--vacuum-retention-hours", "24"],
                             capture_output=True, text=True, env=cli_env())
    assert refused.returncode == 2 and "--allow-short-retention" in refused.stderr
    listed = subprocess.run([*TWEETOPS, "maintain", "--dry-run", "--format", "json"],
                            capture_output=True, text=True, env=cli_env())
    assert listed.returncode == 0, listed.stderr
    reports = json.loads(listed.stdout)
    assert {r["table"]: r["status"] for r in reports}["bronze_tweets"] == "not created"  # nothing created
    assert load_settings().lakehouse_uri == local_lakehouse.lakehouse_uri


def test_the_maintenance_dag_compacts_every_existing_table(local_lakehouse, airflow_db):
    from airflow.dag_processing.dagbag import DagBag

    from tests.conftest import REPO

    consumer = Consumer(local_lakehouse)
    for _ in range(4):
        consumer.land_batch()
    files_before = len(open_table("bronze_tweets", local_lakehouse).file_uris())
    bag = DagBag(dag_folder=str(REPO / "dags" / "lakehouse_maintenance.py"))
    assert not bag.import_errors, bag.import_errors
    run = bag.dags["tweetops_lakehouse_maintenance"].test()
    assert run.state == "success", {ti.task_id: ti.state for ti in run.get_task_instances()}
    table = open_table("bronze_tweets", local_lakehouse)
    assert len(table.file_uris()) < files_before
    assert table.to_pyarrow_table().num_rows == consumer.rows
    assert stored_offset(table, app_id(TOPIC, 0)) == consumer.next_offset[0] - 1
