"""DNA encodings: one-hot ``(length, 4)`` in A, C, G, T order (N and anything else all zeros) and tokens
``0-3 = A, C, G, T``, ``4 = N``. Pure functions used by the model, the data readers and the analyses."""

from __future__ import annotations

import numpy as np
import torch

N_TOKEN = 4
BASES = "ACGTN"  # token i is BASES[i]
_BASE_BYTES = np.frombuffer(BASES.encode("ascii"), dtype=np.uint8)

_TOKEN_TABLE = np.full(256, N_TOKEN, dtype=np.int8)
for _index, _base in enumerate("ACGT"):
    _TOKEN_TABLE[ord(_base)] = _index
    _TOKEN_TABLE[ord(_base.lower())] = _index


def tokens(sequence: str | bytes | np.ndarray) -> np.ndarray:
    """Token array ``(length,)`` int8 of a DNA string: A C G T -> 0 1 2 3 (any case), anything else -> 4."""
    if isinstance(sequence, str):
        sequence = sequence.encode("ascii", errors="replace")
    raw = np.frombuffer(bytes(sequence), dtype=np.uint8) if not isinstance(sequence, np.ndarray) else sequence
    return _TOKEN_TABLE[raw]


def one_hot(sequence: str | bytes, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """One-hot ``(length, 4)`` of a DNA string; N and other characters are all zeros."""
    return tokens_to_one_hot(torch.from_numpy(tokens(sequence).astype(np.int64)), dtype)


def tokens_to_one_hot(token_ids: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(..., length)`` integer tokens (0-3 ACGT, 4 N) -> ``(..., length, 4)`` one-hot of ``dtype``."""
    if token_ids.dtype.is_floating_point or token_ids.dtype == torch.bool:
        raise ValueError(f"tokens must be an integer tensor, got {token_ids.dtype}")
    if token_ids.numel() and (int(token_ids.min()) < 0 or int(token_ids.max()) > N_TOKEN):
        raise ValueError(
            f"tokens must lie in 0..4 (A, C, G, T, N); got values from {int(token_ids.min())} to {int(token_ids.max())}"
        )
    eye = torch.cat([torch.eye(4, dtype=dtype, device=token_ids.device), torch.zeros(1, 4, dtype=dtype, device=token_ids.device)])
    return eye[token_ids.long()]


def one_hot_array(sequence: str | bytes) -> np.ndarray:
    """One-hot ``(length, 4)`` bool array of a DNA string (the Basenji2 record layout); N and other
    characters are all False."""
    return tokens(sequence)[:, None] == np.arange(4, dtype=np.int8)


def as_one_hot(sequence: torch.Tensor, dtype: torch.dtype = torch.float32, name: str = "a sequence") -> torch.Tensor:
    """``(bp,)`` integer tokens or a ``(bp, 4)`` float one-hot -> ``(bp, 4)`` one-hot of ``dtype``; any other
    shape is a ValueError naming ``name``."""
    if sequence.dtype.is_floating_point:
        if sequence.dim() != 2 or sequence.shape[1] != 4:
            raise ValueError(f"{name}: a one-hot sequence must be (bp, 4), got {tuple(sequence.shape)}")
        return sequence.to(dtype)
    if sequence.dim() != 1:
        raise ValueError(f"{name}: a token sequence must be (bp,), got {tuple(sequence.shape)}")
    return tokens_to_one_hot(sequence, dtype)


def tokens_to_bases(token_ids: torch.Tensor | np.ndarray) -> str:
    """``(length,)`` tokens (0-3 ACGT, 4 N) -> the DNA string."""
    array = token_ids.cpu().numpy() if isinstance(token_ids, torch.Tensor) else np.asarray(token_ids)
    return _BASE_BYTES[array.astype(np.int64)].tobytes().decode("ascii")


def one_hot_to_tokens(one_hot: torch.Tensor) -> torch.Tensor:
    """``(..., length, 4)`` one-hot -> ``(..., length)`` int64 tokens; an all-zero position is N (4)."""
    if one_hot.shape[-1:] != (4,):
        raise ValueError(f"a one-hot sequence must end in 4 channels, got shape {tuple(one_hot.shape)}")
    return torch.where(one_hot.sum(-1) > 0, one_hot.argmax(-1), torch.tensor(N_TOKEN))


def reverse_complement(sequence: torch.Tensor | np.ndarray | str) -> torch.Tensor | np.ndarray | str:
    """Reverse complement of a one-hot ``(..., length, 4)`` (flip length and channels), of integer tokens
    ``(..., length)`` (N stays N), or of a string."""
    if isinstance(sequence, str):
        return sequence.translate(str.maketrans("ACGTacgtNn", "TGCAtgcaNn"))[::-1]
    is_numpy = isinstance(sequence, np.ndarray)
    tensor = torch.from_numpy(sequence) if is_numpy else sequence
    if tensor.dtype.is_floating_point or tensor.dtype == torch.bool:
        result = tensor.flip(dims=(-2, -1))
    else:
        result = torch.where(tensor < N_TOKEN, 3 - tensor, tensor).flip(dims=(-1,))
    return result.numpy() if is_numpy else result
