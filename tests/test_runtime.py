"""The process helpers both engines share: a quiet TensorFlow start."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mnistfc.engine.runtime import filter_tf_lines

ROOT = Path(__file__).resolve().parents[1]
# What TensorFlow 2.21's CUDA build printed on this repository's CPU machines at start-up.
STARTUP = [
    "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
    "I0000 00:00:1796149822.790712    7103 port.cc:153] oneDNN custom operations are on.",
    "I0000 00:00:1796149822.790970    7103 cudart_stub.cc:31] Could not find cuda drivers on "
    "your machine, GPU will not be used.",
    "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild "
    "TensorFlow with the appropriate compiler flags.",
    "E0000 00:00:1796149828.978698    7103 cuda_platform.cc:52] failed call to cuInit: "
    "INTERNAL: CUDA error: Failed call to cuInit: UNKNOWN ERROR (303)",
    "/opt/venv/lib/python3.11/site-packages/x.py:3: UserWarning: a real Python warning",
]


def test_startup_chatter_is_dropped_and_real_problems_kept() -> None:
    assert filter_tf_lines(STARTUP, gpu_expected=False) == [STARTUP[-1]]
    # On a machine with a GPU driver a failed cuInit is the problem to report.
    assert filter_tf_lines(STARTUP, gpu_expected=True) == STARTUP[-2:]


def _start_tensorflow(**env: str) -> str:
    code = "from mnistfc.engine.runtime import load_tensorflow; load_tensorflow(); print('ok')"
    run = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
        check=True,
    )
    assert run.stdout.strip() == "ok"
    return run.stderr


def test_a_new_process_starts_tensorflow_without_a_word_and_verbose_shows_it() -> None:
    quiet = _start_tensorflow()
    assert "absl::InitializeLog" not in quiet and "I0000" not in quiet, quiet
    if not os.path.exists("/dev/nvidiactl"):
        assert "cuInit" not in quiet
    loud = _start_tensorflow(MNISTFC_TF_LOGS="1", TF_CPP_MIN_LOG_LEVEL="0")
    assert "absl::InitializeLog" in loud or "I0000" in loud, loud


def test_a_gpu_is_expected_where_the_scheduler_or_the_user_says_so(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mnistfc.engine import runtime

    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)  # no driver tool here
    monkeypatch.delenv("MNISTFC_REQUIRE_GPU", raising=False)
    for visible in ("", "-1", "NoDevFiles"):
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        assert runtime.gpu_expected() == ""
    # in a container the driver is invisible, but SLURM's allocation still gets in
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    assert runtime.gpu_expected() == "CUDA_VISIBLE_DEVICES=0: the scheduler gave this job GPUs"
    monkeypatch.setenv("MNISTFC_REQUIRE_GPU", "1")
    assert runtime.gpu_expected() == "MNISTFC_REQUIRE_GPU=1"
