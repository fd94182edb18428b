"""TweetOps inside the Airflow UI: a "TweetOps" navigation section whose pages (quality gate runs
with their Data Docs, drift checks with their Evidently reports, lakehouse tables and read-only
SQL, models and the promotion log, tweet lookup) the Airflow API server serves under /tweetops.

Every page and file requires an Airflow login (checked in tweetops/app/ui/app.py). The code lives in
tweetops/app/ui; this file only registers it.
"""
from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from tweetops.core.links import PAGES, PREFIX


def _views() -> list[dict]:
    # A "TweetOps" button in the navigation bar (the pages link to each other), and each page under
    # Plugins > TweetOps. Airflow shows them in its own frame at /plugin/<url_route>.
    top = {"name": "TweetOps", "href": f"{PREFIX}/quality", "url_route": "tweetops", "nav_top_level": True}
    return [top] + [{"name": title, "href": f"{PREFIX}/{page}", "category": "TweetOps",
                     "url_route": f"tweetops-{page}"} for page, title in PAGES.items()]


def _apps() -> list[dict]:
    from tweetops.app.ui.app import create_app

    return [{"app": create_app(), "url_prefix": PREFIX, "name": "TweetOps"}]


class TweetOpsUIPlugin(AirflowPlugin):
    name = "tweetops_ui"
    fastapi_apps = _apps()
    external_views = _views()
