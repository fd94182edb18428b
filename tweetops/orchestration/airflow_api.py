"""A small client for the Airflow 3 REST API (/api/v2): what the demo and the browser test need to
drive the real scheduler — unpause, trigger, backfill, wait for runs."""
from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

from tweetops.core.settings import Settings, load_settings


BACKFILL_ATTEMPTS = 8


def airflow_password(settings: Settings) -> str | None:
    """The admin's password from the SimpleAuthManager's passwords file: the one Airflow generated
    under AIRFLOW_HOME (the embedded stack), or the file the deployment names (Docker: written by
    airflow-init)."""
    configured = os.environ.get("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE")
    path = Path(configured) if configured else settings.airflow_home / "simple_auth_manager_passwords.json.generated"
    try:
        return json.loads(path.read_text()).get("admin")
    except (OSError, ValueError):
        return None


class AirflowError(RuntimeError):
    pass


class AirflowAPI:
    """Signs in as `username`/`password`; by default the settings' TWEETOPS_AIRFLOW_USERNAME/_PASSWORD
    (the Docker deployment gives them to the consumer), else the embedded stack's admin and the
    password Airflow generated for it."""

    def __init__(self, settings: Settings | None = None, username: str | None = None, password: str | None = None,
                 timeout: float = 30):
        self.settings = settings or load_settings()
        self.url = self.settings.airflow_url
        self.username = username or self.settings.airflow_username or "admin"
        self.password = password or self.settings.airflow_password or airflow_password(self.settings)
        self.timeout = timeout
        self._token: str | None = None

    def _request(self, method: str, path: str, body: dict | None = None, auth: bool = True):
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if auth:
            headers["Authorization"] = f"Bearer {self.token()}"
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, headers=headers, method=method)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                text = response.read()
                return json.loads(text) if text else None
        except urllib.error.HTTPError as error:
            raise AirflowError(f"{method} {path}: HTTP {error.code}: {error.read()[:500]!r}") from None

    def token(self) -> str:
        if self._token is None:
            if not self.password:
                raise AirflowError("no Airflow password: is the stack up? (tweetops stack up)")
            answer = self._request("POST", "/auth/token",
                                   {"username": self.username, "password": self.password}, auth=False)
            self._token = answer["access_token"]
        return self._token

    def dag_ids(self) -> list[str]:
        return [d["dag_id"] for d in self._request("GET", "/api/v2/dags?limit=100")["dags"]]

    def wait_for_dags(self, dag_ids: list[str], timeout: float = 120) -> None:
        """Wait until the dag-processor has parsed these DAGs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            missing = set(dag_ids) - set(self.dag_ids())
            if not missing:
                return
            time.sleep(2)
        raise AirflowError(f"DAGs not parsed after {timeout:.0f} s: {sorted(missing)}; check `airflow dags list-import-errors`")

    def unpause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": False})

    def pause(self, dag_id: str) -> None:
        self._request("PATCH", f"/api/v2/dags/{dag_id}", {"is_paused": True})

    def trigger(self, dag_id: str, logical_date: datetime | None = None, conf: dict | None = None,
                run_id: str | None = None) -> str:
        body = {"logical_date": logical_date.isoformat() if logical_date else None, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self._request("POST", f"/api/v2/dags/{dag_id}/dagRuns", body)["dag_run_id"]

    def backfill(self, dag_id: str, from_date: datetime, to_date: datetime, reprocess: str = "completed",
                 max_active_runs: int = 1) -> dict:
        """Create a backfill (the scheduler runs it), like `airflow backfill create`.

        On SQLite (the embedded stack) Airflow refuses with 503 "Database is locked" while the
        scheduler writes, e.g. right after an unpause: wait and ask again.
        """
        body = {"dag_id": dag_id, "from_date": from_date.isoformat(), "to_date": to_date.isoformat(),
                "run_backwards": False, "dag_run_conf": {}, "reprocess_behavior": reprocess,
                "max_active_runs": max_active_runs}
        for attempt in range(BACKFILL_ATTEMPTS):
            try:
                return self._request("POST", "/api/v2/backfills", body)
            except AirflowError as error:
                if "HTTP 503" not in str(error) or attempt == BACKFILL_ATTEMPTS - 1:
                    raise
                time.sleep(2 + attempt)

    def wait_for_backfill(self, backfill: dict, timeout: float = 600) -> list[dict]:
        """Wait until the backfill has completed; return its DAG runs."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._request("GET", f"/api/v2/backfills/{backfill['id']}")
            if state.get("completed_at"):
                runs = self._request("GET", f"/api/v2/dags/{backfill['dag_id']}/dagRuns?limit=100")["dag_runs"]
                return [r for r in runs if r.get("backfill_id") == backfill["id"] or r["run_type"] == "backfill"]
            time.sleep(2)
        runs = [f"{r['dag_run_id']}: {r['state']}" for r in self.runs(backfill["dag_id"], limit=10)]
        raise AirflowError(f"backfill {backfill['id']} of {backfill['dag_id']} not completed after {timeout:.0f} s; "
                           f"latest runs: {runs}; see the scheduler's log")

    def wait_for_logical_run(self, dag_id: str, logical_date: datetime, timeout: float = 600) -> dict:
        """Wait until the DAG has a finished run at this logical date (whoever created it); return it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for run in self.runs(dag_id):
                if (run.get("logical_date") and datetime.fromisoformat(run["logical_date"]) == logical_date
                        and run["state"] in ("success", "failed")):
                    return run
            time.sleep(2)
        raise AirflowError(f"{dag_id}: no finished run at {logical_date.isoformat()} after {timeout:.0f} s")

    def asset_id(self, uri: str) -> int:
        """The id Airflow gave the asset with this URI (it exists once a DAG using it is parsed)."""
        from urllib.parse import quote

        for asset in self._request("GET", f"/api/v2/assets?uri_pattern={quote(uri)}&limit=100")["assets"]:
            if asset["uri"] == uri:
                return asset["id"]
        raise AirflowError(f"no asset {uri} in Airflow yet: are the DAGs parsed?")

    def post_asset_event(self, asset_id: int, extra: dict | None = None) -> dict:
        """Record an asset event from outside a task: DAGs scheduled on the asset run on it."""
        return self._request("POST", "/api/v2/assets/events", {"asset_id": asset_id, "extra": extra or {}})

    def set_note(self, dag_id: str, run_id: str, note: str) -> None:
        """The run's note, shown in the Airflow UI's run details and grid (at most 1,000 characters)."""
        from urllib.parse import quote

        self._request("PATCH", f"/api/v2/dags/{dag_id}/dagRuns/{quote(run_id, safe='')}?update_mask=note",
                      {"note": note[:1000]})

    def runs(self, dag_id: str, limit: int = 100) -> list[dict]:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit={limit}&order_by=-start_date")["dag_runs"]

    def runs_since(self, dag_id: str, since: float, page: int = 100) -> list[dict]:
        """Every run of the DAG started after `since` (a Unix time), newest first, page by page."""
        found, offset = [], 0
        while True:
            batch = self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns?limit={page}&offset={offset}"
                                         "&order_by=-start_date")["dag_runs"]
            recent = [r for r in batch if _after(r.get("queued_at") or r.get("start_date"), since)]
            found += recent
            if len(batch) < page or len(recent) < len(batch):
                return found
            offset += page

    def run_state(self, dag_id: str, run_id: str) -> str:
        return self._request("GET", f"/api/v2/dags/{dag_id}/dagRuns/{run_id}")["state"]

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 600) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self.run_state(dag_id, run_id)
            if state in ("success", "failed"):
                return state
            time.sleep(2)
        raise AirflowError(f"{dag_id} run {run_id} not finished after {timeout:.0f} s")

    def wait_for_runs(self, dag_id: str, count: int, timeout: float = 600, since: datetime | None = None) -> list[dict]:
        """Wait until `count` runs of the DAG (created after `since`) have finished; return them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            runs = [r for r in self.runs(dag_id)
                    if since is None or datetime.fromisoformat(r["run_after"]) >= since]
            done = [r for r in runs if r["state"] in ("success", "failed")]
            if len(done) >= count:
                return done
            time.sleep(3)
        raise AirflowError(f"{dag_id}: fewer than {count} finished runs after {timeout:.0f} s")


def _after(stamp: str | None, since: float) -> bool:
    return bool(stamp) and datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp() >= since
