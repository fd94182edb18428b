"""The quality gate for a day bigger than one chunk: the same verdicts in bounded memory.

expectations.gate validates a day as one pandas frame: memory grows with the day (about 2.3 GB for
a million tweets). Above `gate_chunk_rows` (TWEETOPS_GATE_CHUNK_ROWS) bronze rows, run_quality_gate
comes here instead:

1. The day is read once, batch by batch, and spilled to temporary parquet buckets by a hash of the
   tweet id, about `gate_chunk_rows` rows each. Every copy of a tweet lands in the same bucket, so
   dropping redeliveries and checking that ids are unique stay exact within one bucket.
2. Each bucket is validated by the same suite (one GX validation per bucket), its rows spilled
   again with the expectations each one failed. The day's figures (rows, redeliveries, every
   failed expectation with its counts summed) are aggregated, never held row by row; the row
   count is judged on the whole day, not per bucket.
3. silver_tweets and silver_quarantine are then written by streaming the spilled rows, one Delta
   commit each, exactly as the one-frame gate would write them. Unlike it, an unchanged day is
   rewritten (same rows, a new version): proving it unchanged would need the whole day in memory.
"""
from __future__ import annotations

import json
import logging
import shutil
import tempfile
import zlib
from dataclasses import asdict, replace
from datetime import datetime
from pathlib import Path
from typing import Iterator

from expectations.bronze_tweets import DEAD_LETTER_SHARE_COLUMN, Thresholds, suite_parameters
from expectations.gate import (FailedExpectation, GateResult, _row_reason, count_dead_letters,
                               drop_redeliveries, validate_batch)
from tweetops.core.settings import Settings

log = logging.getLogger(__name__)

ROW_COUNT = "expect_table_row_count_to_be_between"


def bronze_rows_in(start: datetime, end: datetime, settings: Settings) -> int:
    """Bronze rows with event_date in [start, end) (from the Delta log's statistics: no file read)."""
    from tweetops.core.tables import rows_in_dates

    return rows_in_dates("bronze_tweets", start, end, settings)


