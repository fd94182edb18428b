"""The incremental quality gate: validate the rows bronze gained since the last run, whenever they arrive.

Each run
  1. reads from silver_tweets the bronze_tweets and bronze_dead_letters versions it processed last
     (Delta app transactions, like the ingest offsets in streaming/offsets.py);
  2. lists the data files bronze_tweets gained since that version (lakehouse/bronze_changes.py) and
     reads only those: its work and memory grow with the new data, not with the day;
  3. drops the rows whose tweet id silver_tweets or silver_quarantine already holds for those days
     (only their id column is read): redeliveries, replays, and the rows a compaction or an erasure
     rewrote into new files, so a tweet id is decided once however often it arrives;
  4. validates the rest with the row-level expectations of the suite (one GX validation for all
     the days touched; each day's result names its own failures), and APPENDS failing rows to
     silver_quarantine;
  5. judges the day-level expectations (at least N tweets, dead-letter share) of the days that became
     complete since the last run (close + allowed lateness), from row counts in the Delta logs;
  6. appends the passing rows to silver_tweets in one commit that also records the new bronze
     versions (app transactions in the same commit).

Exactly once: the versions move with the silver rows in one commit. A crash before it leaves the old
versions: the next run reads the same files again; the quarantine append skips the ids already
quarantined, and the silver append never happened. New data larger than `gate_chunk_rows` rows is
processed in several groups of files, each with its own commits; only the last records the versions,
and a rerun after a crash drops by id what the earlier groups already wrote.

Verdicts are per batch: a run fails (and alerts) for the expectations ITS new rows failed, or for the
day-level checks of a day it judged. Rows an earlier run quarantined stay there and fail nobody
again. Day-level expectations only judge a complete day, once: before its close plus
TWEETOPS_ALLOWED_LATENESS_HOURS (default 6) a day is partial, and a half-filled day raising "too few
tweets" would be a false alarm. A failed day-level check alerts but moves no row: `tweetops gate
--date DAY` rebuilds the day whole (and quarantines it whole if it still fails).

A backfill (`tweetops gate --date`, the DAG's `date` param, an Airflow backfill) calls the interval
gate directly: it rebuilds its days from bronze whatever the recorded versions say.
"""
from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

from expectations.bronze_tweets import Thresholds
from tweetops.core.intervals import days_of, midnight
from tweetops.core.settings import Settings, load_settings

log = logging.getLogger(__name__)

# App transactions on silver_tweets: what the incremental gate has processed.
BRONZE_APP = "tweetops-gate/bronze_tweets"
DEAD_LETTERS_APP = "tweetops-gate/bronze_dead_letters"
JUDGED_APP = "tweetops-gate/complete-through"    # the last day judged complete, as date.toordinal()
# A platform stopped for longer than this has its missing days judged by a backfill, not in one run.
MAX_CLOSING_DAYS = 7
DAY = timedelta(days=1)


class GateRaced(RuntimeError):
    """Another incremental gate run recorded its versions first: this run's work is redone by the next."""


@dataclass
class IncrementalResult:
    bronze_from: int | None         # bronze_tweets version processed before this run (None: never)
    bronze_to: int                  # ... and after it
    dead_letters_from: int | None
    dead_letters_to: int | None
    days: list[str] = field(default_factory=list)            # days with new rows or judged, YYYY-MM-DD
    silver_days: list[str] = field(default_factory=list)     # days whose silver gained rows (downstream)
    complete_days: list[str] = field(default_factory=list)   # days whose day-level checks this run judged
    results: list[dict] = field(default_factory=list)        # GateResult.as_dict() per day
    rows_read: int = 0              # bronze rows read: those of the files added since bronze_from
    rows_known: int = 0             # of which silver or quarantine already held the id (dropped)
    rows_validated: int = 0         # rows this run validated (new ids, exact redeliveries dropped)
    silver_rows: int = 0            # appended to silver_tweets
    quarantined_rows: int = 0       # appended to silver_quarantine
    success: bool = True

    @property
    def nothing_new(self) -> bool:
        """Nothing written and nothing judged (a replay, or no new bronze file)."""
        return not (self.silver_rows or self.quarantined_rows or self.complete_days)

    def describe(self) -> str:
        """One line for a run's log and name: the bronze versions and days covered."""
        versions = (f"bronze up to v{self.bronze_to}" if self.bronze_from is None
                    else f"bronze v{self.bronze_from}..v{self.bronze_to}")
        if not self.days:
            return f"{versions}: nothing new"
        days = self.days[0] if len(self.days) == 1 else f"{len(self.days)} days {self.days[0]}..{self.days[-1]}"
        rows = f"{self.silver_rows} to silver, {self.quarantined_rows} quarantined"
        if self.rows_known:
            rows += f", {self.rows_known} known"
        judged = f", {len(self.complete_days)} day(s) judged" if self.complete_days else ""
        return f"{versions}: {days} ({rows}{judged}; {'passed' if self.success else 'FAILED'})"

    def as_dict(self) -> dict:
        return asdict(self)


