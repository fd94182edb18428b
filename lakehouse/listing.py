"""`tweetops tables`: every lakehouse table with its layer, Delta version, rows, files and size.

Tables are created on first write; those not created yet are listed as such. Reading the list
never creates anything.
"""
from __future__ import annotations

import argparse
import json
import sys

from tweetops.core.settings import Settings, load_settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", choices=("table", "json"), default="table")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    rows = describe_tables(settings)
    if args.format == "json":
        print(json.dumps(rows, default=str))
        return 0
    import pyarrow as pa

    from lakehouse.sql import format_table

    shown = [{"table": r["table"], "layer": r["layer"],
              "version": "not created" if r["version"] is None else str(r["version"]),
              "rows": r["rows"], "files": r["files"], "size": _human(r["size_bytes"]),
              "partitioned by": ", ".join(r["partition_by"]), "description": r["description"]} for r in rows]
    print(f"Lakehouse: {settings.lakehouse_uri}")
    print(format_table(pa.Table.from_pylist(shown), max_rows=len(shown)))
    return 0


def describe_tables(settings: Settings | None = None) -> list[dict]:
    """One dict per catalog table: version, rows, files and bytes of the latest snapshot
    (None/0 for a table that does not exist yet)."""
    import pyarrow as pa

    from tweetops.core.tables import TABLES, open_table

    settings = settings or load_settings()
    out = []
    for name, spec in TABLES.items():
        row = {"table": name, "layer": spec.layer, "version": None, "rows": 0, "files": 0, "size_bytes": 0,
               "partition_by": list(spec.partition_by), "description": spec.description}
        try:
            table = open_table(name, settings)
        except LookupError:
            out.append(row)
            continue
        except OSError as exc:
            if "NoSuchBucket" not in str(exc):
                raise
            out.append(row)  # a fresh S3 root: the bucket is created with the first table
            continue
        actions = pa.table(table.get_add_actions(flatten=True))
        records = actions["num_records"].to_pylist() if "num_records" in actions.column_names else []
        row.update(version=table.version(), files=actions.num_rows,
                   rows=sum(n or 0 for n in records), size_bytes=sum(actions["size_bytes"].to_pylist()))
        out.append(row)
    return out


def _human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)
