"""Training speed of the oremap networks on this machine, against its matmul peak.

For every model and profile at ``C x 32 x 32`` inputs (C = 14 by default, as in He et al.
2024) it prints: parameters, forward FLOPs per patch (``torch.utils.flop_counter``), training
patches per second at batch 16 (Adam, cross-entropy; warm-up steps, then timed steps) of the
plain PyTorch loop and of oremap's (``channels_last``, fused Adam), the ratio of the two
measured in the same run, achieved GFLOP/s (training ~ 3 x forward FLOPs) and that as a
fraction of the peak of a large float32 matmul measured in the same run. ``--epoch-crops N``
also times real :func:`oremap.train.train_model` epochs over N random patches (fast
profile).

    python benchmarks/train.py --quick
    python benchmarks/train.py --models lenet vit --profiles fast
"""

from __future__ import annotations

import argparse
import logging
import math
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from oremap.limits import available_cores
from oremap.models import create, list_models
from oremap.train import CHANNELS_LAST_CLASSES, TrainSettings, train_model, train_models


def matmul_peak_gflops(n: int = 2048, trials: int = 5) -> float:
    """Best GFLOP/s over ``trials`` timed ``(n, n) @ (n, n)`` float32 products (2 n^3 FLOPs).

    The best, not the mean: on a shared machine the slow trials measure the neighbours.
    """
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = math.inf
    for _ in range(trials):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def forward_flops(model: torch.nn.Module, channels: int, size: int) -> int:
    """Forward FLOPs for one patch, counted in eval mode."""
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, channels, size, size))
    return int(counter.get_total_flops())


