"""A Spark standalone cluster on this machine, from the pip pyspark's own launcher (`spark-class`).

For trying the cluster path (`tweetops stack up --spark-workers N`), the integration test and the
scale benchmark: one master and N workers on loopback, each `--cores 1`. Point the jobs at it with
TWEETOPS_SPARK_MASTER=spark://127.0.0.1:PORT. Executors run TweetOps' Python (the Delta data
source, the feature and scoring functions), so the workers get this venv's Python
(PYSPARK_PYTHON) and the project on PYTHONPATH; the lakehouse must be storage every worker sees
(S3 on a real cluster). A production cluster is started by its own tooling, not by this module.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from tweetops.core.settings import REPO_ROOT

HOST = "127.0.0.1"
MASTER_CLASS = "org.apache.spark.deploy.master.Master"
WORKER_CLASS = "org.apache.spark.deploy.worker.Worker"


def spark_class() -> Path:
    """The `spark-class` launcher shipped inside the pyspark package."""
    import pyspark

    path = Path(pyspark.__file__).parent / "bin" / "spark-class"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: this pyspark has no launcher (pip install pyspark, not pyspark-client)")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def cluster_env(folder: Path) -> dict[str, str]:
    """The environment of the master and workers: this Python and this project for the executors."""
    import pyspark

    paths = [str(REPO_ROOT), *[p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]]
    return {**os.environ, "SPARK_HOME": str(Path(pyspark.__file__).parent), "SPARK_LOCAL_IP": HOST,
            "PYSPARK_PYTHON": sys.executable, "PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
            "SPARK_WORKER_DIR": str(folder / "work"), "SPARK_LOG_DIR": str(folder / "logs"),
            "SPARK_NO_DAEMONIZE": "1"}


def master_argv(port: int, webui_port: int) -> list[str]:
    return [str(spark_class()), MASTER_CLASS, "--host", HOST, "--port", str(port), "--webui-port", str(webui_port)]


def worker_argv(master_url: str, webui_port: int, cores: int = 1, memory: str = "1g") -> list[str]:
    return [str(spark_class()), WORKER_CLASS, master_url, "--host", HOST, "--cores", str(cores),
            "--memory", memory, "--webui-port", str(webui_port)]


def alive_workers(webui_url: str) -> int:
    """How many workers the master counts as alive (its web UI's JSON), 0 if it does not answer."""
    try:
        with urllib.request.urlopen(f"{webui_url}/json/", timeout=2) as response:
            return int(json.load(response).get("aliveworkers", 0))
    except Exception:
        return 0


@dataclass
class LocalSparkCluster:
    """A master and `workers` workers as child processes; use as a context manager."""
    folder: Path
    workers: int = 2
    cores: int = 1
    memory: str = "1g"
    start_timeout: float = 120.0
    master_url: str = ""
    webui_url: str = ""
    processes: list[subprocess.Popen] = field(default_factory=list)

    def start(self) -> "LocalSparkCluster":
        self.folder.mkdir(parents=True, exist_ok=True)
        env = cluster_env(self.folder)
        port, webui = free_port(), free_port()
        self.master_url, self.webui_url = f"spark://{HOST}:{port}", f"http://{HOST}:{webui}"
        self._spawn("master", master_argv(port, webui), env)
        for i in range(self.workers):
            self._spawn(f"worker-{i + 1}", worker_argv(self.master_url, free_port(), self.cores, self.memory), env)
        deadline = time.monotonic() + self.start_timeout
        while alive_workers(self.webui_url) < self.workers:
            if any(p.poll() is not None for p in self.processes):
                self.stop()
                raise RuntimeError(f"a Spark cluster process exited during start; see {self.folder}/*.log")
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"the Spark master at {self.master_url} has fewer than {self.workers} workers "
                                   f"after {self.start_timeout:.0f} s; see {self.folder}/*.log")
            time.sleep(0.5)
        return self

    def _spawn(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        log = open(self.folder / f"{name}.log", "ab")
        self.processes.append(subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               env=env, cwd=self.folder, start_new_session=True))

    def pids(self) -> list[int]:
        return [p.pid for p in self.processes]

    def stop(self) -> None:
        """Stop the workers, then the master (each process group: the JVM and its executors)."""
        import signal

        for process in reversed(self.processes):
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGTERM)
                except ProcessLookupError:
                    continue
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()

    def __enter__(self) -> "LocalSparkCluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# --- `tweetops stack up --spark-workers N` ----------------------------------------------------

def stack_services(settings, workers: int):
    """The master and workers as stack services (PID files and logs under the stack folder)."""
    from tweetops.app.stack import Service

    folder = settings.stack_dir / "spark-master"
    folder.mkdir(parents=True, exist_ok=True)
    url_file = folder / "master.json"
    if url_file.exists():
        known = json.loads(url_file.read_text())
        port, webui = known["port"], known["webui_port"]
    else:
        port, webui = free_port(), free_port()
        url_file.write_text(json.dumps({"port": port, "webui_port": webui}))
    master_url, webui_url = f"spark://{HOST}:{port}", f"http://{HOST}:{webui}"
    env = {k: v for k, v in cluster_env(settings.stack_dir / "spark").items() if k not in os.environ
           or os.environ[k] != v}
    services = [Service("spark-master", master_url, master_argv(port, webui),
                        lambda: _answers(webui_url), env=env)]
    for i in range(workers):
        services.append(Service(f"spark-worker-{i + 1}", master_url, worker_argv(master_url, free_port()),
                                lambda n=i + 1: alive_workers(webui_url) >= n, env=env, start_timeout=120))
    return services, master_url


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except Exception:
        return False


def stack_up_cluster(settings, workers: int) -> str:
    """Start (or keep) the stack's Spark master and `workers` workers; return the master URL."""
    from tweetops.app.stack import running_pid, start, wait_healthy

    services, master_url = stack_services(settings, workers)
    (settings.stack_dir / "spark").mkdir(parents=True, exist_ok=True)
    for service in services:
        if running_pid(settings, service.name) is None:
            start(service, settings)
            print(f"starting {service.name} ...", flush=True)
        wait_healthy(service, settings)
    return master_url


def stack_down_cluster(settings) -> list[str]:
    """Stop every Spark process `stack up --spark-workers` started."""
    from tweetops.app.stack import stop

    names = sorted((p.parent.name for p in settings.stack_dir.glob("spark-*/pid")), reverse=True)
    stopped = [name for name in names if stop(settings, name)]
    (settings.stack_dir / "spark-master" / "master.json").unlink(missing_ok=True)
    return stopped
