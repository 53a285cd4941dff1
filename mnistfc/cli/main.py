"""The ``mnistfc`` command: parse arguments, call one function per verb, print the outcome.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mnistfc.cli import console
from mnistfc.cli.parser import build_parser
from mnistfc.engine.runtime import TF_LOGS_ENV
from mnistfc.errors import ConfigError, MnistfcError
from mnistfc.trial.config import DATASETS, TrialConfig

log = logging.getLogger("mnistfc")
_PY_TYPES = {"int": int, "float": float, "str": str}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    parser = build_parser(__doc__.splitlines()[0])
    args = parser.parse_args(argv)
    # TensorFlow's C++ logs below warnings drown the lines users need (runtime.load_tensorflow
    # drops the rest of its start-up chatter); --verbose shows them, here and in the jobs,
    # which inherit this environment. A user's own TF_CPP_MIN_LOG_LEVEL is kept.
    if args.verbose:
        os.environ[TF_LOGS_ENV] = "1"
    else:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(_HANDLERS[args.handler](args) or 0)
    except MnistfcError as exc:
        return _fail(args, str(exc), exc.exit_code)
    except OSError as exc:
        return _fail(args, f"{exc} (check the path, free space and permissions)", 1)
    except KeyboardInterrupt:
        return _fail(args, "interrupted", 130)


def _fail(args: argparse.Namespace, message: str, code: int) -> int:
    if args.verbose:
        traceback.print_exc()
    print(f"mnistfc: error: {message}", file=sys.stderr)
    return code


def _config_from_args(args: argparse.Namespace) -> TrialConfig:
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return TrialConfig.from_dict(given)


def _cmd_train(args: argparse.Namespace) -> int:
    from mnistfc.folder.schema import Status
    from mnistfc.study.single import run_single

    config = _config_from_args(args)
    verbose = 1 if sys.stdout.isatty() else 2
    run = run_single(
        config, args.out, args.data_dir, verbose=verbose, table_format=args.table_format
    )
    if run.result.status is not Status.COMPLETED:
        raise MnistfcError(
            f"trial {run.result.trial_id} {run.result.status.value} (non-finite loss); "
            f"its shard is {run.files[0]} — try a smaller --learning-rate"
        )
    best_epoch = run.result.best_epoch
    print(run.table)
    print(f"best epoch {best_epoch} of {config.epochs} (by validation accuracy)")
    print("wrote:")
    for path in run.files:
        print(f"  {path}")
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from mnistfc.data.fetch import KERAS_ORIGIN, prepare

    raw = prepare(args.dataset, args.to, args.origin or KERAS_ORIGIN)
    print(f"{args.dataset}: verified ({raw.content_sha256()}) in {raw.source}")
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from mnistfc.data.dataset import dataset_info

    names = [args.dataset] if args.dataset else list(DATASETS)
    reports: list[dict[str, Any]] = []
    for name in names:
        try:
            reports.append(dataset_info(name, args.data_dir))
        except MnistfcError as exc:
            if args.dataset:
                raise
            reports.append({"dataset": name, "error": str(exc)})
    if args.json:
        print(json.dumps(reports, indent=1))
        return 0
    for report in reports:
        print(console.format_info(report))
    return 0


def _cmd_sweep(args: argparse.Namespace) -> int:
    from mnistfc.launch import backend, load_profile
    from mnistfc.sweep import submit as sweep
    from mnistfc.trial.spec import load_spec

    spec = load_spec(args.spec, args.set)
    profile = load_profile(args.cluster, _profile_overrides(args))
    plan = sweep.plan_submission(
        spec,
        profile,
        args.results,
        data_dir=args.data_dir,
        chunk_size=args.chunk,
        max_parallel=args.max_parallel,
        rerun_failed=args.rerun_failed,
        pack=args.pack,
    )
    print(console.format_plan(plan))
    if args.dry_run:
        print(console.format_dry_run(plan, backend(profile.executor).dry_run(plan)))
        return 0
    if args.plan_only:
        from mnistfc.folder.plan import plan_path
        from mnistfc.launch.limits import site_limits

        size = args.chunk or profile.chunk or 1
        n_tasks = sweep.write_plan(plan, size)
        print(f"wrote {plan_path(plan.results_dir)}; run it without submitit with:")
        step = site_limits(profile).max_array_size  # an array may not hold more tasks
        for offset in range(0, n_tasks, step):
            last = min(n_tasks, offset + step) - offset - 1
            export = f" --export=ALL,MNISTFC_CHUNK_OFFSET={offset}" if offset else ""
            print(f"  sbatch --array=0-{last}{export} jobs/sweep-array.sbatch "
                  f"{plan.results_dir} {size}")  # fmt: skip
        return 0
    submission, _failed = sweep.submit(
        plan, wait=args.wait, on_progress=console.progress_printer(args.results)
    )
    if not plan.tasks:
        print("nothing to submit: every trial has a shard (--rerun-failed retries failed ones)")
        return 0
    ids = submission.job_ids
    print(f"submitted {len(ids)} job(s): {', '.join(ids[:5])}" + (" ..." if len(ids) > 5 else ""))
    if not (args.wait if args.wait is not None else backend(profile.executor).waits_by_default):
        print(f"follow with: mnistfc status {args.results} --wait")
        return 0
    return console.print_status(args.results)


def _profile_overrides(args: argparse.Namespace) -> list[str]:
    return [*args.cluster_set, *([f"executor={args.executor}"] if args.executor else [])]


def _cmd_status(args: argparse.Namespace) -> int:
    import time

    from mnistfc.folder.study_record import is_study
    from mnistfc.study.jobs import study_status
    from mnistfc.sweep.progress import sweep_progress

    if is_study(args.results):
        while args.wait:  # until the single model's, every sweep's and the report's jobs end
            study = study_status(args.results)
            parts = [sweep_progress(folder) for folder in study.sweeps]
            if not study.live and not any(p.active for p in parts):
                break
            time.sleep(args.interval)
        return console.print_study_status(args.results)
    if args.wait:
        show = console.progress_printer(args.results)
        while True:
            progress = sweep_progress(args.results)
            show(progress.status.finished, progress.status.total)
            # An unreachable scheduler is not an ended sweep: trials whose job state is
            # unknown keep it active, so this counts shards until they arrive or the
            # scheduler answers that nothing runs.
            if not progress.active:
                break
            time.sleep(args.interval)
    return console.print_status(args.results)


def _cmd_aggregate(args: argparse.Namespace) -> int:
    from mnistfc.report.writer import write_report

    report = write_report(args.results, args.out, args.table_format)
    print("\n\n".join(report.text))
    print("wrote:")
    for path in report.files:
        print(f"  {path}")
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    from mnistfc.launch import load_profile
    from mnistfc.study.run import load_study, run_study

    study = load_study(args.spec, args.set)
    profile = load_profile(args.cluster, _profile_overrides(args))
    verbose = 1 if sys.stdout.isatty() else 2
    report = run_study(
        study,
        args.results,
        profile,
        data_dir=args.data_dir,
        verbose=verbose,
        table_format=args.table_format,
        on_progress=lambda name: console.progress_printer(f"{args.results}/{name}"),
    )
    from mnistfc.folder.study_record import StudyJobs

    if isinstance(report, StudyJobs):
        print(console.format_study_jobs(report, args.results))
        return 0
    print("\n\n".join(report.text))
    print(f"report: {Path(args.results) / 'report.html'}")
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    from mnistfc.cli.doctor import diagnose
    from mnistfc.launch import load_profile

    profile = load_profile(args.cluster, _profile_overrides(args))
    checks = diagnose(
        profile, data_dir=args.data_dir, results_dir=args.results, dataset=args.dataset
    )
    for check in checks:
        print(check.line())
    failed = [c.name for c in checks if not c.ok]
    print(f"{len(checks) - len(failed)} of {len(checks)} checks passed"
          + (f"; failed: {', '.join(failed)}" if failed else ""))  # fmt: skip
    return 1 if failed else 0


def _cmd_run_chunk(args: argparse.Namespace) -> int:
    from mnistfc.sweep.submit import run_planned_chunk

    if args.offset < 0:
        raise ConfigError(f"--offset must be >= 0, got {args.offset}")
    if not 0 <= args.checkpoint_min < float("inf"):
        raise ConfigError(f"--checkpoint-min must be a number >= 0, got {args.checkpoint_min}")
    index, every = args.offset + args.index, 60.0 * args.checkpoint_min
    outcome = run_planned_chunk(args.results, index, args.size, args.data_dir, pack=args.pack,
                                checkpoint_s=every)  # fmt: skip
    for trial_id, status in outcome:
        print(f"{trial_id}: {status}")
    return 0


_HANDLERS = {
    "data_prepare": _cmd_data_prepare,
    "data_info": _cmd_data_info,
    "train": _cmd_train,
    "sweep": _cmd_sweep,
    "aggregate": _cmd_aggregate,
    "run_chunk": _cmd_run_chunk,
    "study": _cmd_study,
    "status": _cmd_status,
    "doctor": _cmd_doctor,
}
