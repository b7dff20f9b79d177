"""borzoi-pytorch / Hugging Face Borzoi and Flashzoi weights -> senformer, against the peer itself (a test extra).

borzoi-pytorch builds its relative-position basis at the training length (4,096 positions) whatever the
input's; its Hugging Face config.json says how many central bins it returns. Flashzoi there runs flash-attn's
``MHA`` (CUDA only), so its attention is checked against a reference written here from flash-attn's
documented pure-torch formulas (``rotate_half`` / ``apply_rotary_emb_torch``, ``RotaryEmbedding``'s
float32 tables, grouped heads repeated ``(hkv g)``), alone and inside the peer's whole model.
"""

import math

import pytest
import torch
from torch import nn

from senformer import load_model
from senformer.config import preset
from senformer.errors import UserError
from senformer.model.attention import GroupedRotaryAttention
from senformer.model.borzoi import Borzoi
from senformer.weights import detect_format
from senformer.weights.borzoi_pytorch import convert_borzoi_pytorch

peer_package = pytest.importorskip("borzoi_pytorch")
from borzoi_pytorch.config_borzoi import BorzoiConfig as PeerConfig  # noqa: E402


def randomize_peer_(model: nn.Module, seed: int = 0) -> nn.Module:
    """Fan-in-scaled random weights, random biases, norms near 1 and random BatchNorm statistics."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator)
            if parameter.dim() >= 2:
                parameter.copy_(noise / math.sqrt(parameter[0].numel()))
            elif name.endswith("weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            else:
                parameter.copy_(0.1 * noise)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator))
    return model.eval()


def peer_outputs(peer, one_hot: torch.Tensor) -> dict[str, torch.Tensor]:
    """Both heads of the peer from one pass: its forward returns the embeddings its heads read."""
    with torch.no_grad():
        human, embeddings = peer(one_hot.transpose(1, 2), return_embeddings=True)
        mouse = peer.final_softplus(peer.mouse_head(embeddings))
    return {"human": human.transpose(1, 2), "mouse": mouse.transpose(1, 2)}


def assert_matches_peer(ours: dict[str, torch.Tensor], theirs: dict[str, torch.Tensor], tolerance: float = 1e-5):
    for head in ("human", "mouse"):
        assert ours[head].shape == theirs[head].shape, head
        error = (ours[head] - theirs[head]).abs().max() / theirs[head].abs().max()
        assert error <= tolerance, (head, float(error))


def one_hot_input(length: int, seed: int = 1) -> torch.Tensor:
    tokens = torch.randint(0, 4, (1, length), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(tokens, 4).float()


def test_random_borzoi_equals_peer_both_crops(tmp_path):
    # The published widths (the peer fixes them) at one transformer layer and 16,384 bp: 512 bins of 32 bp.
    peer = randomize_peer_(peer_package.Borzoi(PeerConfig(depth=1, bins_to_return=256, enable_mouse_head=True)))
    peer.save_pretrained(tmp_path / "hf")  # a Hugging Face folder: config.json + model.safetensors
    assert detect_format(tmp_path / "hf") == "borzoi-pytorch"
    ours = load_model(tmp_path / "hf")
    assert isinstance(ours, Borzoi)
    assert (ours.config.target_length, ours.config.positional_basis_length) == (256, 4096)
    x = one_hot_input(16_384)
    with torch.no_grad():
        assert_matches_peer(ours(x), peer_outputs(peer, x))
        peer.crop.target_length = 512 - 32  # every bin but the 16 cropped from each end
        full = load_model(tmp_path / "hf", overrides={"target_length": None})
        assert_matches_peer(full(x), peer_outputs(peer, x))


def test_state_dict_file_and_prefixes(tmp_path):
    peer = randomize_peer_(peer_package.Borzoi(PeerConfig(depth=1, bins_to_return=128, enable_mouse_head=True)))
    state = {f"module.{name}": tensor for name, tensor in peer.state_dict().items()}  # a DataParallel save
    torch.save(state, tmp_path / "borzoi.pt")
    assert detect_format(tmp_path / "borzoi.pt") == "borzoi-pytorch"
    # No config.json: the peer's own basis (4,096) and every bin after the crop of 16.
    ours = load_model(tmp_path / "borzoi.pt", overrides={"target_length": 128})
    assert ours.config.positional_basis_length == 4096
    x = one_hot_input(8192, seed=2)
    assert_matches_peer(ours(x), peer_outputs(peer, x))


def test_missing_or_unknown_tensors_are_refused(tmp_path):
    peer = randomize_peer_(peer_package.Borzoi(PeerConfig(depth=1, enable_mouse_head=True)))
    state = peer.state_dict()
    del state["horizontal_conv0.conv_layer.weight"]
    state["horizontal_conv2.conv_layer.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "damaged.pt")
    with pytest.raises(UserError, match=r"unet\.1\.skip\.conv\.weight.*horizontal_conv2\.conv_layer\.weight"):
        load_model(tmp_path / "damaged.pt")


@pytest.mark.slow
@pytest.mark.full_length
def test_published_size_at_full_length_equals_peer(tmp_path):
    # The issue's acceptance: 524,288 bp, every layer, both heads, the peer's default 6,144 central bins and
    # all 16,352.
    peer = randomize_peer_(peer_package.Borzoi(PeerConfig(enable_mouse_head=True)))
    peer.save_pretrained(tmp_path / "hf")
    x = one_hot_input(524_288, seed=3)
    ours = load_model(tmp_path / "hf")
    assert ours.config.target_length == 6144
    with torch.no_grad():
        assert_matches_peer(ours(x), peer_outputs(peer, x))
        del ours
        peer.crop.target_length = 16_352
        theirs = peer_outputs(peer, x)
        ours = load_model(tmp_path / "hf", overrides={"target_length": None})
        assert_matches_peer(ours(x), theirs)


# Flashzoi -----------------------------------------------------------------------------------------
def flash_rotate_half(x: torch.Tensor) -> torch.Tensor:
    """flash_attn.layers.rotary.rotate_half, non-interleaved."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def flash_apply_rotary_emb_torch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """flash_attn.layers.rotary.apply_rotary_emb_torch: x (batch, seqlen, nheads, headdim), cos/sin
    (seqlen, rotary_dim / 2) repeated ``... d -> ... 1 (2 d)``."""
    ro_dim = cos.shape[-1] * 2
    cos = torch.cat([cos, cos], dim=-1)[:, None, :]
    sin = torch.cat([sin, sin], dim=-1)[:, None, :]
    return torch.cat([x[..., :ro_dim] * cos + flash_rotate_half(x[..., :ro_dim]) * sin, x[..., ro_dim:]], dim=-1)


class FlashMHAReference(nn.Module):
    """flash_attn.modules.mha.MHA as Flashzoi builds it (8 heads, 4 kv heads, biases, rotary_emb_dim 128,
    base 20,000, softmax_scale (dim / heads)**-0.5), with flash-attn's pure-torch formulas and a plain
    softmax in place of its kernel."""

    def __init__(self, dim: int = 1536, heads: int = 8, kv_heads: int = 4, rotary_dim: int = 128, base: float = 20_000.0):
        super().__init__()
        self.heads, self.kv_heads, self.head_dim = heads, kv_heads, dim // heads
        self.rotary_dim, self.base = rotary_dim, base
        self.Wqkv = nn.Linear(dim, self.head_dim * (heads + 2 * kv_heads))
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, seqlen, _ = x.shape
        qkv = self.Wqkv(x)
        q = qkv[..., : self.heads * self.head_dim].reshape(batch, seqlen, self.heads, self.head_dim)
        kv = qkv[..., self.heads * self.head_dim:].reshape(batch, seqlen, 2, self.kv_heads, self.head_dim)
        # RotaryEmbedding._update_cos_sin_cache: float32 positions times float32 inverse frequencies.
        inv_freq = 1.0 / (self.base ** (torch.arange(0, self.rotary_dim, 2, dtype=torch.float32) / self.rotary_dim))
        freqs = torch.outer(torch.arange(seqlen, dtype=torch.float32), inv_freq)
        cos, sin = torch.cos(freqs), torch.sin(freqs)
        q = flash_apply_rotary_emb_torch(q, cos, sin)
        k = flash_apply_rotary_emb_torch(kv[:, :, 0], cos, sin)
        v = kv[:, :, 1]
        groups = self.heads // self.kv_heads  # CrossAttention: repeat "... hkv d -> ... (hkv g) d"
        k = k.repeat_interleave(groups, dim=2)
        v = v.repeat_interleave(groups, dim=2)
        scores = torch.einsum("bthd,bshd->bhts", q, k) * self.head_dim**-0.5
        context = torch.einsum("bhts,bshd->bthd", scores.softmax(dim=-1), v)
        return self.out_proj(context.reshape(batch, seqlen, -1))


class FlashAttentionReference(nn.Module):
    """borzoi-pytorch's FlashAttention wrapper (its parameters under ``mha.``)."""

    def __init__(self):
        super().__init__()
        self.mha = FlashMHAReference()

    def forward(self, x):
        return self.mha(x)


