"""`tweetops sql "SELECT ..."`: read-only SQL over every lakehouse table, by name.

Every table of the catalog (see `tweetops tables`) is a view of its latest Delta version, or of
the version given with `--version TABLE=N` (time travel). DuckDB runs the query over the tables'
parquet files (registered through delta-rs, so local and s3:// roots work alike).

Read-only by construction: only queries are accepted (SELECT, WITH, FROM, PIVOT, ...), and the
DuckDB connection can reach no file, extension or setting once the tables are registered.

Bounded: a query gets at most TWEETOPS_SQL_MEMORY_LIMIT of memory (default 2GB) and
TWEETOPS_SQL_THREADS threads (default 2), and is interrupted after TWEETOPS_SQL_TIMEOUT_SECONDS
(default 60) with a message saying so (exit status 1), so no query can take the machine down.

Examples:
  tweetops sql "SELECT label, count(*) FROM silver_tweets GROUP BY label"
  tweetops sql --version silver_tweets=3 --format csv "SELECT * FROM silver_tweets LIMIT 10"
"""
from __future__ import annotations

import argparse
import re
import sys
import tempfile
import threading

from tweetops.core.settings import Settings, load_settings

# First keyword of the statements we accept: queries only.
READ_ONLY_STARTS = ("SELECT", "WITH", "FROM", "VALUES", "DESCRIBE", "SHOW", "SUMMARIZE", "PIVOT", "UNPIVOT")


class QueryError(ValueError):
    """The SQL cannot run: refused (not read-only), unknown table, bad syntax or a failed query."""


class QueryTimeout(QueryError):
    """The query ran longer than TWEETOPS_SQL_TIMEOUT_SECONDS and was interrupted."""


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
    first_word = (re.match(r"[\s(]*([A-Za-z]+)", _strip_comments(sql)) or [None, ""])[1].upper()
    if first_word not in READ_ONLY_STARTS:
        _refuse(first_word or statements[0].type.name)
    if _is_one_pivot(statements, first_word):
        # DuckDB expands a PIVOT without an IN list into a temporary ENUM type of the pivoted
        # values (an unnamed CREATE) and the SELECT using it: one query, nothing written.
        statements = statements[-1:]
    if len(statements) > 1:
        raise QueryError(f"one query at a time: got {len(statements)} statements")
    if statements[0].type != duckdb.StatementType.SELECT:
        _refuse(first_word or statements[0].type.name)


def _refuse(kind: str):
    raise QueryError(f"tweetops sql is read-only: {kind} statements are refused; only queries (SELECT, WITH, "
                     "PIVOT...) run. Tables change only through the pipeline (its DAGs and jobs).")


def _is_one_pivot(statements, first_word: str) -> bool:
    import duckdb

    *before, last = statements
    return (first_word in ("PIVOT", "WITH", "FROM", "SELECT") and last.type == duckdb.StatementType.SELECT
            and bool(before) and all(s.type == duckdb.StatementType.CREATE and not s.query for s in before)
            and not last.query)


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

    from tweetops.core.storage import storage_options, table_uri
    from tweetops.core.tables import spec

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

    from tweetops.core.storage import pyarrow_filesystem

    filesystem, _ = pyarrow_filesystem(settings)
    root = table_uri(name, settings).removeprefix("s3://")
    return table.to_pyarrow_dataset(filesystem=SubTreeFileSystem(root, filesystem))


def query(sql: str, settings: Settings | None = None, versions: dict[str, int] | None = None):
    """Run one read-only query over the lakehouse tables; return a pyarrow.Table."""
    import duckdb

    from tweetops.core.tables import TABLES

    settings = settings or load_settings()
    versions = dict(versions or {})
    unknown = sorted(set(versions) - set(TABLES))
    if unknown:
        raise QueryError(f"--version names unknown table(s) {unknown}; known tables: {', '.join(sorted(TABLES))}")
    check_read_only(sql)

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    spill = tempfile.TemporaryDirectory(prefix="tweetops-sql-")  # beyond the memory limit DuckDB spills here
    timer = None
    try:
        con.execute("SET TimeZone = 'UTC'")
        try:  # before lock_configuration: the query itself can never raise them
            con.execute(f"SET memory_limit = '{settings.sql_memory_limit}'")
            con.execute(f"SET threads = {settings.sql_threads}")
            con.execute(f"SET temp_directory = '{spill.name}'")
        except duckdb.Error as exc:
            raise QueryError(f"TWEETOPS_SQL_MEMORY_LIMIT={settings.sql_memory_limit!r} or TWEETOPS_SQL_THREADS="
                             f"{settings.sql_threads!r} is not accepted by DuckDB: {_first_line(exc)}") from None
        # Register only the tables the query names: each one costs a Delta log read (S3 requests).
        for name in TABLES:
            if re.search(rf"\b{re.escape(name)}\b", sql, flags=re.I):
                con.register(name, table_dataset(name, settings, versions.get(name)))
        # From here on the connection can touch no file, extension or setting.
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        timed_out = threading.Event()

        def interrupt():
            timed_out.set()
            con.interrupt()

        timer = threading.Timer(settings.sql_timeout_seconds, interrupt)
        timer.daemon = True
        timer.start()
        try:
            return con.execute(sql).fetch_arrow_table()
        except duckdb.Error as exc:
            raise _query_error(exc, timed_out.is_set(), settings) from None
    finally:
        if timer is not None:
            timer.cancel()
        con.close()
        spill.cleanup()


