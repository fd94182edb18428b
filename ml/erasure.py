"""`tweetops forget --user NAME` / `--id TWEET_ID`: erase a person's tweets from the whole lakehouse
(the right to be forgotten), in one audited operation.

1. Find the tweets: rows whose `user` is NAME in every table that has a `user` column (bronze,
   silver, quarantine), their ids, the ids given with --id, and the dead letters whose raw bytes
   name the user or the id (see `dead_letter_matches`: parsed as JSON when they parse, matched on
   the `"user": "NAME"` / `"id": ...` pair in the bytes when they do not, and on the Kafka key).
2. Ask the registry which model versions were trained on them: every version whose lineage
   features version of gold_features still held one of those ids (read before anything is deleted).
3. Delete them: one Delta commit per table that holds any (every catalog table with an `id` or
   `user` column, and the dead letters). A concurrent append (the consumer ingesting) makes the
   delete fail its conditional commit: it reloads the table and deletes again, so nothing the
   consumer lands is lost or landed twice.
4. Remove exactly the data files that held them, physically: the files the delete rewrote and any
   older file of the table's history (before a compaction, say) that holds a matching row. Files
   the current version reads are never touched. Time travel to a version that read one of those
   files now fails (file not found) instead of showing the rows; later versions read as before.
5. Record the erasure in gold_erasure_log (who, when, rows and files per table, the model versions:
   no name, no id, no text) and tag each affected model version `tweetops.needs_retrain=erasure`.

Not covered: tweets by other users that mention NAME (only the author's tweets are erased), copies
outside the lakehouse (Kafka keeps messages for its retention period; MLflow artifacts such as
model files), and tweets of the user that arrive while or after it runs (stop them upstream).
"""
from __future__ import annotations

import argparse
import getpass
import json
import re
import sys
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.compute as pc

from tweetops.core.settings import Settings, load_settings

ERASURE_LOG = "gold_erasure_log"
DEAD_LETTERS = "bronze_dead_letters"
NEEDS_RETRAIN_TAG = "tweetops.needs_retrain"
COMMIT_RETRIES = 20


class RegistryUnavailable(RuntimeError):
    """The registry could not be asked about lineage; raised before anything is deleted."""


@dataclass(frozen=True)
class Subject:
    """Whose tweets: any tweet whose author is one of `users` or whose id is one of `ids`."""
    users: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()

    def __post_init__(self):
        if not self.users and not self.ids:
            raise ValueError("nothing to forget: give at least one --user or --id")
        if any(not str(v).strip() for v in self.users + self.ids):
            raise ValueError("--user and --id must not be empty")


@dataclass
class Erasure:
    erasure_id: str
    at: str
    actor: str
    rows: dict[str, int] = field(default_factory=dict)           # table -> rows deleted
    versions: dict[str, int] = field(default_factory=dict)       # table -> the delete's Delta version
    files_removed: dict[str, int] = field(default_factory=dict)  # table -> data files removed from storage
    model_versions: list[str] = field(default_factory=list)      # registry versions trained on the rows
    registry: str = "checked"                                    # or why it was not
    already_done: bool = False                                    # this erasure id was logged before


# --- which tables, which rows ---------------------------------------------------------------------

def erasable_tables() -> list[str]:
    """Every catalog table that can hold a tweet: an `id` or `user` column, or raw message bytes."""
    from tweetops.core.tables import TABLES

    return [name for name, spec in TABLES.items()
            if name == DEAD_LETTERS or {"id", "user"} & set(spec.schema.names)]


def dead_letter_matches(raw: bytes | None, key: bytes | None, users: set[str], ids: set[str]) -> tuple[bool, str | None]:
    """(does this dead letter hold the subject's tweet, its id if readable).

    A dead letter is a message that failed decoding or the schema, so its user is not a column:
    parse the raw bytes as JSON when possible; otherwise look for the `"user": "NAME"` or
    `"id": "ID"` pair in the bytes (truncated or broken JSON). The Kafka key is the tweet id.
    """
    if key is not None and ids and key.decode("utf-8", "replace") in ids:
        return True, key.decode("utf-8", "replace")
    if raw is None:
        return False, None
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict):
        tweet_id = obj.get("id")
        tweet_id = str(tweet_id) if isinstance(tweet_id, (str, int)) and not isinstance(tweet_id, bool) else None
        return (obj.get("user") in users) or (tweet_id in ids), tweet_id
    for user in users:
        if re.search(rb'"user"\s*:\s*' + re.escape(json.dumps(user).encode()), raw):
            return True, None
    for tweet_id in ids:
        if re.search(rb'"id"\s*:\s*"?' + re.escape(tweet_id.encode()) + rb'(?!\w)', raw):
            return True, tweet_id
    return False, None


