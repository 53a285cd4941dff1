"""What both training engines need from the process they run in: a quiet TensorFlow, GPU
and thread settings, and a polite way to be asked to stop.

Neither engine imports the other; both import this. TensorFlow is imported lazily, so the
planner and the CLI can use the stop and hold helpers without paying for it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import signal
import sys
import tempfile
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
# Set by the CLI's --verbose (and inherited by its job processes): show TensorFlow's own logs.
TF_LOGS_ENV = "MNISTFC_TF_LOGS"
# A pack's default save interval (profile ``checkpoint_min``, ``run-chunk --checkpoint-min``):
# what a node failure, which gives no warning, may cost it.
CHECKPOINT_MIN = 10.0
CHECKPOINT_S = 60.0 * CHECKPOINT_MIN
_stop = threading.Event()
_caught: list[int] = []  # the stop signals received inside stop_on_signals
_epochs_ended = [0]
# TensorFlow's C++ start-up lines that say nothing a user can act on: absl's preamble, INFO
# and WARNING records (``I0000``/``W0000``) and the CPU-feature note's second line.
_NOISE = re.compile(
    r"^(WARNING: All log messages before absl::InitializeLog\(\)|[IW]\d{4} |"
    r"To enable the following instructions:)"
)
# Where no GPU is expected, a CUDA build of TensorFlow logs a failed cuInit as an error.
_NO_GPU_NOISE = re.compile(r"^E\d{4} .*(failed call to cuInit|cuda_dnn|cuda_blas|cuda_fft)")


def load_tensorflow() -> Any:
    """Import TensorFlow and initialise its devices, keeping its start-up chatter off stderr.

    TensorFlow's C++ layers write to file descriptor 2 before TF_CPP_MIN_LOG_LEVEL applies,
    and a CUDA build on a machine without GPUs logs ``failed call to cuInit`` as an error,
    which reads like a failure. Those lines are dropped; every other line (Python warnings,
    real errors, a cuInit failure where a GPU is expected) is logged as one warning. With
    ``$MNISTFC_TF_LOGS`` set (the CLI's ``--verbose``) nothing is filtered.
    """
    if "tensorflow" in sys.modules or os.environ.get(TF_LOGS_ENV):
        import tensorflow as tf

        tf.config.list_physical_devices("GPU")
        return tf
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile(mode="w+b") as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow as tf

            tf.config.list_physical_devices("GPU")  # device init: where cuInit is called
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode("utf-8", "replace").splitlines()
    kept = filter_tf_lines(lines, gpu_expected=bool(gpu_expected()))
    if kept:  # through logging: only the CLI and the job entry points decide where it goes
        log.warning("TensorFlow at start-up:\n%s", "\n".join(kept))
    return tf


def filter_tf_lines(lines: list[str], *, gpu_expected: bool) -> list[str]:
    """Return the lines of TensorFlow's start-up output a user should see."""
    return [
        line
        for line in lines
        if line.strip()
        and not _NOISE.match(line)
        and (gpu_expected or not _NO_GPU_NOISE.match(line))
    ]


def process_age_s() -> float | None:
    """Return how long ago this process started (Linux; None elsewhere): a task's clock
    starts after the interpreter and submitit, which a user waits for as well."""
    try:
        started = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started / os.sysconf("SC_CLK_TCK"))


REQUIRE_GPU_ENV = "MNISTFC_REQUIRE_GPU"


def gpu_expected() -> str:
    """Return why this process should see a GPU ("" if nothing says so).

    Inside a container the host's driver is invisible unless the runtime passed it in
    (--nv, --gpus, ch-fromhost), but the scheduler's CUDA_VISIBLE_DEVICES still gets there:
    that is how a task on a GPU node tells that its GPUs were left outside.
    """
    if os.environ.get(REQUIRE_GPU_ENV, "0") not in ("", "0"):
        return f"{REQUIRE_GPU_ENV}={os.environ[REQUIRE_GPU_ENV]}"
    if os.path.exists("/dev/nvidiactl") or shutil.which("nvidia-smi") is not None:
        return "this node has an NVIDIA driver"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
    if visible and visible not in ("-1", "NoDevFiles"):
        return f"CUDA_VISIBLE_DEVICES={visible}: the scheduler gave this job GPUs"
    return ""


