"""The incremental quality gate: validate what bronze gained since the last run, whenever it arrives.

Each run
  1. reads from silver_tweets the bronze_tweets and bronze_dead_letters versions it processed last
     (Delta app transactions, like the ingest offsets in streaming/offsets.py);
  2. finds the days whose files changed in bronze since those versions (lakehouse/bronze_changes.py):
     event days of new tweets, receipt days of new dead letters (they move a day's dead-letter share);
  3. adds the days that became complete since the last run (close + allowed lateness), so that a
     day with no new data is still judged as a whole once;
  4. rebuilds each of those days from bronze with the interval gate (expectations/gate.py): a whole
     day's silver and quarantine partitions are replaced, so a tweet id appears once however often
     it arrived, and a day whose rows did not change keeps its files;
  5. records the versions it processed, in one last commit on silver_tweets.

A crash anywhere before step 5 (between a day's silver and quarantine commits too) leaves the old
versions recorded: the next run rebuilds the same days again, with the same result. Rebuilding a
day is idempotent; the recorded versions only say where to start looking.

Day-level expectations (at least N tweets, dead-letter share) only judge a complete day: before its
close plus TWEETOPS_ALLOWED_LATENESS_HOURS (default 6) a day is partial, and a half-filled day
raising "too few tweets" would be a false alarm. Row-level expectations judge every run.

A backfill (`tweetops gate --date`, the DAG's `date` param, an Airflow backfill) calls the interval
gate directly: it rebuilds its days from bronze whatever the recorded versions say.
"""
from __future__ import annotations

import logging
import os
from dataclasses import asdict, dataclass, field, replace
from datetime import date, datetime, timedelta, timezone

from expectations.bronze_tweets import Thresholds
from tweetops.core.settings import Settings, SettingsError, load_settings

log = logging.getLogger(__name__)

# App transactions on silver_tweets: what the incremental gate has processed.
BRONZE_APP = "tweetops-gate/bronze_tweets"
DEAD_LETTERS_APP = "tweetops-gate/bronze_dead_letters"
JUDGED_APP = "tweetops-gate/complete-through"    # the last day judged complete, as date.toordinal()
LATENESS_ENV = "TWEETOPS_ALLOWED_LATENESS_HOURS"
DEFAULT_LATENESS_HOURS = 6.0
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
    days: list[str] = field(default_factory=list)            # days rebuilt, YYYY-MM-DD
    complete_days: list[str] = field(default_factory=list)   # of which judged as whole days
    results: list[dict] = field(default_factory=list)        # GateResult.as_dict() per day
    success: bool = True

    @property
    def nothing_new(self) -> bool:
        return not self.days

    def describe(self) -> str:
        """One line for a run's log and name: the bronze versions and days covered."""
        versions = (f"bronze up to v{self.bronze_to}" if self.bronze_from is None
                    else f"bronze v{self.bronze_from}..v{self.bronze_to}")
        if not self.days:
            return f"{versions}: nothing new"
        days = self.days[0] if len(self.days) == 1 else f"{len(self.days)} days {self.days[0]}..{self.days[-1]}"
        return f"{versions}: {days} ({'passed' if self.success else 'FAILED'})"

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
    """Validate the days bronze gained data in since the last run (see the module doc)."""
    from lakehouse.bronze_changes import touched_days
    from tweetops.core.tables import ensure_table, open_table

    settings = settings or load_settings()
    now = now or datetime.now(timezone.utc)
    run_id = run_id or f"incremental__{now.isoformat(timespec='seconds')}"
    silver = ensure_table("silver_tweets", settings)
    seen_bronze, seen_dead = silver.transaction_version(BRONZE_APP), silver.transaction_version(DEAD_LETTERS_APP)
    judged = silver.transaction_version(JUDGED_APP)

    bronze = ensure_table("bronze_tweets", settings)
    try:
        dead = open_table("bronze_dead_letters", settings)
    except LookupError:
        dead = None
    days = touched_days("bronze_tweets", "event_date", seen_bronze, bronze, settings)
    if dead is not None:
        days |= touched_days("bronze_dead_letters", "ingest_date", seen_dead, dead, settings)

    lateness = allowed_lateness()
    closed = last_complete_day(now, lateness)
    # First run: nothing to close yet (the days with data are judged as they are rebuilt).
    judged_through = closed if judged is None else date.fromordinal(judged)
    closing = {closed - i * DAY for i in range(min((closed - judged_through).days, MAX_CLOSING_DAYS))}
    days |= closing

    result = IncrementalResult(bronze_from=seen_bronze, bronze_to=bronze.version(), dead_letters_from=seen_dead,
                               dead_letters_to=None if dead is None else dead.version(),
                               days=[d.isoformat() for d in sorted(days)],
                               complete_days=[d.isoformat() for d in sorted(days) if day_complete(d, now, lateness)])
    gate_results = run_gate_for_days(sorted(days), settings, run_id, now, thresholds)
    result.results = [r.as_dict() for r in gate_results]
    rebuilt = {r.interval_start[:10] for r in gate_results}     # a partial day with only dead letters waits
    result.days = [d for d in result.days if d in rebuilt]
    result.complete_days = [d for d in result.complete_days if d in rebuilt]
    result.success = all(r.success for r in gate_results)
    _record(silver, seen_bronze, result, max(closed, judged_through))
    log.info("incremental quality gate %s", result.describe())
    return result


