"""The TweetOps pages: a FastAPI app the Airflow API server mounts under /tweetops.

Airflow does not guard a plugin's FastAPI app: every route here checks the Airflow JWT itself (the
`_token` cookie the Airflow UI sets at login, or an `Authorization: Bearer` token from
`POST /auth/token`) with the API server's own auth manager. Anonymous browsers are sent to the
Airflow login page and come back; other clients get 401. Pages are plain server-rendered HTML.
"""
from __future__ import annotations

import html
from datetime import datetime, timezone
from urllib.parse import quote, urlencode

from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse

from tweetops.core.settings import Settings, load_settings
from tweetops.app.ui import pages
from tweetops.core.links import PAGES
from tweetops.core.reports import DATA_DOCS, DRIFT_REPORTS, ReportPathError, resolve_report

MAX_SQL_ROWS = 500   # rows rendered in the page; the query itself runs under `tweetops sql`'s limits


class NotLoggedIn(Exception):
    """No valid Airflow login on the request."""


async def airflow_user(request: Request):
    """The Airflow user of the request, from its Bearer token or the UI's `_token` cookie."""
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.models.resource_details import AccessView

    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else request.cookies.get(COOKIE_NAME_JWT_TOKEN)
    if not token:
        raise NotLoggedIn("no Airflow login")
    manager = get_auth_manager()
    try:
        user = await manager.get_user_from_token(token)
    except Exception:  # expired, revoked, forged or malformed: all mean "log in again"
        raise NotLoggedIn("the Airflow login is invalid or expired") from None
    if not manager.is_authorized_view(access_view=AccessView.WEBSITE, user=user):
        raise HTTPException(status_code=403, detail="this Airflow user may not view the Airflow UI")
    return user


def get_settings() -> Settings:
    return load_settings()


def create_app() -> FastAPI:
    app = FastAPI(title="TweetOps", docs_url=None, redoc_url=None, openapi_url=None,
                  dependencies=[Depends(airflow_user)])

    @app.exception_handler(NotLoggedIn)
    async def _not_logged_in(request: Request, exc: NotLoggedIn):
        if "text/html" in request.headers.get("accept", ""):
            from airflow.api_fastapi.app import get_auth_manager

            return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
        return JSONResponse({"detail": f"Not authenticated: {exc}. Log into Airflow first."}, status_code=401,
                            headers={"WWW-Authenticate": "Bearer"})

    @app.get("/", include_in_schema=False)
    def index(request: Request):
        return RedirectResponse(f"{_base(request)}/quality", status_code=303)

    @app.get("/quality", response_class=HTMLResponse)
    def quality(request: Request, run: str | None = None, settings: Settings = Depends(get_settings)):
        return _page(request, "quality", _quality_html(request, pages.gate_runs(settings, run), run))

    @app.get("/drift", response_class=HTMLResponse)
    def drift(request: Request, start: str | None = None, end: str | None = None,
              settings: Settings = Depends(get_settings)):
        return _page(request, "drift", _drift_html(request, pages.drift_checks(settings, start, end), start, end))

    @app.get("/lakehouse", response_class=HTMLResponse)
    def lakehouse(request: Request, sql: str = Query("", max_length=20_000),
                  settings: Settings = Depends(get_settings)):
        from lakehouse.sql import QueryError

        body, status = _tables_html(pages.lakehouse_tables(settings)), 200
        body += _sql_form(request, sql)
        if sql.strip():
            try:
                body += _arrow_html(pages.run_sql(sql, settings))
            except QueryError as exc:
                body += f'<p class="bad" id="sql-error">{_e(exc)}</p>'
                status = 400
        return _page(request, "lakehouse", body, status)

    @app.get("/models", response_class=HTMLResponse)
    def models(request: Request, settings: Settings = Depends(get_settings)):
        return _page(request, "models", _models_html(pages.models(settings)))

    @app.get("/trace", response_class=HTMLResponse)
    def trace(request: Request, id: str = Query("", max_length=200), settings: Settings = Depends(get_settings)):
        from tweetops.app.trace import trace_tweet

        body = (f'<form method="get" action="{_base(request)}/trace"><input name="id" value="{_e(id)}" '
                'placeholder="tweet id" size="30"> <button type="submit">Look up</button></form>')
        if id.strip():
            found = trace_tweet(id.strip(), settings)
            for table, rows in found.items():
                body += f"<h3>{_e(table)}</h3>" + (_rows_html(rows) if rows else '<p class="muted">-</p>')
        return _page(request, "trace", body)

    @app.get(f"/{DATA_DOCS}/{{path:path}}", include_in_schema=False)
    def data_docs(path: str, settings: Settings = Depends(get_settings)):
        return _report(DATA_DOCS, path, settings)

    @app.get(f"/{DRIFT_REPORTS}/{{path:path}}", include_in_schema=False)
    def drift_report(path: str, settings: Settings = Depends(get_settings)):
        return _report(DRIFT_REPORTS, path, settings)

    return app


