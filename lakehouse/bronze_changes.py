"""What a table's commits added since a version: the files (and rows) an incremental run must read.

A Delta snapshot lists its data files (add actions) with their partition values and row counts. The
files in the current snapshot that were not in the snapshot at `since` are exactly what the commits
in between added with dataChange: appended batches, and the rewritten files of a compaction or an
erasure (rows already processed, which the reader drops by id). Comparing two snapshots costs two
log replays, not one per commit, however many commits lie between them.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import date

from tweetops.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DataFile:
    path: str          # relative to the table root, as in the Delta log
    day: date          # its date partition value
    rows: int          # from the log's statistics (0 if the writer wrote none)


def data_files(table, column: str) -> dict[str, DataFile]:
    """path -> DataFile, for every data file of the table's snapshot with a `column` partition."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return {}
    days = actions[f"partition.{column}"].to_pylist()
    rows = actions["num_records"].to_pylist() if "num_records" in actions.column_names else [0] * len(days)
    return {path: DataFile(path, _as_date(day), int(n or 0))
            for path, day, n in zip(actions["path"].to_pylist(), days, rows) if day is not None}


def partition_days(table, column: str) -> dict[str, date]:
    """path -> the file's partition day, for every data file of the table's snapshot."""
    return {path: f.day for path, f in data_files(table, column).items()}


def added_files(name: str, column: str, since: int | None, table, settings: Settings) -> list[DataFile]:
    """The data files of `name` added after version `since` (None: every file), as of the snapshot
    `table`, in path order."""
    from tweetops.core.tables import open_table

    now = data_files(table, column)
    if since is None:
        return sorted(now.values(), key=lambda f: f.path)
    if since >= table.version():
        return []
    try:
        before = data_files(open_table(name, settings, version=since), column)
    except Exception as exc:  # noqa: BLE001 - the old log was cleaned up: read every file, never skip one
        log.warning("%s: cannot read version %s (%s): treating every file as new", name, since, exc)
        return sorted(now.values(), key=lambda f: f.path)
    return sorted((f for path, f in now.items() if path not in before), key=lambda f: f.path)


def touched_days(name: str, column: str, since: int | None, table, settings: Settings) -> set[date]:
    """The `column` partition days of `name` whose files changed after version `since` (None: every
    day in the table), as of the snapshot `table`."""
    return {f.day for f in added_files(name, column, since, table, settings)}


def rows_per_day(table, column: str) -> dict[date, int]:
    """Rows per `column` partition day, from the log's statistics: no data file is read."""
    counts: dict[date, int] = {}
    for f in data_files(table, column).values():
        counts[f.day] = counts.get(f.day, 0) + f.rows
    return counts


def read_files(table, paths: list[str]):
    """The rows of these data files of the table's snapshot (partition columns included), as one
    pyarrow table: only those files are opened."""
    import pyarrow.dataset as ds

    dataset = table.to_pyarrow_dataset()
    wanted = {os.path.basename(p) for p in paths}   # file names are unique (a UUID each)
    fragments = [f for f in dataset.get_fragments() if os.path.basename(f.path) in wanted]
    if len(fragments) != len(wanted):
        raise LookupError(f"{len(wanted) - len(fragments)} of {len(wanted)} data files are not in the snapshot")
    return ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem).to_table()


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
