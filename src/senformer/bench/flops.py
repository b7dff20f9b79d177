"""Model FLOPs of one benchmark step, for the achieved GFLOP/s the scaling benchmark reports (a forward pass
is counted by :func:`senformer.model.flops.forward_flops`)."""

from __future__ import annotations

from ..model.flops import forward_flops
from .points import Point


def step_flops(point: Point) -> float:
    """Model FLOPs of one step of ``point`` (recomputation by checkpointing not counted). The peer runs the
    same model, so its points count the same."""
    forward = forward_flops(point.config(), point.length)["total"]
    return forward if point.mode == "inference" else 3.0 * forward
