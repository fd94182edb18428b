"""The quality gate: validate one day of bronze tweets with Great Expectations, then split it.

Rows that pass go to silver_tweets (one row per tweet id, text repaired); rows that fail go to
silver_quarantine with the expectations they failed. When a table-level expectation fails (too few
rows, too many dead letters, wrong schema) the whole interval is quarantined. A rerun replaces the
interval's partitions in both tables (one Delta commit each; none when nothing changed), so it never
appends twice. Outside Airflow: `tweetops gate --date YYYY-MM-DD`.

The GX project (suite copy, validation results, Data Docs) lives under TWEETOPS_HOME/gx and is
built inside each call, never at import time.
"""
from __future__ import annotations

import fcntl
import json
import logging
import re
import sys
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from expectations.bronze_tweets import (DEAD_LETTER_SHARE_COLUMN, ROW_KEY, SUITE_NAME, Thresholds,
                                        batch_columns, build_suite, suite_parameters)
from tweetops.core.intervals import day_bounds
from tweetops.core.settings import Settings, load_settings

log = logging.getLogger(__name__)

DAY = timedelta(days=1)
# When and by what a row was written: a rerun of an unchanged interval does not rewrite them.
AUDIT_COLUMNS = {"silver_tweets": ["validated_at", "bronze_version", "gate_run_id"],
                 "silver_quarantine": ["quarantined_at", "run_id"]}
# A redelivered message repeats the whole tweet; only the Kafka coordinates and landing time differ.
PAYLOAD_COLUMNS = ["id", "text", "created_at", "user", "lang", "label", "extra", "event_date"]


@dataclass
class FailedExpectation:
    """One failed expectation, in words a person can act on."""
    expectation: str            # the GX expectation type, e.g. expect_column_values_to_be_in_set
    description: str            # what the suite promises, from expectations/bronze_tweets.py
    column: str | None
    expected: str               # e.g. "in {en}", "1 <= length <= 280"
    observed: str               # e.g. "3 of 412 rows, e.g. 'fr', 'de'", or "42" for a row count
    table_level: bool           # True: the whole interval fails; False: only the rows listed
    unexpected_count: int | None = None


@dataclass
class GateResult:
    interval_start: str
    interval_end: str
    success: bool
    run_id: str
    bronze_version: int
    bronze_rows: int            # messages read from bronze for the interval (incremental: its new rows)
    redeliveries_dropped: int   # exact repeats of a message already read (at-least-once delivery)
    dead_letters: int
    dead_letter_share: float
    silver_rows: int
    quarantined_rows: int
    failed: list[FailedExpectation] = field(default_factory=list)
    data_docs_url: str | None = None    # this validation's page
    data_docs_index: str | None = None  # the Data Docs site
    known_rows: int = 0         # incremental: new rows whose id silver or quarantine already holds (dropped)
    day_judged: bool = False    # incremental: the day-level checks judged the complete day in this run

    @property
    def whole_interval_quarantined(self) -> bool:
        # An incremental run's day-level verdict keeps the rows where they are: nothing was quarantined.
        return any(f.table_level for f in self.failed) and self.silver_rows == 0 and self.quarantined_rows > 0

    def as_dict(self) -> dict[str, Any]:
        """Plain types only: it travels through XCom."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "GateResult":
        return cls(**{**data, "failed": [FailedExpectation(**f) for f in data.get("failed", [])]})


@dataclass
class Verdict:
    """What GX said about one batch."""
    success: bool
    table_failures: list[FailedExpectation]
    row_failures: dict[int, list[FailedExpectation]]   # batch row position -> what it failed
    failed: list[FailedExpectation]                    # every failed expectation, once
    data_docs_url: str | None
    data_docs_index: str | None


# --- the gate -------------------------------------------------------------------------------

def run_quality_gate(interval_start: datetime | date, interval_end: datetime | date,
                     settings: Settings | None = None, run_id: str | None = None,
                     thresholds: Thresholds = Thresholds(), now: datetime | None = None) -> GateResult:
    """Validate the interval's bronze tweets and write silver and quarantine; rerunnable."""
    import pandas as pd

    from tweetops.core.tables import ensure_table

    settings = settings or load_settings()
    start, end = day_bounds(interval_start, interval_end)
    now = now or datetime.now(timezone.utc)
    run_id = run_id or f"manual__{now.isoformat(timespec='seconds')}"
    from expectations.gate_chunked import bronze_rows_in, run_chunked_gate

    expected_rows = bronze_rows_in(start, end, settings)
    if expected_rows > settings.gate_chunk_rows:  # bounded memory: see expectations/gate_chunked.py
        return run_chunked_gate(start, end, settings, run_id, thresholds, now, expected_rows)

    bronze = ensure_table("bronze_tweets", settings)
    bronze_version = bronze.version()
    rows = bronze.to_pyarrow_table(filters=[("event_date", ">=", start.date()), ("event_date", "<", end.date())])
    dead_letters = count_dead_letters(start, end, settings)
    messages = rows.num_rows + dead_letters
    share = dead_letters / messages if messages else 0.0

    batch, redeliveries = drop_redeliveries(rows.to_pandas())
    batch[DEAD_LETTER_SHARE_COLUMN] = pd.Series([share] * len(batch), dtype="float64", index=batch.index)
    verdict = validate_batch(batch, suite_parameters(start, end, now), settings.home, thresholds, run_id)

    silver, quarantine = split_batch(batch, verdict)
    n_silver = write_silver(silver, start, end, bronze_version, now, settings, run_id)
    n_quarantined = write_quarantine(quarantine, start, end, now, run_id, settings)

    result = GateResult(
        interval_start=start.isoformat(), interval_end=end.isoformat(), success=verdict.success,
        run_id=run_id, bronze_version=bronze_version, bronze_rows=rows.num_rows,
        redeliveries_dropped=redeliveries, dead_letters=dead_letters, dead_letter_share=share,
        silver_rows=n_silver, quarantined_rows=n_quarantined, failed=verdict.failed,
        data_docs_url=verdict.data_docs_url, data_docs_index=verdict.data_docs_index,
    )
    log.info("quality gate %s..%s: %s, %d to silver, %d quarantined, Data Docs %s", start.date(), end.date(),
             "passed" if result.success else "FAILED", n_silver, n_quarantined, result.data_docs_url)
    return result


