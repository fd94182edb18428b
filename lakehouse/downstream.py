"""Downstream of silver: features and scoring process only the silver rows added since they last ran.

Each derived table (gold_features, gold_predictions) records the silver_tweets version it has
processed as a Delta app transaction on itself, in the same commit as the rows it appends. A run
  1. reads that version and diffs silver's snapshot against it (lakehouse/table_changes.py);
  2. rebuilds whole (the job's replace path) every day whose silver files were REMOVED since (a
     backfill, an erasure, a compaction rewrote it), and every day `days_behind` flags that the
     diff does not explain (the safety net: a lost run, a table edited by hand);
  3. reads the files silver ADDED to the other days, drops the ids the target already holds for
     those days (only its id column is read), computes rows for the rest and appends them, with
     the new silver version, in one commit;
  4. checks those days against silver's row counts again and rebuilds any still behind.
A crash before step 3's commit leaves the old version recorded: the next run redoes the same work,
and the id filter keeps the append from doubling rows. A big append (at least
TWEETOPS_SPARK_SCORING_MIN_ROWS new rows) takes the replace path instead, which runs on Spark.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from datetime import date, datetime
from typing import TYPE_CHECKING, Callable

from tweetops.core.intervals import DAY, days_of, midnight
from tweetops.core.settings import Settings, load_settings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

log = logging.getLogger(__name__)

SOURCE_TABLE = "silver_tweets"
APPS = {"gold_features": "tweetops-features/silver_tweets",
        "gold_predictions": "tweetops-scoring/silver_tweets"}


class DownstreamRaced(RuntimeError):
    """Another run recorded a silver version first: this run's append is redone by the next one."""


@dataclass
class DownstreamResult:
    target: str
    silver_from: int | None                # silver version processed before this run (None: never)
    silver_to: int                         # ... and after it
    appended: dict[str, int] = field(default_factory=dict)   # day -> rows appended
    rebuilt: list[str] = field(default_factory=list)         # days rebuilt whole
    computed: int = 0                      # rows the append path computed (new silver rows)
    rebuilt_rows: int = 0

    @property
    def rows(self) -> int:
        return self.computed + self.rebuilt_rows

    @property
    def days(self) -> list[str]:
        return sorted(set(self.appended) | set(self.rebuilt))

    def describe(self) -> str:
        """One line for the run's log and note: the silver versions and days covered."""
        versions = (f"silver v{self.silver_from}..v{self.silver_to}" if self.silver_from is not None
                    else f"silver up to v{self.silver_to}")
        parts = []
        if self.appended:
            days = sorted(self.appended)
            parts.append(f"{self.computed} new rows appended to {_days(days)}")
        if self.rebuilt:
            parts.append(f"{_days(self.rebuilt)} rebuilt ({self.rebuilt_rows} rows)")
        return f"{self.target} {versions}: " + ("; ".join(parts) if parts else "nothing new")

    def as_dict(self) -> dict:
        return {**asdict(self), "rows": self.rows, "days": self.days, "describe": self.describe()}


def processed_version(target: str, settings: Settings | None = None) -> int | None:
    """The silver_tweets version `target` has processed (None: never ran incrementally)."""
    from tweetops.core.tables import ensure_table

    return ensure_table(target, settings or load_settings()).transaction_version(APPS[target])


