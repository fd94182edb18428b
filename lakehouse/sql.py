"""`tweetops sql "SELECT ..."`: read-only SQL over every lakehouse table, by name.

Every table of the catalog (see `tweetops tables`) is a view of its latest Delta version, or of
the version given with `--version TABLE=N` (time travel). DuckDB runs the query over the tables'
parquet files (registered through delta-rs, so local and s3:// roots work alike).

Read-only by construction: only SELECT / WITH queries are accepted, and the DuckDB connection
can reach no file, extension or setting once the tables are registered.

Examples:
  tweetops sql "SELECT label, count(*) FROM silver_tweets GROUP BY label"
  tweetops sql --version silver_tweets=3 --format csv "SELECT * FROM silver_tweets LIMIT 10"
"""
from __future__ import annotations

import argparse
import re
import sys

from tweetops.settings import Settings, load_settings

# First keyword of the statements we accept: queries only.
READ_ONLY_STARTS = ("SELECT", "WITH", "FROM", "VALUES", "DESCRIBE", "SHOW", "SUMMARIZE")


class QueryError(ValueError):
    """The SQL cannot run: refused (not read-only), unknown table, bad syntax or a failed query."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sql", help="one SELECT or WITH query; tables are named as in `tweetops tables`")
    parser.add_argument("--format", choices=("table", "csv", "json"), default="table",
                        help="aligned table (default), CSV with a header, or a JSON array of objects")
    parser.add_argument("--version", action="append", default=[], metavar="TABLE=N",
                        help="read TABLE as of Delta version N (time travel); repeatable")
    parser.add_argument("--max-rows", type=int, default=200,
                        help="rows shown in table format (default 200; csv and json print all)")


def run(args: argparse.Namespace) -> int:
    try:
        versions = parse_versions(args.version)
        result = query(args.sql, load_settings(), versions)
    except QueryError as exc:
        print(f"tweetops sql: {exc}", file=sys.stderr)
        return 1
    if args.format == "csv":
        write_csv(result, sys.stdout)
    elif args.format == "json":
        write_json(result, sys.stdout)
    else:
        print(format_table(result, max_rows=args.max_rows))
    return 0


def parse_versions(pairs: list[str]) -> dict[str, int]:
    versions = {}
    for pair in pairs:
        name, _, number = pair.partition("=")
        if not name or not number.strip().isdigit():
            raise QueryError(f"--version {pair!r}: expected TABLE=N, e.g. silver_tweets=3")
        versions[name.strip()] = int(number)
    return versions


def check_read_only(sql: str) -> None:
    """Refuse anything but one query: INSERT, DELETE, UPDATE, COPY, ATTACH, CREATE, PRAGMA, SET,
    INSTALL, LOAD, CALL... name the statement and say what to do instead."""
    import duckdb

    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as exc:
        raise QueryError(f"bad SQL: {_first_line(exc)}") from None
    if not statements:
        raise QueryError("no SQL given: pass one SELECT query")
    if len(statements) > 1:
        raise QueryError(f"one query at a time: got {len(statements)} statements")
    first_word = (re.match(r"[\s(]*([A-Za-z]+)", _strip_comments(sql)) or [None, ""])[1].upper()
    if statements[0].type != duckdb.StatementType.SELECT or first_word not in READ_ONLY_STARTS:
        kind = first_word or statements[0].type.name
        raise QueryError(f"tweetops sql is read-only: {kind} statements are refused; only SELECT/WITH "
                         "queries run. Tables change only through the pipeline (its DAGs and jobs).")


def _strip_comments(sql: str) -> str:
    return re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)


def _first_line(exc: Exception) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def table_dataset(name: str, settings: Settings, version: int | None = None):
    """A pyarrow dataset over one table's snapshot; an empty table with the declared schema if
    the table was never created (reading never creates anything)."""
    import pyarrow as pa
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from lakehouse.storage import storage_options, table_uri
    from lakehouse.tables import spec

    try:
        table = DeltaTable(table_uri(name, settings), version=version, storage_options=storage_options(settings))
    except TableNotFoundError:
        if version is not None:
            raise QueryError(f"--version {name}={version}: table {name} does not exist yet") from None
        return pa.table({f.name: pa.array([], f.type) for f in spec(name).schema})
    except Exception as exc:
        if version is not None and "version" in str(exc).lower():
            raise QueryError(f"--version {name}={version}: no such version ({_first_line(exc)})") from None
        if "NoSuchBucket" in str(exc):
            if version is not None:
                raise QueryError(f"--version {name}={version}: table {name} does not exist yet") from None
            return pa.table({f.name: pa.array([], f.type) for f in spec(name).schema})
        raise
    # pyarrow's native filesystem, not delta-rs' Python one: DuckDB may stop a scan early (LIMIT),
    # and a Python filesystem still reading at interpreter exit crashes the process.
    from pyarrow.fs import SubTreeFileSystem

    from lakehouse.storage import pyarrow_filesystem

    filesystem, _ = pyarrow_filesystem(settings)
    root = table_uri(name, settings).removeprefix("s3://")
    return table.to_pyarrow_dataset(filesystem=SubTreeFileSystem(root, filesystem))


def query(sql: str, settings: Settings | None = None, versions: dict[str, int] | None = None):
    """Run one read-only query over the lakehouse tables; return a pyarrow.Table."""
    import duckdb

    from lakehouse.tables import TABLES

    settings = settings or load_settings()
    versions = dict(versions or {})
    unknown = sorted(set(versions) - set(TABLES))
    if unknown:
        raise QueryError(f"--version names unknown table(s) {unknown}; known tables: {', '.join(sorted(TABLES))}")
    check_read_only(sql)

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    try:
        con.execute("SET TimeZone = 'UTC'")
        # Register only the tables the query names: each one costs a Delta log read (S3 requests).
        for name in TABLES:
            if re.search(rf"\b{re.escape(name)}\b", sql, flags=re.I):
                con.register(name, table_dataset(name, settings, versions.get(name)))
        # From here on the connection can touch no file, extension or setting.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        try:
            return con.execute(sql).fetch_arrow_table()
        except duckdb.CatalogException as exc:
            missing = re.search(r"Table with name (\S+) does not exist", str(exc))
            if missing:
                raise QueryError(f"unknown table {missing[1]!r}; known tables: {', '.join(sorted(TABLES))}") from None
            raise QueryError(_first_line(exc)) from None
        except duckdb.ParserException as exc:
            raise QueryError(f"bad SQL: {_first_line(exc)}") from None
        except duckdb.PermissionException as exc:
            raise QueryError(f"tweetops sql is read-only: {_first_line(exc)}") from None
        except duckdb.Error as exc:
            raise QueryError(_first_line(exc)) from None
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Output

def format_table(table, max_rows: int = 200) -> str:
    """An aligned text table, numbers right-aligned, with a row count footer."""
    import pyarrow as pa

    names = table.column_names
    shown = table.slice(0, max_rows).to_pylist()
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
               for t in table.schema.types]
    cells = [[_cell(row[n]) for n in names] for row in shown]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    more = table.num_rows - len(shown)
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}"
               + (f", first {len(shown)} shown; use --max-rows or --format csv)" if more else ")"))
    return "\n".join(out)


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def write_csv(table, stream) -> None:
    import pyarrow.csv as pacsv

    sink = stream.buffer if hasattr(stream, "buffer") else None
    if sink is not None:
        stream.flush()
        pacsv.write_csv(table, sink)
        sink.flush()
    else:
        import io

        buffer = io.BytesIO()
        pacsv.write_csv(table, buffer)
        stream.write(buffer.getvalue().decode())


def write_json(table, stream) -> None:
    import json

    json.dump(table.to_pylist(), stream, default=str, ensure_ascii=False)
    stream.write("\n")
