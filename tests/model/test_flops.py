"""Analytic FLOPs of a forward pass (the edit engine's bound and the scaling benchmark's GFLOP/s read them)."""

import pytest

from senformer import EnformerConfig
from senformer.model.flops import forward_flops


def test_flops_of_the_published_model_at_196_608_bp():
    # attention-performance.md: stem + conv tower about 2.55 of 3.29 forward TFLOP (both heads).
    parts = forward_flops(EnformerConfig(), 196_608, heads=("human", "mouse"))
    assert parts["stem"] + parts["conv_tower"] == pytest.approx(2.55e12, rel=0.01)
    assert parts["total"] == pytest.approx(3.29e12, rel=0.01)
    # The MLP by hand: 11 layers x 1,536 positions x (1536 x 3072 + 3072 x 1536) MACs x 2.
    assert parts["mlp"] == 11 * 1536 * 2 * (1536 * 3072 * 2)


def test_attention_flops_grow_quadratically_for_full_and_linearly_for_bigbird():
    def scores(kind: str, length: int) -> float:
        return forward_flops(EnformerConfig(attention=kind), length)["attention_scores"]

    assert scores("full", 786_432) / scores("full", 393_216) == pytest.approx(4.0, rel=0.01)
    assert scores("bigbird", 786_432) / scores("bigbird", 393_216) == pytest.approx(2.0, rel=0.02)
    assert scores("chunked", 393_216) < scores("full", 393_216)
    # Short enough that the pattern covers every block: the kernel runs dense, and so does the count.
    tiny = EnformerConfig(attention="bigbird", target_length=4)
    assert forward_flops(tiny, 8 * 128)["attention_scores"] == forward_flops(tiny.replace(attention="full"), 8 * 128)[
        "attention_scores"]
