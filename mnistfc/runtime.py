"""What both training engines need from the process they run in: its environment record,
GPU and thread settings, and a polite way to be asked to stop.

Neither engine imports the other; both import this. TensorFlow is imported lazily, so the
planner and the CLI can use the stop and hold helpers without paying for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import platform
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

# Evaluation batch size changes only the float summation order, never the math; a large one
# keeps a pass over all 60,000 training images cheap.
EVAL_BATCH = 2048
# A test seam: while the file this names exists, a pack waits after saving an epoch, so a
# test can kill or signal a task at a known point instead of racing it against a timer.
HOLD_ENV = "MNISTFC_HOLD_FILE"
_SLURM_VARS = ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SLURM_JOB_PARTITION")
_stop = threading.Event()
_epochs_saved = [0]


def environment() -> dict[str, Any]:
    """Describe where a trial ran: host, versions, device, SLURM ids and container image."""
    import keras
    import numpy
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "keras": keras.__version__,
        "numpy": numpy.__version__,
        "device": ", ".join(_gpu_name(g) for g in gpus) if gpus else "cpu",
        "slurm": {v.lower(): os.environ[v] for v in _SLURM_VARS if v in os.environ},
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "container": os.environ.get("APPTAINER_CONTAINER") or os.environ.get("MNISTFC_IMAGE"),
    }


def _gpu_name(device: Any) -> str:
    import tensorflow as tf

    details = tf.config.experimental.get_device_details(device)
    return str(details.get("device_name", device.name))


def configure_gpus() -> None:
    """Let several trials or processes share a GPU: memory grows on demand.

    Must run before TensorFlow first touches the device; after that it changes nothing.
    """
    import tensorflow as tf

    for gpu in tf.config.list_physical_devices("GPU"):
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            log.debug("GPU %s already initialised; memory growth unchanged", gpu.name)


def limit_threads(threads: int) -> None:
    """Give this process ``threads`` cores: lanes sharing a machine must not oversubscribe it.

    One op at a time, ``threads`` inside it; must run before TensorFlow's first op.
    """
    if threads < 1:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        log.debug("TensorFlow already initialised; thread settings unchanged")


@contextlib.contextmanager
def stop_on_sigterm() -> Iterator[None]:
    """Turn SIGTERM into a stop request that training honours at its next step boundary.

    SIGTERM is what ``scontrol requeue``, ``scancel`` and a node drain send, KillWait seconds
    before SIGKILL. Saving at the next boundary instead of dying mid-epoch keeps the work
    done so far, whatever KillWait the site sets. Outside the main thread (where Python
    allows no handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop.clear()
    previous = signal.signal(signal.SIGTERM, _request_stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        _stop.clear()


def _request_stop(signum: int, _frame: Any) -> None:
    log.warning("SIGTERM received: saving at the next step boundary, then stopping")
    _stop.set()


def stop_requested() -> bool:
    """Return whether this process was asked to stop (see ``stop_on_sigterm``)."""
    return _stop.is_set()


def hold_point() -> None:
    """Wait while ``$MNISTFC_HOLD_FILE`` exists, unless a stop was requested (a test seam).

    The file may hold a number N: the hold starts at the N-th epoch this process saves (so a
    test can let a task's first pack finish and stop its second half-way); empty means 1.
    """
    _epochs_saved[0] += 1
    path = os.environ.get(HOLD_ENV)
    if not path or not os.path.exists(path):
        return
    try:
        first = int(Path(path).read_text(encoding="utf-8").strip() or 1)
    except (OSError, ValueError):
        first = 1
    if _epochs_saved[0] < first:
        return
    log.info("holding after saved epoch %d while %s exists", _epochs_saved[0], path)
    while os.path.exists(path) and not _stop.is_set():
        time.sleep(0.05)
