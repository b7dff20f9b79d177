"""A replicate ensemble: several models of one configuration (Borzoi's four published replicates) as one model
whose outputs are the mean of theirs (calico's ``seqnn.build_ensemble`` averages the replicates' outputs)."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..errors import UserError


class Ensemble(nn.Module):
    """The mean of ``members``' outputs, called as one of them: ``{head: (batch, bins, tracks)}`` for every
    head or the chosen ``heads`` (and ``"embeddings"``, averaged the same way, when asked).

    Every member has the same configuration (the geometry, heads and tracks the callers read from
    ``config``); the state dict holds every member's tensors, so a fingerprint of it covers them all.
    """

    def __init__(self, members: Sequence[nn.Module]):
        super().__init__()
        members = list(members)
        if len(members) < 2:
            raise UserError(f"an ensemble needs at least two models, got {len(members)}")
        first = members[0].config.to_dict()
        for number, member in enumerate(members[1:], start=2):
            other = member.config.to_dict()
            if other != first:
                changed = sorted(key for key in first.keys() | other.keys() if first.get(key) != other.get(key))
                raise UserError(f"ensemble member {number} differs from the first in {', '.join(changed)}: the "
                                "replicates of one model share its configuration")
        self.members = nn.ModuleList(members)

    @property
    def config(self):
        return self.members[0].config

    def head_names(self, heads=None) -> list[str]:
        return self.members[0].head_names(heads)

    def forward(self, sequence: torch.Tensor, heads: Sequence[str] | None = None,
                return_embeddings: bool = False) -> dict[str, torch.Tensor]:
        """sequence: one-hot ``(batch, bp, 4)`` or tokens ``(batch, bp)`` -> the members' mean outputs."""
        sums: dict[str, torch.Tensor] = {}
        for member in self.members:
            for name, value in member(sequence, heads=heads, return_embeddings=return_embeddings).items():
                sums[name] = sums[name] + value if name in sums else value
        return {name: value / len(self.members) for name, value in sums.items()}