def _row_mask(name: str, data: pa.Table, users: set[str], ids: set[str]) -> pa.Array:
    """Which rows of a table (a batch of its columns) belong to the subject."""
    if name == DEAD_LETTERS:
        raws, keys = data.column("raw").to_pylist(), data.column("kafka_key").to_pylist()
        return pa.array([dead_letter_matches(r, k, users, ids)[0] for r, k in zip(raws, keys)], pa.bool_())
    mask = pa.array([False] * data.num_rows, pa.bool_())
    if "user" in data.column_names and users:
        mask = pc.or_(mask, pc.fill_null(pc.is_in(data.column("user"), pa.array(sorted(users), pa.string())), False))
    if "id" in data.column_names and ids:
        mask = pc.or_(mask, pc.fill_null(pc.is_in(data.column("id"), pa.array(sorted(ids), pa.string())), False))
    return mask


def _match_columns(name: str, schema: pa.Schema) -> list[str]:
    if name == DEAD_LETTERS:
        return ["raw", "kafka_key", "kafka_topic", "kafka_partition", "kafka_offset"]
    return [c for c in ("id", "user") if c in schema.names]


def _sql_literal(value) -> str:
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"
    return str(int(value))


# --- the operation -----------------------------------------------------------------------------

def forget(subject: Subject, settings: Settings | None = None, actor: str | None = None,
           erasure_id: str | None = None, check_registry: bool = True, log=print) -> Erasure:
    """Erase the subject's tweets everywhere (see the module doc); returns what was done."""
    from tweetops.core.tables import ensure_table

    settings = settings or load_settings()
    erasure = Erasure(erasure_id=erasure_id or uuid.uuid4().hex, at=_now().isoformat(timespec="seconds"),
                      actor=actor or _default_actor())
    if erasure_id and _already_logged(erasure_id, settings):
        erasure.already_done = True
        log(f"erasure {erasure_id} is already in {ERASURE_LOG}: nothing to do")
        return erasure

    users, ids = set(subject.users), set(subject.ids)
    tables = {name: table for name in erasable_tables() if (table := _open(name, settings)) is not None}
    ids |= _ids_of(tables, users, ids)
    log(f"found {len(ids)} tweet id(s) to erase in {len(tables)} table(s)")

    if check_registry:
        try:
            erasure.model_versions = affected_model_versions(ids, settings)
        except Exception as exc:  # before any delete: refuse rather than erase without the lineage answer
            raise RegistryUnavailable(f"could not ask the model registry at {settings.mlflow_tracking_uri} which "
                                      f"versions were trained on the tweets ({str(exc).splitlines()[0]}); nothing "
                                      "was deleted. Start MLflow, or pass --no-registry.") from exc
    else:
        erasure.registry = "not checked (--no-registry)"

    for name, table in tables.items():
        deleted, version = _delete_rows(name, table, users, ids)
        erasure.rows[name] = deleted
        if version is not None:
            erasure.versions[name] = version
        erasure.files_removed[name] = _remove_files(name, table, users, ids, settings)
        log(f"  {name}: {deleted} row(s) deleted"
            + (f" in version {version}" if version is not None else "")
            + f", {erasure.files_removed[name]} data file(s) removed from storage")

    for version in erasure.model_versions:
        _mark_for_retraining(version, erasure.erasure_id, settings)

    from deltalake import write_deltalake

    write_deltalake(ensure_table(ERASURE_LOG, settings), _log_row(erasure), mode="append")
    return erasure


def _open(name: str, settings: Settings):
    from tweetops.core.tables import open_table

    try:
        return open_table(name, settings)
    except LookupError:
        return None  # never created: holds nothing


def _ids_of(tables: dict, users: set[str], ids: set[str]) -> set[str]:
    """The ids of the subject's tweets, from every table that names the author (and the dead letters)."""
    found: set[str] = set()
    for name, table in tables.items():
        columns = set(_columns(table))
        if name == DEAD_LETTERS:
            data = _read(table, ["raw", "kafka_key"])
            for raw, key in zip(data.column("raw").to_pylist(), data.column("kafka_key").to_pylist()):
                matched, tweet_id = dead_letter_matches(raw, key, users, ids)
                if matched and tweet_id:
                    found.add(tweet_id)
        elif users and {"id", "user"} <= columns:
            data = _read(table, ["id", "user"], pc.field("user").isin(sorted(users)))
            found |= {i for i in data.column("id").to_pylist() if i is not None}
    return found


def _columns(table) -> list[str]:
    return pa.schema(table.schema().to_arrow()).names


def _read(table, columns: list[str], where=None) -> pa.Table:
    return table.to_pyarrow_dataset().to_table(columns=columns, filter=where)


