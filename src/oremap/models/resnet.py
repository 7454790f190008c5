"""ResNet50 (He, Zhang, Ren & Sun 2016, CVPR) for multi-channel evidence patches.

Source: bottleneck residual blocks (1x1, 3x3, 1x1 convolutions with batch normalisation,
expansion 4) in four stages of 3, 4, 6 and 3 blocks, a 7x7 stride-2 stem with 3x3 max
pooling, global average pooling and one dense layer. Profile ``reference`` is torchvision's
``resnet50`` (stride on the 3x3 convolution, "v1.5"): 25,557,032 parameters for
3 x 224 x 224 inputs and 1000 classes.

Adaptation (He et al. 2024, profile ``paper``) to ``C x 32 x 32`` patches: a small-image
stem (3x3 convolution, stride 1, no max pooling), so the four stages see 32, 16, 8 and 4 px
maps, and two extra dense layers before the classifier (2048 -> 1024 -> 256 -> classes with
ReLU and dropout), as He et al. add to ResNet50. Profile ``fast`` keeps the 16 bottleneck
blocks but divides all widths by 8 and the head to 128 -> 32.
"""

from __future__ import annotations

import torch
from torch import nn

from oremap.models.registry import register, require_input_size

__all__ = ["Bottleneck", "EXPANSION", "ResNet", "build_resnet50"]

EXPANSION = 4


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (carrying the stride), 1x1 expand, plus the identity/projection."""

    def __init__(self, in_planes: int, planes: int, stride: int):
        super().__init__()
        out = planes * EXPANSION
        self.conv1 = nn.Conv2d(in_planes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_planes != out:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out, 1, stride=stride, bias=False), nn.BatchNorm2d(out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block forward pass."""
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


class ResNet(nn.Module):
    """Stem, four bottleneck stages, global average pooling, dense head."""

    def __init__(self, in_channels: int, num_classes: int, *, width: int, small_stem: bool,
                 head: tuple[int, ...], dropout: float, blocks: tuple[int, ...] = (3, 4, 6, 3)):
        super().__init__()
        if small_stem:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
            )
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, width, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
            )
        stages: list[nn.Module] = []
        in_planes = width
        for i, n in enumerate(blocks):
            planes = width * 2**i
            layer = []
            for j in range(n):
                layer.append(Bottleneck(in_planes, planes, 2 if (i > 0 and j == 0) else 1))
                in_planes = planes * EXPANSION
            stages.append(nn.Sequential(*layer))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        dense: list[nn.Module] = []
        for h in head:
            dense += [nn.Linear(in_planes, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            in_planes = h
        dense.append(nn.Linear(in_planes, num_classes))
        self.fc = nn.Sequential(*dense) if head else dense[0]
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` -> ``(N, num_classes)`` logits."""
        x = self.stem(x)
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


@register("resnet50")
def build_resnet50(
    *, in_channels: int, num_classes: int, input_size: int, profile: str, dropout: float = 0.5
) -> nn.Module:
    """ResNet50; ``dropout`` applies in the two extra dense layers (paper, fast)."""
    require_input_size("resnet50", profile, input_size, 1)
    if profile == "reference":
        return ResNet(in_channels, num_classes, width=64, small_stem=False, head=(),
                      dropout=dropout)
    if profile == "paper":
        return ResNet(in_channels, num_classes, width=64, small_stem=True, head=(1024, 256),
                      dropout=dropout)
    return ResNet(in_channels, num_classes, width=8, small_stem=True, head=(128, 32),
                  dropout=dropout)
