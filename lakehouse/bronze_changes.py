"""Which partitions a table's commits touched since a version: what an incremental run must redo.

A Delta snapshot lists its data files (add actions) with their partition values. The files in the
current snapshot that were not in the snapshot at `since` are exactly what the commits in between
added: appended batches, and the rewritten files of a compaction or an erasure. Their partition
values (event days) are the days to rebuild. Comparing two snapshots costs two log replays, not
one per commit, however many commits lie between them.
"""
from __future__ import annotations

import logging
from datetime import date

from tweetops.core.settings import Settings

log = logging.getLogger(__name__)


def partition_days(table, column: str) -> dict[str, date]:
    """path -> the file's partition day, for every data file of the table's snapshot."""
    import pyarrow as pa

    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return {}
    days = actions[f"partition.{column}"].to_pylist()
    return {path: _as_date(day) for path, day in zip(actions["path"].to_pylist(), days) if day is not None}


def touched_days(name: str, column: str, since: int | None, table, settings: Settings) -> set[date]:
    """The `column` partition days of `name` whose files changed after version `since` (None: every
    day in the table), as of the snapshot `table`."""
    from tweetops.core.tables import open_table

    now = partition_days(table, column)
    if since is None:
        return set(now.values())
    if since >= table.version():
        return set()
    try:
        before = partition_days(open_table(name, settings, version=since), column)
    except Exception as exc:  # noqa: BLE001 - the old log was cleaned up: redo every day, never skip one
        log.warning("%s: cannot read version %s (%s): treating every day as changed", name, since, exc)
        return set(now.values())
    return {day for path, day in now.items() if path not in before}


def _as_date(value) -> date:
    return value if isinstance(value, date) else date.fromisoformat(str(value)[:10])
