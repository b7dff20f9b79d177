"""borzoi-pytorch (``johahi/borzoi-pytorch``) and its Hugging Face copies (Borzoi and Flashzoi replicates)
-> senformer names.

The peer's modules are ``nn.Sequential`` stacks, so its names are positional: its tower is ``res_tower``
(five conv blocks between max pools, ``res_tower.0 .2 .4 .6 .8``) and ``unet1.1`` (the sixth, after a pool);
``horizontal_conv1`` / ``horizontal_conv0`` are the 1x1 convs of the 64- and 32-bp skips,
``upsampling_unet1`` / ``upsampling_unet0`` the upsampled paths and ``separable1`` / ``separable0`` the
depthwise + pointwise convs, in that order up the U-Net. Flashzoi's attention is flash-attn's ``MHA``:
``mha.Wqkv`` packs the query heads, then the key heads, then the value heads (``(h + 2 hkv) d`` rows) and is
split into ``to_q``, ``to_k``, ``to_v``; ``mha.out_proj`` is ``to_out``. The heads are width-1 Conv1d
(``[tracks, C, 1]``), ours Linear; relative biases ``[1, H, 1, K]`` become ``[H, K]``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Mapping

import torch

from ..config import BORZOI_TRAINING_POSITIONS
from ..errors import UserError
from ..model.rotary import rotary_tables
from .enformer_pytorch import _strip_prefix

_same = lambda t: t
_bias_table = lambda t: t.reshape(t.shape[1], t.shape[3])  # (1, H, 1, K) -> (H, K)
_head = lambda t: t.reshape(t.shape[0], t.shape[1])  # (tracks, C, 1) -> (tracks, C)

_BLOCK = r"(?P<leaf>norm\.\w+|conv_layer\.(?:weight|bias))"
# (peer name pattern, senformer name template, transform); ``{tower}`` is the peer's res_tower index / 2.
_RULES: list[tuple[str, str, Any]] = [
    (r"conv_dna\.conv_layer\.(?P<leaf>weight|bias)", "stem.conv.{leaf}", _same),
    (rf"res_tower\.(?P<tower>\d+)\.{_BLOCK}", "conv_tower.{tower}.{leaf}", _same),
    (rf"unet1\.1\.{_BLOCK}", "conv_tower.{last}.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.0\.(?P<leaf>weight|bias)", "transformer.{i}.attention_norm.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.to_(?P<leaf>q|k|v)\.weight", "transformer.{i}.attention.to_{leaf}.weight", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.to_rel_k\.weight", "transformer.{i}.attention.to_r_k.weight", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.(?:to_out|mha\.out_proj)\.(?P<leaf>weight|bias)",
     "transformer.{i}.attention.to_out.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.rel_content_bias", "transformer.{i}.attention.r_w_bias", _bias_table),
    (r"transformer\.(?P<i>\d+)\.0\.fn\.1\.rel_pos_bias", "transformer.{i}.attention.r_r_bias", _bias_table),
    (r"transformer\.(?P<i>\d+)\.1\.fn\.0\.(?P<leaf>weight|bias)", "transformer.{i}.feed_forward.norm.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.1\.fn\.1\.(?P<leaf>weight|bias)", "transformer.{i}.feed_forward.linear_in.{leaf}", _same),
    (r"transformer\.(?P<i>\d+)\.1\.fn\.4\.(?P<leaf>weight|bias)", "transformer.{i}.feed_forward.linear_out.{leaf}", _same),
    (rf"horizontal_conv1\.{_BLOCK}", "unet.0.skip.{leaf}", _same),
    (rf"horizontal_conv0\.{_BLOCK}", "unet.1.skip.{leaf}", _same),
    (rf"upsampling_unet1\.0\.{_BLOCK}", "unet.0.upsample.{leaf}", _same),
    (rf"upsampling_unet0\.0\.{_BLOCK}", "unet.1.upsample.{leaf}", _same),
    (r"separable1\.conv_layer\.0\.weight", "unet.0.depthwise.weight", _same),
    (r"separable1\.conv_layer\.1\.(?P<leaf>weight|bias)", "unet.0.pointwise.{leaf}", _same),
    (r"separable0\.conv_layer\.0\.weight", "unet.1.depthwise.weight", _same),
    (r"separable0\.conv_layer\.1\.(?P<leaf>weight|bias)", "unet.1.pointwise.{leaf}", _same),
    (rf"final_joined_convs\.0\.{_BLOCK}", "final_pointwise.{leaf}", _same),
    (r"(?P<head>human|mouse)_head\.(?P<leaf>weight)", "heads.{head}.{leaf}", _head),
    (r"(?P<head>human|mouse)_head\.(?P<leaf>bias)", "heads.{head}.{leaf}", _same),
]
_COMPILED = [(re.compile(pattern), template, transform) for pattern, template, transform in _RULES]
_PACKED = re.compile(r"transformer\.(?P<i>\d+)\.0\.fn\.1\.mha\.Wqkv\.(?P<leaf>weight|bias)")
_ROTARY_BUFFER = re.compile(r"transformer\.(?P<i>\d+)\.0\.fn\.1\.mha\.rotary_emb\.inv_freq")
# Names that mark a borzoi-pytorch state dict (detect_format).
MARKERS = ("conv_dna.conv_layer.weight", "unet1.1.conv_layer.weight")


def is_borzoi_pytorch(names) -> bool:
    """Whether a state dict's names are borzoi-pytorch's (after any wrapper prefix)."""
    return any(name.endswith(MARKERS) for name in names)


def convert_borzoi_pytorch(state: Mapping[str, torch.Tensor], heads: int = 8, kv_heads: int | None = None,
                           rotary_base: float = 20_000.0) -> dict[str, torch.Tensor]:
    """A borzoi-pytorch / Flashzoi state dict in senformer names.

    ``heads`` and ``kv_heads`` split a Flashzoi ``Wqkv`` (8 and 4 published; the packed shape alone cannot
    tell them apart). A stored rotary ``inv_freq`` must be the one of ``rotary_base`` (it is a buffer the
    model recomputes, not a weight). Unknown names are kept as they are, so a strict load reports them as
    unexpected.
    """
    state = _strip_prefix(state, ("module.", "borzoi.", "model."))  # DataParallel, wrapper models
    towers = sorted({int(m.group(1)) for m in map(re.compile(r"res_tower\.(\d+)\.").match, state) if m})
    if any(index % 2 for index in towers):
        raise UserError(f"borzoi-pytorch res_tower indices {towers} are not the conv blocks between max pools (0, 2, 4, ...)")
    last = len(towers)
    converted: dict[str, torch.Tensor] = {}
    for name, tensor in state.items():
        packed = _PACKED.fullmatch(name)
        if packed:
            converted.update(_split_packed(packed.group("i"), packed.group("leaf"), tensor, heads, kv_heads, state))
            continue
        rotary = _ROTARY_BUFFER.fullmatch(name)
        if rotary:
            _check_inverse_frequency(name, tensor, rotary_base)
            continue
        for pattern, template, transform in _COMPILED:
            match = pattern.fullmatch(name)
            if match:
                fields = match.groupdict()
                if "tower" in fields:
                    fields["tower"] = str(int(fields["tower"]) // 2)
                if "leaf" in fields:
                    fields["leaf"] = fields["leaf"].replace("conv_layer.", "conv.")
                converted[template.format(last=last, **fields)] = transform(tensor).contiguous()
                break
        else:
            converted[name] = tensor
    return converted


def _split_packed(layer: str, leaf: str, tensor: torch.Tensor, heads: int, kv_heads: int | None,
                  state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """flash-attn's ``Wqkv`` rows ``[q heads | k heads | v heads]`` -> ``to_q``, ``to_k``, ``to_v``."""
    out_features = state.get(f"transformer.{layer}.0.fn.1.mha.out_proj.weight")
    dim = int(out_features.shape[0]) if out_features is not None else int(tensor.shape[-1])
    size = dim // heads
    rows = tensor.shape[0]
    kv = kv_heads if kv_heads is not None else (rows // size - heads) // 2
    if dim % heads or kv <= 0 or rows != (heads + 2 * kv) * size:
        raise UserError(f"transformer.{layer}.0.fn.1.mha.Wqkv.{leaf} has {rows} rows, not (heads + 2 kv_heads) x head "
                        f"size for heads={heads}, kv_heads={kv_heads}, dim={dim}")
    query, key, value = tensor.split([heads * size, kv * size, kv * size], dim=0)
    prefix = f"transformer.{layer}.attention"
    return {f"{prefix}.to_q.{leaf}": query.contiguous(), f"{prefix}.to_k.{leaf}": key.contiguous(),
            f"{prefix}.to_v.{leaf}": value.contiguous()}


def _check_inverse_frequency(name: str, tensor: torch.Tensor, base: float) -> None:
    dims = 2 * tensor.numel()
    cos, _ = rotary_tables(2, dims, base)  # row 1 holds cos(inv_freq)
    if not torch.allclose(torch.cos(tensor.float()), cos[1], rtol=0, atol=1e-6):
        raise UserError(f"{name} is not the rotary frequencies of base {base:g} over {dims} dimensions")


def peer_config_values(path: str | os.PathLike) -> dict[str, Any]:
    """What a borzoi-pytorch / Hugging Face ``config.json`` says beyond the shapes: the output length
    (``bins_to_return`` when ``return_center_bins_only``), Flashzoi's attention (``flashed``) and heads.
    borzoi-pytorch builds its position basis at the training length, whatever the input's."""
    try:
        values = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise UserError(f"{path}: not a readable JSON config ({error})") from None
    result: dict[str, Any] = {"positional_basis_length": BORZOI_TRAINING_POSITIONS}
    if values.get("return_center_bins_only", True) and isinstance(values.get("bins_to_return"), int):
        result["target_length"] = values["bins_to_return"]
    elif values.get("return_center_bins_only") is False:
        result["target_length"] = None
    if isinstance(values.get("heads"), int):
        result["heads"] = values["heads"]
    if values.get("flashed"):
        result.update(attention="rotary", relative_positions=False, kv_heads=result.get("heads", 8) // 2)
    return result