def run_chunked_gate(start: datetime, end: datetime, settings: Settings, run_id: str, thresholds: Thresholds,
                     now: datetime, expected_rows: int) -> GateResult:
    """run_quality_gate's work for [start, end), in buckets of about settings.gate_chunk_rows rows."""
    from tweetops.core.tables import ensure_table

    bronze = ensure_table("bronze_tweets", settings)
    bronze_version = bronze.version()
    dead_letters = count_dead_letters(start, end, settings)
    buckets = max(1, -(-expected_rows // settings.gate_chunk_rows))
    spill = Path(tempfile.mkdtemp(prefix="gate-", dir=_spill_root(settings)))
    try:
        bronze_rows = _spill_by_id(bronze, start, end, buckets, spill / "bronze")
        share = dead_letters / (bronze_rows + dead_letters) if bronze_rows + dead_letters else 0.0
        # The day's row count is judged once, on the whole day, below: buckets are only parts of it.
        chunk_thresholds = replace(thresholds, min_row_count=0)
        parameters = suite_parameters(start, end, now)
        failed: dict[tuple, FailedExpectation] = {}
        kept = redeliveries = 0
        docs = (None, None)
        for bucket in sorted((spill / "bronze").glob("*.parquet")):
            batch, dropped = _bucket_frame(bucket, share)
            verdict = validate_batch(batch, parameters, settings.home, chunk_thresholds,
                                     f"{run_id}-{bucket.stem}")
            kept, redeliveries = kept + len(batch), redeliveries + dropped
            docs = (verdict.data_docs_url, verdict.data_docs_index)
            for failure in verdict.failed:
                _merge(failed, failure)
            _spill_validated(batch, verdict, spill / "validated" / bucket.name)
        if kept < thresholds.min_row_count:
            _merge(failed, FailedExpectation(
                expectation=ROW_COUNT, description=f"at least {thresholds.min_row_count} tweets in the interval",
                column=None, expected=f"rows >= {thresholds.min_row_count}", observed=str(kept),
                table_level=True))
        failed = {key: _day_observed(f, kept) for key, f in failed.items()}
        table_failures = [f for f in failed.values() if f.table_level]
        validated = sorted((spill / "validated").glob("*.parquet"))
        n_silver = 0 if table_failures else _write_silver(validated, start, end, bronze_version, now, settings,
                                                          run_id)
        n_quarantined = _write_quarantine(validated, table_failures, start, end, now, run_id, settings)
    finally:
        shutil.rmtree(spill, ignore_errors=True)
    result = GateResult(
        interval_start=start.isoformat(), interval_end=end.isoformat(), success=not failed, run_id=run_id,
        bronze_version=bronze_version, bronze_rows=bronze_rows, redeliveries_dropped=redeliveries,
        dead_letters=dead_letters, dead_letter_share=share, silver_rows=n_silver,
        quarantined_rows=n_quarantined, failed=list(failed.values()),
        data_docs_url=docs[0], data_docs_index=docs[1])
    log.info("quality gate %s..%s in %d chunks: %s, %d to silver, %d quarantined", start.date(), end.date(),
             buckets, "passed" if result.success else "FAILED", n_silver, n_quarantined)
    return result


def _spill_root(settings: Settings) -> Path:
    root = settings.home / "gate-spill"
    root.mkdir(parents=True, exist_ok=True)
    return root


def _spill_by_id(bronze, start: datetime, end: datetime, buckets: int, folder: Path) -> int:
    """Write the interval's bronze rows into `buckets` parquet files by a hash of the id; return the rows."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    in_interval = (ds.field("event_date") >= pa.scalar(start.date(), pa.date32())) & \
                  (ds.field("event_date") < pa.scalar(end.date(), pa.date32()))
    dataset = bronze.to_pyarrow_dataset()
    writers: dict[int, pq.ParquetWriter] = {}
    rows = 0
    try:
        for batch in dataset.to_batches(filter=in_interval, batch_size=65536):
            if batch.num_rows == 0:
                continue
            rows += batch.num_rows
            ids = batch.column("id").to_pylist()
            # A null id goes to bucket 0 with every other null id, as in one frame.
            which = np.fromiter((zlib.crc32(i.encode()) % buckets if i is not None else 0 for i in ids),
                                dtype=np.int64, count=len(ids))
            for bucket in np.unique(which):
                part = batch.filter(pa.array(which == bucket))
                if bucket not in writers:
                    writers[bucket] = pq.ParquetWriter(folder / f"chunk-{bucket:05d}.parquet", dataset.schema)
                writers[bucket].write_batch(part)
    finally:
        for writer in writers.values():
            writer.close()
    return rows


def _bucket_frame(path: Path, share: float):
    import pandas as pd
    import pyarrow.parquet as pq

    batch, dropped = drop_redeliveries(pq.read_table(path).to_pandas())
    batch[DEAD_LETTER_SHARE_COLUMN] = pd.Series([share] * len(batch), dtype="float64", index=batch.index)
    return batch, dropped


def _merge(failed: dict[tuple, FailedExpectation], failure: FailedExpectation) -> None:
    """One entry per expectation for the day: unexpected counts add up over the buckets."""
    key = (failure.expectation, failure.column, failure.expected)
    if key not in failed:
        failed[key] = replace(failure)
        return
    known = failed[key]
    if known.unexpected_count is not None and failure.unexpected_count is not None:
        known.unexpected_count += failure.unexpected_count


def _day_observed(failure: FailedExpectation, day_rows: int) -> FailedExpectation:
    """A row-level failure's observation over the whole day ("3 of 1000000 rows, e.g. ...")."""
    if failure.table_level or failure.unexpected_count is None or " rows" not in failure.observed:
        return failure
    examples = failure.observed.split(" rows", 1)[1]
    return replace(failure, observed=f"{failure.unexpected_count} of {day_rows} rows{examples}")


def _spill_validated(batch, verdict, path: Path) -> None:
    """The bucket's rows with the row-level expectations each failed (JSON), for the writes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    failures = [json.dumps([asdict(f) for f in verdict.row_failures.get(i, [])]) for i in range(len(batch))]
    frame = batch.drop(columns=[DEAD_LETTER_SHARE_COLUMN]).assign(row_failures=failures)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def _frames(paths: list[Path]) -> Iterator:
    import pyarrow.parquet as pq

    for path in paths:
        frame = pq.read_table(path).to_pandas()
        frame["failed"] = [[FailedExpectation(**f) for f in json.loads(r)] for r in frame.pop("row_failures")]
        yield frame


def _write_silver(paths: list[Path], start: datetime, end: datetime, bronze_version: int, now: datetime,
                  settings: Settings, run_id: str) -> int:
    from expectations.gate import silver_rows

    def parts():
        for frame in _frames(paths):
            yield silver_rows(frame[[not f for f in frame["failed"]]], bronze_version, now, run_id)

    return _stream_replace("silver_tweets", parts(), start, end, settings)


def _write_quarantine(paths: list[Path], table_failures: list[FailedExpectation], start: datetime,
                      end: datetime, now: datetime, run_id: str, settings: Settings) -> int:
    def parts():
        for frame in _frames(paths):
            failed = [table_failures + row for row in frame["failed"]]
            rows = frame.assign(failed=failed)[[bool(f) for f in failed]]
            reasons = [json.dumps([_row_reason(f, row) for f in row["failed"]], default=str)
                       for row in rows.to_dict("records")]
            yield rows.assign(id=rows["id"].fillna(""), text=rows["text"].fillna(""), failed_expectations=reasons,
                              quarantined_at=now, run_id=run_id).sort_values(["id", "kafka_offset"])

    return _stream_replace("silver_quarantine", parts(), start, end, settings)


def _stream_replace(name: str, parts: Iterator, start: datetime, end: datetime, settings: Settings) -> int:
    """Replace the interval's partitions of `name` with the parts' rows: ONE commit, one part in memory."""
    import pyarrow as pa

    from expectations.gate import evolve_schema
    from tweetops.core.delta_replace import replace_days
    from tweetops.core.tables import ensure_table, spec

    table_spec = spec(name)
    written = 0

    def batches():
        nonlocal written
        for frame in parts:
            if len(frame):
                written += len(frame)
                yield from pa.Table.from_pandas(frame[table_spec.schema.names], schema=table_spec.schema,
                                                preserve_index=False).to_batches()

    reader = pa.RecordBatchReader.from_batches(table_spec.schema, batches())
    replace_days(evolve_schema(ensure_table(name, settings), name), reader, start, end)
    return written
