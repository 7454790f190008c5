"""GPU check: the ``paper`` profile of all seven networks on the demo's crops, mixed precision.

For a machine with a CUDA GPU (CPU stays the reference: every test runs on CPU). Builds the
quick demo's sample set in a temporary folder, then trains each network with the ``paper``
profile for ``--epochs`` epochs on the demo's training crops, with automatic mixed precision
(``[train] amp``: float16 autocast and a gradient scaler) and without, and prints per network
the training crops per second of both, the ratio, and the held-out loss of the last epoch of
both (mixed precision must not change the result beyond noise). ``--device cpu`` runs the same
on the CPU (amp is then off in both runs: a smoke test of the script).

Usage::

    .venv/bin/python benchmarks/gpu.py [--epochs 3] [--batch 64] [--device cuda]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from pathlib import Path

import torch

from oremap.demo import DEMO_MODELS


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--models", nargs="+", default=DEMO_MODELS)
    ap.add_argument("--profile", default="paper", choices=["paper", "fast"])
    args = ap.parse_args()
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("no CUDA device here: run on a GPU machine, or pass --device cpu")
    logging.disable(logging.WARNING)

    from oremap import pipeline
    from oremap.config import load_config
    from oremap.demo import example_config_text, write_demo
    from oremap.members import _fold_arrays
    from oremap.runinfo import RunDir
    from oremap.samples import load_sample_set
    from oremap.train import TrainSettings, train_model

    work = Path(tempfile.mkdtemp(prefix="oremap-gpu-"))
    try:
        write_demo(work / "data", seed=0)
        (work / "demo.toml").write_text(example_config_text("data", quick=True, seed=0))
        config = load_config(work / "demo.toml")
        run = work / "run"
        RunDir(run).start(config)
        pipeline.run_evidence(config, run, progress=False)
        pipeline.run_samples(config, run, progress=False)
        ss = load_sample_set(run / "samples")
        x_tr, y_tr, x_te, y_te, _, monitor = _fold_arrays(ss, 0)
        device = torch.device(args.device)
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
        print(f"{name}; {len(y_tr)} training crops of {x_tr.shape[1]} x {x_tr.shape[2]} x "
              f"{x_tr.shape[3]}, {len(y_te)} {monitor} crops; profile {args.profile}, batch "
              f"{args.batch}, {args.epochs} epochs")
        print(f"{'network':<14}{'fp32 crops/s':>14}{'amp crops/s':>13}{'x fp32':>8}"
              f"{'fp32 loss':>11}{'amp loss':>10}")
        for model in args.models:
            rates, losses = {}, {}
            for amp in (False, True):
                settings = TrainSettings(epochs=args.epochs, batch_size=args.batch,
                                         profile=args.profile, device=args.device,
                                         amp=amp and device.type == "cuda", workers=0)
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                res = train_model(model, x_tr, y_tr, x_te, y_te, out_dir=work / f"amp{amp}",
                                  settings=settings, seed=0, progress=False, monitor=monitor)
                seconds = time.perf_counter() - t0
                later = res.history["samples_per_s"].iloc[1:]  # the first epoch warms up
                rates[amp] = float(later.median()) if len(later) else len(y_tr) / seconds
                held_out = "val_loss" if monitor == "validation" else "test_loss"
                losses[amp] = float(res.history[held_out].iloc[-1])
            print(f"{model:<14}{rates[False]:>14.0f}{rates[True]:>13.0f}"
                  f"{rates[True] / rates[False]:>8.2f}{losses[False]:>11.4f}"
                  f"{losses[True]:>10.4f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