def _query_error(exc, timed_out: bool, settings: Settings) -> QueryError:
    """DuckDB's error as the user should read it: what went wrong and which setting or table to fix."""
    import duckdb

    from tweetops.core.tables import TABLES

    if timed_out:
        return QueryTimeout(f"query interrupted after {settings.sql_timeout_seconds:g} s "
                            "(TWEETOPS_SQL_TIMEOUT_SECONDS): filter or aggregate more "
                            "(WHERE event_date = ..., LIMIT), or raise the limit")
    if isinstance(exc, duckdb.OutOfMemoryException):
        return QueryError(f"the query needs more than {settings.sql_memory_limit} of memory "
                          "(TWEETOPS_SQL_MEMORY_LIMIT): filter or aggregate more, or raise the limit "
                          f"({_first_line(exc)})")
    if isinstance(exc, duckdb.CatalogException):
        missing = re.search(r"Table with name (\S+) does not exist", str(exc))
        if missing:
            return QueryError(f"unknown table {missing[1]!r}; known tables: {', '.join(sorted(TABLES))}")
    if isinstance(exc, duckdb.ParserException):
        return QueryError(f"bad SQL: {_first_line(exc)}")
    if isinstance(exc, duckdb.PermissionException):
        return QueryError(f"tweetops sql is read-only: {_first_line(exc)}")
    return QueryError(_first_line(exc))


# ---------------------------------------------------------------------------------------------
# Output

def format_table(table, max_rows: int = 200) -> str:
    """An aligned text table, numbers right-aligned, with a row count footer."""
    import pyarrow as pa

    names = table.column_names
    shown = python_rows(table.slice(0, max_rows))
    numeric = [pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t)
               for t in table.schema.types]
    cells = [[_cell(value) for value in row] for row in shown]
    widths = [max([len(n)] + [len(r[i]) for r in cells]) for i, n in enumerate(names)]

    def line(values):
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(names), "  ".join("-" * w for w in widths)] + [line(r) for r in cells]
    more = table.num_rows - len(shown)
    out.append(f"({table.num_rows} row{'s' if table.num_rows != 1 else ''}"
               + (f", first {len(shown)} shown; use --max-rows or --format csv)" if more else ")"))
    return "\n".join(out)


def python_rows(table) -> list[list]:
    """The rows (lists in column order) as Python values, whatever the column types: a value Python cannot hold (DuckDB's
    dates beyond year 9999, infinite timestamps, ...) becomes Arrow's own text for it."""
    columns = []
    for column in table.columns:  # by position: a result may repeat a column name
        try:
            columns.append(column.to_pylist())
        except Exception:  # at least one value has no Python equivalent: convert value by value
            columns.append([_python_value(scalar) for scalar in column])
    return [list(row) for row in zip(*columns)] if columns else [[] for _ in range(table.num_rows)]


def _python_value(scalar):
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        return scalar.as_py()
    except Exception:
        pass
    if isinstance(scalar, (pa.ListScalar, pa.LargeListScalar, pa.FixedSizeListScalar)):
        return None if scalar.values is None else [_python_value(item) for item in scalar.values]
    if isinstance(scalar, pa.StructScalar):
        return {key: _python_value(value) for key, value in scalar.items()}
    try:
        return pc.cast(pa.array([scalar], scalar.type), pa.string())[0].as_py()
    except Exception:
        return f"<{scalar.type} value not displayable>"


def _cell(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, float):
        return f"{value:.6g}"
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def write_csv(table, stream) -> None:
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    try:
        pacsv.write_csv(table, buffer)
        text = buffer.getvalue().decode()
    except (pa.ArrowNotImplementedError, pa.ArrowInvalid, pa.ArrowTypeError):
        # Arrow's writer has no text for nested and DuckDB-specific types: write them cell by cell.
        import csv
        import json

        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in python_rows(table):
            writer.writerow(["" if v is None else json.dumps(v, default=str, ensure_ascii=False)
                             if isinstance(v, (list, dict)) else v for v in row])
        text = out.getvalue()
    stream.write(text)
    stream.flush()


def write_json(table, stream) -> None:
    import json

    names = table.column_names
    json.dump([dict(zip(names, row)) for row in python_rows(table)], stream, default=str, ensure_ascii=False)
    stream.write("\n")
