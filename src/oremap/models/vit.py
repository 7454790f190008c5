"""Vision Transformer (Dosovitskiy et al. 2021, ICLR) for multi-channel evidence patches.

Source: the image is cut into ``P x P`` patches embedded by a strided convolution, a
learnable class token and position embeddings are added, and a stack of pre-norm encoder
blocks (LayerNorm, multi-head self-attention, LayerNorm, MLP with GELU, dropout, residual
connections) is followed by a final LayerNorm and a head on the class token. Profile
``reference`` is torchvision's ``vit_b_16`` (patch 16, width 768, 12 blocks, 12 heads,
MLP 3072, linear head): 86,567,656 parameters for 3 x 224 x 224 inputs and 1000 classes.

Adaptation (He et al. 2024, profile ``paper``) to ``C x 32 x 32`` patches: the patch
embedding takes ``C`` channels; ViT-B dimensions and 12 blocks are kept with dropout 0.1,
and the head is an MLP (one hidden layer of width 768 with tanh, as in ViT pre-training).
The default patch of 16 cells gives only 2 x 2 tokens at 32 px; pass ``patch_size`` (e.g.
4 or 8) for a finer token grid. Profile ``fast``: width 64, 4 blocks, 4 heads, MLP 128,
patch 8 by default. ``input_size`` must be a multiple of ``patch_size``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from oremap.errors import ConfigError
from oremap.models.registry import register, require_input_size

__all__ = ["EncoderBlock", "VisionTransformer", "build_vit"]


class EncoderBlock(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + MLP(LN(x))."""

    def __init__(self, dim: int, heads: int, mlp_dim: int, dropout: float,
                 attention_dropout: float):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=1e-6)
        self.self_attention = nn.MultiheadAttention(
            dim, heads, dropout=attention_dropout, batch_first=True
        )
        self.dropout = nn.Dropout(dropout)
        self.ln_2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = nn.Sequential(
            nn.Linear(dim, mlp_dim),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(mlp_dim, dim),
            nn.Dropout(dropout),
        )
        for m in self.mlp:
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                nn.init.normal_(m.bias, std=1e-6)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, L, D)`` -> ``(N, L, D)``."""
        y = self.ln_1(x)
        y, _ = self.self_attention(y, y, y, need_weights=False)
        x = x + self.dropout(y)
        return x + self.mlp(self.ln_2(x))


class VisionTransformer(nn.Module):
    """Convolutional patch embedding, class token, encoder blocks, head on the class token."""

    def __init__(self, in_channels: int, num_classes: int, *, input_size: int, patch_size: int,
                 dim: int, depth: int, heads: int, mlp_dim: int, dropout: float,
                 attention_dropout: float, mlp_head: bool):
        super().__init__()
        self.patch_size = patch_size
        self.conv_proj = nn.Conv2d(in_channels, dim, patch_size, stride=patch_size)
        fan_in = in_channels * patch_size**2
        nn.init.trunc_normal_(self.conv_proj.weight, std=math.sqrt(1 / fan_in))
        nn.init.zeros_(self.conv_proj.bias)
        tokens = (input_size // patch_size) ** 2 + 1
        self.class_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embedding = nn.Parameter(torch.empty(1, tokens, dim).normal_(std=0.02))
        self.dropout = nn.Dropout(dropout)
        self.layers = nn.Sequential(
            *[EncoderBlock(dim, heads, mlp_dim, dropout, attention_dropout) for _ in range(depth)]
        )
        self.ln = nn.LayerNorm(dim, eps=1e-6)
        head = nn.Linear(dim, num_classes)
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        if mlp_head:
            pre = nn.Linear(dim, dim)
            nn.init.trunc_normal_(pre.weight, std=math.sqrt(1 / dim))
            nn.init.zeros_(pre.bias)
            self.heads = nn.Sequential(pre, nn.Tanh(), head)
        else:
            self.heads = nn.Sequential(head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S)`` -> ``(N, num_classes)`` logits."""
        x = self.conv_proj(x).flatten(2).transpose(1, 2)
        token = self.class_token.expand(x.shape[0], -1, -1)
        x = torch.cat([token, x], dim=1) + self.pos_embedding
        x = self.ln(self.layers(self.dropout(x)))
        return self.heads(x[:, 0])


@register("vit")
def build_vit(
    *,
    in_channels: int,
    num_classes: int,
    input_size: int,
    profile: str,
    patch_size: int | None = None,
    dropout: float | None = None,
) -> nn.Module:
    """ViT; ``patch_size`` defaults to 16 (paper, reference) or 8 (fast)."""
    if profile == "fast":
        dims = {"dim": 64, "depth": 4, "heads": 4, "mlp_dim": 128}
        default_patch, default_dropout = 8, 0.1
    else:
        dims = {"dim": 768, "depth": 12, "heads": 12, "mlp_dim": 3072}
        default_patch = 16
        default_dropout = 0.0 if profile == "reference" else 0.1
    patch = default_patch if patch_size is None else patch_size
    if isinstance(patch, bool) or not isinstance(patch, int) or patch < 1:
        raise ConfigError(f"vit patch_size must be an integer >= 1; got {patch!r}.")
    require_input_size("vit", profile, input_size, patch, multiple_of=patch)
    return VisionTransformer(
        in_channels,
        num_classes,
        input_size=input_size,
        patch_size=patch,
        **dims,
        dropout=default_dropout if dropout is None else dropout,
        attention_dropout=0.0,
        mlp_head=profile != "reference",
    )
