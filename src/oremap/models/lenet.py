"""LeNet (LeCun et al. 1998, Proc. IEEE 86(11)) for multi-channel evidence patches.

Source: LeNet-5, "Gradient-based learning applied to document recognition": three 5x5
convolutions (C1, C3, C5) with two 2x2 average poolings (S2, S4), then fully connected
layers, for 32 x 32 single-channel digits.

Adaptation (He et al. 2024, profiles ``paper`` and ``fast``, identical because LeNet is
already tiny): ``C`` input channels instead of one, ReLU instead of tanh, three fully
connected layers 120 -> 84 -> 84 -> classes with dropout after the first two. The second
pooling is adaptive to a 5 x 5 output: at 32 px it equals the classic 2x2 average pooling
(C5 then sees 5 x 5 maps and outputs 1 x 1), and it lets other patch sizes (>= 14 px) work.

Profile ``reference``: LeNet-5 as published (tanh, C5 -> F6 (84) -> output, no dropout,
full C3 connectivity): 61,706 parameters for 1 x 32 x 32 inputs and 10 classes.
"""

from __future__ import annotations

import torch
from torch import nn

from oremap.models.registry import register, require_input_size

__all__ = ["LeNet", "MIN_INPUT_SIZE", "build_lenet"]

MIN_INPUT_SIZE = 14


class LeNet(nn.Module):
    """Three 5x5 convolutions, two average poolings, fully connected head."""

    def __init__(self, in_channels: int, num_classes: int, *, reference: bool, dropout: float):
        super().__init__()
        act: type[nn.Module] = nn.Tanh if reference else nn.ReLU
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, kernel_size=5),
            act(),
            nn.AvgPool2d(2),
            nn.Conv2d(6, 16, kernel_size=5),
            act(),
            nn.AdaptiveAvgPool2d(5),
            nn.Conv2d(16, 120, kernel_size=5),
            act(),
            nn.Flatten(),
        )
        if reference:
            self.classifier = nn.Sequential(nn.Linear(120, 84), act(), nn.Linear(84, num_classes))
        else:
            self.classifier = nn.Sequential(
                nn.Linear(120, 84),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(84, 84),
                nn.ReLU(),
                nn.Dropout(dropout),
                nn.Linear(84, num_classes),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` -> ``(N, num_classes)`` logits."""
        return self.classifier(self.features(x))


@register("lenet")
def build_lenet(
    *, in_channels: int, num_classes: int, input_size: int, profile: str, dropout: float = 0.25
) -> nn.Module:
    """LeNet; ``dropout`` is the drop probability of the first two dense layers."""
    require_input_size("lenet", profile, input_size, MIN_INPUT_SIZE)
    return LeNet(in_channels, num_classes, reference=profile == "reference", dropout=dropout)