def _delete_rows(name: str, table, users: set[str], ids: set[str]) -> tuple[int, int | None]:
    """Delete the subject's rows in one commit; retried from a fresh snapshot when a concurrent
    writer committed first (delta-rs refuses the stale commit: nothing is lost)."""
    from deltalake.exceptions import CommitFailedError

    for attempt in range(COMMIT_RETRIES):
        table.update_incremental()
        predicate = _predicate(name, table, users, ids)
        if predicate is None:
            return 0, None
        try:
            metrics = table.delete(predicate)
            return int(metrics.get("num_deleted_rows", 0)), table.version()
        except CommitFailedError:
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
    raise RuntimeError(f"{name}: the delete lost {COMMIT_RETRIES} commit races to concurrent writers; run it again")


def _predicate(name: str, table, users: set[str], ids: set[str]) -> str | None:
    """A SQL predicate for delta-rs' delete, or None if the table holds none of the subject's rows."""
    columns = set(_columns(table))
    if name == DEAD_LETTERS:
        data = _read(table, _match_columns(name, pa.schema(table.schema().to_arrow())))
        hits = data.filter(_row_mask(name, data, users, ids))
        if not hits.num_rows:
            return None
        return " OR ".join(
            f"(kafka_topic = {_sql_literal(t)} AND kafka_partition = {int(p)} AND kafka_offset = {int(o)})"
            for t, p, o in zip(hits.column("kafka_topic").to_pylist(), hits.column("kafka_partition").to_pylist(),
                               hits.column("kafka_offset").to_pylist()))
    terms = []
    if "user" in columns and users:
        terms.append(f'"user" IN ({", ".join(map(_sql_literal, sorted(users)))})')
    if "id" in columns and ids:
        terms.append(f'"id" IN ({", ".join(map(_sql_literal, sorted(ids)))})')
    if not terms:
        return None
    where = None
    if "user" in columns and users:
        where = pc.field("user").isin(sorted(users))
    if "id" in columns and ids:
        by_id = pc.field("id").isin(sorted(ids))
        where = by_id if where is None else (where | by_id)
    if not table.to_pyarrow_dataset().count_rows(filter=where):
        return None  # no empty commits: a table without the subject's rows keeps its version
    return " OR ".join(terms)


# --- physical removal ----------------------------------------------------------------------------

def _remove_files(name: str, table, users: set[str], ids: set[str], settings: Settings) -> int:
    """Remove from storage every data file of the table's history (up to the version just read)
    that holds one of the subject's rows; never a file the current version reads."""
    from tweetops.core.storage import pyarrow_filesystem, table_uri

    filesystem, _ = pyarrow_filesystem(settings)
    root = table_uri(name, settings).removeprefix("s3://").rstrip("/")
    table.update_incremental()
    version = table.version()
    live = {unquote(str(path)) for path in pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist()}
    schema = pa.schema(table.schema().to_arrow())
    columns = _match_columns(name, schema)
    removed = 0
    for path in sorted(_history_files(filesystem, root, version) - live):
        full = f"{root}/{path}"
        try:
            data = _read_file(filesystem, full, columns)
        except FileNotFoundError:
            continue  # vacuumed before, or removed by an earlier erasure
        if pc.any(_row_mask(name, data, users, ids)).as_py():
            filesystem.delete_file(full)
            removed += 1
    return removed


def _history_files(filesystem, root: str, up_to_version: int) -> set[str]:
    """Every data file path (relative to the table) added or removed by a commit up to a version."""
    from pyarrow.fs import FileSelector

    paths: set[str] = set()
    for info in filesystem.get_file_info(FileSelector(f"{root}/_delta_log")):
        base = info.base_name
        if not base.endswith(".json") or not base[:-5].isdigit() or int(base[:-5]) > up_to_version:
            continue
        with filesystem.open_input_stream(info.path) as stream:
            for line in stream.read().decode().splitlines():
                if not line.strip():
                    continue
                action = json.loads(line)
                for kind in ("add", "remove", "cdc"):
                    if kind in action and "://" not in action[kind]["path"]:
                        paths.add(unquote(action[kind]["path"]))
    return paths


def _read_file(filesystem, path: str, columns: list[str]) -> pa.Table:
    import pyarrow.parquet as pq

    info = filesystem.get_file_info(path)
    if info.type.name == "NotFound":
        raise FileNotFoundError(path)
    parquet = pq.ParquetFile(filesystem.open_input_file(path))
    present = [c for c in columns if c in parquet.schema_arrow.names]
    return parquet.read(columns=present)


# --- the registry --------------------------------------------------------------------------------

