"""The five pre-training architectures: sizes, shapes, one optimisation step, bad configs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mmvideos.models import EMBEDDING_DIM, MODEL_NAMES, AudioTagger, build_model, count_flops, model_table
from mmvideos.models.resnet import resnet
from mmvideos.models.vggish import WholeMapConv2d, vggish

SMALL = 0.125  # width multiplier that keeps every model small enough for a quick CPU step


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_vggish_fc_matches_table_1_parameter_count():
    # Paper, section 3: "approximately ... 73.54 million parameters" with 10,998 outputs.
    model = build_model("vggish_fc", 10998)
    assert abs(n_params(model) - 73.54e6) / 73.54e6 < 0.005
    # Table 1: the conv head spans the 6x4 map, and the last three head convs carry BN.
    first_head_conv = model.embedding[0][0]
    assert isinstance(first_head_conv, nn.Conv2d)
    assert first_head_conv.kernel_size == (6, 4) and first_head_conv.out_channels == 4096
    assert model.classifier.out_features == 10998 and model.classifier.in_features == 128


def test_vggish_variants_differ_as_the_ablation_says():
    plain, bn, fc = (build_model(n, 10, SMALL) for n in ("vggish", "vggish_bn", "vggish_fc"))
    norms = [sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) for model in (plain, bn, fc)]
    assert norms == [0, 6, 9]  # none; after each of the 6 convs; + the 3 head convs
    assert any(isinstance(m, nn.Linear) and m is not plain.classifier for m in plain.modules())
    assert not any(isinstance(m, nn.Linear) and m is not fc.classifier for m in fc.modules())
    # Converting FC layers into convs over the same map keeps the parameter count (BN aside).
    assert n_params(plain) == n_params(bn) - 2 * sum(m.num_features for m in bn.modules()
                                                     if isinstance(m, nn.BatchNorm2d))


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_and_embed_shapes(name):
    model = build_model(name, num_classes=7, width_mult=SMALL).eval()
    x = torch.randn(2, 1, 100, 64)
    with torch.no_grad():
        logits, emb = model(x), model.embed(x)
        squeezed = model(x[:, 0])  # [B, 100, 64] is accepted too
    assert logits.shape == (2, 7) and emb.shape == (2, EMBEDDING_DIM)
    assert torch.allclose(logits, squeezed)
    assert torch.allclose(logits, model.classifier(emb))  # the classifier sits right on the embedding
    assert isinstance(model, AudioTagger) and model.config == {"name": name, "num_classes": 7, "width_mult": SMALL}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_one_optimisation_step_learns(name):
    torch.manual_seed(0)
    model = build_model(name, num_classes=5, width_mult=SMALL).train()
    x = torch.randn(2, 1, 100, 64)
    y = torch.tensor([[1.0, 0.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0, 0.0]])
    before = [p.detach().clone() for p in model.parameters()]
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss = nn.functional.binary_cross_entropy_with_logits(model(x), y)
    loss.backward()
    optimiser.step()
    assert torch.isfinite(loss)
    changed = [not torch.equal(a, b.detach()) for a, b in zip(before, model.parameters(), strict=True)]
    assert all(changed), f"{changed.count(False)} parameter tensors did not move"


def test_the_whole_map_convolution_computes_what_the_convolution_does():
    torch.manual_seed(0)
    conv = nn.Conv2d(16, 24, (6, 4))
    fast = WholeMapConv2d(16, 24, (6, 4))
    fast.load_state_dict(conv.state_dict())  # the same parameters under the same names
    assert fast.state_dict().keys() == conv.state_dict().keys()
    x = torch.randn(5, 16, 6, 4, requires_grad=True)
    fast_x = x.detach().clone().requires_grad_()
    out, fast_out = conv(x), fast(fast_x)
    assert fast_out.shape == out.shape == (5, 24, 1, 1)
    torch.testing.assert_close(fast_out, out)
    grad = torch.randn_like(out)
    out.backward(grad)
    fast_out.backward(grad)
    torch.testing.assert_close(fast_x.grad, x.grad)
    torch.testing.assert_close(fast.weight.grad, conv.weight.grad)
    torch.testing.assert_close(fast.bias.grad, conv.bias.grad)
    # NHWC input (channels_last on CUDA), and a map larger than the kernel falls back to the convolution.
    torch.testing.assert_close(fast(x.detach().contiguous(memory_format=torch.channels_last)), out.detach())
    big = torch.randn(2, 16, 8, 6)
    torch.testing.assert_close(fast(big), conv(big))


def test_vggish_fc_with_its_head_as_convolutions_gives_the_same_logits():
    model = build_model("vggish_fc", 7, SMALL).eval()
    reference = build_model("vggish_fc", 7, SMALL).eval()
    for sequential in reference.embedding:  # the head back to plain convolutions, same weights
        if isinstance(sequential, nn.Sequential) and isinstance(sequential[0], WholeMapConv2d):
            old = sequential[0]
            sequential[0] = nn.Conv2d(old.in_channels, old.out_channels, old.kernel_size)
    reference.load_state_dict(model.state_dict())
    assert sum(isinstance(m, WholeMapConv2d) for m in model.modules()) == 3
    x = torch.randn(3, 1, 100, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x))


def test_norm_layer_is_injectable():
    model = resnet(10, width_mult=SMALL, norm_layer=lambda c: nn.GroupNorm(1, c))
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert model(torch.randn(1, 1, 100, 64)).shape == (1, 10)  # GroupNorm works at batch 1


def test_rebuild_from_config_gives_the_same_architecture():
    model = build_model("mobilenetv2", 11, SMALL)
    again = build_model(**model.config)
    assert [tuple(p.shape) for p in model.parameters()] == [tuple(p.shape) for p in again.parameters()]


def test_model_table_counts_small_models():
    table = model_table(num_classes=10, width_mult=SMALL)
    assert list(table["model"]) == list(MODEL_NAMES)
    assert (table["flops"] > 0).all() and (table["flops"] % 2 == 0).all()
    row = table.set_index("model").loc["resnet50"]
    assert row["parameters"] == n_params(build_model("resnet50", 10, SMALL))


def test_count_flops_is_two_per_multiply_accumulate():
    layer = nn.Linear(64, 10)  # a [1, 1, 100, 64] input -> 100 rows x 64 x 10 MACs
    assert count_flops(layer) == 2 * 100 * 64 * 10


@pytest.mark.parametrize("kwargs", [
    {"name": "vggish_xl", "num_classes": 10},
    {"name": "vggish", "num_classes": 0},
    {"name": "resnet50", "num_classes": 10, "width_mult": 0.0},
    {"name": "mobilenetv2", "num_classes": 10, "width_mult": -1.0},
])
def test_bad_configs_raise(kwargs):
    with pytest.raises(ValueError):
        build_model(**kwargs)


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="vggish_fc"):
        build_model("vgg16", 10)


def test_input_too_small_for_vggish_raises():
    with pytest.raises(ValueError, match="too small"):
        vggish(10, "vggish_fc", SMALL, input_size=(8, 64))


def test_wrong_input_rank_raises():
    model = build_model("vggish", 3, SMALL)
    with pytest.raises(ValueError):
        model(torch.randn(2, 3, 100, 64))
