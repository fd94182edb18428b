"""MLflow's built-in authentication (the basic-auth app) as TweetOps sets it up.

Three accounts: `admin` administers users; `pipeline` (the Airflow DAGs, `tweetops train`,
`tweetops promote`) creates experiments, registers versions and moves aliases of the models it
created; `reader` (the prediction API) can only read (default_permission READ). Anonymous requests
get 401. The registered model is created by the pipeline account before anyone else can, so the
pipeline holds MANAGE on it and every other account only READ.

The embedded stack generates the passwords on its first start and keeps them in
TWEETOPS_HOME/mlflow/credentials.json (mode 0600); docker-compose takes them from .env and runs
`python -m tweetops.app.mlflow_auth` once (the mlflow-init service).
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import sys

from tweetops.core.settings import MLFLOW_CREDENTIALS_FILE, Settings, is_local

ACCOUNTS = ("admin", "pipeline", "reader")
AUTH_CACHE_SECONDS = 60
_CLIENT_ENV = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def _write_private(path, text: str) -> None:
    """Create a file only its owner can read (fails if it exists: secrets are never overwritten)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600), "w") as out:
        out.write(text)


def mlflow_accounts(settings: Settings) -> dict[str, dict[str, str]]:
    """The embedded stack's accounts {name: {username, password}} and, under "server", its Flask
    secret key; generated on first use."""
    path = settings.home / MLFLOW_CREDENTIALS_FILE
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        pass
    accounts = {name: {"username": name, "password": secrets.token_hex(16)} for name in ACCOUNTS}
    accounts["server"] = {"flask_secret_key": secrets.token_hex(32)}
    _write_private(path, json.dumps(accounts, indent=2))
    return accounts


def mlflow_account_env(settings: Settings, account: str) -> dict[str, str]:
    """TWEETOPS_MLFLOW_USERNAME/PASSWORD of one stack account, when the stack runs its own MLflow."""
    if not is_local(settings.mlflow_tracking_uri):
        return {}
    entry = mlflow_accounts(settings)[account]
    return {"TWEETOPS_MLFLOW_USERNAME": entry["username"], "TWEETOPS_MLFLOW_PASSWORD": entry["password"]}


def auth_config(database_uri: str, admin_username: str = "admin") -> str:
    """basic_auth.ini: READ for every signed-in account unless granted more; the admin's password
    comes from the file (stack) or MLFLOW_AUTH_ADMIN_PASSWORD (compose)."""
    return ("[mlflow]\n"
            "default_permission = READ\n"
            f"database_uri = {database_uri}\n"
            f"admin_username = {admin_username}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Checking a password (PBKDF2) costs about a second of CPU: without this cache every
            # request of a training run pays it. A changed or deleted password may keep working on
            # another server worker for up to this long.
            f"auth_cache_ttl_seconds = {AUTH_CACHE_SECONDS}\n")


def mlflow_auth_env(settings: Settings) -> dict[str, str]:
    """The embedded MLflow server's environment: its auth config, admin password and Flask key."""
    accounts = mlflow_accounts(settings)
    ini = settings.home / "mlflow" / "basic_auth.ini"
    if not ini.exists():
        _write_private(ini, auth_config(f"sqlite:///{settings.home / 'mlflow' / 'basic_auth.db'}",
                                         accounts["admin"]["username"]))
    return {"MLFLOW_AUTH_CONFIG_PATH": str(ini),
            "MLFLOW_AUTH_ADMIN_PASSWORD": accounts["admin"]["password"],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": accounts["server"]["flask_secret_key"]}


class _SignedIn:
    """MLflow clients read credentials only from the environment: sign in for a block, then restore."""

    def __init__(self, username: str, password: str):
        self.credentials = (username, password)

    def __enter__(self):
        self.saved = {name: os.environ.get(name) for name in _CLIENT_ENV}
        os.environ.update(zip(_CLIENT_ENV, self.credentials))

    def __exit__(self, *exc):
        for name, value in self.saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def ensure_users(tracking_uri: str, admin: tuple[str, str], users: dict[str, str], model_name: str,
                 owner: tuple[str, str]) -> None:
    """Create `users` {username: password} if missing (idempotent), and the registered model as `owner`."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.server.auth.client import AuthServiceClient

    with _SignedIn(*admin):
        auth = AuthServiceClient(tracking_uri)
        for username, password in users.items():
            try:
                auth.get_user(username)
            except MlflowException:
                auth.create_user(username, password)
    with _SignedIn(*owner):
        client = mlflow.MlflowClient(tracking_uri, tracking_uri)
        try:
            client.get_registered_model(model_name)
        except MlflowException:
            client.create_registered_model(model_name)


def ensure_stack_users(settings: Settings) -> None:
    accounts = mlflow_accounts(settings)
    pick = lambda name: (accounts[name]["username"], accounts[name]["password"])  # noqa: E731
    ensure_users(settings.mlflow_tracking_uri, pick("admin"),
                 dict([pick("pipeline"), pick("reader")]), settings.model_name, pick("pipeline"))


def main(argv: list[str] | None = None) -> int:
    """docker-compose's mlflow-init: the accounts from MLFLOW_ADMIN_PASSWORD, MLFLOW_PIPELINE_PASSWORD
    and MLFLOW_READER_PASSWORD."""
    parser = argparse.ArgumentParser(prog="python -m tweetops.app.mlflow_auth", description=main.__doc__)
    parser.add_argument("--tracking-uri", required=True)
    parser.add_argument("--model-name", required=True)
    args = parser.parse_args(argv)
    missing = [name for name in ("MLFLOW_ADMIN_PASSWORD", "MLFLOW_PIPELINE_PASSWORD", "MLFLOW_READER_PASSWORD")
               if not os.environ.get(name)]
    if missing:
        print(f"set {', '.join(missing)}", file=sys.stderr)
        return 2
    env = os.environ
    ensure_users(args.tracking_uri, ("admin", env["MLFLOW_ADMIN_PASSWORD"]),
                 {"pipeline": env["MLFLOW_PIPELINE_PASSWORD"], "reader": env["MLFLOW_READER_PASSWORD"]},
                 args.model_name, ("pipeline", env["MLFLOW_PIPELINE_PASSWORD"]))
    print(f"MLflow accounts pipeline and reader ready; {args.model_name} owned by pipeline")
    return 0


if __name__ == "__main__":
    sys.exit(main())
