"""Scale-out on Dask distributed (``[compute]``): a real LocalCluster (2 worker processes, one
thread each, loopback only) gives the same evidence (bitwise), training and maps as the local
run; a worker killed during training is replaced and the run completes with the same result;
an error of bad input raised in a task reaches the caller unchanged; without ``[compute]``
nothing of Dask is imported.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from oremap import pipeline
from oremap.config import ComputeConfig, config_from_dict
from oremap.demo import write_demo
from oremap.errors import ConfigError, InputDataError

distributed = pytest.importorskip("distributed")

sys.path.insert(0, str(Path(__file__).parent))
from test_run_integrity import _config_dict  # noqa: E402

COMPARED = ("evidence/layers/Au.tif", "evidence/layers/As.tif",
            "evidence/layers/shear_zones.tif", "predict/predictions.csv",
            "ensemble/ensemble.csv", "evaluate/test_probs.npz",
            "maps/prob_lenet_continuous.tif", "maps/prob_ensemble_continuous.tif",
            "evaluate/importance.csv")


def _config(data: Path) -> dict[str, Any]:
    d = _config_dict(data)
    d["maps"].update(continuous=True, stride=16)  # sliding-window maps: (member, fold) tasks
    d["grid"]["block"] = 128  # several windows per layer: (layer, window) tasks
    return d


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_demo(tmp_path_factory.mktemp("compute") / "data", seed=0).root


@pytest.fixture(scope="module")
def local_run(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: in this process, torch on one thread (as each Dask task)."""
    run = tmp_path_factory.mktemp("local") / "run"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        pipeline.run(config_from_dict(_config(data)), run, progress=False)
    finally:
        torch.set_num_threads(threads)
    return run


def test_scheduler_values_are_checked() -> None:
    assert ComputeConfig().scheduler == "local"
    assert ComputeConfig(scheduler="tcp://10.0.0.5:8786").scheduler == "tcp://10.0.0.5:8786"
    with pytest.raises(ValueError, match="scheduler must be 'local', 'processes' or a Dask"):
        ComputeConfig(scheduler="slurm")
    with pytest.raises(ValueError):
        ComputeConfig(scheduler="processes", workers=0)


def test_without_compute_dask_is_never_imported() -> None:
    code = ("import sys; from oremap import pipeline; from oremap.compute import cluster; "
            "from oremap.config import ComputeConfig\n"
            "with cluster(ComputeConfig()) as c: assert c is None\n"
            "assert 'distributed' not in sys.modules and 'dask' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


def test_workers_do_not_get_dask_malloc_trim_threshold() -> None:
    from oremap.compute import cluster

    before = dict(os.environ)
    with cluster(ComputeConfig(scheduler="processes", workers=1)) as client:
        env = client.run(lambda: dict(os.environ))
        assert dict(os.environ) == before  # the nanny's settings do not leak into ours
    assert dict(os.environ) == before
    (worker_env,) = env.values()
    assert "MALLOC_TRIM_THRESHOLD_" not in worker_env
    assert worker_env.get("OMP_NUM_THREADS") == "1"  # Dask's other settings are kept


def test_unreachable_scheduler_is_a_clean_error() -> None:
    from oremap.compute import cluster

    with pytest.raises(ConfigError, match="cannot start or reach it"):
        with cluster(ComputeConfig(scheduler="tcp://127.0.0.1:9")):
            pass


def test_processes_cluster_gives_the_local_results(data: Path, local_run: Path,
                                                   tmp_path: Path) -> None:
    d = _config(data)
    d["compute"] = {"scheduler": "processes", "workers": 2, "threads_per_worker": 1}
    run = tmp_path / "run"
    pipeline.run(config_from_dict(d), run, progress=False)
    for rel in COMPARED:
        assert _sha(run / rel) == _sha(local_run / rel), rel
    # [compute] is not an input of any stage: the evidence stage's fingerprint is the same
    # (later stages' fingerprints include the checksum of samples/cells.gpkg, whose GeoPackage
    # metadata holds the time it was written)
    a = (run / "evidence" / "stage.json").read_text()
    assert _fingerprint(a) == _fingerprint((local_run / "evidence" / "stage.json").read_text())


def test_local_training_processes_give_the_local_results(data: Path, local_run: Path,
                                                          tmp_path: Path) -> None:
    """[train] jobs = one per core: every (fold, member) in a spawned process on one torch
    thread, the costliest first; the same files as the local run on one thread."""
    from oremap.limits import available_cores

    d = _config(data)
    d["train"]["jobs"] = max(2, available_cores())
    run = tmp_path / "run"
    pipeline.run(config_from_dict(d), run, progress=False)
    for rel in COMPARED:
        assert _sha(run / rel) == _sha(local_run / rel), rel


def _fingerprint(text: str) -> Any:
    import json

    return json.loads(text)["fingerprint"]


def _add(a: int, b: int) -> int:
    return a + b


def _bad_input(path: str) -> None:
    raise InputDataError(f"{path}: column 'Au' is missing; add it or drop Au from [geochem].")


def test_tasks_keep_order_and_a_bad_input_error_arrives_unchanged() -> None:
    from oremap.compute import cluster, run_tasks

    with cluster(ComputeConfig(scheduler="processes", workers=2)) as client:
        assert run_tasks(client, _add, [(1, 2), (3, 4), (5, 6)], keys=["a", "b", "c"],
                         desc="add", progress=False) == [3, 7, 11]
        with pytest.raises(InputDataError, match=r"^assays.csv: column 'Au' is missing; add"):
            run_tasks(client, _bad_input, [("assays.csv",)], keys=["bad"], desc="bad",
                      progress=False)


def test_a_worker_killed_during_training_is_replaced(data: Path, local_run: Path,
                                                     tmp_path: Path) -> None:
    """SIGKILL the worker process running a training task: Dask reruns the task on a new
    worker and the run ends with the same checkpoints' predictions as the local run."""
    from distributed import Client, LocalCluster

    run = tmp_path / "run"
    config = config_from_dict(_config(data))
    pipeline.run(config, run, stages=("evidence", "samples"), progress=False)
    killed: list[int] = []
    environ = dict(os.environ)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None) as cluster, Client(cluster) as client:
        # (Dask's default environment here: only the speed differs, see worker_environ)
        pids = client.run(os.getpid)
        stop = threading.Event()

        def killer() -> None:
            while not stop.is_set() and not killed:
                for addr, keys in client.processing().items():
                    if any("oremap-train" in str(k) for k in keys) and addr in pids:
                        time.sleep(0.3)  # inside the task
                        os.kill(pids[addr], signal.SIGKILL)
                        killed.append(pids[addr])
                        return
                time.sleep(0.05)

        thread = threading.Thread(target=killer, daemon=True)
        thread.start()
        try:
            pipeline.run_train(config, run, progress=False, client=client)
        finally:
            stop.set()
            thread.join(timeout=10)
    from oremap.compute import _restore

    _restore(environ)  # the nanny's OMP_NUM_THREADS=1 must not reach later tests' processes
    assert killed, "no training task was seen running"
    pipeline.run(config, run, progress=False)  # the later stages, locally
    for rel in ("predict/predictions.csv", "ensemble/ensemble.csv"):
        assert _sha(run / rel) == _sha(local_run / rel), rel
