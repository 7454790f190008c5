"""Scale-out on Dask distributed: 1 worker against 2 workers on this machine, same results.

Measures, in one run on the quick demo:

1. the training stage (every (fold, member) one task) on a ``LocalCluster`` of 1 worker and
   of 2 workers (1 thread each), and the plain local run (this process, torch on every core)
   as the baseline;
2. the evidence stage (every layer one task) of the same three ways, with the demo's grid
   refined ``--evidence-scale`` times per side so that each layer is large;

and prints seconds, the speed-up of 2 workers over 1, the mean cost of one task (seconds and
the peak memory of a worker process), whether the outputs equal the local run's, and an
extrapolation to a 32-worker cluster. On 2 cores, run nothing else meanwhile.

Usage::

    .venv/bin/python benchmarks/scale.py [--evidence-scale 2]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import resource
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _config(data: Path, evidence_scale: int) -> Any:
    from oremap.config import config_from_dict
    from oremap.demo import example_config_text

    d = tomllib.loads(example_config_text(str(data), quick=True))
    d["grid"]["pixel_size"] = d["grid"]["pixel_size"] / evidence_scale
    d["grid"]["max_pixels"] = 10**9
    return config_from_dict(d, source="quick demo", base_dir=data)


def _stage(stage: str, config: Any, run: Path, client: Any) -> float:
    from oremap import pipeline

    t0 = time.perf_counter()
    kwargs = {"progress": False}
    if client is not None:
        kwargs["client"] = client
    pipeline.STAGE_FUNCTIONS[stage](config, run, **kwargs)
    return time.perf_counter() - t0


def _warm_up() -> None:
    import oremap.evidence  # noqa: F401
    import oremap.members  # noqa: F401
    import oremap.train  # noqa: F401


def _weights_diff(run: Path, reference: Path) -> str:
    """Largest difference between the networks' weights (``best.pt``) of two runs."""
    import torch

    worst = 0.0
    for path in sorted((reference / "train").glob("fold*/*/best.pt")):
        a = torch.load(path, weights_only=False)["model"]
        b = torch.load(run / path.relative_to(reference), weights_only=False)["model"]
        for k, t in a.items():
            if t.is_floating_point():
                worst = max(worst, float((t - b[k]).abs().max()))
    return f"max |weight diff| {worst:.1e}"