def train_rate(model: torch.nn.Module, channels: int, size: int, batch: int, warmup: int,
               steps: int, budget_s: float, *, recipe: str = "oremap") -> float:
    """Training patches per second (forward, backward, Adam step) from the median step time
    of at most ``steps`` steps or ``budget_s`` seconds (the median resists the spikes that
    other users of a shared machine cause).

    ``recipe``: ``"plain"``, the textbook loop (contiguous tensors, ``torch.optim.Adam`` with
    its default per-parameter loop on CPU); ``"oremap"``, what :func:`train_model` does
    (``channels_last`` for the networks of ``CHANNELS_LAST_CLASSES``, the fused Adam step).
    """
    model.train()
    oremap = recipe == "oremap"
    fmt = (torch.channels_last if oremap and type(model).__name__ in CHANNELS_LAST_CLASSES
           else torch.contiguous_format)
    model = model.to(memory_format=fmt)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, fused=True if oremap else None)
    x = torch.randn(batch, channels, size, size).contiguous(memory_format=fmt)
    y = torch.arange(batch) % 2

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(warmup):
        step()
    times: list[float] = []
    while len(times) < steps and sum(times) < budget_s:
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def epoch_seconds(name: str, crops: int, channels: int, size: int,
                  epochs: int) -> tuple[float, float]:
    """Seconds of the first epoch and median seconds of the later epochs of
    :func:`train_model` (fast profile, batch 16, a fifth of the crops as test set)."""
    X, y = _random_crops(crops, channels, size)
    n_test = crops // 5
    settings = TrainSettings(epochs=epochs, profile="fast", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        result = train_model(name, X[n_test:], y[n_test:], X[:n_test], y[:n_test],
                             out_dir=Path(tmp), settings=settings, seed=0, progress=False)
    seconds = result.history["seconds"]
    return float(seconds.iloc[0]), float(seconds.iloc[1:].median())


def side_by_side_seconds(names: list[str], crops: int, channels: int, size: int, epochs: int,
                         jobs: int) -> float:
    """Wall seconds of :func:`train_models` of ``names`` (fast profile) with ``jobs``: 1 is
    one network after the other in this process, more is that many spawned processes
    (their start included)."""
    X, y = _random_crops(crops, channels, size)
    n_test = crops // 5
    settings = TrainSettings(epochs=epochs, profile="fast", device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        train_models(names, X[n_test:], y[n_test:], X[:n_test], y[:n_test], out_dir=Path(tmp),
                     settings=settings, seed=0, progress=False, jobs=jobs)
        return time.perf_counter() - t0


def _random_crops(crops: int, channels: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(crops, channels, size, size)).astype(np.float32)
    return X, (rng.random(crops) < 0.2).astype(np.int64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps: a smoke test")
    parser.add_argument("--models", nargs="+", default=list_models(), choices=list_models())
    parser.add_argument("--profiles", nargs="+", default=["fast", "paper"],
                        choices=["fast", "paper"])
    parser.add_argument("--channels", type=int, default=14)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--epoch-crops", type=int, default=0,
                        help="also time train_model epochs over this many crops (fast)")
    parser.add_argument("--side-by-side", type=int, default=0, metavar="CROPS",
                        help="also time all the models trained over this many crops (fast, "
                             "2 epochs) one after the other here and side by side in one "
                             "process per core (train_models jobs)")
    args = parser.parse_args()
    logging.disable(logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)
    warmup, steps, budget = (2, 5, 3.0) if args.quick else (3, 20, 15.0)

    peak = matmul_peak_gflops(trials=3 if args.quick else 10)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"float32 matmul 2048^3 peak: {peak:.1f} GFLOP/s")
    print(f"inputs {args.channels} x {args.size} x {args.size}, batch {args.batch}, "
          f"median of <= {steps} timed steps (<= {budget:.0f} s) after {warmup} warm-up")
    header = (f"{'model':<13}{'profile':<8}{'params':>12}{'fwd MFLOP':>11}{'plain/s':>9}"
              f"{'train/s':>9}{'x plain':>9}{'s/2500':>8}{'GFLOP/s':>9}{'of peak':>9}")
    print(header)
    print("-" * len(header))
    sums = {"plain": 0.0, "oremap": 0.0}
    for profile in args.profiles:
        for name in args.models:
            rates = {}
            for recipe in ("plain", "oremap"):
                torch.manual_seed(0)
                model = create(name, in_channels=args.channels, input_size=args.size,
                               profile=profile)
                rates[recipe] = train_rate(model, args.channels, args.size, args.batch,
                                           warmup, steps, budget, recipe=recipe)
                sums[recipe] += 2500 / rates[recipe]
            params = sum(p.numel() for p in model.parameters())
            flops = forward_flops(model, args.channels, args.size)
            rate = rates["oremap"]
            achieved = 3 * flops * rate / 1e9
            print(f"{name:<13}{profile:<8}{params:>12,}{flops / 1e6:>11.1f}"
                  f"{rates['plain']:>9.0f}{rate:>9.0f}{rate / rates['plain']:>9.2f}"
                  f"{2500 / rate:>8.1f}{achieved:>9.2f}{achieved / peak:>9.1%}")
    print(f"{'all':<21}{'':>23}{sums['plain']:>9.1f}"
          f"{sums['oremap']:>9.1f}{sums['plain'] / sums['oremap']:>9.2f}   "
          "(seconds per 2,500 crops, every row)")
    if args.epoch_crops:
        print(f"\ntrain_model, fast profile, {args.epoch_crops} crops "
              f"({args.epoch_crops - args.epoch_crops // 5} train + "
              f"{args.epoch_crops // 5} test), seconds per epoch (first, median of later):")
        totals = [0.0, 0.0]
        for name in args.models:
            first, later = epoch_seconds(name, args.epoch_crops, args.channels, args.size,
                                         epochs=2 if args.quick else 4)
            totals = [totals[0] + first, totals[1] + later]
            print(f"  {name:<13}{first:6.1f} s {later:6.1f} s")
        print(f"  {'all':<13}{totals[0]:6.1f} s {totals[1]:6.1f} s")

    if args.side_by_side:
        jobs = max(2, available_cores())
        here = side_by_side_seconds(args.models, args.side_by_side, args.channels, args.size,
                                    2, jobs=1)
        apart = side_by_side_seconds(args.models, args.side_by_side, args.channels, args.size,
                                     2, jobs=jobs)
        print(f"\n{len(args.models)} networks, 2 epochs of {args.side_by_side} crops each: "
              f"one after the other in this process {here:.1f} s; side by side in {jobs} "
              f"processes of {max(1, available_cores() // jobs)} thread(s) {apart:.1f} s "
              f"(x{here / apart:.2f}, process start included)")


if __name__ == "__main__":
    main()