def allowed_lateness() -> timedelta:
    return timedelta(hours=load_settings().allowed_lateness_hours)  # TWEETOPS_ALLOWED_LATENESS_HOURS


def day_complete(day: date, now: datetime, lateness: timedelta | None = None) -> bool:
    """A day is complete once its close plus the allowed lateness has passed."""
    close = datetime(day.year, day.month, day.day, tzinfo=timezone.utc) + DAY
    return now >= close + (allowed_lateness() if lateness is None else lateness)


def thresholds_for(day: date, now: datetime, base: Thresholds = Thresholds(),
                   lateness: timedelta | None = None) -> Thresholds:
    """The suite's thresholds for a day: day-level ones switched off while the day is partial."""
    if day_complete(day, now, lateness):
        return base
    return replace(base, min_row_count=0, max_dead_letter_share=1.0)


def last_complete_day(now: datetime, lateness: timedelta | None = None) -> date:
    lateness = allowed_lateness() if lateness is None else lateness
    return (now - lateness).date() - DAY


def run_gate_for_days(days: list[date], settings: Settings, run_id: str, now: datetime,
                      thresholds: Thresholds = Thresholds()) -> list:
    """Rebuild each day from bronze with the interval gate; day-level checks only on complete days."""
    from expectations.gate import run_quality_gate

    lateness = allowed_lateness()
    results = []
    for day in sorted(days):
        if not day_complete(day, now, lateness) and not _has_tweets(day, settings):
            # Only dead letters so far (they count on the day they arrive): no row to judge, and the
            # day's share is judged once the day is complete.
            log.info("quality gate %s: no tweets yet, only dead letters: judged once the day is complete", day)
            continue
        # The gate reads the newest bronze snapshot, so "not in the future" must mean "not after the
        # moment it reads it": a tweet produced after the run started is no future tweet.
        results.append(run_quality_gate(day, day + DAY, settings, run_id=run_id,
                                        thresholds=thresholds_for(day, now, thresholds, lateness),
                                        now=max(now, datetime.now(timezone.utc))))
    return results


def _has_tweets(day: date, settings: Settings) -> bool:
    from tweetops.core.tables import ensure_table

    return ensure_table("bronze_tweets", settings).to_pyarrow_table(
        columns=["event_date"], filters=[("event_date", "=", day)]).num_rows > 0


