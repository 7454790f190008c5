"""Prediction with a trained network: folded BatchNorm, channels_last, batched probabilities."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from oremap.device import choose_device
from oremap.train.data import _check_x, dihedral

__all__ = ["CHANNELS_LAST_CLASSES", "EVAL_BATCH", "inference_model", "predict_proba"]

#: Crops per forward pass at evaluation and prediction. At 32 x 32 px on CPU, 64 is faster than
#: 256 for every network (activations stay in cache): x1.67 for the seven together, x2.1 for
#: ResNet50, identical probabilities (measured by benchmarks/inference.py).
EVAL_BATCH = 64


#: Model classes evaluated in ``channels_last`` memory format on CPU, where it is not slower
#: (``benchmarks/inference.py``, with BatchNorm folded: MobileNetV2 x2.2-3.5, VGG8 x1.9-2.3,
#: VGG16 x1.4-1.5, ResNet50 x1.5, AlexNet x1.0-1.5); LeNet and the ViT stay contiguous.
CHANNELS_LAST_CLASSES = frozenset({"AlexNet", "VGG", "ResNet", "MobileNetV2"})


def inference_model(model: nn.Module, device: torch.device) -> tuple[nn.Module, bool]:
    """The module :func:`predict_proba` runs, and whether it takes ``channels_last`` input.

    On CPU: every BatchNorm folded into the convolution before it, and the
    convolutional networks of :data:`CHANNELS_LAST_CLASSES` in ``channels_last`` memory
    format. Probabilities equal the plain module's within float32 round-off (tested). Built
    once per state of the weights and cached on the model (a weight changed in place, as by
    an optimiser step, rebuilds it); elsewhere (CUDA, MPS) the model itself.
    """
    if device.type != "cpu" or model.training:
        return model, False
    version = tuple(t._version for t in (*model.parameters(), *model.buffers()))
    cached = model.__dict__.get("_oremap_inference")
    if cached is not None and cached[0] == version:
        return cached[1]
    fast = model
    if any(isinstance(m, nn.BatchNorm2d) for m in model.modules()):
        fast = _fold_batchnorm(model)
    channels_last = type(model).__name__ in CHANNELS_LAST_CLASSES
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    model.__dict__["_oremap_inference"] = (version, (fast, channels_last))
    return fast, channels_last


def _batch_array(xb: np.ndarray) -> np.ndarray:
    """A batch as a writable, C-contiguous float32 array: the slice itself when it already is
    one, else a copy (memmap slices are read-only and would be paged in anyway)."""
    if (type(xb) is np.ndarray and xb.dtype == np.float32 and xb.flags.c_contiguous
            and xb.flags.writeable):
        return xb
    return np.array(xb, dtype=np.float32)


def _fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (eval mode) with each BatchNorm2d that only follows a Conv2d
    folded into that convolution's weights and bias, and replaced by an identity.

    Folded: a BatchNorm2d right after a Conv2d in an ``nn.Sequential``, and a child ``bn<k>``
    of a module that also has ``conv<k>`` (the bottleneck blocks of
    :mod:`oremap.models.resnet`, whose ``forward`` applies ``bn<k>`` to the output of
    ``conv<k>`` alone). The module tree is edited, not traced: ``torch.fx`` tracing patches
    ``nn.Module.__call__`` for the whole process and would break the other members' forward
    passes running side by side (:func:`oremap.compute.thread_map`).
    """
    import copy

    from torch.nn.utils.fusion import fuse_conv_bn_eval

    fast = copy.deepcopy(model)
    for module in list(fast.modules()):
        kids = module._modules
        if isinstance(module, nn.Sequential):
            pairs = list(zip(kids, list(kids)[1:]))
        else:
            pairs = [(f"conv{name[2:]}", name) for name in kids
                     if name.startswith("bn") and name[2:].isdigit()]
        for conv, bn in pairs:
            if isinstance(kids.get(conv), nn.Conv2d) and isinstance(kids[bn], nn.BatchNorm2d):
                kids[conv] = fuse_conv_bn_eval(kids[conv], kids[bn])
                kids[bn] = nn.Identity()
    return fast


def predict_proba(
    model: nn.Module, X: np.ndarray, *, batch_size: int = EVAL_BATCH, device: str = "cpu",
    tta: bool = False,
) -> np.ndarray:
    """Probability of class 1 (mineralised) for each patch.

    Parameters
    ----------
    model : torch.nn.Module
        A network returning two logits; it is moved to ``device`` and put in eval mode.
    X : (n, C, S, S) float array or numpy.memmap
        Patches, read ``batch_size`` at a time.
    tta : bool
        Average the probability over the 8 rotations and reflections of each patch (for a
        model trained with ``augment="dihedral"``).

    Returns
    -------
    (n,) float32 array in [0, 1]

    Raises
    ------
    InputDataError
        If ``X`` is not 4-D.
    """
    _check_x(X, "X")
    torch_device = choose_device(device)
    model = model.to(torch_device).eval()
    net, channels_last = inference_model(model, torch_device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    out = np.empty(len(X), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(X), batch_size):
            xb = torch.from_numpy(_batch_array(X[start:start + batch_size])).to(torch_device)
            views = [dihedral(xb, k) for k in range(8)] if tta else [xb]
            p = sum(torch.softmax(net(v.contiguous(memory_format=fmt)).float(), 1)[:, 1]
                    for v in views) / len(views)
            out[start:start + len(xb)] = p.cpu().numpy()
    return out
