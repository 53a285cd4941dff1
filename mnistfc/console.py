"""What the CLI prints: dataset reports, sweep plans, status lines and the progress bar.

Only the CLI calls these; they format and print, and decide nothing.
"""

from __future__ import annotations

import sys
from typing import Any


def format_info(report: dict[str, Any]) -> str:
    """Render `mnistfc data info` for one dataset."""
    if "error" in report:
        return f"{report['dataset']}: NOT FOUND\n  " + report["error"].replace("\n", "\n  ")
    lines = [f"{report['dataset']}: found in {report['found']}"]
    lines += [f"  searched {place}" for place in report["searched"]]
    lines += [f"  {k} {tuple(v)}" for k, v in report["shapes"].items()]
    lines.append(f"  train class counts {' '.join(map(str, report['train_class_counts']))}")
    lines.append(f"  test class counts  {' '.join(map(str, report['test_class_counts']))}")
    lines += [f"  sha256 {digest}  {path}" for path, digest in report["files"].items()]
    verdict = (
        "matches the published dataset" if report["canonical"] else "NOT the published dataset"
    )
    lines.append(f"  content sha256 {report['content_sha256']} ({verdict})")
    return "\n".join(lines)


def print_status(results: str) -> int:
    """Print a sweep's counts and failures; return the exit code (1 if failed or lost trials)."""
    from mnistfc.progress import sweep_progress

    progress = sweep_progress(results)
    status = progress.status
    counts = status.counts
    print(
        f"sweep {status.name}: {status.total} trials: {counts.get('completed', 0)} completed, "
        f"{counts.get('diverged', 0)} diverged, {counts.get('failed', 0)} failed, "
        f"{counts.get('missing', 0)} missing ({progress.running} running, "
        f"{progress.queued} queued, {progress.lost} not running)"
    )
    for trial_id, error in status.failed.items():
        print(f"  failed {trial_id}: {error}")
    for name, problem in status.invalid.items():
        print(f"  invalid shard {name}: {problem}")
    if progress.lost and not progress.active:
        print("  run the same `mnistfc sweep` again to run the missing trials")
    return 1 if counts.get("failed", 0) or (progress.lost and not progress.active) else 0


def progress_printer(results: str) -> Any:
    """Return a callback that draws a progress bar of finished trials on stderr."""
    from mnistfc.progress import sweep_status

    last = [""]

    def show(_done_jobs: int = 0, _total_jobs: int = 0) -> None:
        status = sweep_status(results)
        width = 30
        filled = int(width * status.finished / max(status.total, 1))
        line = f"[{'#' * filled}{'.' * (width - filled)}] {status.finished}/{status.total} trials"
        if line != last[0]:
            end = "\r" if sys.stderr.isatty() else "\n"
            print(line, end=end, file=sys.stderr, flush=True)
            last[0] = line

    return show


def format_plan(plan: Any) -> str:
    """Render what a sweep call will do."""
    sizes = sorted({sum(len(p) for p in task) for task in plan.tasks})
    resources = plan.resources
    lines = [
        f"sweep {plan.spec.name} ({plan.spec.kind}, spec {plan.spec.spec_hash}): "
        f"{plan.total} trials, {plan.skipped} already have a shard, {plan.n_trials} to run",
        f"executor {plan.profile.executor}: {len(plan.tasks)} task(s) of "
        f"{'-'.join(map(str, sizes[:1] + sizes[-1:])) if sizes else 0} trial(s), "
        f"at most {resources.parallel} at once"
        + (f" {resources.note}" if resources.note else "")
        + (f", packed ({len(plan.packs)} pack(s)" if plan.packed else "")
        + (f", {plan.reused} resumed whole)" if plan.packed and plan.reused else
           ")" if plan.packed else ", one trial at a time (--no-pack)")
        + (f", {resources.threads} thread(s) each" if resources.threads else ""),
        f"results {plan.results_dir}; data {plan.data_dir}",
    ]  # fmt: skip
    return "\n".join(lines)


def format_dry_run(plan: Any, executor_lines: list[str]) -> str:
    """Render the trials per task and what the executor would be given."""
    lines = ["trials (id: settings):"]
    axes = [name for name, _ in plan.spec.axes]
    for task_index, task in enumerate(plan.tasks):
        for trial in (t for pack in task for t in pack):
            settings = ", ".join(f"{k}={getattr(trial.config, k)}" for k in [*axes, "seed"])
            lines.append(f"  task {task_index}: {trial.trial_id}: {settings}")
    return "\n".join([*lines, *executor_lines, "dry run: nothing submitted"])