def run_incremental_gate(settings: Settings | None = None, run_id: str | None = None,
                         now: datetime | None = None, thresholds: Thresholds = Thresholds()) -> IncrementalResult:
    """Validate the rows bronze gained since the last run, append them, judge the days that became
    complete (see the module doc)."""
    from expectations.gate import evolve_schema
    from lakehouse.bronze_changes import added_files
    from tweetops.core.tables import ensure_table, open_table

    settings = settings or load_settings()
    now = now or datetime.now(timezone.utc)
    run_id = run_id or f"incremental__{now.isoformat(timespec='seconds')}"
    silver = evolve_schema(ensure_table("silver_tweets", settings), "silver_tweets")
    seen_bronze, seen_dead = silver.transaction_version(BRONZE_APP), silver.transaction_version(DEAD_LETTERS_APP)
    judged = silver.transaction_version(JUDGED_APP)

    bronze = ensure_table("bronze_tweets", settings)
    try:
        dead = open_table("bronze_dead_letters", settings)
    except LookupError:
        dead = None
    files = added_files("bronze_tweets", "event_date", seen_bronze, bronze, settings)

    lateness = allowed_lateness()
    closed = last_complete_day(now, lateness)
    if judged is None:
        # First run: judge the complete days it finds data for; later runs judge the days that close.
        judging = {f.day for f in files if day_complete(f.day, now, lateness)}
        judged_through = closed
    else:
        judged_through = date.fromordinal(judged)
        judging = {closed - i * DAY for i in range(min((closed - judged_through).days, MAX_CLOSING_DAYS))}

    result = IncrementalResult(bronze_from=seen_bronze, bronze_to=bronze.version(), dead_letters_from=seen_dead,
                               dead_letters_to=None if dead is None else dead.version())
    wanted = {BRONZE_APP: result.bronze_to, JUDGED_APP: max(closed, judged_through).toordinal()}
    if result.dead_letters_to is not None:
        wanted[DEAD_LETTERS_APP] = result.dead_letters_to
    if seen_bronze is not None and seen_bronze > result.bronze_to:
        raise GateRaced(f"silver_tweets records bronze v{seen_bronze}, newer than bronze_tweets v{result.bronze_to}: "
                        "was bronze_tweets replaced? Run `tweetops gate --date` for its days")

    days: dict[date, DayWork] = {}
    groups = _groups(files, settings.gate_chunk_rows)
    batch_thresholds = replace(thresholds, min_row_count=0, max_dead_letter_share=1.0)
    pending: list = []
    for i, group in enumerate(groups):
        if pending:     # an earlier group's rows: appended without the versions (a rerun drops them by id)
            append_silver(silver, pending, None, seen_bronze)
        pending = _validate_group(group, bronze, settings, run_id, now, batch_thresholds, days)
    # Judged before the commit that records the versions: a crash before it judges the days again.
    _judge_days(sorted(judging), days, settings, thresholds, pending)
    append_silver(silver, pending, wanted, seen_bronze)
    gate_results = [days[d].result(d, run_id, result.bronze_to) for d in sorted(days)]
    result.results = [r.as_dict() for r in gate_results]
    result.days = [d.isoformat() for d in sorted(days)]
    result.silver_days = [d.isoformat() for d in sorted(days) if days[d].silver]
    result.complete_days = [d.isoformat() for d in sorted(days) if days[d].judged]
    result.rows_read = sum(w.read for w in days.values())
    result.rows_known = sum(w.known for w in days.values())
    result.rows_validated = sum(w.validated for w in days.values())
    result.silver_rows = sum(w.silver for w in days.values())
    result.quarantined_rows = sum(w.quarantined for w in days.values())
    result.success = all(r.success for r in gate_results)
    log.info("incremental quality gate %s", result.describe())
    return result


@dataclass
class DayWork:
    """What one run did for one event day, summed over its groups of files."""
    read: int = 0
    redeliveries: int = 0
    known: int = 0
    validated: int = 0
    silver: int = 0
    quarantined: int = 0
    failed: dict = field(default_factory=dict)     # (expectation, column, expected) -> FailedExpectation
    judged: bool = False
    dead_letters: int = 0
    dead_letter_share: float = 0.0
    docs: tuple = (None, None)

    def result(self, day: date, run_id: str, bronze_version: int):
        from expectations.gate import GateResult
        from expectations.gate_chunked import _day_observed

        failed = [_day_observed(f, self.validated) for f in self.failed.values()]
        return GateResult(
            interval_start=midnight(day).isoformat(), interval_end=midnight(day + DAY).isoformat(),
            success=not failed, run_id=run_id, bronze_version=bronze_version, bronze_rows=self.read,
            redeliveries_dropped=self.redeliveries, dead_letters=self.dead_letters,
            dead_letter_share=self.dead_letter_share, silver_rows=self.silver, quarantined_rows=self.quarantined,
            failed=failed, data_docs_url=self.docs[0], data_docs_index=self.docs[1], known_rows=self.known,
            day_judged=self.judged)


def _groups(files: list, max_rows: int) -> list[list]:
    """The new files in groups of about `max_rows` rows (a bigger file is a group of its own)."""
    groups: list[list] = []
    rows = 0
    for f in sorted(files, key=lambda f: (f.day, f.path)):
        if not groups or rows + f.rows > max_rows:
            groups.append([])
            rows = 0
        groups[-1].append(f)
        rows += f.rows
    return groups


