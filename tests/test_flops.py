"""FLOP counts checked against hand formulas: convolutions (depthwise included) and the backbone pass a
probe's prediction costs (text: the row's own tokens)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embedtune.backbones import load_backbone
from embedtune.costs import count_flops, encoder_flops_per_row


@pytest.mark.parametrize("groups", [1, 4, 32])
def test_convolution_forward_and_backward_match_the_hand_formula(groups: int) -> None:
    conv = nn.Conv2d(32, 32, 3, padding=1, groups=groups, bias=False)
    x = torch.randn(2, 32, 8, 8, requires_grad=True)
    forward = 2 * 2 * 8 * 8 * 32 * (32 // groups) * 3 * 3  # 2 × N × positions × C_out × C_in/groups × k²
    assert count_flops(lambda: conv(x)) == forward
    # backward: the input's gradient and the weight's gradient, one forward's worth each
    assert count_flops(lambda: conv(x).sum().backward()) == 3 * forward


def test_a_depthwise_conv_is_no_longer_counted_hundreds_of_times() -> None:
    conv = nn.Conv2d(256, 256, 3, padding=1, groups=256, bias=False)
    x = torch.randn(1, 256, 4, 4)  # a frozen input: only the weight's gradient
    forward = 2 * 16 * 256 * 9
    assert count_flops(lambda: conv(x).sum().backward()) == 2 * forward


def test_text_backbone_flops_count_each_rows_own_tokens(tiny_text_model_dir) -> None:
    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=32)
    short, long = ["good"], ["a long review that goes on and on about the film and its many scenes"]
    f_short, f_long = encoder_flops_per_row(enc, short), encoder_flops_per_row(enc, long)
    assert 0 < f_short < f_long
    both = encoder_flops_per_row(enc, short + long)
    assert both == pytest.approx((f_short + f_long) / 2)  # no padding to the longer row
