"""Linear probe of pretrained trunks: do self-supervised features carry the deposits?

For a finished run folder (its ``samples/`` stage: crops, folds, normalisation), pretrains each
network's trunk with each method (:func:`oremap.train.pretrain_model`, on the centred crop of
every usable cell, no labels), then, per test fold, fits an L2 logistic regression on the
frozen feature vectors (the input of the output layer) of the fold's training cells and
scores its test cells. The baseline is the same probe on the features of the randomly
initialised trunk (the weights the fine-tuning starts from without pretraining), measured in
the same run; the reference is the probe on the cells' mean evidence values. Prints the mean
held-out ROC AUC over folds of each.

If a pretrained trunk's probe does not beat the random trunk's, fine-tuning from it cannot be
expected to either: the features do not carry what separates ore from barren.

Usage::

    .venv/bin/python benchmarks/pretrain_probe.py --run runs/validity/lapland/run \\
        --models lenet,vgg8 --methods masked,contrastive --epochs 10 --lr 1e-4
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from oremap.evaluate.metrics import roc_auc
from oremap.models import create
from oremap.samples import load_sample_set
from oremap.train import TrainSettings
from oremap.train.checkpoints import _load_trunk
from oremap.train.pretrain import (
    area_scaling,
    find_head,
    load_pretrained,
    pretrain_model,
    pretraining_indices,
)


def probe(features: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray) -> float:
    """Held-out ROC AUC of an L2 logistic regression (C = 0.1, balanced) on standardised
    ``features`` fitted on the ``train`` rows and scored on the ``test`` rows."""
    scaler = StandardScaler().fit(features[train])
    clf = LogisticRegression(C=0.1, class_weight="balanced", max_iter=5000)
    clf.fit(scaler.transform(features[train]), y[train])
    return roc_auc(y[test], clf.predict_proba(scaler.transform(features[test]))[:, 1])


def trunk_features(name: str, ss, fold: int, rows: np.ndarray, *, seed: int,
                   pretrained: Path | None) -> np.ndarray:
    """Feature vectors of crops ``rows`` (normalised as fold ``fold``) by the trunk built under
    ``seed``, with the pretrained weights when given."""
    torch.manual_seed(seed)
    model = create(name, in_channels=ss.X.shape[1], num_classes=2, input_size=ss.X.shape[2],
                   profile="fast")
    head = find_head(model, ss.X.shape[1], ss.X.shape[2])
    if pretrained is not None:
        state = load_pretrained(pretrained)
        _load_trunk(model, state["trunk"], state["head"])
    model.eval()
    out: list[torch.Tensor] = []
    model.get_submodule(head).register_forward_pre_hook(lambda _, i: out.append(i[0]))
    with torch.no_grad():
        model(torch.from_numpy(ss.normalised(rows, fold)))
    return out[0].numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="run folder with samples/")
    ap.add_argument("--models", default="lenet,vgg8")
    ap.add_argument("--methods", default="masked,contrastive")
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    ss = load_sample_set(args.run / "samples")
    labelled = np.flatnonzero(ss.centre & (ss.y >= 0))
    y = ss.y[labelled]
    folds = [(k, np.isin(labelled, ss.fit_indices(k)), np.isin(labelled, ss.test_indices(k)))
             for k in range(ss.n_folds)]
    folds = [(k, tr, te) for k, tr, te in folds if len(set(y[te].tolist())) == 2]
    means = np.nanmean(ss.X[labelled], axis=(2, 3))
    reference = np.mean([probe(means, y, tr, te) for _, tr, te in folds])
    print(f"{len(labelled)} labelled cells ({int(y.sum())} ore), {len(folds)} folds; "
          f"probe on the cells' mean evidence: {reference:.3f}")
    center, scale = area_scaling(ss.norm_center, ss.norm_scale)
    settings = TrainSettings(batch_size=64, lr=args.lr, lr_min=args.lr / 10, profile="fast",
                             workers=0)
    print(f"{'network':<8} {'trunk':<12} {'probe ROC AUC':>13} {'vs random':>10} "
          f"{'final loss':>10} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models.split(","):
            def score(path: Path | None, name: str = name) -> float:
                return float(np.mean([probe(trunk_features(
                    name, ss, k, labelled, seed=args.seed, pretrained=path), y, tr, te)
                    for k, tr, te in folds]))

            random = score(None)
            print(f"{name:<8} {'random':<12} {random:>13.3f} {'':>10} {'':>10} {'':>8}")
            for method in args.methods.split(","):
                t0 = time.perf_counter()
                res = pretrain_model(
                    name, ss.X, center=center, scale=scale, method=method,
                    epochs=args.epochs, out_path=Path(tmp) / f"{name}_{method}.pt",
                    settings=settings, seed=args.seed,
                    indices=pretraining_indices(ss.centre, args.seed), progress=False)
                seconds = time.perf_counter() - t0
                auc = score(res.path)
                print(f"{name:<8} {method:<12} {auc:>13.3f} {auc - random:>+10.3f} "
                      f"{res.history['loss'].iloc[-1]:>10.3f} {seconds:>8.0f}")


if __name__ == "__main__":
    main()