def _validate_group(files: list, bronze, settings: Settings, run_id: str, now: datetime,
                    thresholds: Thresholds, days: dict) -> list:
    """Read these new bronze files, validate their unknown rows, append the failing ones to quarantine;
    return the passing ones (silver_tweets rows) for the silver commit."""
    import pandas as pd

    from expectations.gate import drop_redeliveries, quarantine_rows, silver_rows, split_batch
    from lakehouse.bronze_changes import read_files

    frame = read_files(bronze, [f.path for f in files]).to_pandas()
    touched = sorted({f.day for f in files})
    known = known_ids(touched, settings)
    batches = []
    for day, rows in frame.groupby("event_date", sort=True):
        work = days.setdefault(day, DayWork())
        rows, redeliveries = drop_redeliveries(rows)
        seen = rows["id"].isin(known).to_numpy()
        work.read += len(rows) + redeliveries
        work.redeliveries += redeliveries
        work.known += int(seen.sum())
        batches.append(rows[~seen])
    batch = pd.concat(batches, ignore_index=True) if batches else frame.iloc[0:0]
    if batch.empty:
        return []
    # One GX validation for the rows whose created_at lies on their event day (all of them, unless
    # ingestion has a bug): for those, "inside the day and not in the future" over the touched days'
    # span is exactly the per-day check. Any other row is validated with its own day's bounds.
    on_day = (batch["created_at"].dt.tz_convert("UTC").dt.date == batch["event_date"]).to_numpy()
    parts = [batch[on_day]] + [rows for _, rows in batch[~on_day].groupby("event_date", sort=True)]
    good, bad = [], []
    for part in parts:
        if part.empty:
            continue
        part = part.reset_index(drop=True)
        verdict = _validate_days(part, settings, run_id, now, thresholds, days)
        passed, failed = split_batch(part, verdict)
        good.append(silver_rows(passed, bronze.version(), now, run_id))
        bad.append(quarantine_rows(failed, now, run_id))
        for name, rows in (("silver", good[-1]), ("quarantined", bad[-1])):
            for day, n in rows["event_date"].value_counts().items():
                setattr(days[day], name, getattr(days[day], name) + int(n))
    written = append_quarantine(bad, touched, settings)
    if written != sum(len(b) for b in bad):   # rows a crashed earlier attempt already quarantined
        log.info("silver_quarantine: %d of %d rows were already there", sum(len(b) for b in bad) - written,
                 sum(len(b) for b in bad))
    return good


def _validate_days(batch, settings: Settings, run_id: str, now: datetime, thresholds: Thresholds, days: dict):
    """Validate a batch of one or more event days in one GX run; give each day its share of the verdict."""
    import pandas as pd

    from expectations.bronze_tweets import DEAD_LETTER_SHARE_COLUMN, suite_parameters
    from expectations.gate import validate_batch
    from expectations.gate_chunked import _merge

    first, last = min(batch["event_date"]), max(batch["event_date"])
    batch[DEAD_LETTER_SHARE_COLUMN] = pd.Series([0.0] * len(batch), dtype="float64", index=batch.index)
    # A tweet created after the run started is no future tweet: the files were listed after it.
    latest = max(now, datetime.now(timezone.utc))
    # Named by the run: the quality page counts quarantine rows by run.
    verdict = validate_batch(batch, suite_parameters(midnight(first), midnight(last + DAY), latest),
                             settings.home, thresholds, run_id)
    batch.drop(columns=[DEAD_LETTER_SHARE_COLUMN], inplace=True)
    row_days = batch["event_date"].tolist()
    per_day = batch["event_date"].value_counts().to_dict()
    for day, n in per_day.items():
        days[day].validated += int(n)
        days[day].docs = (verdict.data_docs_url, verdict.data_docs_index)
    for failure in verdict.failed:
        if failure.table_level:   # schema or types: the whole batch, so every day in it
            for day in per_day:
                _merge(days[day].failed, failure)
            continue
        rows = [i for i, failures in verdict.row_failures.items() if any(f is failure for f in failures)]
        for day in per_day:
            mine = [i for i in rows if row_days[i] == day]
            if mine:
                _merge(days[day].failed, _for_day(failure, batch.iloc[mine], per_day[day]))
    return verdict


def _for_day(failure, rows, day_rows: int):
    """A row-level failure as one day's share of it: its count and examples from that day's rows."""
    from dataclasses import replace as copy

    import pandas as pd

    values = rows[failure.column].tolist() if failure.column in rows else []
    examples = []
    for value in values[:3]:
        text = "null" if pd.isna(value) else repr(
            value.isoformat() if hasattr(value, "isoformat") else value)
        examples.append(text if len(text) <= 40 else text[:37] + "...'")
    return copy(failure, unexpected_count=len(rows),
                observed=f"{len(rows)} of {day_rows} rows" + (f", e.g. {', '.join(examples)}" if examples else ""))


def known_ids(days: list[date], settings: Settings) -> set[str]:
    """The tweet ids silver_tweets and silver_quarantine hold for these days (their id column only)."""
    from tweetops.core.tables import ensure_table

    ids: set[str] = set()
    for name in ("silver_tweets", "silver_quarantine"):
        column = ensure_table(name, settings).to_pyarrow_table(columns=["id"], filters=[("event_date", "in", days)])
        ids.update(i for i in column["id"].to_pylist() if i)
    return ids