def count_dead_letters(start: datetime, end: datetime, settings: Settings) -> int:
    """Dead letters received in the interval (they have no event date: undecodable messages)."""
    from tweetops.core.tables import open_table

    try:
        table = open_table("bronze_dead_letters", settings)
    except LookupError:
        return 0
    return table.to_pyarrow_table(columns=["ingest_date"], filters=[
        ("ingest_date", ">=", start.date()), ("ingest_date", "<", end.date())]).num_rows


def drop_redeliveries(frame):
    """Keep the earliest Kafka offset of each identical message; return (frame, how many dropped)."""
    ordered = frame.sort_values(["kafka_offset", "kafka_partition", "kafka_topic"], kind="stable")
    # created_at and friends are hashable; NaN/None compare equal in duplicated(), as they should here.
    first = ordered[~ordered.duplicated(subset=PAYLOAD_COLUMNS, keep="first")]
    return first.reset_index(drop=True), len(frame) - len(first)


# --- validation -----------------------------------------------------------------------------

def validate_batch(batch, parameters: dict, gx_project: Path, thresholds: Thresholds = Thresholds(),
                   run_name: str | None = None) -> Verdict:
    """Run the bronze suite on a batch (a pandas frame with `batch_columns()`) in the GX file
    project under `gx_project`/gx, update its Data Docs, and say which rows and what failed."""
    import great_expectations as gx

    gx_project = Path(gx_project)
    gx_project.mkdir(parents=True, exist_ok=True)
    with _gx_lock(gx_project):
        context = _gx_context(gx_project)
        suite = context.suites.add_or_update(build_suite(thresholds))
        definition = context.validation_definitions.add_or_update(
            gx.ValidationDefinition(name=SUITE_NAME, data=_batch_definition(context), suite=suite))
        checkpoint = context.checkpoints.add_or_update(gx.Checkpoint(
            name=SUITE_NAME, validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="update_data_docs")],
            result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ROW_KEY},
        ))
        result = checkpoint.run(batch_parameters={"dataframe": batch}, expectation_parameters=parameters,
                                run_id=gx.RunIdentifier(run_name=_file_safe(run_name)))
        (identifier, validation), = result.run_results.items()
        urls = context.get_docs_sites_urls(resource_identifier=identifier)
        index = context.get_docs_sites_urls()
    return _verdict(batch, validation, urls[0]["site_url"] if urls else None,
                    index[0]["site_url"] if index else None)


def _file_safe(run_name: str | None) -> str | None:
    # The run name becomes a Data Docs folder: Airflow's run ids carry ':' and '+'.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_name) if run_name else None


