"""The command line's grammar: one subcommand per step of the flow, and their options.

``cli`` owns what each subcommand does; this module only declares what it accepts.
"""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from mnistfc.engine.runtime import CHECKPOINT_MIN
from mnistfc.launch import EXECUTORS
from mnistfc.trial.config import DATASETS, TrialConfig
from mnistfc.version import __version__

_PY_TYPES = {"int": int, "float": float, "str": str}


def build_parser(description: str) -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per step of the flow."""
    parser = argparse.ArgumentParser(prog="mnistfc", description=description)
    parser.add_argument("--version", action="version", version=f"mnistfc {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v", "--verbose", action="store_true", help="log progress and show tracebacks"
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = commands.add_parser("data", help="find, check or download a dataset", parents=[common])
    data_verbs = data.add_subparsers(dest="data_command", required=True, metavar="VERB")
    prepare = data_verbs.add_parser(
        "prepare", parents=[common], help="download and verify a dataset (on an online login node)"
    )
    prepare.add_argument("--dataset", choices=DATASETS, default="mnist")
    prepare.add_argument("--to", default=None, help="target folder (default: ~/.keras/datasets)")
    prepare.add_argument("--origin", default=None, help="base URL of a mirror of Keras's files")
    prepare.set_defaults(handler="data_prepare")
    info = data_verbs.add_parser("info", parents=[common], help="show what was found where")
    info.add_argument("--dataset", choices=DATASETS, default=None, help="default: all datasets")
    info.add_argument("--data-dir", default=None)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(handler="data_info")

    train = commands.add_parser(
        "train", parents=[common], help="train one model: table, history, weights, plots, shard"
    )
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    train.add_argument("--table-format", default="orgtbl", help="tabulate format (default: orgtbl)")
    _add_config_options(train, TrialConfig)
    train.set_defaults(handler="train")

    sweep = commands.add_parser(
        "sweep", parents=[common], help="expand a spec and submit its unfinished trials"
    )
    sweep.add_argument("spec", help="sweep spec (TOML), e.g. jobs/grid.toml")
    sweep.add_argument("--results", required=True, help="results folder of this sweep")
    sweep.add_argument("--executor", choices=EXECUTORS, default=None, help="overrides the profile")
    sweep.add_argument(
        "--cluster", default=None, help="cluster profile (TOML), e.g. jobs/clusters/slurm-gpu.toml"
    )
    sweep.add_argument(
        "--chunk", type=int, default=None, help="trials per array task (profile: chunk)"
    )
    sweep.add_argument("--max-parallel", type=int, default=None, help="tasks running at once")
    sweep.add_argument("--data-dir", default=None)
    sweep.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, e.g. base.epochs=1",
    )
    sweep.add_argument(
        "--cluster-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a profile value, e.g. partition=gpu",
    )
    sweep.add_argument("--rerun-failed", action="store_true", help="run failed trials again")
    _flag(
        sweep,
        "--pack",
        None,
        "train trials that share batch size and epochs in one step (profile: pack, on)",
    )
    sweep.add_argument("--dry-run", action="store_true", help="print the plan, submit nothing")
    sweep.add_argument(
        "--plan-only",
        action="store_true",
        help="write RESULTS/sweep.json for plain sbatch, submit nothing",
    )
    _flag(sweep, "--wait", None, "wait for the jobs (default: yes for local/debug, no for slurm)")
    sweep.set_defaults(handler="sweep")

    aggregate = commands.add_parser(
        "aggregate", parents=[common], help="tables, plots and a report from a results folder"
    )
    aggregate.add_argument("results", help="results folder (with shards/)")
    aggregate.add_argument("--out", default=None, help="report folder (default: RESULTS/report)")
    aggregate.add_argument("--table-format", default="orgtbl", help="tabulate format for printing")
    aggregate.set_defaults(handler="aggregate")

    run_chunk = commands.add_parser(
        "run-chunk",
        parents=[common],
        help="run chunk I of a planned sweep here (plain sbatch arrays)",
    )
    run_chunk.add_argument("results", help="results folder with sweep.json (sweep --plan-only)")
    run_chunk.add_argument(
        "--index", type=int, required=True, help="chunk index, e.g. $SLURM_ARRAY_TASK_ID"
    )
    run_chunk.add_argument(
        "--offset", type=int, default=0,
        help="added to --index: arrays after the first of a sweep split by MaxArraySize",
    )  # fmt: skip
    run_chunk.add_argument("--size", type=int, required=True, help="trials per chunk")
    run_chunk.add_argument("--data-dir", default=None, help="default: the folder the plan recorded")
    run_chunk.add_argument(
        "--checkpoint-min", type=float, default=CHECKPOINT_MIN,
        help="a pack saves after training this long since its last save (0: every epoch); "
             "it always saves on SIGTERM/SIGUSR2",
    )  # fmt: skip
    _flag(
        run_chunk,
        "--pack",
        None,
        "train the chunk's trials that share batch size and epochs in one step "
        "(default: the engine the plan recorded)",
    )
    run_chunk.set_defaults(handler="run_chunk")

    study = commands.add_parser(
        "study", parents=[common], help="the whole study: single model, grid, random, report"
    )
    study.add_argument("spec", nargs="?", default="jobs/study.toml", help="study file (TOML)")
    study.add_argument("--results", required=True, help="results folder of the study")
    study.add_argument("--executor", choices=EXECUTORS, default=None)
    study.add_argument("--cluster", default=None, help="cluster profile (TOML)")
    study.add_argument("--cluster-set", action="append", default=[], metavar="KEY=VALUE")
    study.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                       help="override a study value, e.g. train.epochs=2")  # fmt: skip
    study.add_argument("--data-dir", default=None)
    study.add_argument("--table-format", default="orgtbl")
    study.set_defaults(handler="study")

    doctor = commands.add_parser(
        "doctor", parents=[common],
        help="check this host: TensorFlow, GPUs, data, SLURM and its limits, container, flock",
    )  # fmt: skip
    doctor.add_argument("--cluster", default=None, help="cluster profile (TOML) to check")
    doctor.add_argument("--cluster-set", action="append", default=[], metavar="KEY=VALUE")
    doctor.add_argument("--executor", choices=EXECUTORS, default=None)
    doctor.add_argument("--data-dir", default=None)
    doctor.add_argument("--dataset", choices=DATASETS, default="mnist")
    doctor.add_argument("--results", default=None, help="results folder to check for flock")
    doctor.set_defaults(handler="doctor")

    status = commands.add_parser(
        "status", parents=[common], help="done / failed / missing trials of a sweep"
    )
    status.add_argument("results", help="results folder of a sweep")
    status.add_argument(
        "--wait", action="store_true", help="show a progress bar until the jobs end"
    )
    status.add_argument(
        "--interval", type=float, default=10.0, help="seconds between checks with --wait"
    )
    status.set_defaults(handler="status")
    return parser


def _flag(parser: argparse.ArgumentParser, name: str, default: bool | None, text: str) -> None:
    """Add a --name / --no-name switch."""
    parser.add_argument(name, action=argparse.BooleanOptionalAction, default=default, help=text)


def _add_config_options(parser: argparse.ArgumentParser, cls: Any) -> None:
    defaults = cls()
    group = parser.add_argument_group("trial config (defaults: the exercise's model)")
    for field in dataclasses.fields(cls):
        group.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=f"cfg_{field.name}",
            type=_PY_TYPES[str(field.type)],
            default=None,
            help=f"default: {getattr(defaults, field.name)}",
        )
