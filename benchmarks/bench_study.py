"""The default study (`mnistfc study jobs/study.toml`, what `make run` runs) against the bounds
of its own work, part by part, in one run on one machine.

Runs the study as a whole process (a folder that is already complete runs nothing and only
re-aggregates: then the times come from the shards' stamps alone), then for each part (the
single model, the grid, the random-search pool) counts what its trials actually ran: the
training FLOPs as executed (``rates.train_flops_per_sample``: layer 1 has no input
gradient), the evaluation passes (validation every epoch, the training set every epoch only
where recorded, and the final evaluation of the restored model) and Adam's memory traffic
(28 bytes per parameter and step). At the matmul rate and the streaming rate of every lane
streaming at once, measured here in the same run, these give two bounds; the part's wall time
(first start to last finish of its shards) over the larger is the ratio printed. Each part's
lanes are broken down from their timing log lines.

    python benchmarks/bench_study.py --data-dir ../shared/data [--results DIR] [--set K=V ...]
"""

from __future__ import annotations

import argparse
import math
import resource
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
N_TEST_SET = 10_000  # the test split the validation slice comes out of


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--results", default=None, help="the study folder (default: a new one)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="study overrides, as with mnistfc study --set")  # fmt: skip
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import lanes as lanes_of
    import rates

    measured = rates.measure_all()
    gflops, gbps = measured["gflops"], measured["stream_all"]
    results = Path(args.results or tempfile.mkdtemp(prefix="bench_study_"))
    command = [sys.executable, "-m", "mnistfc", "study", str(ROOT / "jobs" / "study.toml"),
               "--results", str(results), "--data-dir", args.data_dir]  # fmt: skip
    for item in args.set:
        command += ["--set", item]
    blocks = resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, cwd=ROOT)
    wall = time.perf_counter() - started
    if run.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{run.stderr[-3000:]}")
    # Block output of the study and its children, as GNU time counts it (512-byte blocks).
    written = (resource.getrusage(resource.RUSAGE_CHILDREN).ru_oublock - blocks) * 512
    print(f"mnistfc study jobs/study.toml: {wall:.1f} s wall (the whole process), "
          f"{written / 1e9:.2f} GB written to disk\n")  # fmt: skip

    heads = ("trials", "epochs", "TFLOP", "eval %", "Adam GB", "FLOP s", "memory s", "wall s")
    print(f"{'part':8s} " + " ".join(f"{h:>7s}" for h in heads) + "  / bound")
    total = {"wall": 0.0, "bound": 0.0, "old": 0.0}
    parts: dict[str, tuple[float, float, int]] = {}  # part: (bound, wall, epochs per trial)
    for part in ("train", "grid", "random"):
        shards = _shards(results / part)
        if not shards:
            continue
        work = [_work(s) for s in shards]
        flops = sum(w["flops"] for w in work)
        evals = sum(w["eval_flops"] for w in work)
        traffic = sum(w["adam_bytes"] for w in work)
        flop_s, memory_s = flops / (gflops * 1e9), traffic / (gbps * 1e9)
        span = _span(shards)
        bound = max(flop_s, memory_s)
        # Earlier versions' bound: 6 x parameters FLOPs, one process's stream for the machine.
        naive = sum(w["flops_naive"] for w in work) / (gflops * 1e9)
        total["old"] += max(naive, traffic / (measured["stream_one"] * 1e9))
        parts[part] = (bound, span, max(w["epochs"] for w in work))
        total["wall"] += span
        total["bound"] += bound
        cells = (f"{len(shards):7d}", f"{sum(w['epochs'] for w in work):7d}",
                 f"{flops / 1e12:7.1f}", f"{100 * evals / flops:7.1f}", f"{traffic / 1e9:7.0f}",
                 f"{flop_s:7.1f}", f"{memory_s:7.1f}", f"{span:7.1f}")  # fmt: skip
        print(f"{part:8s} " + " ".join(cells) + f"  {span / bound:5.2f}x")
    print(f"{'study':8s} " + " ".join([" " * 7] * 7) + f" {total['wall']:7.1f}  "
          f"{total['wall'] / total['bound']:5.2f}x")  # fmt: skip
    print(
        "wall s: first start to last finish of the part's shards (1 s stamps); bound: the "
        "larger of FLOP s and memory s; eval %: the share of FLOPs in evaluation passes; "
        "FLOPs as executed (layer 1 has no input gradient), memory at every lane's stream"
    )
    print(f"the study against the bound of earlier versions (6 x parameters FLOPs, one "
          f"process's stream for the whole machine): {total['wall'] / total['old']:.2f}x; "
          f"against the corrected bound: {total['wall'] / total['bound']:.2f}x")  # fmt: skip
    if wall > total["wall"]:
        print(f"outside the parts (planning, reports, start-up between parts): "
              f"{wall - total['wall']:.1f} s of the {wall:.1f} s")  # fmt: skip
    else:  # the folder was complete: the process only re-aggregated
        print("the folder was complete: the study only re-aggregated; the bounds use this "
              "run's rates, the walls the shards' stamps")  # fmt: skip
    for part in ("grid", "random"):
        found = lanes_of.lanes(results / part / "submitit")
        if found:  # within the part: "to start" is the lanes' skew, "after" a lane's idle end
            ends = [lane["end"].timestamp() for lane in found]
            starts = [
                e - lane["task"] - lane["process"] for e, lane in zip(ends, found, strict=True)
            ]
            print(f"\n{part}:", end="")
            lanes_of.print_breakdown(found, min(starts), max(ends))
            _say_what_keeps_it_above(part, found, *parts[part])
            _packs_against_bounds(results / part, gflops / len(found), measured["stream_lane"])


