"""FLOP counts checked against hand formulas: convolutions (depthwise included) and the backbone pass a
probe's prediction costs (text: the row's own tokens)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from embedtune.backbones import load_backbone
from embedtune.costs import count_flops, encoder_flops_per_row, mean_row_flops


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


def test_per_length_flops_equal_counting_every_row_with_fewer_counts(tiny_text_model_dir) -> None:
    enc = load_backbone(str(tiny_text_model_dir), kind="text", max_length=32)
    words = "the film was long and slow but the cast made every scene worth the wait".split()
    rows = [" ".join(words[: 1 + (i * 7) % len(words)]) for i in range(24)]  # many distinct token counts
    batches = [enc.prepare([row]) for row in rows]
    calls = []

    def count(batch):
        calls.append(1)
        with torch.no_grad():
            return count_flops(lambda: enc(**batch))

    every_row = sum(count(b) for b in batches) / len(batches)
    calls.clear()
    assert mean_row_flops(count, batches) == pytest.approx(every_row, rel=1e-12)
    assert len(calls) == 5  # three lengths fix the quadratic, two check it


def test_a_count_that_is_not_quadratic_in_length_falls_back_to_every_length() -> None:
    batches = [{"input_ids": torch.zeros(1, n, dtype=torch.long)} for n in range(1, 9)]
    cubic = lambda batch: batch["input_ids"].shape[1] ** 3  # noqa: E731
    assert mean_row_flops(cubic, batches) == pytest.approx(sum(n**3 for n in range(1, 9)) / 8)


def test_attention_on_cpu_counts_its_score_and_value_products() -> None:
    q, k, v = (torch.randn(1, 2, 5, 4, requires_grad=True) for _ in range(3))  # (batch, heads, tokens, dim)
    attend = lambda: torch.nn.functional.scaled_dot_product_attention(q, k, v)  # noqa: E731
    per_product = 2 * (1 * 2) * 5 * 5 * 4  # 2 × batch·heads × tokens × tokens × dim
    assert count_flops(attend) == 2 * per_product  # q·kᵀ and scores·v
    assert count_flops(lambda: attend().sum().backward()) == 2 * per_product + 5 * per_product
