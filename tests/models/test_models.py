"""Architecture checks: parameter counts from hand arithmetic, forward passes re-derived with
torch.nn.functional, state-dict compatibility and seeded determinism."""

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from losslands.flat import num_params
from losslands.models import MLP, ResNet20, SmallCNN
from losslands.models.resnet20 import _ZeroPadShortcut


def conv_count(cin, cout, k, bias=True):
    return cin * cout * k * k + (cout if bias else 0)


def test_small_cnn_parameter_count_matches_arithmetic():
    expected = conv_count(3, 32, 3) + conv_count(32, 64, 3) + (64 * 16 * 16 * 10 + 10)
    assert expected == 183_242
    assert num_params(SmallCNN()) == expected
    assert num_params(SmallCNN(num_classes=100)) == expected - 163_850 + 64 * 16 * 16 * 100 + 100


def test_small_cnn_loads_reference_state_dict_strictly():
    g = torch.Generator().manual_seed(0)
    shapes = {
        "conv1.weight": (32, 3, 3, 3),
        "conv1.bias": (32,),
        "conv2.weight": (64, 32, 3, 3),
        "conv2.bias": (64,),
        "fc.weight": (10, 64 * 16 * 16),
        "fc.bias": (10,),
    }
    reference = {k: torch.randn(s, generator=g) for k, s in shapes.items()}
    model = SmallCNN()
    model.load_state_dict(reference, strict=True)
    assert set(model.state_dict()) == set(shapes)
    # The forward pass must be the documented layer order, re-derived with functional ops.
    x = torch.randn(2, 3, 32, 32, generator=g)
    h = F.relu(F.conv2d(x, reference["conv1.weight"], reference["conv1.bias"], padding=1))
    h = F.relu(F.conv2d(h, reference["conv2.weight"], reference["conv2.bias"], padding=1))
    h = F.max_pool2d(h, 2).reshape(2, -1)
    expected = h @ reference["fc.weight"].T + reference["fc.bias"]
    torch.testing.assert_close(model(x), expected, rtol=1e-5, atol=1e-5)


def resnet20_count(num_classes, shortcut):
    convs = conv_count(3, 16, 3, bias=False)
    bns = 2 * 16
    for cin, cout in [(16, 16)] * 3 + [(16, 32)] + [(32, 32)] * 2 + [(32, 64)] + [(64, 64)] * 2:
        convs += conv_count(cin, cout, 3, bias=False) + conv_count(cout, cout, 3, bias=False)
        bns += 2 * 2 * cout
        if shortcut == "B" and cin != cout:
            convs += conv_count(cin, cout, 1, bias=False)
            bns += 2 * cout
    return convs + bns + 64 * num_classes + num_classes


@pytest.mark.parametrize(
    "shortcut, num_classes, expected",
    [("A", 10, 269_722), ("B", 10, 272_474), ("A", 100, None)],
)
def test_resnet20_parameter_count(shortcut, num_classes, expected):
    count = resnet20_count(num_classes, shortcut)
    if expected is not None:
        assert count == expected
    assert num_params(ResNet20(num_classes=num_classes, shortcut=shortcut)) == count


def test_resnet20_depth_and_feature_map_sizes():
    model = ResNet20()
    weighted = [
        m
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d | nn.Linear) and "shortcut" not in name
    ]
    assert len(weighted) == 20  # 6n + 2 with n = 3
    shapes = {}
    for name in ("layer1", "layer2", "layer3"):
        getattr(model, name).register_forward_hook(
            lambda mod, inp, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
    out = model(torch.randn(4, 3, 32, 32))
    assert out.shape == (4, 10)
    assert shapes == {"layer1": (16, 32, 32), "layer2": (32, 16, 16), "layer3": (64, 8, 8)}


def test_option_a_shortcut_is_subsampled_identity_with_zero_channels():
    x = torch.randn(2, 16, 8, 8)
    out = _ZeroPadShortcut(16)(x)
    assert out.shape == (2, 32, 4, 4)
    for i in range(4):
        for j in range(4):
            torch.testing.assert_close(out[:, :16, i, j], x[:, :, 2 * i, 2 * j], rtol=0, atol=0)
    assert torch.count_nonzero(out[:, 16:]) == 0
    assert all(
        not list(b.shortcut.parameters()) for b in ResNet20().modules() if hasattr(b, "shortcut")
    )


def test_resnet20_rejects_unknown_shortcut():
    with pytest.raises(ValueError, match="'A' or 'B'"):
        ResNet20(shortcut="C")


def test_mlp_counts_and_linear_case():
    assert num_params(MLP()) == 3072 * 32 + 32 + 32 * 10 + 10
    assert num_params(MLP(hidden=8, depth=3)) == (3072 * 8 + 8) + 2 * (8 * 8 + 8) + (8 * 10 + 10)
    model = MLP(depth=0)
    assert num_params(model) == 3072 * 10 + 10
    x = torch.randn(5, 3, 32, 32)
    lin = model.layers[-1]
    torch.testing.assert_close(model(x), x.reshape(5, -1) @ lin.weight.T + lin.bias)
    with pytest.raises(ValueError, match="depth"):
        MLP(depth=-1)


@pytest.mark.parametrize("factory", [SmallCNN, ResNet20, MLP])
def test_construction_is_deterministic_given_seed(factory):
    torch.manual_seed(7)
    a = factory().state_dict()
    torch.manual_seed(7)
    b = factory().state_dict()
    torch.manual_seed(8)
    c = factory().state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())
