"""What each TweetOps page shows, as plain rows (dicts), read where the pipeline records it.

- Quality: the gate runs Great Expectations recorded (one validation result per run, in the GX
  project under TWEETOPS_HOME/gx), with the rows each run put in silver_quarantine;
- Drift: gold_drift_metrics, one group per check (window and time checked);
- Lakehouse: lakehouse.listing.describe_tables plus each table's last commit; SQL goes through
  lakehouse.sql.query (the guarded path of `tweetops sql`);
- Models: the MLflow registry's versions and aliases, gold_model_metrics (test split) and
  gold_promotion_log;
- Tweet lookup: tweetops.app.trace.trace_tweet.

Reading never creates a table. Nothing here imports Airflow: the pages can be tested without it.
"""
from __future__ import annotations

import base64
import glob
import json
import os
import re
from collections import defaultdict
from pathlib import Path

from tweetops.core.settings import Settings

SUITE = "bronze_tweets"
MAX_GATE_RUNS = 200   # newest runs listed: each is one JSON file to parse


def read_table(name: str, settings: Settings, columns: list[str] | None = None):
    """The latest snapshot of a lakehouse table as a pyarrow.Table (empty if never created)."""
    from lakehouse.sql import table_dataset

    data = table_dataset(name, settings)
    return data.to_table(columns=columns) if hasattr(data, "to_table") else data.select(columns or data.column_names)


# --- Quality ---------------------------------------------------------------------------------

def file_safe(run_id: str) -> str:
    # The gate names its GX run after the Airflow run id with these characters replaced.
    return re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)


def gate_runs(settings: Settings, run: str | None = None, limit: int = MAX_GATE_RUNS) -> list[dict]:
    """The gate runs GX recorded, newest first (at most `limit`; or only `run`, an Airflow run id):
    verdict, interval, failed expectations (expected vs observed), rows quarantined, Data Docs page."""
    from expectations.gate import describe_expected, describe_observed

    gx = settings.home / "gx" / "uncommitted"
    quarantined = _quarantined_by_run(settings)
    paths = (gx / "validations" / SUITE).glob(f"{glob.escape(file_safe(run)) if run else '*'}/*/*.json")
    # GX names each validation's folder after its UTC run time (20261203T073145.904488Z): newest first.
    runs = []
    for path in sorted(paths, key=lambda p: p.parent.name, reverse=True)[:limit]:
        run_name, run_time = path.parent.parent.name, path.parent.name
        try:
            result = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a half-written file: the next listing shows it
        failed, interval = [], None
        for outcome in result.get("results", []):
            config = outcome.get("expectation_config") or {}
            kwargs = {k: v for k, v in (config.get("kwargs") or {}).items() if k != "batch_id"}
            if kwargs.get("column") == "created_at" and "min_value" in kwargs:
                interval = (str(kwargs["min_value"])[:10], str(kwargs.get("max_value") or "")[:10])
            if outcome.get("success"):
                continue
            failed.append({"expectation": config.get("type"), "description": config.get("description") or config.get("type"),
                           "column": kwargs.get("column"), "expected": describe_expected(config.get("type", ""), kwargs),
                           "observed": describe_observed(outcome.get("result") or {}, kwargs.get("column"))})
        stats = result.get("statistics") or {}
        page = gx / "data_docs" / "local_site" / "validations" / SUITE / run_name / run_time / f"{path.stem}.html"
        runs.append({
            "run": run_name, "validated_at": (result.get("meta") or {}).get("validation_time") or run_time,
            "interval": interval, "success": bool(result.get("success")),
            "evaluated": stats.get("evaluated_expectations"), "failed_count": stats.get("unsuccessful_expectations"),
            "failed": failed, "quarantined": quarantined.get(run_name, 0),
            "data_docs": page.relative_to(gx / "data_docs" / "local_site").as_posix() if page.is_file() else None,
        })
    return sorted(runs, key=lambda r: str(r["validated_at"]), reverse=True)


def _quarantined_by_run(settings: Settings) -> dict[str, int]:
    """Rows in silver_quarantine now, per gate run (GX run name); a rerun replaces its interval."""
    counts: dict[str, int] = defaultdict(int)
    for run_id in read_table("silver_quarantine", settings, ["run_id"])["run_id"].to_pylist():
        counts[file_safe(run_id or "")] += 1
    return dict(counts)


# --- Drift -----------------------------------------------------------------------------------

