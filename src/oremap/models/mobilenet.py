"""MobileNetV2 (Sandler et al. 2018, CVPR) for multi-channel evidence patches.

Source: a 3x3 stride-2 stem (32 filters), then inverted residual bottlenecks given by the
``(t, c, n, s)`` table (expansion ``t``, output channels ``c``, ``n`` repeats, first
stride ``s``): each block expands with a 1x1 convolution + ReLU6, filters with a 3x3
depthwise convolution + ReLU6 and projects with a linear 1x1 convolution (the "linear
bottleneck", no activation), with a residual connection when shapes match; then a 1x1
convolution to 1280 channels, global average pooling, dropout 0.2 and one dense layer.
Profile ``reference`` is torchvision's ``mobilenet_v2``: 3,504,872 parameters for
3 x 224 x 224 inputs and 1000 classes.

Adaptation (He et al. 2024, profile ``paper``) to ``C x 32 x 32`` patches: stride 1 in the
stem and in the second bottleneck stage (as for CIFAR), so the maps go 32 -> 32 -> 16 -> 8
-> 4 instead of 32 -> 1. Profile ``fast`` uses width multiplier 0.25 (channels rounded to
multiples of 8, last convolution 320 channels) and the reference strides after a stride-1
stem (32 -> 16 -> 8 -> 4 -> 2).
"""

from __future__ import annotations

import torch
from torch import nn

from oremap.models.registry import register, require_input_size

__all__ = [
    "InvertedResidual",
    "MobileNetV2",
    "SETTINGS",
    "build_mobilenet_v2",
    "conv_bn_relu6",
    "make_divisible",
]

# t, c, n, s
SETTINGS: list[tuple[int, int, int, int]] = [
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to the nearest multiple of ``divisor``, never below 90 % of it."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def conv_bn_relu6(cin: int, cout: int, kernel: int, stride: int = 1,
                  groups: int = 1) -> nn.Sequential:
    """Convolution, batch normalisation and ReLU6."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """Expand (1x1), depthwise (3x3), linear projection (1x1), residual if shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = int(round(cin * expand_ratio))
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(cin, hidden, 1))
        layers += [
            conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Block forward pass."""
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    """Stem, inverted residual stages from a (t, c, n, s) table, 1x1 head, classifier."""

    def __init__(self, in_channels: int, num_classes: int, *, width_mult: float,
                 stem_stride: int, strides: list[int], last_channel: int, dropout: float):
        super().__init__()
        cin = make_divisible(32 * width_mult)
        layers: list[nn.Module] = [conv_bn_relu6(in_channels, cin, 3, stem_stride)]
        for (t, c, n, _), s in zip(SETTINGS, strides, strict=True):
            cout = make_divisible(c * width_mult)
            for i in range(n):
                layers.append(InvertedResidual(cin, cout, s if i == 0 else 1, t))
                cin = cout
        layers.append(conv_bn_relu6(cin, last_channel, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` -> ``(N, num_classes)`` logits."""
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


@register("mobilenet_v2")
def build_mobilenet_v2(
    *, in_channels: int, num_classes: int, input_size: int, profile: str, dropout: float = 0.2
) -> nn.Module:
    """MobileNetV2; ``dropout`` is applied before the classifier."""
    require_input_size("mobilenet_v2", profile, input_size, 1)
    reference_strides = [s for *_, s in SETTINGS]
    if profile == "reference":
        return MobileNetV2(in_channels, num_classes, width_mult=1.0, stem_stride=2,
                           strides=reference_strides, last_channel=1280, dropout=dropout)
    if profile == "paper":
        return MobileNetV2(in_channels, num_classes, width_mult=1.0, stem_stride=1,
                           strides=[1, 1, 2, 2, 1, 2, 1], last_channel=1280, dropout=dropout)
    return MobileNetV2(in_channels, num_classes, width_mult=0.25, stem_stride=1,
                       strides=reference_strides, last_channel=320, dropout=dropout)