# Reports are HTML with scripts (Data Docs, Evidently): run them in an opaque origin, so they can
# never call the Airflow API with the viewer's login.
REPORT_HEADERS = {"Content-Security-Policy": "sandbox allow-scripts allow-popups allow-downloads",
                  "X-Content-Type-Options": "nosniff"}


def _report(folder: str, path: str, settings: Settings):
    try:
        return FileResponse(resolve_report(folder, path, settings), headers=REPORT_HEADERS)
    except ReportPathError as exc:
        raise HTTPException(status_code=404, detail=str(exc)) from None


# --- HTML ------------------------------------------------------------------------------------

STYLE = """
body{font-family:system-ui,sans-serif;margin:0;color:#1f2937;font-size:14px}
nav{background:#0f766e;padding:8px 16px}nav a{color:#fff;margin-right:18px;text-decoration:none;font-weight:600}
nav a.on{text-decoration:underline}main{padding:12px 16px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #d1d5db;padding:3px 8px;text-align:left;
vertical-align:top}th{background:#f3f4f6}td.n{text-align:right;font-variant-numeric:tabular-nums}
.ok{color:#15803d;font-weight:600}.bad{color:#b91c1c;font-weight:600}.muted{color:#6b7280}
textarea{width:100%;max-width:900px;font-family:monospace}ul{margin:0;padding-left:18px}
"""


def _e(value) -> str:
    return html.escape("" if value is None else str(value))


def _base(request: Request) -> str:
    return request.scope.get("root_path", "").rstrip("/")


def _page(request: Request, current: str, body: str, status: int = 200) -> HTMLResponse:
    base = _base(request)
    nav = "".join(f'<a href="{base}/{page}" class="{"on" if page == current else ""}">{_e(title)}</a>'
                  for page, title in PAGES.items())
    return HTMLResponse(f"<!doctype html><html><head><meta charset='utf-8'><title>TweetOps - {_e(PAGES[current])}"
                        f"</title><style>{STYLE}</style></head><body><nav>{nav}</nav><main><h2>{_e(PAGES[current])}"
                        f"</h2>{body}</main></body></html>", status_code=status)


def _verdict(ok: bool, good: str = "passed", bad: str = "FAILED") -> str:
    return f'<span class="ok">{good}</span>' if ok else f'<span class="bad">{bad}</span>'


def _quality_html(request: Request, runs: list[dict], run: str | None) -> str:
    base = _base(request)
    head = (f'<p>Gate run <b>{_e(run)}</b> (<a href="{base}/quality">all runs</a>)</p>' if run else
            f'<p class="muted">Quality-gate runs Great Expectations recorded, newest first (up to {pages.MAX_GATE_RUNS}) '
            f'(<a href="{base}/{DATA_DOCS}/index.html">Data Docs site</a>).</p>')
    if not runs:
        return head + "<p>No gate run recorded yet.</p>"
    rows = []
    for r in runs:
        failed = "".join(f"<li><b>{_e(f['description'])}</b>: expected {_e(f['expected'])}; "
                         f"observed {_e(f['observed'])}</li>" for f in r["failed"]) or "-"
        docs = (f'<a href="{base}/{DATA_DOCS}/{quote(r["data_docs"])}">Data Docs</a>' if r["data_docs"]
                else '<span class="muted">not built</span>')
        interval = f"{r['interval'][0]} to {r['interval'][1]}" if r["interval"] else "-"
        rows.append(f"<tr><td>{_e(str(r['validated_at'])[:19])}</td><td><a href=\"{base}/quality?run="
                    f"{quote(r['run'])}\">{_e(r['run'])}</a></td><td>{_e(interval)}</td><td>{_verdict(r['success'])}"
                    f"</td><td><ul>{failed}</ul></td><td class=n>{r['quarantined']}</td><td>{docs}</td></tr>")
    return head + ("<table><tr><th>validated</th><th>run</th><th>interval</th><th>verdict</th>"
                   "<th>failed expectations (expected vs observed)</th><th>quarantined rows</th><th>report</th></tr>"
                   + "".join(rows) + "</table>")


