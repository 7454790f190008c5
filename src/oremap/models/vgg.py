"""VGG16 and VGG8 (Simonyan & Zisserman 2015, ICLR) for multi-channel evidence patches.

Source: stacks of 3x3 convolutions separated by 2x2 max poolings, then three dense layers
(4096, 4096, classes) with dropout. Profile ``reference`` of ``vgg16`` is torchvision's
configuration "D" without batch normalisation, 138,357,544 parameters for 3 x 224 x 224
inputs and 1000 classes; ``vgg8`` uses the same recipe with five convolutions
(64-M-128-M-256-M-512-M-512-M) and the three dense layers: eight weight layers.

Adaptation (He et al. 2024, profile ``paper``) to ``C x 32 x 32`` patches: batch
normalisation after every convolution (trainable from scratch on a few thousand patches),
max poolings with ``ceil_mode`` so patches smaller than 32 px still reach 1 x 1, global
average pooling (the five poolings already reduce 32 px to 1 x 1) and dense layers of 512
units (512 -> 512 -> 512 -> classes, dropout 0.5) instead of 25088 -> 4096 -> 4096. VGG16
keeps its 13 convolutions, VGG8 has 5 convolutions + 3 dense layers. Profile ``fast``
divides all widths by 8 (VGG16) or 4 (VGG8).
"""

from __future__ import annotations

import torch
from torch import nn

from oremap.models.registry import register, require_input_size

__all__ = ["Layout", "VGG", "VGG16", "VGG8", "build_vgg16", "build_vgg8", "make_features"]

Layout = list[int | str]
VGG16: Layout = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                 512, 512, 512, "M", 512, 512, 512, "M"]
VGG8: Layout = [64, "M", 128, "M", 256, "M", 512, "M", 512, "M"]


class VGG(nn.Module):
    """Convolutional stack, adaptive average pooling, three dense layers."""

    def __init__(self, features: nn.Sequential, channels: int, pool: int, hidden: int,
                 num_classes: int, dropout: float):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Linear(channels * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` -> ``(N, num_classes)`` logits."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def make_features(in_channels: int, layout: Layout, *, batch_norm: bool, ceil_mode: bool,
                  divisor: int = 1) -> tuple[nn.Sequential, int]:
    """Convolutional stack from a VGG layout; returns it and its output channel count."""
    layers: list[nn.Module] = []
    c = in_channels
    for v in layout:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=ceil_mode))
            continue
        width = int(v) // divisor
        layers.append(nn.Conv2d(c, width, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(width))
        layers.append(nn.ReLU(inplace=True))
        c = width
    return nn.Sequential(*layers), c


def _build(name: str, layout: Layout, fast_divisor: int, *, in_channels: int,
           num_classes: int, input_size: int, profile: str, dropout: float) -> nn.Module:
    if profile == "reference":
        require_input_size(name, profile, input_size, 32)
        features, c = make_features(in_channels, layout, batch_norm=False, ceil_mode=False)
        return VGG(features, c, 7, 4096, num_classes, dropout)
    require_input_size(name, profile, input_size, 2)
    divisor = 1 if profile == "paper" else fast_divisor
    features, c = make_features(in_channels, layout, batch_norm=True, ceil_mode=True,
                                divisor=divisor)
    return VGG(features, c, 1, 512 // divisor, num_classes, dropout)


@register("vgg16")
def build_vgg16(
    *, in_channels: int, num_classes: int, input_size: int, profile: str, dropout: float = 0.5
) -> nn.Module:
    """VGG16: 13 convolutions and 3 dense layers."""
    return _build("vgg16", VGG16, 8, in_channels=in_channels, num_classes=num_classes,
                  input_size=input_size, profile=profile, dropout=dropout)


@register("vgg8")
def build_vgg8(
    *, in_channels: int, num_classes: int, input_size: int, profile: str, dropout: float = 0.5
) -> nn.Module:
    """VGG8: 5 convolutions and 3 dense layers."""
    return _build("vgg8", VGG8, 4, in_channels=in_channels, num_classes=num_classes,
                  input_size=input_size, profile=profile, dropout=dropout)