def _gx_context(project: Path):
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="file", project_root_dir=str(project))
    bars = context.variables.progress_bars
    if (bars.get("globally", True) if isinstance(bars, dict) else getattr(bars, "globally", True)):
        context.variables.progress_bars = ProgressBarsConfig(globally=False)  # no tqdm noise in task logs
        context.variables.save()
    return context


def _batch_definition(context):
    try:
        source = context.data_sources.get("bronze")
    except KeyError:
        source = context.data_sources.add_pandas("bronze")
    asset = source.get_asset("bronze_tweets") if "bronze_tweets" in source.get_asset_names() \
        else source.add_dataframe_asset("bronze_tweets")
    names = {d.name for d in asset.batch_definitions}
    return asset.get_batch_definition("interval") if "interval" in names \
        else asset.add_batch_definition_whole_dataframe("interval")


@contextmanager
def _gx_lock(project: Path):
    # Two gate runs (a backfill) would otherwise rewrite the same GX project files at once.
    with open(project / ".gx.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _verdict(batch, validation, docs_url: str | None, docs_index: str | None) -> Verdict:
    positions = {_row_key(row): i for i, row in enumerate(
        batch[ROW_KEY].itertuples(index=False, name=None))}
    table_failures: list[FailedExpectation] = []
    row_failures: dict[int, list[FailedExpectation]] = {}
    failed: list[FailedExpectation] = []
    for outcome in validation.results:
        if outcome.success:
            continue
        config, result = outcome.expectation_config, outcome.result or {}
        kwargs = {k: v for k, v in config.kwargs.items() if k != "batch_id"}
        error = _exception_message(outcome.exception_info)
        row_level = "unexpected_index_list" in result and error is None
        failure = FailedExpectation(
            expectation=config.type, description=config.description or config.type,
            column=kwargs.get("column"), expected=describe_expected(config.type, kwargs),
            observed=f"error: {error}" if error is not None else describe_observed(result, kwargs.get("column")),
            table_level=not row_level, unexpected_count=result.get("unexpected_count"),
        )
        failed.append(failure)
        if not row_level:
            table_failures.append(failure)
            continue
        for index in result.get("unexpected_index_list") or []:
            position = positions.get(_row_key(tuple(index[c] for c in ROW_KEY)))
            if position is not None:
                row_failures.setdefault(position, []).append(failure)
    return Verdict(success=bool(validation.success), table_failures=table_failures, row_failures=row_failures,
                   failed=failed, data_docs_url=docs_url, data_docs_index=docs_index)


def _exception_message(info: dict | None) -> str | None:
    """The error an expectation raised, if any; GX nests it per metric when a metric failed."""
    if not info:
        return None
    if "raised_exception" in info:
        return str(info.get("exception_message") or "raised an exception") if info["raised_exception"] else None
    for nested in info.values():
        if isinstance(nested, dict) and (message := _exception_message({"raised_exception": True, **nested})):
            return message.strip().splitlines()[-1][:300]
    return None


def _row_key(values: tuple) -> tuple:
    topic, partition, offset = values
    return str(topic), int(partition), int(offset)


def describe_expected(expectation: str, kwargs: dict) -> str:
    if "value_set" in kwargs:
        return "in {" + ", ".join(map(str, kwargs["value_set"])) + "}"
    if "column_set" in kwargs:
        return "columns " + ", ".join(kwargs["column_set"])
    if "type_" in kwargs:
        return f"type {kwargs['type_']}"
    if "not_be_null" in expectation:
        return "not null"
    if "unique" in expectation:
        return "unique"
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    low, high = (v.isoformat() if isinstance(v, datetime) else v for v in (low, high))
    what = {"expect_table_row_count_to_be_between": "rows", "expect_column_max_to_be_between": "max",
            "expect_column_value_lengths_to_be_between": "length"}.get(expectation, "value")
    below, above = "<" if kwargs.get("strict_min") else "<=", "<" if kwargs.get("strict_max") else "<="
    if low is not None and high is not None:
        return f"{low} {below} {what} {above} {high}"
    if low is not None:
        return f"{what} {'>' if below == '<' else '>='} {low}"
    if high is not None:
        return f"{what} {above} {high}"
    return json.dumps(kwargs, default=str)


def describe_observed(result: dict, column: str | None) -> str:
    if "unexpected_index_list" in result:
        examples = []
        for value in result.get("partial_unexpected_list") or []:
            text = "null" if value is None else repr(value.isoformat() if hasattr(value, "isoformat") else value)
            examples.append(text if len(text) <= 40 else text[:37] + "...'")
            if len(examples) == 3:
                break
        total = result.get("element_count")
        return (f"{result.get('unexpected_count')} of {total} rows"
                + (f", e.g. {', '.join(examples)}" if examples else ""))
    observed = result.get("observed_value")
    mismatched = (result.get("details") or {}).get("mismatched")
    if mismatched:
        return f"{observed} (mismatched: {json.dumps(mismatched, default=str)})"
    if isinstance(observed, float):
        return f"{observed:.4g}"
    if observed is None:
        return "nothing to measure (no rows)"
    return str(observed)


def failure_summary(result: GateResult | dict) -> str:
    """One paragraph for a failed run's log: the interval, the counts and each failed expectation."""
    r = result if isinstance(result, GateResult) else GateResult.from_dict(result)
    lines = [f"quality gate failed for {r.interval_start[:10]}..{r.interval_end[:10]}: "
             f"{r.quarantined_rows} rows quarantined, {r.silver_rows} to silver"
             + (" (whole interval quarantined)" if r.whole_interval_quarantined else "")]
    lines += [f"- {f.description}: expected {f.expected}; observed {f.observed}" for f in r.failed]
    if r.data_docs_url:
        lines.append(f"Data Docs: {r.data_docs_url}")
    return "\n".join(lines)


# --- silver and quarantine ------------------------------------------------------------------

def split_batch(batch, verdict: Verdict):
    """(silver rows, quarantined rows with their failed expectations as a `failed` column)."""
    if verdict.table_failures:
        # The interval as a whole is not trusted: keep every row aside, none reaches silver.
        failed = [list(verdict.table_failures) + verdict.row_failures.get(i, []) for i in range(len(batch))]
        quarantine = batch.assign(failed=failed)
        return batch.iloc[0:0], quarantine
    bad = sorted(verdict.row_failures)
    quarantine = batch.iloc[bad].assign(failed=[verdict.row_failures[i] for i in bad])
    return batch.drop(index=batch.index[bad]), quarantine


def write_silver(rows, start: datetime, end: datetime, bronze_version: int, now: datetime,
                 settings: Settings, run_id: str | None = None) -> int:
    return _replace_interval("silver_tweets", silver_rows(rows, bronze_version, now, run_id), start, end, settings)


def silver_rows(rows, bronze_version: int, now: datetime, run_id: str | None):
    """Validated rows as silver_tweets rows: one per id, text repaired, stamped with the gate run."""
    from tweetops.core.text import repair_text

    rows = rows.drop_duplicates(subset="id", keep="first")   # the suite already demands unique ids
    return rows.assign(text=[repair_text(t) for t in rows["text"]], validated_at=now,
                       bronze_version=bronze_version, gate_run_id=run_id).sort_values("id")


def write_quarantine(rows, start: datetime, end: datetime, now: datetime, run_id: str,
                     settings: Settings) -> int:
    return _replace_interval("silver_quarantine", quarantine_rows(rows, now, run_id), start, end, settings)


def quarantine_rows(rows, now: datetime, run_id: str):
    """Failed rows (with their `failed` expectations) as silver_quarantine rows, stamped with the gate run."""
    failed = [json.dumps([_row_reason(f, row) for f in row["failed"]], default=str)
              for row in rows.to_dict("records")]
    # id and text are required in the table: a missing one is kept as "" (the reason says why).
    rows = rows.assign(id=rows["id"].fillna(""), text=rows["text"].fillna(""), failed_expectations=failed,
                       quarantined_at=now, run_id=run_id)
    return rows.sort_values(["id", "kafka_offset"])


def _row_reason(failure: FailedExpectation, row: dict) -> dict:
    """Why this row is in quarantine: the expectation, and its own value (or the interval's figure)."""
    reason = {"expectation": failure.expectation, "description": failure.description,
              "column": failure.column, "expected": failure.expected}
    if failure.table_level:
        reason["observed"] = failure.observed
    else:
        value = row.get(failure.column)
        value = value.isoformat() if hasattr(value, "isoformat") else value
        reason["value"] = value[:100] if isinstance(value, str) else value
    return reason


def _replace_interval(name: str, rows, start: datetime, end: datetime, settings: Settings) -> int:
    """Overwrite the interval's event_date partitions of a table with `rows`, in one Delta commit.

    A rerun that finds the same rows (audit columns aside) keeps what is there: a rerun of an
    unchanged interval leaves the table identical, not merely equivalent.
    """
    import pyarrow as pa

    from tweetops.core.delta_replace import replace_days
    from tweetops.core.tables import ensure_table, spec

    schema = spec(name).schema
    table = pa.Table.from_pandas(rows[schema.names], schema=schema, preserve_index=False)
    delta = evolve_schema(ensure_table(name, settings), name)
    existing = pa.table(delta.to_pyarrow_table(filters=[
        ("event_date", ">=", start.date()), ("event_date", "<", end.date())]))
    if _content(existing, AUDIT_COLUMNS[name]).equals(_content(table, AUDIT_COLUMNS[name])):
        log.info("%s %s..%s unchanged: kept as it is (version %s)", name, start.date(), end.date(), delta.version())
        return table.num_rows
    replace_days(delta, table, start, end)
    return table.num_rows


def evolve_schema(delta, name: str):
    """Add the columns the catalog declares and an older table lacks (nullable ones, e.g. silver_tweets'
    gate_run_id): older rows read them as null, and writers with the current schema can append."""
    from deltalake.schema import Field

    from tweetops.core.tables import spec

    have = set(pa_schema(delta).names)
    missing = [f for f in spec(name).schema if f.name not in have]
    if not missing:
        return delta
    if not all(f.nullable for f in missing):
        raise ValueError(f"{name}: cannot add required columns {[f.name for f in missing]} to an existing table")
    delta.alter.add_columns([Field(f.name, _delta_type(f.type), nullable=True) for f in missing])
    log.info("%s: added column(s) %s (older rows read them as null)", name, ", ".join(f.name for f in missing))
    return delta


def pa_schema(delta):
    import pyarrow as pa

    return pa.schema(delta.schema().to_arrow())


def _delta_type(arrow_type) -> str:
    import pyarrow as pa

    types = {pa.string(): "string", pa.int64(): "long", pa.int32(): "integer", pa.float64(): "double",
             pa.bool_(): "boolean", pa.date32(): "date"}
    if arrow_type not in types:
        raise ValueError(f"no Delta type known for {arrow_type}")
    return types[arrow_type]


def _content(table, audit_columns: list[str]):
    """The rows without their audit columns, in a canonical order."""
    content = table.drop_columns(audit_columns)
    return content.sort_by([(column, "ascending") for column in content.column_names])


# --- `tweetops gate` -----------------------------------------------------------------------

def add_arguments(parser) -> None:
    from tweetops.core.intervals import iso_date

    parser.add_argument("--date", type=iso_date, default=None,
                        help="first UTC day to validate, YYYY-MM-DD (default: yesterday)")
    parser.add_argument("--days", type=int, default=1, help="how many days from --date (default 1)")
    parser.add_argument("--incremental", action="store_true",
                        help="validate the days bronze gained data in since the last run (no --date)")


EXIT_EMPTY = 4  # `tweetops gate`: no message at all for the day(s)


def interval_messages(start: datetime, end: datetime, settings: Settings) -> int:
    """Bronze tweets plus dead letters of the interval: 0 means nothing arrived at all."""
    from tweetops.core.tables import ensure_table

    bronze = ensure_table("bronze_tweets", settings).to_pyarrow_table(
        columns=["event_date"], filters=[("event_date", ">=", start.date()), ("event_date", "<", end.date())])
    return bronze.num_rows + count_dead_letters(start, end, settings)


def run(args) -> int:
    """Run the gate outside Airflow (no Slack alert). Exit 0 passed, 1 an expectation failed, 2 bad
    arguments, 4 a day without any message (nothing validated, nothing written for it)."""
    if getattr(args, "incremental", False):
        from expectations.incremental import run_cli

        return run_cli(args)
    first = args.date or datetime.now(timezone.utc).date() - DAY
    if args.days < 1:
        print(f"tweetops gate: --days {args.days}: expected at least 1")
        return 2
    settings = load_settings()
    failed = empty = 0
    for offset in range(args.days):
        day = first + offset * DAY
        start, end = day_bounds(day, day + DAY)
        if interval_messages(start, end, settings) == 0:
            # The scheduled DAG does validate such a day, and fails it (missing data is an alert there);
            # by hand it is almost always a wrong date.
            print(f"tweetops gate: no bronze tweets or dead letters for {day}: nothing to validate, nothing "
                  "written (is ingestion behind, or the date wrong?)", file=sys.stderr)
            empty += 1
            continue
        result = run_quality_gate(day, day + DAY, settings)
        print(failure_summary(result) if not result.success else
              f"quality gate passed for {day}: {result.silver_rows} rows to silver\nData Docs: {result.data_docs_url}")
        failed += not result.success
    return 1 if failed else EXIT_EMPTY if empty else 0


__all__ = ["FailedExpectation", "GateResult", "Verdict", "batch_columns", "failure_summary", "run_quality_gate",
           "validate_batch"]
