"""What a table's commits did since a version, file by file: appended to a day, or rewrote it.

The sibling of lakehouse/bronze_changes.py for jobs that can APPEND what their source gained instead
of rebuilding its days. Comparing the snapshot at `since` with the current one (two log replays,
however many commits lie between):
  - a file in the current snapshot but not in the old one was added: new rows for its day;
  - a file in the old snapshot but not in the current one was removed: its day was rewritten
    (a backfill or a whole-day rebuild, an erasure, a compaction) and must be rebuilt whole, since
    rows may have left it or changed.
A day with only added files can be brought up to date by reading just those files.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import date

from lakehouse.bronze_changes import partition_days
from tweetops.core.settings import Settings

log = logging.getLogger(__name__)


@dataclass
class TableChanges:
    since: int | None                # the version compared with (None: never processed)
    to: int                          # the version of the snapshot compared
    added: dict[date, list[str]] = field(default_factory=dict)   # day -> files added since (relative paths)
    added_rows: dict[date, int] = field(default_factory=dict)    # day -> rows in those files (Delta log stats)
    rewritten: set[date] = field(default_factory=set)            # days that lost files since

    @property
    def appended_days(self) -> set[date]:
        """Days that only gained files: their new rows are in `added`."""
        return set(self.added) - self.rewritten

    def describe(self) -> str:
        versions = f"v{self.since}..v{self.to}" if self.since is not None else f"up to v{self.to}"
        appended = sorted(self.appended_days)
        parts = [f"{sum(self.added_rows.get(d, 0) for d in appended)} rows appended to "
                 f"{_days(appended)}" if appended else "no append"]
        if self.rewritten:
            parts.append(f"{_days(sorted(self.rewritten))} rewritten")
        return f"{versions}: " + ", ".join(parts)


def changes_since(name: str, column: str, since: int | None, table, settings: Settings) -> TableChanges:
    """The files `table` (a snapshot of `name`) gained and lost per `column` partition day since
    version `since`. Never processed (None) or an old version that cannot be read (its log was
    cleaned up): every day counts as added from scratch, so a caller appending by id adds what
    it misses and never skips a day."""
    from tweetops.core.tables import open_table

    changes = TableChanges(since=since, to=table.version())
    if since is not None and since >= changes.to:
        return changes
    now = _files(table, column)
    before: dict[str, tuple[date, int]] = {}
    if since is not None:
        try:
            before = _files(open_table(name, settings, version=since), column)
        except Exception as exc:  # noqa: BLE001 - redo from scratch, never skip a day
            log.warning("%s: cannot read version %s (%s): reading every file again", name, since, exc)
            changes.since = None
    for path, (day, rows) in now.items():
        if path not in before:
            changes.added.setdefault(day, []).append(path)
            changes.added_rows[day] = changes.added_rows.get(day, 0) + rows
    changes.rewritten = {day for path, (day, _) in before.items() if path not in now}
    return changes


def read_files(table, paths: list[str], columns: list[str]):
    """The rows of these data files of `table`'s snapshot (relative paths, as in its add actions),
    partition columns included, as one Arrow table."""
    import pyarrow.dataset as ds
    from urllib.parse import unquote

    dataset = table.to_pyarrow_dataset()
    wanted = {unquote(p) for p in paths}
    fragments = [f for f in dataset.get_fragments() if unquote(f.path) in wanted]
    if len(fragments) != len(wanted):
        raise LookupError(f"{len(wanted) - len(fragments)} of {len(wanted)} files are not in version "
                          f"{table.version()} of the table")
    return ds.FileSystemDataset(fragments, dataset.schema, dataset.format, dataset.filesystem).to_table(
        columns=columns)


def _files(table, column: str) -> dict[str, tuple[date, int]]:
    """path -> (partition day, rows) for every data file of the snapshot."""
    import pyarrow as pa

    days = partition_days(table, column)
    actions = pa.table(table.get_add_actions(flatten=True))
    if actions.num_rows == 0:
        return {}
    rows = dict(zip(actions["path"].to_pylist(), actions["num_records"].to_pylist()))
    return {path: (day, int(rows.get(path) or 0)) for path, day in days.items()}


def _days(days: list[date]) -> str:
    if len(days) == 1:
        return days[0].isoformat()
    return f"{len(days)} days {days[0].isoformat()}..{days[-1].isoformat()}"
