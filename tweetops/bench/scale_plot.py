"""The growth curve of `tweetops bench scale`: wall time and peak process memory against day size.

`tweetops bench scale` appends every day it measures to a JSON-lines record; `draw` plots the
latest measurement of each (size, Spark mode, stage) from it, one line per stage and mode, so runs
of different sizes made on different days end up on one figure (docs/scale-growth.svg).
"""
from __future__ import annotations

import json
from pathlib import Path

AIM_MAX_PROCESS_MB = 4096


def read_days(record: Path) -> list[dict]:
    """The days in a record, the latest one kept for each (tweets, spark)."""
    latest: dict[tuple, dict] = {}
    if record.exists():
        for number, line in enumerate(record.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    day = json.loads(line)
                    latest[(day["tweets"], day["spark"])] = day
                except (ValueError, TypeError, KeyError) as exc:
                    raise ValueError(f"{record}:{number}: not a day written by `tweetops bench scale` "
                                     f"({exc!r})") from None
    return sorted(latest.values(), key=lambda day: (day["spark"], day["tweets"]))


def curves(days: list[dict]) -> dict[tuple[str, str], list[tuple[int, float, float]]]:
    """(stage, spark) -> [(tweets, wall seconds, peak MB of its largest process)], by size."""
    out: dict[tuple[str, str], list[tuple[int, float, float]]] = {}
    for day in days:
        for stage in day["stages"]:
            largest = max(stage["peak_driver_mb"], stage["peak_jvm_mb"], stage["peak_python_worker_mb"])
            out.setdefault((stage["stage"], day["spark"]), []).append((day["tweets"], stage["wall_s"], largest))
    return {key: sorted(points) for key, points in out.items()}


def draw(days: list[dict], path: Path) -> Path:
    """Write the figure (.svg or .png by the file name) and return its path."""
    import matplotlib

    matplotlib.use("Agg")  # no display: a file only
    import matplotlib.pyplot as plt

    figure, (time_axis, memory_axis) = plt.subplots(1, 2, figsize=(12, 4.8))
    lines = curves(days)
    stages = list(dict.fromkeys(stage for stage, _ in lines))  # one colour a stage, one style a mode
    for (stage, spark), points in sorted(lines.items(), key=lambda item: (stages.index(item[0][0]), item[0][1])):
        sizes = [tweets / 1e6 for tweets, _, _ in points]
        style = dict(color=f"C{stages.index(stage)}", linestyle="-" if spark == "local" else "--",
                     marker="o" if spark == "local" else "s", label=f"{stage} ({spark})")
        time_axis.plot(sizes, [wall / 60 for _, wall, _ in points], **style)
        memory_axis.plot(sizes, [mb / 1024 for _, _, mb in points], **style)
    memory_axis.axhline(AIM_MAX_PROCESS_MB / 1024, color="grey", linestyle=":", label="aim: no process above 4 GB")
    time_axis.set(xlabel="tweets in the day (millions)", ylabel="wall time (minutes)",
                  title="Wall time per stage")
    memory_axis.set(xlabel="tweets in the day (millions)", ylabel="largest process (GB)",
                    title="Memory per process stays bounded", ylim=(0, None))
    for axis in (time_axis, memory_axis):
        axis.grid(alpha=0.3)
    memory_axis.legend(fontsize=8, loc="upper left")
    machine = {(day["cpus"], day["memory_gb"]) for day in days}
    figure.suptitle("tweetops bench scale: one day from topic to gold_predictions ("
                    + ", ".join(f"{cpus} cores, {gb} GiB" for cpus, gb in sorted(machine)) + ")")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, metadata={"Date": None} if path.suffix == ".svg" else None)
    plt.close(figure)
    return path
