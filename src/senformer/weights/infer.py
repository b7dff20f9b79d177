"""Infer an :class:`EnformerConfig` from the shapes of a state dict in senformer's parameter names.

Converting a checkpoint needs no hand-written config: channels, depth, heads, key and value sizes, the
relative-feature count, the conv-tower filters and the tracks per head are all readable from the tensors.
What the tensors cannot tell (attention kind, sparse settings, ``target_length``, dropout) keeps the
published defaults unless overridden.
"""

from __future__ import annotations

import math
import re
from typing import Any, Mapping

from ..config import EnformerConfig
from ..errors import UserError

_TOWER = re.compile(r"^conv_tower\.(\d+)\.conv\.conv\.weight$")
_LAYER = re.compile(r"^transformer\.(\d+)\.attention_norm\.weight$")
_HEAD = re.compile(r"^heads\.([^.]+)\.weight$")


def _shape(state: Mapping[str, Any], name: str) -> tuple[int, ...]:
    try:
        return tuple(state[name].shape)
    except KeyError:
        raise UserError(f"cannot infer the model configuration: tensor {name!r} is missing") from None


def _tower_divisor(dim: int, filters: list[int]) -> int:
    """The ``conv_tower_divisible_by`` that reproduces ``filters`` (128 for the official model)."""
    common = 0
    for value in filters:
        common = math.gcd(common, value)
    candidates = [128] + sorted((d for d in range(1, common + 1) if common % d == 0), reverse=True)
    for divisor in candidates:
        if _tower_filters(dim, len(filters), divisor) == filters:
            return divisor
    raise UserError(
        f"the conv tower filters {filters} do not follow Enformer's exponential spacing from {dim // 2} to {dim} "
        "for any rounding divisor; this model cannot be represented by EnformerConfig"
    )


def _tower_filters(dim: int, blocks: int, divisor: int) -> list[int] | None:
    """EnformerConfig's conv tower filters for these three fields, or None where the divisor is invalid.

    Every other field is set to a value that validates for any even ``dim`` (one head, no relative
    positions), so the only error left is the divisor's own; the model's real heads and features are
    checked once, on the whole inferred config, and that message is the one the user sees.
    """
    try:
        config = EnformerConfig(dim=dim, heads=1, relative_positions=False, depth=0, num_conv_tower_blocks=blocks,
                                num_poolings=blocks + 1, conv_tower_divisible_by=divisor, conv_tile_length=None)
    except UserError:
        return None
    return config.conv_tower_filters


def infer_config_values(state: Mapping[str, Any], heads_hint: int | None = None) -> dict[str, Any]:
    """The EnformerConfig fields readable from tensor shapes (senformer names).

    ``heads_hint`` gives the head count when the shapes cannot (no relative positions).
    """
    stem_out = _shape(state, "stem.conv.weight")[0]
    dim = 2 * stem_out
    tower = sorted(int(m.group(1)) for m in map(_TOWER.match, state) if m)
    if not tower or tower != list(range(len(tower))):
        raise UserError(f"cannot infer the conv tower: found blocks {tower or 'none'} (expected 0, 1, 2, ...)")
    filters = [_shape(state, f"conv_tower.{i}.conv.conv.weight")[0] for i in tower]
    if filters[-1] != dim:
        raise UserError(f"the last conv tower block has {filters[-1]} channels but the stem implies dim={dim}")
    layers = sorted(int(m.group(1)) for m in map(_LAYER.match, state) if m)
    if layers != list(range(len(layers))):
        raise UserError(f"transformer layers are not numbered 0..n-1: found {layers}")
    values: dict[str, Any] = {
        "dim": dim,
        "depth": len(layers),
        "num_conv_tower_blocks": len(filters),
        "num_poolings": len(filters) + 1,
        "conv_tower_divisible_by": _tower_divisor(dim, filters),
    }
    if layers:
        prefix = "transformer.0.attention."
        relative = f"{prefix}r_w_bias" in state
        values["relative_positions"] = relative
        query_out = _shape(state, f"{prefix}to_q.weight")[0]
        value_out = _shape(state, f"{prefix}to_v.weight")[0]
        if relative:
            heads, key_size = _shape(state, f"{prefix}r_w_bias")[-2:]
            values["heads"] = heads
            values["key_size"] = key_size
            features = _shape(state, f"{prefix}to_r_k.weight")[1]
            values["num_relative_position_features"] = None if features == dim // heads else features
        else:
            # Without relative positions the head count is not in any shape: keep the default unless overridden.
            heads = heads_hint or EnformerConfig.__dataclass_fields__["heads"].default
            if query_out % heads:
                raise UserError(f"{prefix}to_q.weight has {query_out} outputs, not divisible by heads={heads}")
            values["key_size"] = query_out // heads
        if query_out != heads * values["key_size"]:
            raise UserError(f"{prefix}to_q.weight has {query_out} outputs, not heads x key_size = {heads} x {values['key_size']}")
        values["value_size"] = None if value_out == dim else value_out // heads
    output_heads = {m.group(1): _shape(state, m.group(0))[0] for m in map(_HEAD.match, state) if m}
    if not output_heads:
        raise UserError("cannot infer the output heads: no 'heads.<name>.weight' tensor")
    values["output_heads"] = output_heads
    return values


def infer_config(
    state: Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> EnformerConfig:
    """An EnformerConfig from ``state``'s shapes, on top of ``base`` values, with ``overrides`` last.

    A combination EnformerConfig rejects is refused with its own message (e.g. relative features not
    divisible by 6), said to come from the shapes.
    """
    overrides = dict(overrides or {})
    heads_hint = overrides.get("heads", (base or {}).get("heads"))
    values = {**(base or {}), **infer_config_values(state, heads_hint), **overrides}
    try:
        return EnformerConfig.from_dict(values)
    except UserError as error:
        given = " with the overrides" if overrides else ""
        raise UserError(f"the tensor shapes{given} imply a configuration senformer cannot build: {error}") from None


# What no tensor shape tells, for a note when no config file says it either.
SHAPELESS_FIELDS = ("target_length", "attention", "dropout_rate")


def uninferred_defaults(state: Mapping[str, Any], known: Mapping[str, Any], fields=SHAPELESS_FIELDS) -> list[str]:
    """``field=default`` for each of ``fields`` (and ``heads`` without relative positions) that ``known``
    (a config file's values and the overrides) does not set: those keep EnformerConfig's defaults."""
    defaults = EnformerConfig.__dataclass_fields__
    wanted = list(fields)
    if "transformer.0.attention.to_q.weight" in state and "transformer.0.attention.r_w_bias" not in state:
        wanted.append("heads")
    named = []
    for name in wanted:
        if name not in known:
            named.append("dropout rates" if name == "dropout_rate" else f"{name}={defaults[name].default!r}")
    return named
