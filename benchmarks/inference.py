"""Inference speed of every network by evaluation batch size (fast profile, 32 x 32 crops).

Prints, per network, the best-of-3 seconds to predict 2,048 crops of 14 layers with
``oremap.train.predict_proba`` at each batch size, the speed-up of oremap's ``EVAL_BATCH``
over the plain 256 measured in the same run, and the largest difference in probability
(the results must be identical). Then oremap's inference module (``inference_model``:
BatchNorm folded into the convolutions, ``channels_last`` where faster) against the plain
module as trained, with the largest difference in probability (float32 round-off).

Usage::

    .venv/bin/python benchmarks/inference.py [--batches 32 64 128 256] [--crops 2048]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from oremap.models import create
from oremap.train import EVAL_BATCH, predict_proba

MODELS = ("lenet", "alexnet", "vgg16", "vgg8", "resnet50", "mobilenet_v2", "vit")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, nargs="+", default=[32, 64, 128, 256])
    ap.add_argument("--crops", type=int, default=2048)
    ap.add_argument("--channels", type=int, default=14)
    args = ap.parse_args()
    batches = sorted(set(args.batches) | {EVAL_BATCH, 256})
    x = np.random.default_rng(0).normal(size=(args.crops, args.channels, 32, 32)).astype(
        np.float32)
    total = dict.fromkeys(batches, 0.0)
    print(f"{'network':<14}" + "".join(f"{'bs ' + str(b):>10}" for b in batches)
          + f"{'x vs 256':>10}{'max|dp|':>10}")
    for name in MODELS:
        torch.manual_seed(0)
        model = create(name, in_channels=args.channels, num_classes=2, input_size=32,
                       profile="fast").eval()
        best, probs = {}, {}
        for b in batches:
            predict_proba(model, x[:256], batch_size=b)  # warm-up
            times = []
            for _ in range(3):
                t0 = time.perf_counter()
                probs[b] = predict_proba(model, x, batch_size=b)
                times.append(time.perf_counter() - t0)
            best[b] = min(times)
            total[b] += best[b]
        diff = max(float(np.abs(probs[b] - probs[256]).max()) for b in batches)
        print(f"{name:<14}" + "".join(f"{best[b]:>10.3f}" for b in batches)
              + f"{best[256] / best[EVAL_BATCH]:>10.2f}{diff:>10.1e}")
    print(f"{'all seven':<14}" + "".join(f"{total[b]:>10.3f}" for b in batches)
          + f"{total[256] / total[EVAL_BATCH]:>10.2f}")
    print(f"EVAL_BATCH = {EVAL_BATCH}")
    print()
    print(f"oremap's inference module (BatchNorm folded, channels_last where faster) against "
          f"the plain module, both at batch {EVAL_BATCH}:")
    print(f"{'network':<14}{'plain s':>10}{'oremap s':>10}{'speed-up':>10}{'max|dp|':>10}")
    sums = [0.0, 0.0]
    for name in MODELS:
        torch.manual_seed(0)
        model = create(name, in_channels=args.channels, num_classes=2, input_size=32,
                       profile="fast").eval()
        plain_proba(model, x[:256])
        predict_proba(model, x[:256])  # warm-up (builds the inference module)
        t_plain, p_plain = _best(lambda m=model: plain_proba(m, x))
        t_ours, p_ours = _best(lambda m=model: predict_proba(m, x))
        sums[0] += t_plain
        sums[1] += t_ours
        print(f"{name:<14}{t_plain:>10.3f}{t_ours:>10.3f}{t_plain / t_ours:>10.2f}"
              f"{float(np.abs(p_plain - p_ours).max()):>10.1e}")
    print(f"{'all seven':<14}{sums[0]:>10.3f}{sums[1]:>10.3f}{sums[0] / sums[1]:>10.2f}")


def plain_proba(model: torch.nn.Module, x: np.ndarray, batch_size: int = EVAL_BATCH
                ) -> np.ndarray:
    """The anchor: the module as trained, eager, contiguous input, no folding."""
    out = []
    with torch.no_grad():
        for s in range(0, len(x), batch_size):
            out.append(torch.softmax(model(torch.from_numpy(x[s:s + batch_size])), 1)[:, 1])
    return torch.cat(out).numpy()


def _best(fn, repeats: int = 3):
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


if __name__ == "__main__":
    main()
