"""Claims on trials and a lock on the sweep plan, so concurrent sweeps never run a trial twice.

Both are ``flock`` locks on small files under the results folder: the kernel drops them when
the holding process exits, however it dies (``kill -9``, a node reboot drops its NFS locks),
so a crashed worker never leaves a trial claimed forever. On a file system without flock
(Lustre mounted without ``-o flock``) claims degrade to no claims, with a warning: sweeps
still resume correctly, but two sweeps started at once may run a trial twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import socket
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)

CLAIMS_DIR = "claims"
PLAN_LOCK = ".sweep.lock"
_UNSUPPORTED = (errno.EOPNOTSUPP, errno.ENOLCK, errno.ENOSYS, errno.EINVAL)


@contextlib.contextmanager
def plan_locked(results_dir: str | os.PathLike[str]) -> Iterator[None]:
    """Hold the results folder's plan lock (blocking) for a read-modify-write of the plan."""
    folder = Path(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / PLAN_LOCK, "a+b") as handle:  # closing it releases the lock
        _flock(handle.fileno(), blocking=True)
        yield


class Claims:
    """The trials this process works on; a trial claimed elsewhere is left to its holder."""

    def __init__(self, results_dir: str | os.PathLike[str]) -> None:
        self.folder = Path(results_dir) / CLAIMS_DIR
        self.held: dict[str, int] = {}

    def claim(self, trial_id: str, *, wait: bool = False) -> bool:
        """Claim a trial; False when another live process holds it (and ``wait`` is off)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        path = self.folder / f"{trial_id}.lock"
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _flock(fd, blocking=wait):
                os.close(fd)
                return False
            if _same_file(fd, path):
                break
            # The holder released (unlinked) the file while we waited on it: a lock on the
            # old inode guards nothing, so lock the file that is there now.
            os.close(fd)
        try:
            # For people looking at a stuck sweep: who holds the claim.
            owner = f"{socket.gethostname()} pid {os.getpid()} job {_job_id()}\n"
            os.ftruncate(fd, 0)
            os.pwrite(fd, owner.encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self.held[trial_id] = fd
        return True

    def release(self, trial_id: str) -> None:
        """Give a trial up (its shard is written, or it was skipped); remove its claim file."""
        fd = self.held.pop(trial_id, None)
        if fd is None:
            return
        # Unlink before unlocking: a worker that opened the old file re-checks the shard
        # after locking, and one that opens afresh creates a new file; neither reruns it.
        with contextlib.suppress(FileNotFoundError):
            (self.folder / f"{trial_id}.lock").unlink()
        os.close(fd)

    def release_all(self) -> None:
        """Release every claim this process holds."""
        for trial_id in list(self.held):
            self.release(trial_id)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.fstat(fd).st_ino == os.stat(path).st_ino
    except FileNotFoundError:
        return False


def _flock(fd: int, *, blocking: bool) -> bool:
    """Lock ``fd``; True when locked (or locks are unsupported), False when held elsewhere."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if blocking else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
        log.warning("file locks unsupported here (%s): concurrent sweeps are not guarded", exc)
    return True


def _job_id() -> str:
    array = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array:
        return f"{array}_{os.environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return os.environ.get("SLURM_JOB_ID", "-")
