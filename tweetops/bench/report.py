"""`make bench`: run every registered benchmark and write one Markdown report with the machine.

Each benchmark runs as its own `tweetops bench NAME` process (so one's memory never skews
another's); its last output line is a JSON object with its figures. The report lands in
TWEETOPS_HOME/bench/report-<UTC time>.md and report-latest.md.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone

from tweetops.bench import BENCHMARKS
from tweetops.core.settings import load_settings


def machine() -> str:
    memory_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB RAM, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, {_gpu()}")


def _gpu() -> str:
    try:
        import torch

        return f"GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else "no GPU"
    except Exception:
        return "no GPU"


def run_benchmark(name: str) -> tuple[dict | None, float, str]:
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "tweetops.cli", "bench", name],
                            capture_output=True, text=True)
    elapsed = time.monotonic() - started
    lines = [line for line in result.stdout.strip().splitlines() if line.strip()]
    try:
        figures = json.loads(lines[-1]) if result.returncode == 0 and lines else None
    except ValueError:
        figures = None
    return figures, elapsed, result.stdout + result.stderr[-3000:]


def main(names: list[str] | None = None) -> int:
    settings = load_settings()
    out_dir = settings.home / "bench"
    out_dir.mkdir(parents=True, exist_ok=True)
    now = datetime.now(timezone.utc)
    sections = [f"# TweetOps benchmarks, {now:%Y-%m-%d %H:%M} UTC", "", f"Machine: {machine()}", ""]
    failed = []
    for name in names or list(BENCHMARKS):
        print(f"== tweetops bench {name}", flush=True)
        figures, elapsed, output = run_benchmark(name)
        print(output, flush=True)
        sections += [f"## {name} ({elapsed:.0f} s)", ""]
        if figures is None:
            failed.append(name)
            sections += ["FAILED; output tail:", "", "```", output[-2000:], "```", ""]
            continue
        sections += ["| figure | value |", "| --- | --- |"]
        sections += [f"| {key} | {value} |" for key, value in figures.items() if key != "benchmark"]
        sections.append("")
    report = "\n".join(sections)
    path = out_dir / f"report-{now:%Y%m%dT%H%M%S}.md"
    path.write_text(report)
    (out_dir / "report-latest.md").write_text(report)
    print(report)
    print(f"report written to {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or None))
