"""`airflow standalone` for the embedded stack, with no listener beyond loopback.

Airflow 3.3's log servers (the scheduler's on [logging] worker_log_server_port, 8793, the
triggerer's on trigger_log_server_port, 8794) bind every interface: airflow/utils/serve_logs/core.py
passes host="" to uvicorn and no setting changes it. They only matter when the API server cannot
read a task's log file itself; in the embedded stack every component shares AIRFLOW_HOME/logs, so
the scheduler and the triggerer start with --skip-serve-logs and nothing listens there at all.
"""
from __future__ import annotations

import sys

from airflow.cli.commands import standalone_command

NO_LOG_SERVER = ("scheduler", "triggerer")


class _SubCommandWithoutLogServer(standalone_command.SubCommand):
    def __init__(self, parent, name: str, command: list[str], env: dict[str, str]):
        if command[:1] and command[0] in NO_LOG_SERVER and "--skip-serve-logs" not in command:
            command = [*command, "--skip-serve-logs"]
        super().__init__(parent, name, command, env)


def main() -> None:
    """`airflow standalone` through Airflow's own CLI entry point, which first writes airflow.cfg with
    the generated secrets (the JWT secret above all) that every component must share."""
    from airflow.__main__ import main as airflow_main

    standalone_command.SubCommand = _SubCommandWithoutLogServer
    sys.argv = ["airflow", "standalone"]
    airflow_main()


if __name__ == "__main__":
    main()