def _ways(stage: str, config: Any, base: Path, work: Path, outputs: list[str]) -> dict:
    """Seconds of ``stage`` locally, on 1 worker and on 2 workers; outputs compared."""
    import dask
    from distributed import Client, LocalCluster

    from oremap.compute import worker_environ

    results = {}
    for label, workers in (("local", 0), ("1 worker", 1), ("2 workers", 2)):
        run = work / f"{stage}_{workers}"
        if run.exists():
            shutil.rmtree(run)
        shutil.copytree(base, run)
        if workers == 0:
            seconds = _stage(stage, config, run, None)
            peak = float("nan")
        else:
            with dask.config.set({"distributed.nanny.pre-spawn-environ": worker_environ()}), \
                    LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                 host="127.0.0.1", dashboard_address=None,
                                 silence_logs=logging.ERROR) as cluster, \
                    Client(cluster) as client:
                client.run(_warm_up)  # workers up, torch and oremap imported, before timing
                seconds = _stage(stage, config, run, client)
                peak = max(client.run(_peak_mib).values())
        # outputs against the local run's (evidence, bitwise), or the networks' weights
        # against the 1-worker run's (the same thread count per task; the local run trains
        # on every core, and float round-off then takes training elsewhere)
        if not workers:
            same = "reference"
        elif outputs:
            same = "bitwise equal to local: " + str(
                all(_sha(run / o) == _sha(work / f"{stage}_0" / o) for o in outputs))
        elif workers == 1:
            same = "reference for the networks' weights"
        else:
            same = "against 1 worker: " + _weights_diff(run, work / f"{stage}_1")
        results[label] = dict(seconds=seconds, peak_mib=peak, same=same, run=run)
        print(f"  {stage:9s} {label:10s} {seconds:7.1f} s   worker peak RSS "
              f"{peak:6.0f} MiB   {same}", flush=True)
    r1, r2 = results["1 worker"]["seconds"], results["2 workers"]["seconds"]
    print(f"  {stage:9s} speed-up of 2 workers over 1: x{r1 / r2:.2f} (goal >= 1.7 on 2 cores); "
          f"local (1 process, torch/BLAS on every core): {results['local']['seconds']:.1f} s")
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--evidence-scale", type=int, default=2,
                    help="refine the demo grid this many times per side for the evidence "
                    "stage (default 2: 4 x the pixels)")
    args = ap.parse_args()
    warnings.filterwarnings("ignore")
    logging.basicConfig(level=logging.ERROR)
    logging.getLogger("distributed").setLevel(logging.ERROR)
    import pandas as pd

    from oremap import pipeline
    from oremap.demo import write_demo
    from oremap.limits import available_cores

    print(f"{available_cores()} cores available to this process")
    with tempfile.TemporaryDirectory(prefix="oremap_scale_") as tmp:
        work = Path(tmp)
        data = write_demo(work / "data", seed=0).root
        # 1. training: evidence and samples once, locally
        config = _config(data, 1)
        base = work / "train_base"
        pipeline.run(config, base, stages=("evidence", "samples"), progress=False)
        train = _ways("train", config, base, work, [])
        summary = pd.read_csv(train["2 workers"]["run"] / "train" / "summary.csv")
        tasks, mean_s = len(summary), float(summary["seconds"].mean())
        print(f"  train     {tasks} tasks, {mean_s:.1f} s per task on average "
              f"(networks {summary.loc[summary.kind == 'network', 'seconds'].mean():.1f} s, "
              f"baselines {summary.loc[summary.kind == 'baseline', 'seconds'].mean():.1f} s)")
        # 2. evidence: a finer grid, every layer a task
        config = _config(data, args.evidence_scale)
        empty = work / "evidence_base"
        from oremap.runinfo import RunDir

        RunDir(empty).start(config)
        names = [g.name for g in config.geology] + list(config.geochem.elements)
        outputs = [f"evidence/layers/{n}.tif" for n in names]
        ev = _ways("evidence", config, empty, work, outputs)
        rows, cols = config.grid.pixels()
        mpx = rows * cols / 1e6
        per_layer = ev["1 worker"]["seconds"] / len(names)
        windows = config.grid.block
        n_windows = -(-rows // windows) * -(-cols // windows)
        print(f"  evidence  {len(names)} layers of {rows:,} x {cols:,} px ({mpx:.2f} Mpx, "
              f"{n_windows} window(s) of {windows} px each): {per_layer:.2f} s a layer on one "
              f"core ({mpx / per_layer:.2f} Mpx/s, writing included)")
        # 3. extrapolation to 32 workers (1 core each)
        paper_mpx, paper_layers = 11_456 * 24_240 / 1e6, 14
        core_s = paper_layers * paper_mpx / (mpx / per_layer)
        paper_windows = paper_layers * -(-11_456 // 2048) * -(-24_240 // 2048)
        print("\nExtrapolation to a 32-worker cluster (1 core per worker, shared storage):")
        print(f"  paper-scale grid, {paper_layers} layers x {paper_mpx:.1f} Mpx = "
              f"{paper_windows} (layer, window) tasks of 2,048 px: {core_s / 60:.0f} core-min "
              f"at the measured rate, so about {core_s / 32 / 60:.1f} min on 32 workers if "
              "the calling process keeps up writing the GeoTIFFs (about 1.1 GB of float32 "
              "a layer)")
        grid_tasks = 7 * 5 * 3
        print(f"  training grid 7 networks x 5 folds x 3 seeds = {grid_tasks} tasks: at the "
              f"measured {mean_s:.1f} s per task (quick demo) {grid_tasks * mean_s / 32:.0f} s "
              f"of wall time on 32 workers; at paper settings scale by the per-task time")


if __name__ == "__main__":
    main()