def append_quarantine(frames: list, days: list[date], settings: Settings) -> int:
    """Append the failed rows to silver_quarantine, skipping those already there (by id; by text for the
    rows without an id): a rerun after a crash quarantines nothing twice. Returns the rows appended."""
    import pandas as pd
    import pyarrow as pa
    from deltalake import write_deltalake

    from tweetops.core.tables import ensure_table, spec

    frames = [f for f in frames if len(f)]
    if not frames:
        return 0
    rows = pd.concat(frames, ignore_index=True)
    table = ensure_table("silver_quarantine", settings)
    in_days = [("event_date", "in", days)]
    there = set(table.to_pyarrow_table(columns=["id"], filters=in_days)["id"].to_pylist())
    blank = set(table.to_pyarrow_table(columns=["text"], filters=in_days + [("id", "=", "")])["text"].to_pylist())
    new = rows[[(i not in there) if i else (t not in blank) for i, t in zip(rows["id"], rows["text"])]]
    if new.empty:
        return 0
    schema = spec("silver_quarantine").schema
    write_deltalake(table, pa.Table.from_pandas(new[schema.names], schema=schema, preserve_index=False),
                    mode="append", partition_by=list(spec("silver_quarantine").partition_by))
    return len(new)


def append_silver(silver, frames: list, record: dict | None, seen_bronze: int | None) -> None:
    """Append the passed rows to silver_tweets in one commit; with `record`, that commit also records the
    processed versions (app transactions), written through the snapshot they were read from."""
    import pandas as pd
    import pyarrow as pa
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    from tweetops.core.tables import spec

    schema = spec("silver_tweets").schema
    frames = [f for f in frames if len(f)]
    if not frames and record is None:
        return
    if not frames:
        _record(silver, seen_bronze, record)
        return
    rows = pd.concat(frames, ignore_index=True)
    table = pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)
    if record is not None:
        _check_not_raced(silver, seen_bronze, record)
    properties = None if record is None else CommitProperties(
        app_transactions=[Transaction(app, version) for app, version in record.items()])
    try:
        write_deltalake(silver, table, mode="append", partition_by=list(spec("silver_tweets").partition_by),
                        commit_properties=properties)
    except CommitFailedError as exc:
        raise GateRaced(f"silver_tweets: another gate run recorded its versions first ({exc})") from exc


def _judge_days(judging: list[date], days: dict, settings: Settings, thresholds: Thresholds,
                pending: list) -> None:
    """The day-level expectations of complete days, from row counts in the Delta logs (no row read):
    tweets = silver (plus `pending`, the rows about to be appended) + quarantined rows of the day;
    dead-letter share = dead letters received that day over them plus the day's bronze messages."""
    from expectations.bronze_tweets import DEAD_LETTER_SHARE_COLUMN
    from expectations.gate import FailedExpectation
    from expectations.gate_chunked import ROW_COUNT
    from lakehouse.bronze_changes import rows_per_day
    from tweetops.core.tables import ensure_table, open_table

    counts = {name: rows_per_day(ensure_table(name, settings), "event_date")
              for name in ("silver_tweets", "silver_quarantine", "bronze_tweets")}
    try:
        dead = rows_per_day(open_table("bronze_dead_letters", settings), "ingest_date")
    except LookupError:
        dead = {}
    for day in set(days) | set(judging):
        work = days.setdefault(day, DayWork())
        messages = counts["bronze_tweets"].get(day, 0) + dead.get(day, 0)
        work.dead_letters = dead.get(day, 0)
        work.dead_letter_share = work.dead_letters / messages if messages else 0.0
        if day not in judging:
            continue
        work.judged = True
        tweets = (counts["silver_tweets"].get(day, 0) + counts["silver_quarantine"].get(day, 0)
                  + sum(int((frame["event_date"] == day).sum()) for frame in pending))
        if tweets < thresholds.min_row_count:
            work.failed[(ROW_COUNT, None, "")] = FailedExpectation(
                expectation=ROW_COUNT, description=f"at least {thresholds.min_row_count} tweets in the interval",
                column=None, expected=f"rows >= {thresholds.min_row_count}", observed=str(tweets), table_level=True)
        if work.dead_letter_share > thresholds.max_dead_letter_share:
            work.failed[("expect_column_max_to_be_between", DEAD_LETTER_SHARE_COLUMN, "")] = FailedExpectation(
                expectation="expect_column_max_to_be_between",
                description=f"dead letters at most {thresholds.max_dead_letter_share:.0%} of the interval's messages",
                column=DEAD_LETTER_SHARE_COLUMN, expected=f"max <= {thresholds.max_dead_letter_share}",
                observed=f"{work.dead_letter_share:.4g}", table_level=True)


