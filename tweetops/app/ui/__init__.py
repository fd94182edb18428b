"""The TweetOps pages inside the Airflow UI (plugins/tweetops_ui.py mounts `app.create_app()`).

- `links`: the http(s) URLs of the pages and reports, built from TWEETOPS_AIRFLOW_URL (Slack, demo);
- `reports`: where reports live on disk, and the guard that keeps a requested path inside them;
- `pages`: what each page shows, read from the lakehouse, the GX project and the MLflow registry;
- `app`: the FastAPI app, behind the Airflow login, that renders them as HTML.
"""
