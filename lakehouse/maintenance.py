"""`tweetops maintain`: keep every lakehouse table fast to read and its storage bounded.

For each table: compact small files (the consumer commits one small file per partition per
batch), write a checkpoint (readers replay the log from it instead of from version 0), remove
expired log files, then vacuum data files no longer referenced by any version younger than the
retention (7 days unless you insist: time travel and slow readers need those files).

Safe while the consumer appends: compaction only rewrites files, never rows; concurrent appends
commit on top of it (delta-rs rebases blind appends), a real conflict is retried on a fresh
snapshot, and the consumer's exactly-once offsets (Delta app transactions) are part of the table
state, not of the files, so they survive compaction and checkpoints.
"""
from __future__ import annotations

import argparse
import sys
import time

from tweetops.core.settings import Settings, load_settings

SAFE_RETENTION_HOURS = 7 * 24
COMMIT_ATTEMPTS = 5


class MaintenanceError(RuntimeError):
    """A maintenance step was refused (unsafe retention, unknown table) or kept conflicting."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tables", nargs="+", metavar="TABLE",
                        help="tables to maintain (default: every table that exists)")
    parser.add_argument("--vacuum-retention-hours", type=int, default=SAFE_RETENTION_HOURS,
                        help=f"vacuum files removed longer ago than this (default {SAFE_RETENTION_HOURS}, "
                             "the minimum unless --allow-short-retention)")
    parser.add_argument("--allow-short-retention", action="store_true",
                        help="permit a retention under 7 days (breaks time travel and slow readers)")
    parser.add_argument("--dry-run", action="store_true",
                        help="change nothing: list what vacuum would delete")
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    import json

    try:
        reports = maintain(args.tables, load_settings(), vacuum_retention_hours=args.vacuum_retention_hours,
                           allow_short_retention=args.allow_short_retention, dry_run=args.dry_run)
    except MaintenanceError as exc:
        print(f"tweetops maintain: {exc}", file=sys.stderr)
        return 2
    if args.format == "json":
        print(json.dumps(reports, default=str))
    else:
        import pyarrow as pa

        from lakehouse.sql import format_table

        print(format_table(pa.Table.from_pylist(reports), max_rows=len(reports)))
    return 0


def maintain(tables: list[str] | None = None, settings: Settings | None = None, *,
             vacuum_retention_hours: int = SAFE_RETENTION_HOURS, allow_short_retention: bool = False,
             dry_run: bool = False) -> list[dict]:
    """Maintain `tables` (default: all that exist); one report dict per table."""
    from tweetops.core.tables import TABLES

    settings = settings or load_settings()
    if vacuum_retention_hours < SAFE_RETENTION_HOURS and not allow_short_retention:
        raise MaintenanceError(
            f"--vacuum-retention-hours {vacuum_retention_hours} is under {SAFE_RETENTION_HOURS} (7 days): readers "
            "and time travel may still need those files. Pass --allow-short-retention if you mean it.")
    if vacuum_retention_hours < 0:
        raise MaintenanceError("--vacuum-retention-hours must be >= 0")
    unknown = sorted(set(tables or []) - set(TABLES))
    if unknown:
        raise MaintenanceError(f"unknown table(s) {unknown}; known tables: {', '.join(sorted(TABLES))}")
    return [maintain_table(name, settings, vacuum_retention_hours=vacuum_retention_hours,
                           allow_short_retention=allow_short_retention, dry_run=dry_run)
            for name in (tables or list(TABLES))]


def maintain_table(name: str, settings: Settings | None = None, *,
                   vacuum_retention_hours: int = SAFE_RETENTION_HOURS, allow_short_retention: bool = False,
                   dry_run: bool = False) -> dict:
    """Compact, checkpoint and vacuum one table; returns what was done."""
    from tweetops.core.tables import open_table

    settings = settings or load_settings()
    started = time.perf_counter()
    report = {"table": name, "version_before": None, "version_after": None, "files_before": 0,
              "files_after": 0, "files_compacted": 0, "files_written": 0, "checkpoint": False,
              "vacuumed": 0, "dry_run": dry_run, "seconds": 0.0}
    try:
        table = open_table(name, settings)
    except LookupError:
        report["status"] = "not created"
        return report
    except OSError as exc:
        if "NoSuchBucket" not in str(exc):
            raise
        report["status"] = "not created"
        return report
    report.update(version_before=table.version(), files_before=len(table.file_uris()))

    if not dry_run:
        metrics = _with_retries(name, settings, lambda t: t.optimize.compact(
            commit_properties=_commit_properties("compact")))
        report["files_compacted"] = int(metrics.get("numFilesRemoved", 0))
        report["files_written"] = int(metrics.get("numFilesAdded", 0))
        table = open_table(name, settings)
        table.create_checkpoint()
        table.cleanup_metadata()  # log files older than delta.logRetentionDuration (30 days)
        report["checkpoint"] = True

    table = open_table(name, settings)
    deleted = _with_retries(name, settings, lambda t: t.vacuum(
        retention_hours=vacuum_retention_hours, dry_run=dry_run, full=True,
        enforce_retention_duration=not allow_short_retention,
        commit_properties=_commit_properties("vacuum")))
    report["vacuumed"] = len(deleted)
    if dry_run:
        report["would_delete"] = sorted(deleted)
    table = open_table(name, settings)
    report.update(version_after=table.version(), files_after=len(table.file_uris()),
                  seconds=round(time.perf_counter() - started, 3), status="ok")
    return report


def _commit_properties(step: str):
    from deltalake import CommitProperties

    return CommitProperties(custom_metadata={"tweetops.operation": f"maintenance {step}"},
                            max_commit_retries=20)


def _with_retries(name: str, settings: Settings, step):
    """Run `step(table)` on a fresh snapshot until it commits: a concurrent writer that removed
    the same files (an overwrite) makes our commit conflict; one that appended does not."""
    from deltalake.exceptions import CommitFailedError

    from tweetops.core.tables import open_table

    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            return step(open_table(name, settings))
        except CommitFailedError as exc:
            if attempt == COMMIT_ATTEMPTS:
                raise MaintenanceError(f"{name}: still conflicting with concurrent writers after "
                                       f"{COMMIT_ATTEMPTS} attempts ({exc}); run maintenance again later") from exc
            time.sleep(0.2 * attempt)  # back off: the other writer is mid-commit
