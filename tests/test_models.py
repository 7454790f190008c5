"""Tests of oremap.models: registry, reference parameter counts, adapted architectures."""

from __future__ import annotations

import importlib

import pytest
import torch
from torch import nn

from oremap.errors import ConfigError, UnknownNameError
from oremap.models import create, list_models, list_profiles, model_options, register

NAMES = ["alexnet", "lenet", "mobilenet_v2", "resnet50", "vgg16", "vgg8", "vit"]
BIG = {"vit"}  # paper-profile forward/backward over ~1 s per call on 2 cores

# torchvision's implementations with in_channels=3, num_classes=1000, input 224
TORCHVISION_COUNTS = {
    "mobilenet_v2": 3_504_872,
    "resnet50": 25_557_032,
    "vgg16": 138_357_544,
    "alexnet": 61_100_840,
    "vit": 86_567_656,
}


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count(model: nn.Module, kind: type[nn.Module] | tuple[type[nn.Module], ...]) -> int:
    return sum(isinstance(m, kind) for m in model.modules())


def forward_backward(model: nn.Module, c: int, size: int = 32, n: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    out = model(torch.randn(n, c, size, size))
    out.sum().backward()
    return out


def test_list_models_and_profiles():
    assert list_models() == NAMES
    assert list_profiles() == ["paper", "fast", "reference"]
    assert model_options("vit") == ["patch_size", "dropout"]
    assert model_options("lenet") == ["dropout"]


@pytest.mark.parametrize("name", sorted(TORCHVISION_COUNTS))
def test_reference_parameter_counts_equal_torchvision(name):
    with torch.device("meta"):
        model = create(name, in_channels=3, num_classes=1000, input_size=224,
                       profile="reference")
        out = model(torch.empty(1, 3, 224, 224))
    assert n_params(model) == TORCHVISION_COUNTS[name]
    assert out.shape == (1, 1000)


def test_reference_lenet5_parameter_count():
    # LeCun et al. 1998 with full C3 connectivity: 156 + 2416 + 48120 + 10164 + 850
    model = create("lenet", in_channels=1, num_classes=10, profile="reference")
    assert n_params(model) == 61_706
    assert count(model, nn.Tanh) == 4


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("channels", [1, 4, 14])
def test_fast_forward_backward(name, channels):
    model = create(name, in_channels=channels, profile="fast")
    out = forward_backward(model, channels)
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def _paper_cases() -> list:
    cases = []
    for name in NAMES:
        for c in (1, 4, 14):
            marks = [pytest.mark.slow] if name in BIG and c != 14 else []
            cases.append(pytest.param(name, c, marks=marks, id=f"{name}-{c}"))
    return cases


@pytest.mark.parametrize(("name", "channels"), _paper_cases())
def test_paper_forward_backward(name, channels):
    model = create(name, in_channels=channels, num_classes=3, profile="paper")
    out = forward_backward(model, channels)
    assert out.shape == (2, 3)
    assert torch.isfinite(out).all()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("size", [16, 64])
def test_other_input_sizes(name, size):
    model = create(name, in_channels=3, input_size=size, profile="fast")
    out = forward_backward(model, 3, size)
    assert out.shape == (2, 2)
    assert torch.isfinite(out).all()


def test_fast_models_are_smaller_than_paper():
    for name in NAMES:
        fast = n_params(create(name, in_channels=14, profile="fast"))
        if name == "lenet":
            assert fast == n_params(create(name, in_channels=14, profile="paper"))
        else:
            with torch.device("meta"):
                paper = n_params(create(name, in_channels=14, profile="paper"))
            assert fast < paper / 5, name


# ----------------------------------------------------------------- the adaptations


def test_lenet_paper_layers():
    model = create("lenet", in_channels=14, profile="paper")
    assert count(model, nn.Conv2d) == 3
    assert count(model, (nn.AvgPool2d, nn.AdaptiveAvgPool2d)) == 2
    assert count(model, nn.Linear) == 3
    assert count(model, nn.Dropout) == 2
    assert count(model, nn.ReLU) == 5
    # at 32 px the adaptive pooling equals the classic 2x2 pooling: C5 outputs 1 x 1
    assert model.features[:6](torch.zeros(1, 14, 32, 32)).shape == (1, 16, 5, 5)


def test_alexnet_paper_layers():
    model = create("alexnet", in_channels=14, profile="paper")
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 192, 384, 256, 256]
    assert all(c.stride == (1, 1) for c in convs)
    assert count(model, nn.Linear) == 3
    assert count(model, nn.Dropout) == 2
    assert model.features(torch.zeros(1, 14, 32, 32)).shape == (1, 256, 4, 4)


@pytest.mark.parametrize(("name", "convs"), [("vgg16", 13), ("vgg8", 5)])
def test_vgg_weight_layers(name, convs):
    for profile in ("paper", "fast", "reference"):
        with torch.device("meta"):
            model = create(name, in_channels=14, profile=profile)
        assert count(model, nn.Conv2d) == convs
        assert count(model, nn.Linear) == 3
    assert count(create(name, in_channels=14, profile="paper"), nn.BatchNorm2d) == convs