def _check_not_raced(silver, seen_bronze: int | None, wanted: dict) -> None:
    if silver.transaction_version(BRONZE_APP) != seen_bronze:
        raise GateRaced(f"silver_tweets: another gate run recorded bronze v{silver.transaction_version(BRONZE_APP)} "
                        f"while this one processed v{seen_bronze}..v{wanted[BRONZE_APP]}; the next run redoes it")


def _record(silver, seen_bronze: int | None, wanted: dict) -> None:
    """Commit the processed versions on silver_tweets when no row goes with them (nothing new, a replay)."""
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    from tweetops.core.tables import spec

    _check_not_raced(silver, seen_bronze, wanted)
    if all(silver.transaction_version(app) == version for app, version in wanted.items()):
        return  # nothing moved: no empty commit
    empty = spec("silver_tweets").schema.empty_table()
    try:
        # Written through the snapshot the versions were read from: a rival recording first makes it fail.
        write_deltalake(silver, empty, mode="append", commit_properties=CommitProperties(
            app_transactions=[Transaction(app, version) for app, version in wanted.items()]))
    except CommitFailedError as exc:
        raise GateRaced(f"silver_tweets: another gate run recorded its versions first ({exc})") from exc


def processed_versions(settings: Settings | None = None) -> dict[str, int | None]:
    """The bronze versions the incremental gate has processed (for trace, status and benchmarks)."""
    from tweetops.core.tables import ensure_table

    silver = ensure_table("silver_tweets", settings or load_settings())
    return {app: silver.transaction_version(app) for app in (BRONZE_APP, DEAD_LETTERS_APP, JUDGED_APP)}


def run_cli(args) -> int:
    """`tweetops gate --incremental`: exit 0 passed (or nothing new), 1 an expectation failed, 2 bad arguments."""
    if args.date is not None or args.days != 1:
        print("tweetops gate: --incremental finds its days itself; give --date/--days without it to backfill")
        return 2
    result = run_incremental_gate()
    print(f"incremental quality gate: {result.describe()}")
    for day in result.results:
        print(f"  {day['interval_start'][:10]}: {day['silver_rows']} to silver, {day['quarantined_rows']} quarantined"
              + ("" if day["success"] else " - FAILED: " + "; ".join(f["description"] for f in day["failed"])))
    return 0 if result.success else 1


def gate_task(run_id: str, backfill: tuple[date, date] | None = None, now: datetime | None = None) -> dict:
    """The gate DAG's task: a backfill (the event dates [start, end), see
    tweetops.orchestration.context.gate_backfill_from_context) rebuilds its days, any other run is
    incremental. Plain types only (XCom): the days, each day's result, the event extra (`days`: the
    days whose silver changed, for features and scoring), and `skip` when the run wrote and judged
    nothing."""
    now = now or datetime.now(timezone.utc)
    if backfill is not None:
        days = days_of(*backfill)
        results = [r.as_dict() for r in run_gate_for_days(days, load_settings(), run_id, now)]
        describe = f"backfill {days[0]}..{days[-1]}"
        changed = [d.isoformat() for d in days]
        extra = {"days": changed, "bronze_version": results[-1]["bronze_version"] if results else None}
        skip = not results
    else:
        result = run_incremental_gate(run_id=run_id, now=now)
        results, describe, changed = result.results, result.describe(), result.silver_days
        extra = {"days": changed, "judged_days": result.complete_days, "bronze_from": result.bronze_from,
                 "bronze_to": result.bronze_to, "dead_letters_from": result.dead_letters_from,
                 "dead_letters_to": result.dead_letters_to}
        skip = result.nothing_new
    log.info("quality gate run %s: %s", run_id, describe)
    extra["describe"] = describe
    if changed:
        first, last = date.fromisoformat(min(changed)), date.fromisoformat(max(changed))
        extra |= {"interval_start": midnight(first).isoformat(), "interval_end": midnight(last + DAY).isoformat()}
    return {"days": [r["interval_start"][:10] for r in results], "describe": describe, "results": results,
            "event_extra": extra, "skip": skip, "success": all(r["success"] for r in results)}

