"""`tweetops bench scale --plot`: the growth curve drawn from the record of measured days."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tweetops.bench import scale_plot
from tweetops.core.settings import REPO_ROOT


def _day(tweets: int, spark: str, gate_s: float, gate_mb: int, measured_at: str) -> dict:
    stage = {"stage": "gate", "wall_s": gate_s, "tweets_per_s": round(tweets / gate_s), "peak_driver_mb": gate_mb,
             "peak_jvm_mb": 0, "peak_python_worker_mb": 0, "peak_total_mb": gate_mb}
    features = {**stage, "stage": "features", "peak_driver_mb": 150, "peak_jvm_mb": 1650,
                "peak_python_worker_mb": 360}
    return {"tweets": tweets, "spark": spark, "produce_s": 1.0, "stages": [stage, features],
            "max_process_mb": max(gate_mb, 1650), "measured_at": measured_at, "cpus": 2, "memory_gb": 23.5,
            "load_average_1m": 1.0}


def test_the_latest_measurement_of_each_size_is_drawn(tmp_path):
    record = tmp_path / "scale-days.jsonl"
    days = [_day(1_000_000, "local", 50.0, 1300, "2026-12-02T10:00:00+00:00"),
            _day(10_000_000, "local", 400.0, 2100, "2026-12-03T10:00:00+00:00"),
            _day(1_000_000, "local", 44.5, 1270, "2026-12-03T11:00:00+00:00"),  # a rerun replaces the first
            _day(1_000_000, "cluster", 60.0, 1280, "2026-12-03T12:00:00+00:00")]
    record.write_text("".join(json.dumps(day) + "\n" for day in days))

    curves = scale_plot.curves(scale_plot.read_days(record))

    assert curves[("gate", "local")] == [(1_000_000, 44.5, 1270), (10_000_000, 400.0, 2100)]
    assert curves[("features", "local")][0] == (1_000_000, 44.5, 1650)  # the largest process: the JVM
    assert curves[("gate", "cluster")] == [(1_000_000, 60.0, 1280)]
    svg = scale_plot.draw(scale_plot.read_days(record), tmp_path / "growth.svg")
    assert svg.read_text().lstrip().startswith("<?xml") and "2 cores, 23.5 GiB" in svg.read_text()


def test_the_command_draws_without_measuring(tmp_path):
    record = tmp_path / "days.jsonl"
    record.write_text(json.dumps(_day(1_000_000, "local", 44.5, 1270, "2026-12-03T11:00:00+00:00")) + "\n")
    out = subprocess.run([sys.executable, "-m", "tweetops.cli", "bench", "scale", "--plot-only",
                          "--record", str(record), "--plot", str(tmp_path / "growth.png")],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "TWEETOPS_HOME": str(tmp_path / "home")})
    assert out.returncode == 0, out.stderr[-2000:]
    assert (tmp_path / "growth.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(out.stdout.strip().splitlines()[-1])["days"] == []


def test_a_line_that_is_not_a_day_is_named(tmp_path):
    record = tmp_path / "days.jsonl"
    record.write_text(json.dumps(_day(1_000_000, "local", 44.5, 1270, "2026-12-03T11:00:00+00:00")) + "\n{oops\n")
    with pytest.raises(ValueError, match=r"days.jsonl:2: not a day"):
        scale_plot.read_days(record)


def test_plot_only_without_a_file_is_refused(tmp_path):
    out = subprocess.run([sys.executable, "-m", "tweetops.cli", "bench", "scale", "--plot-only"],
                         cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
                         env={"PATH": "/usr/bin:/bin", "TWEETOPS_HOME": str(tmp_path / "home")})
    assert out.returncode != 0 and "--plot-only needs --plot FILE" in out.stderr
