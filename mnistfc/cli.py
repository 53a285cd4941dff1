"""The ``mnistfc`` command: parse arguments, call one function per verb, print the outcome.

Exit codes: 0 ok, 1 runtime failure, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

from mnistfc import __version__
from mnistfc.config import DATASETS, TrialConfig
from mnistfc.errors import MnistfcError

log = logging.getLogger("mnistfc")
_PY_TYPES = {"int": int, "float": float, "str": str}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the process exit code."""
    # TensorFlow's C++ start-up chatter drowns the lines users need; keep a user's own choice.
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
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


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser with one subcommand per step of the flow."""
    parser = argparse.ArgumentParser(prog="mnistfc", description=__doc__.splitlines()[0])
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
    prepare.set_defaults(handler=_cmd_data_prepare)
    info = data_verbs.add_parser("info", parents=[common], help="show what was found where")
    info.add_argument("--dataset", choices=DATASETS, default=None, help="default: all datasets")
    info.add_argument("--data-dir", default=None)
    info.add_argument("--json", action="store_true", help="print JSON instead of text")
    info.set_defaults(handler=_cmd_data_info)

    train = commands.add_parser(
        "train", parents=[common], help="train one model: table, history, weights, plots, shard"
    )
    train.add_argument("--out", required=True, help="output folder")
    train.add_argument("--data-dir", default=None, help="folder holding the dataset files")
    train.add_argument("--table-format", default="orgtbl", help="tabulate format (default: orgtbl)")
    _add_config_options(train, TrialConfig)
    train.set_defaults(handler=_cmd_train)
    return parser


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


def _config_from_args(args: argparse.Namespace) -> TrialConfig:
    given = {k[4:]: v for k, v in vars(args).items() if k.startswith("cfg_") and v is not None}
    return TrialConfig.from_dict(given)


def _cmd_train(args: argparse.Namespace) -> int:
    from mnistfc.shards import Status
    from mnistfc.single import run_single

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
    best_epoch = (run.result.metrics or {}).get("best_epoch")
    print(run.table)
    print(f"best epoch {best_epoch} of {config.epochs} (by validation accuracy)")
    print("wrote:")
    for path in run.files:
        print(f"  {path}")
    return 0


def _cmd_data_prepare(args: argparse.Namespace) -> int:
    from mnistfc.fetch import KERAS_ORIGIN, prepare

    raw = prepare(args.dataset, args.to, args.origin or KERAS_ORIGIN)
    print(f"{args.dataset}: verified ({raw.content_sha256()}) in {raw.source}")
    return 0


def _cmd_data_info(args: argparse.Namespace) -> int:
    from mnistfc.data import dataset_info

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
        print(_format_info(report))
    return 0


def _format_info(report: dict[str, Any]) -> str:
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
