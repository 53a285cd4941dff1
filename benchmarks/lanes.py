"""Where a sweep's lanes spent their time, read back from the timing lines mnistfc's worker
and packed engine log (``task timing: ...``, ``pack ... timing: ...``) in submitit's logs."""

from __future__ import annotations

import math
import re
from datetime import datetime
from pathlib import Path

LOG_TIME = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def lanes(logs: Path) -> list[dict]:
    """Each lane's phases, from the timing lines the worker and the engine log."""
    found = []
    for err in sorted(logs.glob("*_log.err")):
        lane: dict = {"epochs": 0.0, "first": 0.0, "build": 0.0, "final": 0.0, "shards": 0.0}
        for line in err.read_text().splitlines():
            match = LOG_TIME.match(line)
            if match and "task timing:" in line:
                numbers = [float(x) if x != "?" else math.nan
                           for x in re.findall(r"([\d.]+|\?) s", line)]  # fmt: skip
                lane.update(process=numbers[0], tensorflow=numbers[1], data=numbers[2],
                            packs=numbers[3], task=numbers[4],
                            end=_parse_time(match.group(1)))  # fmt: skip
            elif "timing: build" in line:
                b, e, f, v, w = (float(x) for x in re.findall(r"([\d.]+) s", line))
                for key, value in (("build", b), ("epochs", e), ("first", f), ("final", v),
                                   ("shards", w)):  # fmt: skip
                    lane[key] += value
        if "task" in lane:
            found.append(lane)
    return found


def _parse_time(text: str) -> datetime:
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S,%f")


def print_breakdown(lanes: list[dict], began: float, ended: float) -> None:
    """Where each lane's seconds went, and the parent's share before and after them."""
    if not lanes:
        print("(no lane timing lines found)")
        return
    print("\nwhere mnistfc's time went, per lane (s):")
    print(f"{'lane':>4s} {'to start':>8s} {'python':>7s} {'TF import':>9s} {'data':>5s} "
          f"{'build':>6s} {'epoch 1':>7s} {'epochs 2+':>9s} {'final eval':>10s} {'shards':>6s} "
          f"{'other':>6s} {'after':>6s}")  # fmt: skip
    for i, lane in enumerate(lanes):
        end = lane["end"].timestamp()
        start = end - lane["task"] - lane["process"]
        other = lane["packs"] - lane["build"] - lane["epochs"] - lane["final"] - lane["shards"]
        print(f"{i:4d} {start - began:8.1f} {lane['process']:7.1f} {lane['tensorflow']:9.1f} "
              f"{lane['data']:5.1f} {lane['build']:6.1f} {lane['first']:7.1f} "
              f"{lane['epochs'] - lane['first']:9.1f} {lane['final']:10.1f} {lane['shards']:6.1f} "
              f"{other:6.1f} {ended - end:6.1f}")  # fmt: skip
    print(
        "to start: the sweep's start to the lane's process start (planning, submitit); "
        "python: interpreter and submitit before the task; after: the lane's end to the "
        "sweep's exit (the parent noticing, its summary)"
    )