def process_new_silver(target: str, columns: list[str], compute: Callable[["pd.DataFrame"], "pa.Table"],
                       rebuild: Callable[[date, date], int], settings: Settings | None = None,
                       commit_metadata: dict[str, str] | None = None) -> DownstreamResult:
    """Bring `target` up to date with silver_tweets (see the module doc).

    `compute` turns new silver rows (a pandas frame of `columns`) into the target's rows (an Arrow
    table in its schema); `rebuild(start, end)` replaces the days [start, end) and returns its rows.
    """
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    from lakehouse.freshness import as_ranges, days_behind
    from lakehouse.table_changes import changes_since, read_files
    from tweetops.core.tables import ensure_table

    settings = settings or load_settings()
    app = APPS[target]
    gold = ensure_table(target, settings)
    since = gold.transaction_version(app)
    silver = ensure_table(SOURCE_TABLE, settings)
    changes = changes_since(SOURCE_TABLE, "event_date", since, silver, settings)
    result = DownstreamResult(target=target, silver_from=since, silver_to=changes.to)

    # 2. Days rewritten in silver, and days behind that no appended file explains: rebuilt whole.
    appending = {day: files for day, files in changes.added.items() if day not in changes.rewritten}
    # Compared with the silver snapshot diffed above: rows landed since are the next run's.
    whole = set(changes.rewritten) | (set(days_behind(target, settings=settings, source_version=changes.to))
                                      - set(appending))
    new_rows = sum(changes.added_rows.get(day, 0) for day in appending)
    if new_rows >= settings.spark_scoring_min_rows:
        # A big batch (a first run on a long history, a stack back after a stop): the replace path
        # scores and builds features on Spark, which beats one process at this size.
        whole |= set(appending)
        appending = {}
    for start, end in as_ranges(whole):
        result.rebuilt_rows += rebuild(start, end)
    result.rebuilt = [d.isoformat() for d in sorted(whole)]

    # 3. The rows silver added to the other days, minus those the target already holds.
    import pyarrow as pa
    import pyarrow.compute as pc

    gold.update_incremental()   # the rebuilds above wrote through their own handles
    if gold.transaction_version(app) != since:
        raise DownstreamRaced(f"{target}: another run recorded silver v{gold.transaction_version(app)} while this "
                              f"one processed v{since}..v{changes.to}; the next run redoes it")
    table = None
    if appending:
        new = read_files(silver, [p for files in appending.values() for p in files], columns)
        known = _ids_in(gold, sorted(appending))
        if known:
            new = new.filter(pc.invert(pc.is_in(new["id"], value_set=pa.array(known, pa.string()))))
        if new.num_rows:
            frame = new.sort_by([("event_date", "ascending"), ("id", "ascending")]).to_pandas()
            table = compute(frame)
            result.computed = table.num_rows
            counted = pc.value_counts(table["event_date"]).to_pylist()
            result.appended = {item["values"].isoformat(): item["counts"] for item in counted}

    # Written through the snapshot just checked: a rival recording first makes this commit fail.
    if table is not None or since != changes.to:
        from tweetops.core.tables import spec

        try:
            write_deltalake(gold, table if table is not None else spec(target).schema.empty_table(), mode="append",
                            commit_properties=CommitProperties(
                                app_transactions=[Transaction(app, changes.to)],
                                custom_metadata={"tweetops.operation": "append_new_silver",
                                                 "tweetops.silver_versions": f"{since}..{changes.to}",
                                                 **(commit_metadata or {})}))
        except CommitFailedError as exc:
            raise DownstreamRaced(f"{target}: another run recorded its silver version first ({exc})") from exc

    # 4. The safety net on the appended days: any still behind silver is rebuilt whole.
    still = sorted(set(days_behind(target, settings=settings, source_version=changes.to)) & set(appending))
    if still:
        log.warning("%s: %s still behind silver after the append: rebuilding", target, _days(still))
        for start, end in as_ranges(still):
            result.rebuilt_rows += rebuild(start, end)
        result.rebuilt = sorted(set(result.rebuilt) | {d.isoformat() for d in still})
    return result


def _ids_in(gold, days: list[date]) -> list[str]:
    """The ids the target holds on these days (only the id column is read)."""
    import pyarrow as pa
    import pyarrow.dataset as ds

    if not days:
        return []
    on_days = ds.field("event_date").isin(pa.array(days, pa.date32()))
    return gold.to_pyarrow_dataset().to_table(columns=["id"], filter=on_days)["id"].to_pylist()


def _days(days: list) -> str:
    days = [d if isinstance(d, str) else d.isoformat() for d in days]
    return days[0] if len(days) == 1 else f"{len(days)} days {days[0]}..{days[-1]}"


def midnight_after(day: date) -> datetime:
    """The scored_at of an appended prediction: what rescoring its day alone writes."""
    return midnight(day + DAY)


def manual_result(target: str, start: date, end: date, rows: int) -> dict:
    """What a manual rebuild of [start, end) did, shaped like DownstreamResult.as_dict()."""
    days = [day.isoformat() for day in days_of(start, end)]
    return {"target": target, "days": days, "rebuilt": days, "appended": {}, "rows": rows,
            "silver_from": None, "silver_to": None,
            "describe": f"{target}: {_days(days)} rebuilt on request ({rows} rows)"}
