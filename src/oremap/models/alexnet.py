"""AlexNet (Krizhevsky, Sutskever & Hinton 2012, NeurIPS) for multi-channel evidence patches.

Source: five convolutions (11x11 stride 4, 5x5, 3x3, 3x3, 3x3) with three overlapping
max poolings and three fully connected layers (4096, 4096, classes) with dropout; profile
``reference`` is torchvision's single-tower variant (64-192-384-256-256 filters), 61,100,840
parameters for 3 x 224 x 224 inputs and 1000 classes.

Adaptation (He et al. 2024, profile ``paper``) to ``C x 32 x 32`` patches: the same five
convolutions and filter counts but 5x5 / 5x5 / 3x3 / 3x3 / 3x3 kernels at stride 1 ("same"
padding) and 2x2 max poolings, so the maps shrink 32 -> 16 -> 8 -> 4 instead of collapsing;
an adaptive average pooling to 4 x 4 (the identity at 32 px) feeds the dense layers
(dropout, 4096, dropout, 4096, classes). Profile ``fast`` divides the filters by four and
uses 256-unit dense layers.
"""

from __future__ import annotations

import torch
from torch import nn

from oremap.models.registry import register, require_input_size

__all__ = ["AlexNet", "build_alexnet"]


class AlexNet(nn.Module):
    """Five convolutions, three max poolings, three dense layers with dropout."""

    def __init__(self, features: nn.Sequential, pool: int, channels: int, hidden: int,
                 num_classes: int, dropout: float):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d(pool)
        self.classifier = nn.Sequential(
            nn.Dropout(dropout),
            nn.Linear(channels * pool * pool, hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(inplace=True),
            nn.Linear(hidden, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` -> ``(N, num_classes)`` logits."""
        x = self.avgpool(self.features(x))
        return self.classifier(torch.flatten(x, 1))


def _reference_features(c: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _small_features(c: int, widths: tuple[int, int, int, int, int]) -> nn.Sequential:
    w1, w2, w3, w4, w5 = widths
    return nn.Sequential(
        nn.Conv2d(c, w1, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(w1, w2, kernel_size=5, padding=2),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
        nn.Conv2d(w2, w3, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(w3, w4, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(w4, w5, kernel_size=3, padding=1),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(2),
    )


@register("alexnet")
def build_alexnet(
    *, in_channels: int, num_classes: int, input_size: int, profile: str, dropout: float = 0.5
) -> nn.Module:
    """AlexNet; ``dropout`` is the drop probability before the first two dense layers."""
    if profile == "reference":
        # 11/4 conv then three 3/2 max poolings need >= 63 px.
        require_input_size("alexnet", profile, input_size, 63)
        return AlexNet(_reference_features(in_channels), 6, 256, 4096, num_classes, dropout)
    require_input_size("alexnet", profile, input_size, 8)
    if profile == "paper":
        return AlexNet(_small_features(in_channels, (64, 192, 384, 256, 256)), 4, 256, 4096,
                       num_classes, dropout)
    return AlexNet(_small_features(in_channels, (16, 48, 96, 64, 64)), 4, 64, 256,
                   num_classes, dropout)