def test_flashzoi_layer_equals_flash_attn_formulas():
    reference = FlashAttentionReference()
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for parameter in reference.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / math.sqrt(parameter.shape[-1]))
    # flash-attn's names and shapes as borzoi-pytorch stores them: Wqkv (16 x 192, 1536), out_proj (1536, 1536).
    state = {f"transformer.0.0.fn.1.{name}": tensor for name, tensor in reference.state_dict().items()}
    assert state["transformer.0.0.fn.1.mha.Wqkv.weight"].shape == (3072, 1536)
    converted = convert_borzoi_pytorch(state)
    layer = GroupedRotaryAttention(preset("flashzoi")).eval()
    layer.load_state_dict({name.removeprefix("transformer.0.attention."): tensor for name, tensor in converted.items()})
    x = torch.randn(2, 300, 1536, generator=generator)
    with torch.no_grad():
        expected, got = reference(x), layer(x)
    assert ((got - expected).abs().max() / expected.abs().max()) <= 1e-5


def test_flashzoi_model_equals_peer_with_reference_attention(tmp_path):
    peer = peer_package.Borzoi(PeerConfig(depth=2, bins_to_return=128, enable_mouse_head=True))
    for block in peer.transformer:
        block[0].fn[1] = FlashAttentionReference()  # where borzoi-pytorch puts its FlashAttention
    randomize_peer_(peer, seed=6)
    state = peer.state_dict()
    assert "transformer.1.0.fn.1.mha.Wqkv.bias" in state
    torch.save(state, tmp_path / "flashzoi.pt")
    ours = load_model(tmp_path / "flashzoi.pt", overrides={"target_length": 128})
    assert (ours.config.attention, ours.config.key_value_heads, ours.config.key_size) == ("rotary", 4, 192)
    x = one_hot_input(8192, seed=7)
    assert_matches_peer(ours(x), peer_outputs(peer, x))


def test_stored_rotary_frequencies_are_checked():
    state = {f"transformer.0.0.fn.1.{name}": tensor for name, tensor in FlashAttentionReference().state_dict().items()}
    state["transformer.0.0.fn.1.mha.rotary_emb.inv_freq"] = 1.0 / (20_000.0 ** (torch.arange(0, 128, 2) / 128.0))
    assert "transformer.0.0.fn.1.mha.rotary_emb.inv_freq" not in convert_borzoi_pytorch(state)
    state["transformer.0.0.fn.1.mha.rotary_emb.inv_freq"] = 1.0 / (10_000.0 ** (torch.arange(0, 128, 2) / 128.0))
    with pytest.raises(UserError, match="not the rotary frequencies of base 20000"):
        convert_borzoi_pytorch(state)