def affected_model_versions(ids: set[str], settings: Settings) -> list[str]:
    """Registered versions whose lineage features version held one of the ids (trained or evaluated
    on them). Read before the delete: afterwards those versions can no longer be read. A version
    whose features can no longer be read counts as affected, unless it is already marked."""
    from ml import registry
    from ml.contract import TAG_FEATURES_TABLE, TAG_FEATURES_VERSION
    from tweetops.core.tables import open_table

    if not ids:
        return []
    client = registry.client(settings)
    versions = client.search_model_versions(f"name = '{settings.model_name}'")
    held: dict[tuple[str, int], bool | None] = {}
    affected = []
    for version in versions:
        tags = dict(version.tags or {})
        if (not tags.get(TAG_FEATURES_VERSION) or not tags.get(TAG_FEATURES_TABLE)) and version.run_id:
            tags = {**client.get_run(version.run_id).data.tags, **tags}
        table, number = tags.get(TAG_FEATURES_TABLE), tags.get(TAG_FEATURES_VERSION)
        if not table or number is None or not str(number).isdigit():
            continue
        key = (table, int(number))
        if key not in held:
            try:
                snapshot = open_table(table, settings, version=int(number))
                held[key] = snapshot.to_pyarrow_dataset().count_rows(filter=pc.field("id").isin(sorted(ids))) > 0
            except Exception:  # files gone (vacuumed, or an earlier erasure): cannot tell, so assume it did
                held[key] = None
        if held[key] or (held[key] is None and NEEDS_RETRAIN_TAG not in (version.tags or {})):
            affected.append(str(version.version))
    return sorted(affected, key=int)


def _mark_for_retraining(version: str, erasure_id: str, settings: Settings) -> None:
    from ml import registry

    client = registry.client(settings)
    client.set_model_version_tag(settings.model_name, version, NEEDS_RETRAIN_TAG, "erasure")
    client.set_model_version_tag(settings.model_name, version, "tweetops.erasure_id", erasure_id)


# --- the log -------------------------------------------------------------------------------------

def _log_row(erasure: Erasure) -> pa.Table:
    from tweetops.core.tables import spec

    row = {"erasure_id": erasure.erasure_id, "at": datetime.fromisoformat(erasure.at), "actor": erasure.actor,
           "rows_deleted": sum(erasure.rows.values()), "rows_per_table": json.dumps(erasure.rows, sort_keys=True),
           "table_versions": json.dumps(erasure.versions, sort_keys=True),
           "files_removed": json.dumps(erasure.files_removed, sort_keys=True),
           "model_versions": json.dumps(erasure.model_versions), "registry": erasure.registry}
    return pa.Table.from_pylist([row], schema=spec(ERASURE_LOG).schema)


def _already_logged(erasure_id: str, settings: Settings) -> bool:
    table = _open(ERASURE_LOG, settings)
    return table is not None and table.to_pyarrow_dataset().count_rows(filter=pc.field("erasure_id") == erasure_id) > 0


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(microsecond=0)


def _default_actor() -> str:
    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


# --- CLI -----------------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--user", action="append", default=[], metavar="NAME",
                        help="erase every tweet this user wrote (repeatable)")
    parser.add_argument("--id", action="append", default=[], metavar="TWEET_ID",
                        help="erase the tweet with this id (repeatable)")
    parser.add_argument("--actor", default=None, help="who asks, for the erasure log (default: the OS user)")
    parser.add_argument("--erasure-id", default=None,
                        help="an id for this erasure (a rerun with the same id does nothing); default: new")
    parser.add_argument("--no-registry", action="store_true",
                        help="do not look up or tag model versions (when MLflow is not running)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def run(args: argparse.Namespace) -> int:
    try:
        subject = Subject(users=tuple(args.user), ids=tuple(args.id))
    except ValueError as exc:
        print(f"tweetops forget: {exc}", file=sys.stderr)
        return 2
    settings = load_settings()
    quiet = args.json
    try:
        erasure = forget(subject, settings, actor=args.actor, erasure_id=args.erasure_id,
                         check_registry=not args.no_registry, log=(lambda *a: None) if quiet else print)
    except RegistryUnavailable as exc:
        print(f"tweetops forget: {exc}", file=sys.stderr)
        return 1
    if quiet:
        print(json.dumps(asdict(erasure), indent=2))
        return 0
    print(f"erasure {erasure.erasure_id}: {sum(erasure.rows.values())} row(s) deleted, "
          f"{sum(erasure.files_removed.values())} data file(s) removed; logged in {ERASURE_LOG}")
    if erasure.model_versions:
        print(f"model versions trained on the erased tweets (tagged {NEEDS_RETRAIN_TAG}=erasure): "
              f"{', '.join(erasure.model_versions)}; retrain: the rows are gone from gold_features")
    else:
        print(f"no registered model version was trained on them ({erasure.registry})")
    return 0
