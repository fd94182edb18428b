"""Slack alerts for every TweetOps DAG, through the Airflow Slack provider.

- `send_alert(text, blocks=None)`: post to the `slackwebhook` connection named by
  TWEETOPS_SLACK_CONN_ID (default `tweetops_slack`). No connection configured: the alert is
  logged and nothing fails; Slack unreachable: logged as an error, the task goes on.
- `alert_on_failure(context)`: an `on_failure_callback` for tasks (use it in default_args; a
  DAG-level notifier errors inside `airflow dags test`).
- `alert_quality_gate(result, context)`: what failed in a quality-gate run, observed vs expected,
  with quarantine counts and links to the Airflow run, the run's TweetOps quality page and its
  Data Docs (http(s) URLs under TWEETOPS_AIRFLOW_URL, see tweetops/core/links.py).

Kept import-light: Airflow imports the plugins folder in every process.
"""
from __future__ import annotations

import logging
from urllib.parse import quote

log = logging.getLogger("tweetops.alerts")

MAX_LISTED_EXPECTATIONS = 10   # Slack allows 50 blocks; a person reads fewer


def send_alert(text: str, blocks: list[dict] | None = None, settings=None) -> bool:
    """Post `text` (and optional Block Kit `blocks`) to Slack; True if Slack accepted it. Never raises."""
    try:
        from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

        conn_id = _settings(settings).slack_conn_id
    except Exception:  # a bad setting must not hide the alert itself
        log.exception("Slack alert not sent (settings or provider unavailable); the alert was:\n%s", text)
        return False
    try:
        hook = SlackWebhookHook(slack_webhook_conn_id=conn_id, timeout=10)
        hook.get_conn()
    except Exception as exc:
        if type(exc).__name__ == "AirflowNotFoundException":
            log.warning("No Slack connection %r configured (set AIRFLOW_CONN_%s): alert logged only:\n%s",
                        conn_id, conn_id.upper(), text)
        else:
            log.error("Slack connection %r is unusable (%s): alert logged only:\n%s", conn_id, exc, text)
        return False
    try:
        hook.send(text=text, blocks=blocks)
    except Exception as exc:
        log.error("Slack did not accept the alert (%s); the alert was:\n%s", exc, text)
        return False
    log.info("Slack alert sent to connection %r", conn_id)
    return True


def alert_on_failure(context) -> None:
    """on_failure_callback: which task of which run failed, the error, and a link to its log."""
    try:
        ti = context["task_instance"]
        dag_id, run_id = ti.dag_id, context.get("run_id") or ti.run_id
        url = task_url(dag_id, run_id, ti.task_id)
        error = str(context.get("exception") or "see the log")[:500]
        text = (f":x: Task failed: {dag_id}.{ti.task_id} (try {ti.try_number}), run {run_id}\n"
                f"Error: {error}\nLog: {url}")
        blocks = [
            _section(f":x: *Task failed:* `{dag_id}.{ti.task_id}` (try {ti.try_number})\n*Run:* {run_id}"),
            _section(f"*Error:* ```{error}```"),
            _section(f"<{url}|Open the task in Airflow>"),
        ]
    except Exception:
        log.exception("could not format the failure alert; context keys: %s", sorted(context))
        text, blocks = f":x: A TweetOps task failed: {context.get('run_id')}", None
    send_alert(text, blocks)


def alert_quality_gate(result, context=None, dag_id: str | None = None, run_id: str | None = None,
                       settings=None) -> bool:
    """Send the quality-gate alert for `result` (a GateResult or its dict); True if Slack took it."""
    if context is not None:
        dag_id = dag_id or context["dag"].dag_id
        run_id = run_id or context["run_id"]
    run_id = run_id or result_get(result, "run_id")
    text, blocks = quality_gate_message(result, dag_id or "tweetops_quality_gate", run_id, settings)
    return send_alert(text, blocks, settings)


def quality_gate_message(result, dag_id: str, run_id: str, settings=None) -> tuple[str, list[dict]]:
    """(text, blocks) naming the DAG, the interval, each failed expectation (observed vs expected),
    the quarantined rows, and links to the Airflow run and the Data Docs."""
    r = result if isinstance(result, dict) else result.as_dict()
    interval = f"{r['interval_start'][:10]} to {r['interval_end'][:10]}"
    # A day-level check quarantines the whole day only in a backfill; an incremental run moves no row.
    whole = r["silver_rows"] == 0 and r["quarantined_rows"] > 0
    counts = (f"{r['quarantined_rows']} of {r['silver_rows'] + r['quarantined_rows']} rows quarantined, "
              f"{r['silver_rows']} to silver"
              + (" (the whole interval is quarantined)" if whole else "")
              + f"; dead letters: {r['dead_letters']} ({r['dead_letter_share']:.1%})")
    run_link = run_url(dag_id, run_id, settings)
    page, docs = report_links(r, run_id, settings)

    lines = []
    for f in r["failed"]:
        where = f" on `{f['column']}`" if f.get("column") else ""
        scope = "interval" if f["table_level"] else "rows"
        lines.append(f"• *{f['description']}* ({f['expectation']}{where}, {scope}): "
                     f"expected {f['expected']}; observed {f['observed']}")
    listed = lines[:MAX_LISTED_EXPECTATIONS]
    if len(lines) > len(listed):
        listed.append(f"• … and {len(lines) - len(listed)} more (see the Data Docs)")

    title = f":rotating_light: Quality gate failed: {dag_id}, interval {interval}"
    text = "\n".join([title, counts, "Failed expectations:", *[line.replace("*", "") for line in lines],
                      f"Airflow run: {run_link}", f"TweetOps quality page: {page}", f"Data Docs: {docs}"])
    blocks = [
        {"type": "header", "text": {"type": "plain_text", "text": f"Quality gate failed: {interval}"[:150]}},
        _section(f"*DAG:* `{dag_id}`  *Run:* {run_id}\n*Interval:* {interval}\n{counts}"),
        _section("*Failed expectations*\n" + "\n".join(listed)),
        _section(f"<{run_link}|Airflow run>  |  <{page}|TweetOps quality page>  |  <{docs}|Data Docs>"),
    ]
    return text, blocks


def report_links(result: dict, run_id: str, settings=None) -> tuple[str, str]:
    """(the TweetOps quality page of this run, its Data Docs page), both served by the Airflow API
    server behind its login: never a file:// path only the worker could open."""
    from tweetops.core.links import quality_run_url, report_url

    settings = _settings(settings)
    page = quality_run_url(run_id, settings)
    docs = report_url(result.get("data_docs_url") or result.get("data_docs_index"), settings)
    return page, docs or page


def run_url(dag_id: str, run_id: str, settings=None) -> str:
    return f"{_settings(settings).airflow_url}/dags/{quote(dag_id)}/runs/{quote(run_id, safe='')}"


def task_url(dag_id: str, run_id: str, task_id: str, settings=None) -> str:
    return f"{run_url(dag_id, run_id, settings)}/tasks/{quote(task_id)}"


def result_get(result, key: str):
    return result[key] if isinstance(result, dict) else getattr(result, key)


def _section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text[:3000]}}  # Slack's limit per section


def _settings(settings):
    if settings is not None:
        return settings
    from tweetops.core.settings import load_settings

    return load_settings()
