"""Scaling out on existing engines: DDP under torchrun, GridSearchCV on a Dask cluster.

Both tests run on the CPU over loopback and leave no process behind.
"""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import fast_params, write_scans

HERE = Path(__file__).resolve().parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _torchrun(n_processes: int, out: Path, *args: str) -> dict:
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc_per_node={n_processes}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        str(HERE / "ddp_fit.py"),
        str(out),
        *args,
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(HERE.parent)}
    # Its own session: on failure or timeout the launcher and every worker go.
    launcher = subprocess.Popen(
        command, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        output, _ = launcher.communicate(timeout=240)
    finally:
        try:
            os.killpg(launcher.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        launcher.wait()
    assert launcher.returncode == 0, output.decode()[-4000:]
    return {**json.loads(out.read_text()), "output": output.decode()}


def _no_process_left_in_session(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("pooling, position", [("mean", "none"), ("attention", "learned")])
def test_two_process_ddp_follows_the_one_process_trajectory(tmp_path, pooling, position):
    one = _torchrun(1, tmp_path / "one.json", pooling, position)
    two = _torchrun(2, tmp_path / "two.json", pooling, position)
    assert one["world_size"] == 1 and two["world_size"] == 2
    # 32 volumes in global batches of 8: four steps per epoch in both runs.
    assert one["batches"] == [4] * 4 and two["batches"] == [4] * 4
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(two["prediction"], one["prediction"], rtol=1e-4, atol=1e-4)
    # Training moved the model: equal trajectories are not equal constants.
    assert one["train_loss"][-1] < one["train_loss"][0]
    # One epoch table for the run, printed by rank 0, not one per process.
    assert two["output"].count("train_loss") == 1


def test_frozen_encoder_features_are_shared_out_between_processes(tmp_path):
    one = _torchrun(1, tmp_path / "one.json", "mean", "sinusoidal", "frozen")
    two = _torchrun(2, tmp_path / "two.json", "mean", "sinusoidal", "frozen")
    assert one["encoded_per_process"] == [32]
    assert two["encoded_per_process"] == [16, 16]  # each encodes its half, once
    np.testing.assert_allclose(two["train_loss"], one["train_loss"], rtol=1e-4)
    np.testing.assert_allclose(two["prediction"], one["prediction"], rtol=1e-4, atol=1e-4)


def test_grid_search_on_a_local_dask_cluster_matches_one_process(tmp_path):
    distributed = pytest.importorskip("distributed")
    import joblib
    import psutil
    from sklearn.model_selection import GridSearchCV, KFold

    from slicelearn import SliceCNNRegressor

    paths = write_scans(tmp_path, n=8, shape=(10, 12, 9))  # data travels as paths
    ages = np.linspace(20, 80, 8)
    grid = {"pooling": ["mean", "max"], "position_embedding": [None, "sinusoidal"]}

    def search():
        estimator = SliceCNNRegressor(**fast_params(train_split=None, device="cpu"))
        return GridSearchCV(
            estimator, grid, cv=KFold(2), scoring="neg_mean_absolute_error", n_jobs=-1
        )

    local = search().set_params(n_jobs=1).fit(paths, ages)
    before = {child.pid for child in psutil.Process().children(recursive=True)}
    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        env={"OMP_NUM_THREADS": "1"},
    )
    client = distributed.Client(cluster)
    try:
        with joblib.parallel_backend("dask"):
            remote = search().fit(paths, ages)
        workers = client.run(os.getpid)
        assert len(workers) == 2 and os.getpid() not in workers.values()
    finally:
        client.close()
        cluster.close()
        # multiprocessing's resource tracker, started for the workers, would
        # otherwise live as long as this test process.
        from multiprocessing import resource_tracker

        tracker = resource_tracker._resource_tracker
        if tracker._pid is not None and tracker._pid not in before:
            if hasattr(tracker, "_stop"):
                tracker._stop()
            else:  # Python without the private stop: it goes with this process
                before.add(tracker._pid)
    assert remote.best_params_ == local.best_params_
    np.testing.assert_allclose(
        remote.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"], rtol=1e-5
    )
    after = {
        child.pid
        for child in psutil.Process().children(recursive=True)
        if child.is_running() and child.status() != psutil.STATUS_ZOMBIE
    }
    assert not after - before, f"processes left running: {after - before}"