def configure_gpus() -> None:
    """Let several trials or processes share a GPU: memory grows on demand.

    Must run before TensorFlow first touches the device; after that it changes nothing.
    """
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    expected = gpu_expected() if not gpus else ""
    if expected:
        log.warning("no GPU visible to TensorFlow although %s: training on the CPU (in a "
                    "container, pass the GPUs in: apptainer --nv, docker --gpus all, "
                    "ch-fromhost --nvidia)", expected)  # fmt: skip
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:
            log.debug("GPU %s already initialised; memory growth unchanged", gpu.name)


XLA_STEP_ENV = "MNISTFC_XLA_STEP"  # "1" / "0": compile each packed step, or not


def xla_step() -> bool:
    """Return whether a packed step runs as one XLA program: where TensorFlow sees a GPU
    (it launches each op of a plain step separately), unless ``$MNISTFC_XLA_STEP`` says."""
    choice = os.environ.get(XLA_STEP_ENV, "")
    if choice in ("0", "1"):
        return choice == "1"
    import tensorflow as tf

    return bool(tf.config.list_physical_devices("GPU"))


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


# What a scheduler sends before it ends a job: SIGTERM (scancel, requeue, a drain; KillWait
# seconds before SIGKILL) and SIGUSR2 (submitit's --signal, before the time limit).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR2)


@contextlib.contextmanager
def stop_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGUSR2 into a stop request that training honours at its next step
    boundary, saving its state first; then pass SIGUSR2 on.

    Saving at the next boundary instead of dying mid-epoch keeps the work done so far,
    whatever KillWait the site sets; packs save by time, not every epoch, so this save is
    what a timed-out or preempted task resumes from. A SIGUSR2 caught here is raised again
    once the block ends, so the handler that was installed (submitit's: checkpoint and
    requeue) still runs, after the save. Outside the main thread (where Python allows no
    handlers) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _stop.clear()
    _caught.clear()
    previous = {sig: signal.signal(sig, _request_stop) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop.clear()
        if signal.SIGUSR2 in _caught:
            _caught.clear()
            signal.raise_signal(signal.SIGUSR2)


def _request_stop(signum: int, _frame: Any) -> None:
    name = signal.Signals(signum).name
    log.warning("%s received: saving at the next step boundary, then stopping", name)
    _caught.append(signum)
    _stop.set()


def stop_requested() -> bool:
    """Return whether this process was asked to stop (see ``stop_on_signals``)."""
    return _stop.is_set()


def hold_point() -> None:
    """Wait while ``$MNISTFC_HOLD_FILE`` exists, unless a stop was requested (a test seam).

    Called at every epoch end, after any save. The file may hold a number N: the hold starts
    at the N-th epoch this process ends (so a test can let a task's first pack finish and
    stop its second half-way); empty means 1.
    """
    _epochs_ended[0] += 1
    path = os.environ.get(HOLD_ENV)
    if not path or not os.path.exists(path):
        return
    try:
        first = int(Path(path).read_text(encoding="utf-8").strip() or 1)
    except (OSError, ValueError):
        first = 1
    if _epochs_ended[0] < first:
        return
    log.info("holding after epoch end %d while %s exists", _epochs_ended[0], path)
    while os.path.exists(path) and not _stop.is_set():
        time.sleep(0.05)


def log_job_to_stderr() -> None:
    """Send mnistfc's log records to stderr in a job process (its log file).

    A job has no CLI to configure logging; its stderr is the job's log, where the "pack
    resumed" and epoch lines belong.
    """
    root = logging.getLogger("mnistfc")
    if not root.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s: %(message)s"))
        root.addHandler(handler)
        root.setLevel(logging.INFO)