def _say_what_keeps_it_above(
    part: str, lanes: list[dict], bound: float, wall: float, epochs: int
) -> None:
    """Split the part's ratio into the step itself and the time outside steady epochs.

    The step: the slowest lane's epochs 2+ scaled to every epoch, over the bound; the rest
    of the wall is start-up, building, tracing (epoch 1's excess), final evaluation and the
    lanes' uneven ends.
    """
    if epochs < 2:
        return
    steady = max((lane["epochs"] - lane["first"]) * epochs / (epochs - 1) for lane in lanes)
    print(f"{part} is {wall / bound:.2f}x its bound: the step at its steady pace "
          f"{steady:.0f} s ({steady / bound:.2f}x the bound), outside it {wall - steady:.0f} s "
          f"({wall / steady:.2f}x on top)")  # fmt: skip


def _packs_against_bounds(folder: Path, gflops: float, gbps: float) -> None:
    """Each pack's epochs against its own bounds at one lane's share of the machine."""
    import re

    import rates

    from mnistfc.folder.plan import load_plan

    packs = {pack.id: pack for pack in load_plan(folder).recorded_packs()}
    timed = re.compile(r"pack (\w+) timing: build [\d.]+ s, epochs ([\d.]+) s")
    print("packs (each lane's share of the rates): batch trials  epochs s  FLOP s  memory s  "
          "/ bound")  # fmt: skip
    for err in sorted((folder / "submitit").glob("*_log.err")):
        for match in timed.finditer(err.read_text()):
            pack = packs.get(match.group(1))
            if pack is None:
                continue
            members = list(pack.configs)
            epochs_s = float(match.group(2))
            flop_s, memory_s = rates.training_bounds(members, gflops, gbps)
            print(
                f"{members[0].batch_size:>43d} {len(members):6d} {epochs_s:9.1f} "
                f"{flop_s:7.1f} {memory_s:9.1f}  {epochs_s / max(flop_s, memory_s):5.2f}x"
            )


def _shards(folder: Path) -> list[dict]:
    from mnistfc.folder.shards import list_shards, read_shard, shard_dir

    if not shard_dir(folder).is_dir():
        return []
    return [s for s in map(read_shard, list_shards(folder)) if s["status"] != "failed"]


def _work(shard: dict) -> dict:
    """What one trial ran: epochs, FLOPs (training and evaluation) and Adam's bytes."""
    import rates

    from mnistfc.engine.pack.planner import n_params
    from mnistfc.trial.config import TrialConfig

    config = TrialConfig.from_dict(shard["config"])
    params = n_params(config)
    history = shard["history"]
    epochs = len(history)
    n_valid, n_test = config.valid_size, N_TEST_SET - config.valid_size
    train_passes = sum(1 for h in history if h.get("train_loss") is not None)
    training = rates.N_TRAIN * rates.train_flops_per_sample(config.units) * epochs
    naive = 6 * rates.N_TRAIN * params * epochs
    evaluation = 2 * params * (n_valid * epochs + rates.N_TRAIN * train_passes)
    if shard["metrics"]:
        evaluation += 2 * params * (rates.N_TRAIN + n_valid + n_test)
    steps = math.ceil(rates.N_TRAIN / config.batch_size) * epochs
    return {"epochs": epochs, "flops": training + evaluation, "eval_flops": evaluation,
            "flops_naive": naive + evaluation,
            "adam_bytes": rates.ADAM_BYTES * params * steps}  # fmt: skip


def _span(shards: list[dict]) -> float:
    def at(text: str) -> float:
        return (
            datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()
        )

    starts = [at(s["env"]["started_at"]) for s in shards if s["env"].get("started_at")]
    ends = [at(s["env"]["finished_at"]) for s in shards if s["env"].get("finished_at")]
    return max(ends) - min(starts) if starts and ends else math.nan


if __name__ == "__main__":
    main()
