"""Exception classes: the one place that says which failures a user can act on."""

from __future__ import annotations


def format_problems(where: str, problems: list[str]) -> str:
    """One message for every problem found at once: a user fixes a file in one pass."""
    if len(problems) == 1:
        return f"{where}: {problems[0]}"
    return f"{where} ({len(problems)} problems):\n" + "\n".join(f"  - {p}" for p in problems)


class MnistfcError(Exception):
    """A failure the user can fix; the CLI prints its message and exits non-zero."""

    exit_code = 1


class ConfigError(MnistfcError):
    """A configuration value or spec file is invalid."""

    exit_code = 2


class DataError(MnistfcError):
    """A dataset is missing, truncated, corrupt or of the wrong shape."""

    exit_code = 2


class ShardError(MnistfcError):
    """A result shard is malformed or has a schema this version does not know."""

    exit_code = 2


class SubmitFailed(MnistfcError):
    """The scheduler refused a submission part-way; ``jobs`` are those it had accepted."""

    def __init__(self, message: str, jobs: list[object]) -> None:
        super().__init__(message)
        self.jobs = jobs


class TaskFailed(MnistfcError):
    """Some trials of a task failed; their shards hold the tracebacks."""


class Interrupted(MnistfcError):
    """The task was asked to stop (SIGTERM); its state is saved and a rerun resumes it."""

    exit_code = 143