def _drift_html(request: Request, checks: list[dict], start: str | None, end: str | None) -> str:
    base = _base(request)
    head = (f'<p>Window {_e(start)} to {_e(end)} (<a href="{base}/drift">all checks</a>)</p>' if start or end else
            '<p class="muted">Every drift check in gold_drift_metrics, newest first.</p>')
    if not checks:
        return head + "<p>No drift check recorded yet.</p>"
    out = [head]
    for c in checks:
        reports = " ".join(f'<a href="{base}/{folder}/{quote(path)}">{_e(path)}</a>' for folder, path in c["reports"])
        out.append(f"<h3>{_e(c['window'][0])} to {_e(c['window'][1])}: {_verdict(not c['drifted'], 'no drift', 'DRIFT')}"
                   f"</h3><p class=muted>checked {_e(str(c['checked_at'])[:19])} against champion "
                   f"v{_e(c['model_version'])}. Report: {reports or '-'}</p>")
        out.append("<table><tr><th>check</th><th>value</th><th>threshold</th><th>verdict</th></tr>" + "".join(
            f"<tr><td>{_e(s['check'])}</td><td class=n>{_num(s['value'])}</td><td class=n>{_num(s['threshold'])}</td>"
            f"<td>{_verdict(not s['drifted'], 'ok', 'drift')}</td></tr>" for s in c["scores"]) + "</table>")
    return "".join(out)


def _tables_html(tables: list[dict]) -> str:
    rows = "".join(
        f"<tr><td>{_e(t['table'])}</td><td>{_e(t['layer'])}</td>"
        f"<td class=n>{'not created' if t['version'] is None else t['version']}</td><td class=n>{t['rows']}</td>"
        f"<td class=n>{t['files']}</td><td class=n>{_size(t['size_bytes'])}</td><td>{_e(_when(t['last_commit']))}</td>"
        f"<td>{_e(t['operation'] or '')}</td></tr>" for t in tables)
    return ("<table><tr><th>table</th><th>layer</th><th>version</th><th>rows</th><th>files</th><th>size</th>"
            f"<th>last commit (UTC)</th><th>operation</th></tr>{rows}</table>")


def _sql_form(request: Request, sql: str) -> str:
    example = "SELECT label, count(*) AS tweets FROM silver_tweets GROUP BY label ORDER BY tweets DESC"
    return (f'<h3>Read-only SQL</h3><form method="get" action="{_base(request)}/lakehouse">'
            f'<textarea name="sql" rows="4" placeholder="{_e(example)}">{_e(sql)}</textarea><br>'
            '<button type="submit">Run</button> <span class="muted">the same guarded path as '
            '<code>tweetops sql</code>: SELECT/WITH only, tables by name</span></form>')


def _arrow_html(table) -> str:
    shown = table.slice(0, MAX_SQL_ROWS).to_pylist()
    more = f", first {len(shown)} shown" if table.num_rows > len(shown) else ""
    return _rows_html(shown, table.column_names) + f'<p class="muted" id="sql-rows">{table.num_rows} rows{more}</p>'


def _rows_html(rows: list[dict], columns: list[str] | None = None) -> str:
    columns = columns or list(rows[0]) if rows else (columns or [])
    head = "".join(f"<th>{_e(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(_cell(row.get(c)) for c in columns) + "</tr>" for row in rows)
    return f"<table class='result'><tr>{head}</tr>{body}</table>"


def _cell(value) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"<td class=n>{_num(value)}</td>"
    text = "NULL" if value is None else str(value)
    return f"<td>{_e(text if len(text) <= 300 else text[:297] + '...')}</td>"


def _models_html(m: dict) -> str:
    ui = m["mlflow_ui"]
    out = [f'<p>Registered model <a href="{_e(ui)}" target="_blank" rel="noopener">{_e(m["name"])}</a> in MLflow.</p>']
    if m["error"]:
        out.append(f'<p class="bad">{_e(m["error"])}</p>')
    names = sorted({k for v in m["versions"] for k in v["metrics"]})
    rows = "".join(
        f'<tr><td><a href="{_e(ui)}/versions/{_e(v["version"])}" target="_blank" rel="noopener">v{_e(v["version"])}</a>'
        f'</td><td>{_e(", ".join(v["aliases"]))}</td><td>{_e(v["variant"] or "")}</td><td>{_e(_when(v["created"]))}</td>'
        + "".join(f"<td class=n>{_num(v['metrics'].get(k))}</td>" for k in names) + "</tr>" for v in m["versions"])
    out.append("<table><tr><th>version</th><th>aliases</th><th>variant</th><th>registered (UTC)</th>"
               + "".join(f"<th>{_e(k)}</th>" for k in names) + f"</tr>{rows}</table>"
               if m["versions"] else "<p>No version registered yet.</p>")
    out.append("<h3>Promotion log</h3>")
    out.append(_rows_html([{k: r[k] for k in ("at", "action", "from_version", "to_version", "actor", "reason", "metrics")}
                           for r in m["log"]]) if m["log"] else "<p>No promotion decision yet.</p>")
    return "".join(out)


def _num(value) -> str:
    if value is None:
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return str(size)


def _when(millis) -> str:
    if not millis:
        return ""
    return datetime.fromtimestamp(int(millis) / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
