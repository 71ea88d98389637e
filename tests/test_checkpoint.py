"""Training survives SIGKILL: per-epoch atomic checkpoints and resume to the same model."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import fast_params
from skorch.callbacks import Callback

from slicelearn import SliceCNNRegressor
from slicelearn.callbacks import TrainingCheckpoint

SCRIPT = Path(__file__).resolve().parent / "checkpoint_fit.py"


def _run(checkpoint: Path, out: Path, pause: float = 0.0) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SCRIPT.parents[1])}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(checkpoint), str(out), str(pause)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )


def _finish(process: subprocess.Popen) -> None:
    output, _ = process.communicate(timeout=180)
    assert process.returncode == 0, output.decode()[-3000:]


def _epochs_in(checkpoint: Path) -> int:
    try:
        return int(torch.load(checkpoint, weights_only=True)["epochs"])
    except FileNotFoundError:
        return 0


def test_killed_run_resumes_to_the_uninterrupted_model(tmp_path):
    reference = tmp_path / "reference.json"
    _finish(_run(tmp_path / "reference.ckpt", reference))

    checkpoint, out = tmp_path / "run.ckpt", tmp_path / "run.json"
    victim = _run(checkpoint, out, pause=0.4)
    try:
        deadline = time.monotonic() + 120
        while _epochs_in(checkpoint) < 4:
            assert victim.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.05)
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()
    assert victim.returncode == -signal.SIGKILL
    assert not out.exists()
    killed_at = _epochs_in(checkpoint)
    assert 4 <= killed_at < 10

    _finish(_run(checkpoint, out))
    resumed, expected = json.loads(out.read_text()), json.loads(reference.read_text())
    assert resumed["epochs_here"] == 10 - killed_at  # only the missing epochs ran
    assert resumed["history_epochs"] == list(range(1, 11))
    np.testing.assert_allclose(resumed["valid_loss"], expected["valid_loss"], rtol=1e-5)
    np.testing.assert_allclose(resumed["prediction"], expected["prediction"], rtol=1e-5)
    assert not checkpoint.exists()  # removed once training ended normally


def test_checkpoints_of_other_runs_and_damaged_files_are_refused(tmp_path, small_volumes):
    X, y = small_volumes
    path = tmp_path / "age.ckpt"

    class Interrupt(Exception):
        pass

    class StopAfterTwo(Callback):
        def on_epoch_end(self, net, **kwargs):
            if len(net.history) == 2:
                raise Interrupt

    params = fast_params(max_epochs=4, train_split=None)
    interrupted = SliceCNNRegressor(
        **{**params, "callbacks": [TrainingCheckpoint(path), StopAfterTwo()]}
    )
    with pytest.raises(Interrupt):
        interrupted.fit(X, y)
    assert path.exists()

    other = SliceCNNRegressor(**{**params, "lr": 0.5, "callbacks": [TrainingCheckpoint(path)]})
    with pytest.raises(ValueError, match="written for other parameters or training data"):
        other.fit(X, y)
    with pytest.raises(ValueError, match="written for other parameters or training data"):
        SliceCNNRegressor(**{**params, "callbacks": [TrainingCheckpoint(path)]}).fit(X, y + 1)

    path.write_bytes(b"truncated")
    with pytest.raises(ValueError, match=f"Checkpoint {path} cannot be read"):
        SliceCNNRegressor(**{**params, "callbacks": [TrainingCheckpoint(path)]}).fit(X, y)


def test_resume_false_starts_over(tmp_path, small_volumes):
    X, y = small_volumes
    path = tmp_path / "age.ckpt"
    path.write_bytes(b"an old file")
    params = fast_params(max_epochs=2, train_split=None)
    est = SliceCNNRegressor(**{**params, "callbacks": [TrainingCheckpoint(path, resume=False)]})
    assert len(est.fit(X, y).history) == 2
    assert not path.exists()
