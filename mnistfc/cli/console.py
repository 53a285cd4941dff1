"""What the CLI prints: dataset reports, sweep plans, status lines and the progress bar.

Only the CLI calls these; they format and print, and decide nothing.
"""

from __future__ import annotations

import sys
from typing import Any

from mnistfc.folder.study_record import CONFIRM_PART


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
    """Print a sweep's counts, running packs and failures; return the exit code.

    1 when trials failed, or when trials are missing and nothing runs that could make them;
    a scheduler that cannot be asked is reported as such, never as "not running".
    """
    from mnistfc.sweep.progress import format_duration, sweep_progress

    progress = sweep_progress(results)
    status = progress.status
    counts = status.counts
    unknown = f", {progress.unknown} unknown" if progress.unknown else ""
    print(
        f"sweep {status.name}: {status.total} trials: {counts.get('completed', 0)} completed, "
        f"{counts.get('diverged', 0)} diverged, {counts.get('failed', 0)} failed, "
        f"{counts.get('missing', 0)} missing ({progress.running} running, "
        f"{progress.queued} queued{unknown}, {progress.lost} not running)"
    )
    if progress.scheduler_problem and progress.unknown:
        print(
            f"  scheduler unreachable ({progress.scheduler_problem}): the states of "
            f"{progress.unknown} trial(s) are unknown; they may still be running. Shards are "
            "counted as usual; ask again later (`status --wait` keeps counting)"
        )
    elif progress.scheduler_problem:
        print(
            f"  scheduler partly unreachable ({progress.scheduler_problem}); the live jobs "
            "answered for every unfinished trial"
        )
    for pulse in progress.packs:  # a stale heartbeat (its job ended) is not a running pack
        state = "running" if progress.active else "stopped (the next sweep resumes it)"
        print(f"  {state} {pulse.describe()}")
    if progress.epochs_total and counts.get("missing", 0):
        share = progress.epochs_done / progress.epochs_total
        print(
            f"  {progress.epochs_done:.0f}/{progress.epochs_total:.0f} trial-epochs done "
            f"({100 * share:.0f}%), ETA {format_duration(progress.eta_s)} at the measured pace"
        )
    for trial_id, error in status.failed.items():
        print(f"  failed {trial_id}: {error}")
    for name, problem in status.invalid.items():
        print(f"  invalid shard {name}: {problem}")
    stranded = progress.lost and not progress.active
    if stranded:
        print("  run the same `mnistfc sweep` again to run the missing trials")
    return 1 if counts.get("failed", 0) or stranded else 0


def print_study_status(results: str) -> int:
    """Print every part of a study and its report; return the worst part's exit code."""
    from mnistfc.study.jobs import study_status
    from mnistfc.sweep.progress import LIVE_STATES

    study = study_status(results)
    train = "completed" if study.train_done else (study.train_state or "no shard, no job")
    print(f"study {results}: single model {train}")
    code = 0 if study.train_done or study.train_state else 1
    for folder in study.sweeps:
        code = max(code, print_status(str(folder)))
    if study.confirm_state in LIVE_STATES and not any(f.name == CONFIRM_PART for f in study.sweeps):
        print(f"confirm: job {study.confirm_state.lower()}; after the searches it retrains "
              "their top configurations on new seeds")  # fmt: skip
    if study.report is not None and study.report_state not in LIVE_STATES:
        print(f"report: {study.report}")
    elif study.report_state:
        print(f"report: job {study.report_state.lower()}; it writes {results}/report.html "
              "when every part has ended")  # fmt: skip
    else:
        print(f"report: not written yet (run `mnistfc study ... --results {results}` again)")
    return code


def progress_printer(results: str) -> Any:
    """Return a callback that draws a progress bar of trial-epochs done on stderr.

    It moves with each pack's epochs (their heartbeats), not only with finished trials.
    """
    from mnistfc.sweep.progress import format_duration, sweep_progress

    last = [""]

    def show(_done_jobs: int = 0, _total_jobs: int = 0) -> None:
        progress = sweep_progress(results, jobs=False)
        status = progress.status
        width = 30
        share = progress.epochs_done / progress.epochs_total if progress.epochs_total else 1.0
        filled = int(width * share)
        line = (
            f"[{'#' * filled}{'.' * (width - filled)}] {status.finished}/{status.total} trials, "
            f"{100 * share:.0f}% of epochs"
            + (f", ETA {format_duration(progress.eta_s)}" if progress.eta_s and share < 1 else "")
        )
        if line != last[0]:
            end = "\r" if sys.stderr.isatty() else "\n"
            print(line, end=end, file=sys.stderr, flush=True)
            last[0] = line

    return show


def format_study_jobs(jobs: Any, results: str) -> str:
    """Render what ``study`` submitted to a scheduler and how to follow it."""
    lines = [f"{part}: {len(ids)} job(s): {', '.join(ids[:3])}"
             + (" ..." if len(ids) > 3 else "") for part, ids in jobs.parts.items()]  # fmt: skip
    lines += [f"  ({note})" for note in jobs.notes]
    if jobs.report:
        lines.append(f"report: job {jobs.report} writes {results}/report.html after them "
                     "(--dependency=afterany)")  # fmt: skip
    lines.append(f"follow with: mnistfc status {results} [--wait]")
    return "\n".join(lines)


def format_plan(plan: Any) -> str:
    """Render what a sweep call will do."""
    sizes = sorted({task.n_trials for task in plan.tasks})
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
        for trial in (t for pack in task.packs for t in pack.trials):
            settings = ", ".join(f"{k}={getattr(trial.config, k)}" for k in [*axes, "seed"])
            lines.append(f"  task {task_index}: {trial.trial_id}: {settings}")
    return "\n".join([*lines, *executor_lines, "dry run: nothing submitted"])