def test_resnet50_paper_stem_and_head():
    model = create("resnet50", in_channels=14, profile="paper")
    stem = model.stem[0]
    assert stem.kernel_size == (3, 3) and stem.stride == (1, 1)
    assert not any(isinstance(m, nn.MaxPool2d) for m in model.modules())
    blocks = [len(s) for s in (model.layer1, model.layer2, model.layer3, model.layer4)]
    assert blocks == [3, 4, 6, 3]
    dense = [m for m in model.fc.modules() if isinstance(m, nn.Linear)]
    assert [(d.in_features, d.out_features) for d in dense] == [(2048, 1024), (1024, 256),
                                                                 (256, 2)]
    x = model.stem(torch.zeros(1, 14, 32, 32))
    assert x.shape[-1] == 32
    assert model.layer4(model.layer3(model.layer2(model.layer1(x)))).shape == (1, 2048, 4, 4)


def test_mobilenet_v2_bottlenecks():
    from oremap.models.mobilenet import InvertedResidual

    model = create("mobilenet_v2", in_channels=14, profile="paper")
    blocks = [m for m in model.modules() if isinstance(m, InvertedResidual)]
    assert len(blocks) == 17  # 1 + 2 + 3 + 4 + 3 + 3 + 1
    # linear bottleneck: the projection ends with BatchNorm, no activation
    assert all(isinstance(b.conv[-1], nn.BatchNorm2d) for b in blocks)
    assert sum(b.use_residual for b in blocks) == 10
    assert model.features(torch.zeros(1, 14, 32, 32)).shape == (1, 1280, 4, 4)


def test_vit_paper_structure_and_patch_size():
    from oremap.models.vit import EncoderBlock

    with torch.device("meta"):
        model = create("vit", in_channels=14, profile="paper")
    assert count(model, EncoderBlock) == 12
    assert model.conv_proj.kernel_size == (16, 16)
    assert model.pos_embedding.shape == (1, 5, 768)
    assert count(model.heads, nn.Linear) == 2  # MLP head
    assert count(model, nn.GELU) == 12
    fine = create("vit", in_channels=14, profile="fast", patch_size=4)
    assert fine.pos_embedding.shape == (1, 65, 64)
    assert forward_backward(fine, 14).shape == (2, 2)


# ----------------------------------------------------------------- errors


def test_unknown_name():
    with pytest.raises(UnknownNameError, match="unknown model 'resnet18'; choose from"):
        create("resnet18", in_channels=3)


def test_unknown_profile():
    with pytest.raises(UnknownNameError, match="unknown model profile 'tiny'"):
        create("lenet", in_channels=3, profile="tiny")


def test_unknown_option():
    with pytest.raises(UnknownNameError, match="has no option \\['patch_size'\\]"):
        create("lenet", in_channels=3, patch_size=4)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"in_channels": 0}, "in_channels must be an integer >= 1"),
        ({"in_channels": 3, "num_classes": 1}, "num_classes must be an integer >= 2"),
        ({"in_channels": 3, "input_size": 2.5}, "input_size must be an integer"),
    ],
)
def test_bad_sizes(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        create("vgg8", **kwargs)


@pytest.mark.parametrize(
    ("name", "profile", "size", "match"),
    [
        ("lenet", "paper", 13, "at least 14 x 14"),
        ("alexnet", "reference", 32, "at least 63 x 63"),
        ("alexnet", "fast", 4, "at least 8 x 8"),
        ("vgg16", "reference", 16, "at least 32 x 32"),
        ("vit", "paper", 8, "at least 16 x 16"),
        ("vit", "paper", 24, "divisible by 16"),
    ],
)
def test_input_too_small(name, profile, size, match):
    with pytest.raises(ConfigError, match=match):
        create(name, in_channels=3, input_size=size, profile=profile)


def test_smallest_inputs_work():
    for name, size in [("lenet", 14), ("alexnet", 8), ("vgg16", 2), ("vgg8", 2)]:
        assert create(name, in_channels=2, input_size=size, profile="fast")(
            torch.zeros(2, 2, size, size)).shape == (2, 2)


def test_bad_patch_size():
    with pytest.raises(ConfigError, match="patch_size must be an integer >= 1"):
        create("vit", in_channels=3, patch_size=0)


def test_register_twice():
    with pytest.raises(ValueError, match="registered twice"):
        register("lenet")(lambda **kw: nn.Identity())


@pytest.mark.parametrize("module", ["lenet", "alexnet", "vgg", "resnet", "mobilenet", "vit"])
def test_module_docstrings_cite_source_and_adaptation(module):
    doc = importlib.import_module(f"oremap.models.{module}").__doc__
    assert "Adaptation (He et al. 2024" in doc
    assert any(str(year) in doc.splitlines()[0] for year in range(1998, 2022))