def drift_checks(settings: Settings, start: str | None = None, end: str | None = None) -> list[dict]:
    """Every drift check in gold_drift_metrics, newest first (or the window [start, end)): its
    window, champion version, verdict and each score against its threshold, with the report."""
    from tweetops.core.reports import report_path_of

    rows = read_table("gold_drift_metrics", settings).to_pylist()
    checks: dict[tuple, dict] = {}
    for row in sorted(rows, key=lambda r: (r["checked_at"], r["check"])):
        window = (row["window_start"].date().isoformat(), row["window_end"].date().isoformat())
        if (start and window[0] != start) or (end and window[1] != end):
            continue
        key = (row["checked_at"], window)
        check = checks.setdefault(key, {"checked_at": row["checked_at"], "window": window,
                                        "model_version": row["model_version"], "drifted": False,
                                        "scores": [], "reports": []})
        check["drifted"] |= bool(row["drifted"])
        check["scores"].append({"check": row["check"], "value": row["value"], "threshold": row["threshold"],
                                "drifted": row["drifted"]})
        report = report_path_of(row["report_uri"], settings)
        if report and report not in check["reports"]:
            check["reports"].append(report)
    return sorted(checks.values(), key=lambda c: c["checked_at"], reverse=True)


# --- Lakehouse -------------------------------------------------------------------------------

def lakehouse_tables(settings: Settings) -> list[dict]:
    """What `tweetops tables` shows, plus each table's last commit: when and which operation."""
    from lakehouse.listing import describe_tables
    from tweetops.core.tables import open_table

    rows = describe_tables(settings)
    for row in rows:
        row["last_commit"], row["operation"] = None, None
        if row["version"] is None:
            continue
        try:
            (last,) = open_table(row["table"], settings).history(limit=1)
        except (LookupError, ValueError):
            continue
        row["last_commit"] = last.get("timestamp")  # milliseconds since the epoch
        mode = (last.get("operationParameters") or {}).get("mode")
        custom = last.get("tweetops.operation")  # what TweetOps step wrote it, where recorded
        row["operation"] = " ".join(filter(None, [last.get("operation"), mode])) + (f" ({custom})" if custom else "")
    return rows


def run_sql(sql: str, settings: Settings):
    """One read-only query through `tweetops sql`'s guarded path (same refusals and limits)."""
    from lakehouse.sql import query

    return query(sql, settings)


# --- Models ----------------------------------------------------------------------------------

def models(settings: Settings) -> dict:
    """Registered versions with aliases and test metrics (MLflow registry, gold_model_metrics) and
    the promotion log, newest first. MLflow unreachable: the lakehouse part still shows, with why."""
    metrics: dict[str, dict[str, float]] = defaultdict(dict)
    for row in read_table("gold_model_metrics", settings).to_pylist():
        if row["model_name"] == settings.model_name and row["dataset"] == "test" and row["model_version"]:
            metrics[row["model_version"]][row["metric"]] = row["value"]
    log = read_table("gold_promotion_log", settings).to_pylist()
    log = [r for r in sorted(log, key=lambda r: r["at"], reverse=True) if r["model_name"] == settings.model_name]

    versions, error = [], None
    try:
        registered = _mlflow_get(settings, "registered-models/get", {"name": settings.model_name})
        aliases = defaultdict(list)
        for alias in registered.get("registered_model", {}).get("aliases", []):
            aliases[alias["version"]].append(alias["alias"])
        found = _mlflow_get(settings, "model-versions/search",
                            {"filter": f"name='{settings.model_name}'", "max_results": "200"})
        for v in found.get("model_versions", []):
            tags = {t["key"]: t["value"] for t in v.get("tags", [])}
            versions.append({"version": v["version"], "aliases": sorted(aliases.get(v["version"], [])),
                             "created": v.get("creation_timestamp"), "run_id": v.get("run_id"),
                             "variant": tags.get("variant") or tags.get("tweetops.variant"),
                             "metrics": metrics.get(v["version"], {})})
    except OSError as exc:
        error = f"MLflow at {settings.mlflow_tracking_uri} did not answer ({exc}); versions from gold_model_metrics only"
        versions = [{"version": v, "aliases": [], "created": None, "run_id": None, "variant": None, "metrics": m}
                    for v, m in metrics.items()]
    except LookupError:
        pass  # no model registered yet
    versions.sort(key=lambda v: int(v["version"]) if str(v["version"]).isdigit() else 0, reverse=True)
    return {"name": settings.model_name, "versions": versions, "log": log, "error": error,
            "mlflow_ui": f"{settings.mlflow_tracking_uri}/#/models/{settings.model_name}"}


def _mlflow_get(settings: Settings, endpoint: str, params: dict) -> dict:
    """One MLflow REST call with a short timeout (the MLflow client retries for minutes)."""
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    url = f"{settings.mlflow_tracking_uri}/api/2.0/mlflow/{endpoint}?{urlencode(params)}"
    request = urllib.request.Request(url)
    user, password = os.environ.get("MLFLOW_TRACKING_USERNAME"), os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if user and password:  # an MLflow server with basic auth: the same variables the MLflow client reads
        request.add_header("Authorization", "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise LookupError(f"{settings.model_name} is not registered") from None
        raise OSError(f"HTTP {exc.code}") from None
