"""The variants benchmark's points (``senformer benchmark variants``): a workload at one attention kind and
precision, the grid of them, and the FLOPs each runs.

Two workloads per attention kind and precision:

- ``anchored`` (one strand): a window with many edits against it, as expression-QTL scoring and in-silico
  mutagenesis do. Anchored SNVs at random positions across the window, and ISM (every other base at
  consecutive positions from the window's centre).
- ``centred`` (reverse-complement averaging): variants at the window's centre, the right flank refilled.
  Variant-centred windows (one window, one reference per variant: an SNV and a 1-bp insertion, each in a
  fresh window), and ``--cluster-bp`` sharing: SNVs within ``cluster_bp`` of the centre scored against one
  shared reference.

``family="borzoi"`` measures Borzoi (:class:`senformer.model.borzoi.Borzoi`: the tower and both U-Net skips
shared, the transformer, U-Net and heads per edit) at its published geometry by default.

Nothing here imports torch: the command's parser reads the choices from this module.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Iterable, Mapping

from ..constants import SEQUENCE_LENGTH, TARGET_LENGTH
from ..errors import UserError

WORKLOADS = ("anchored", "centred")
FAMILIES = ("enformer", "borzoi")
PRECISIONS = ("fp32", "bf16")
ATTENTIONS = ("full", "bigbird")
HEAD = "human"


# Points -------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VariantPoint:
    """One measurement: a workload at one attention kind and precision. Every field is part of its identity."""

    workload: str
    attention: str = "full"
    precision: str = "fp32"
    dim: int = 1536
    depth: int = 11
    length: int = SEQUENCE_LENGTH
    target_length: int | None = TARGET_LENGTH  # None: Borzoi's crop (16 bins per side)
    edits: int = 16  # engine-timed edits per workload (ISM, anchored SNVs, the cluster)
    plain_edits: int = 2  # edits the plain path is timed on (and the equality check compares)
    batch_size: int = 2  # edits per batch, both paths
    cluster_bp: int = 2000  # the cluster's SNVs lie within this many bp of the centre
    conv_tile_length: int | None = 131_072
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    seed: int = 0
    family: str = "enformer"  # or "borzoi"; left out of an Enformer point's key (records before Borzoi match)

    def __post_init__(self) -> None:
        problems = []
        for name, choices in (("workload", WORKLOADS), ("attention", ATTENTIONS), ("precision", PRECISIONS),
                              ("family", FAMILIES)):
            if getattr(self, name) not in choices:
                problems.append(f"{name} {getattr(self, name)!r} is not one of {', '.join(choices)}")
        if self.edits < 1 or self.plain_edits < 1 or self.batch_size < 1:
            problems.append(f"edits, plain edits and batch size must be positive (got {self.edits}, "
                            f"{self.plain_edits}, {self.batch_size})")
        elif self.plain_edits > self.edits:
            problems.append(f"plain edits ({self.plain_edits}) cannot exceed edits ({self.edits})")
        if not 0 < self.cluster_bp < self.length // 2:
            problems.append(f"cluster bp {self.cluster_bp} must lie in 1..{self.length // 2 - 1}")
        if problems:
            raise UserError("invalid variants benchmark point: " + "; ".join(problems))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> VariantPoint:
        return cls(**{f.name: record[f.name] if f.name != "family" else record.get("family", "enformer")
                      for f in fields(cls)})

    @property
    def key(self) -> str:
        """The point's identity in ``variants.json`` (resuming matches on it)."""
        return "|".join(f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                        if f.name != "family" or self.family != "enformer")

    @property
    def label(self) -> str:
        model = "Borzoi " if self.family == "borzoi" else ""
        return (f"{model}{self.workload} {self.attention} {self.precision} dim {self.dim} depth {self.depth} "
                f"{self.length:,} bp")

    @property
    def reverse_complement(self) -> bool:
        return self.workload == "centred"

    def config(self):
        """The published model at ``dim``/``depth``/``attention`` (as :meth:`senformer.bench.points.Point.config`).

        A width that is not a multiple of 128 (tiny test models) rounds its conv tower to 16 instead of 128,
        which EnformerConfig would refuse.
        """
        from ..config import BorzoiConfig, EnformerConfig

        if self.family == "borzoi":
            # The published widths scaled to ``dim`` (608 of 1,536 for the tower's first block, 512 for the stem,
            # 1,920 for the final conv), rounded to 32 (published) or 8 (tiny test models).
            step = 32 if self.dim % 32 == 0 and self.dim >= 512 else 8
            scaled = lambda value: max(step, round(self.dim * value / 1536 / step) * step)  # noqa: E731
            return BorzoiConfig(dim=self.dim, depth=self.depth, attention=self.attention,
                                stem_channels=scaled(512), conv_tower_start=scaled(608), conv_tower_divisible_by=step,
                                final_channels=scaled(1920), target_length=self.target_length,
                                conv_tile_length=self.conv_tile_length, output_heads={HEAD: 7611})
        features = (self.dim // 8) // 6 * 6
        return EnformerConfig(
            num_relative_position_features=None if features == self.dim // 8 else features,
            conv_tower_divisible_by=128 if self.dim % 128 == 0 else 16,
            dim=self.dim, depth=self.depth, attention=self.attention, target_length=self.target_length,
            conv_tile_length=self.conv_tile_length,
        )


def grid(workloads: Iterable[str] = WORKLOADS, attentions: Iterable[str] = ATTENTIONS,
         precisions: Iterable[str] = PRECISIONS, **settings: Any) -> list[VariantPoint]:
    """Every combination; fp32 before bf16, so a run cut short has the headline numbers first."""
    return [VariantPoint(workload=workload, attention=attention, precision=precision, **settings)
            for precision in precisions for attention in attentions for workload in workloads]


POINT_SETTINGS = ("dim", "depth", "length", "target_length", "edits", "plain_edits", "batch_size", "cluster_bp",
                  "conv_tile_length", "device", "threads", "seed")
# The published geometry of each family: (dim, depth, length, target_length).
FAMILY_DEFAULTS = {"enformer": (1536, 11, SEQUENCE_LENGTH, TARGET_LENGTH), "borzoi": (1536, 8, 524_288, None)}


def grid_from_settings(settings: Mapping[str, Any]) -> list[VariantPoint]:
    return grid(settings["workloads"], settings["attentions"], settings["precisions"],
                family=settings.get("family", "enformer"), **{name: settings[name] for name in POINT_SETTINGS})


# FLOPs ---------------------------------------------------------------------------------------------------
def edit_costs(config, length: int, edits, reverse_complement: bool) -> tuple[float, float]:
    """(whole, engine) FLOPs summed over ``edits`` (:func:`senformer.edits.edit_flops`, one head)."""
    from ..edits import edit_flops

    whole = engine = 0.0
    for edit in edits:
        counted = edit_flops(config, length, edit, heads=(HEAD,), reverse_complement=reverse_complement)
        whole += counted["whole"]
        engine += counted["edit"]
    return whole, engine


def point_flops(point: VariantPoint) -> dict[str, float]:
    """FLOPs a point runs (references, checks, plain and engine edits) by the precision they run in, for the
    time estimate: a bf16 point's float32 reference for its check runs in fp32."""
    from ..edits import Edit, edit_flops

    config, length = point.config(), point.length
    snv = edit_flops(config, length, None, heads=(HEAD,), reverse_complement=point.reverse_complement)
    whole, edit = snv["whole"], snv["edit"]
    flops = 2 * whole + point.plain_edits * (edit + whole)  # both references, the check, the plain edits
    if point.workload == "anchored":
        flops += 2 * point.edits * edit
    else:
        indel = edit_flops(config, length, Edit(length // 2, "A", "AT"), heads=(HEAD,), reverse_complement=True)
        flops += point.edits * edit + 2 * whole + edit + indel["edit"]
    return {point.precision: flops, **({"fp32": whole} if point.precision == "bf16" else {})}