def _record(silver, seen_bronze: int | None, result: IncrementalResult, judged_through: date) -> None:
    """Commit the processed versions on silver_tweets: the last commit of a run."""
    import pyarrow as pa
    from deltalake import CommitProperties, Transaction, write_deltalake
    from deltalake.exceptions import CommitFailedError

    from tweetops.core.tables import spec

    wanted = {BRONZE_APP: result.bronze_to, JUDGED_APP: judged_through.toordinal()}
    if result.dead_letters_to is not None:
        wanted[DEAD_LETTERS_APP] = result.dead_letters_to
    silver.update_incremental()
    if silver.transaction_version(BRONZE_APP) != seen_bronze:
        raise GateRaced(f"silver_tweets: another gate run recorded bronze v{silver.transaction_version(BRONZE_APP)} "
                        f"while this one processed v{seen_bronze}..v{result.bronze_to}; the next run redoes it")
    if all(silver.transaction_version(app) == version for app, version in wanted.items()):
        return  # nothing moved: no empty commit
    empty = spec("silver_tweets").schema.empty_table()
    try:
        # Written through the snapshot we just checked: a rival recording first makes this commit fail.
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


def gate_task(context: dict) -> dict:
    """The gate DAG's task: a backfill (`date` param, Airflow backfill) rebuilds its interval's days,
    any other run is incremental. Plain types only (XCom): the days, each day's result, the event extra."""
    from expectations.gate import interval_from_context

    dag_run = context.get("dag_run")
    run_type = str(getattr(dag_run, "run_type", "") or "").lower()
    run_id = context["run_id"]
    now = datetime.now(timezone.utc)
    if (context.get("params") or {}).get("date") or run_type.endswith("backfill"):
        start, end = interval_from_context(context)
        days = [start.date() + i * DAY for i in range((end - start).days)]
        results = [r.as_dict() for r in run_gate_for_days(days, load_settings(), run_id, now)]
        describe = f"backfill {days[0]}..{days[-1]}"
        versions = {"bronze_version": results[-1]["bronze_version"]}
    else:
        result = run_incremental_gate(run_id=run_id, now=now)
        days = [date.fromisoformat(d) for d in result.days]
        results, describe = result.results, result.describe()
        versions = {"bronze_from": result.bronze_from, "bronze_to": result.bronze_to}
    log.info("quality gate run %s: %s", run_id, describe)
    extra = {"days": [d.isoformat() for d in days], **versions, "describe": describe}
    if days:
        extra |= {"interval_start": _midnight(min(days)).isoformat(), "interval_end": _midnight(max(days) + DAY).isoformat()}
    return {"days": extra["days"], "describe": describe, "results": results, "event_extra": extra,
            "success": all(r["success"] for r in results)}


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=timezone.utc)
