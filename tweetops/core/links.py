"""The http(s) URLs of the TweetOps pages in the Airflow UI, built from TWEETOPS_AIRFLOW_URL.

Slack alerts and the demo link these, never a file:// path on the machine that ran the task:
anyone who can log into Airflow can open them. Import-light: the alerts plugin imports it.
"""
from __future__ import annotations

from urllib.parse import quote, urlencode

from tweetops.core.settings import Settings, load_settings

PREFIX = "/tweetops"     # where the Airflow API server mounts the pages (plugins/tweetops_ui.py)
PAGES = {"quality": "Quality", "drift": "Drift", "lakehouse": "Lakehouse", "models": "Models", "trace": "Tweet lookup"}


def page_url(page: str, settings: Settings | None = None, **query) -> str:
    settings = settings or load_settings()
    params = {k: v for k, v in query.items() if v is not None}
    return f"{settings.airflow_url}{PREFIX}/{page}" + (f"?{urlencode(params)}" if params else "")


def quality_run_url(run_id: str, settings: Settings | None = None) -> str:
    """The Quality page narrowed to one gate run (an Airflow run id)."""
    return page_url("quality", settings, run=run_id)


def drift_window_url(window_start: str, window_end: str, settings: Settings | None = None) -> str:
    """The Drift page narrowed to one window's checks ([start, end) as YYYY-MM-DD)."""
    return page_url("drift", settings, start=str(window_start)[:10], end=str(window_end)[:10])


def report_url(uri: str | None, settings: Settings | None = None) -> str | None:
    """The http(s) URL that serves a report recorded as a file:// URI (Data Docs page, drift
    report); None if it is not in a report folder."""
    from tweetops.core.reports import report_path_of

    settings = settings or load_settings()
    found = report_path_of(uri, settings)
    if found is None:
        return None
    folder, relative = found
    return f"{settings.airflow_url}{PREFIX}/{folder}/{quote(relative)}"


def all_pages(settings: Settings | None = None) -> dict[str, str]:
    """Page title -> URL, for summaries ("where to look")."""
    return {title: page_url(page, settings) for page, title in PAGES.items()}
