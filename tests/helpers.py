"""Shared test helpers: tiny configurations, randomised weights, random genomes, the shared reference folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from senformer import Enformer, EnformerConfig

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def tiny_config(**overrides) -> EnformerConfig:
    """A model of a few thousand parameters: dim 48, 2 heads, key 8, 2 layers, one 5-track head.

    Its input must be a multiple of 128 bp; ``target_length=None`` keeps every position beyond the
    320-bin margins, so inputs of at least 641 x 128 bp are valid. Pass ``target_length=k`` for shorter ones.
    """
    values = dict(
        dim=48, depth=2, heads=2, key_size=8, conv_tower_divisible_by=8, output_heads={"human": 5, "mouse": 3},
        target_length=8, block_size=4, chunk_size=5, dropout_rate=0.0, attention_dropout_rate=0.0,
        positional_dropout_rate=0.0, final_dropout_rate=0.0,
    )
    values.update(overrides)
    return EnformerConfig(**values)


def randomize_(model: torch.nn.Module, seed: int = 0, scale: float = 0.2) -> torch.nn.Module:
    """Set every parameter and BatchNorm statistic to seeded random values.

    The official initialisation zeroes the attention output layer; with it at zero every attention kind
    gives the same output and a comparison proves nothing, so tests always randomise it.
    """
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            noise = torch.randn(parameter.shape, generator=generator, dtype=torch.float64)
            if name.endswith("norm.weight"):
                parameter.copy_(1.0 + 0.1 * noise)
            else:
                parameter.copy_(scale * noise)
        for name, buffer in model.named_buffers():
            if name.endswith("running_mean"):
                buffer.copy_(0.1 * torch.randn(buffer.shape, generator=generator, dtype=torch.float64))
            elif name.endswith("running_var"):
                buffer.copy_(0.5 + torch.rand(buffer.shape, generator=generator, dtype=torch.float64))
    return model


def tiny_model(seed: int = 0, **overrides) -> Enformer:
    torch.manual_seed(seed)
    return randomize_(Enformer(tiny_config(**overrides)), seed).eval()


def tiny_borzoi(seed: int = 0, **overrides):
    """A random Borzoi at tiny widths with the published geometry (32-bp bins, a crop of 2 bins a side: 1,024
    bp give 28 bins); ``overrides`` are BorzoiConfig fields (e.g. ``output_heads={"mouse": 2608}``)."""
    from senformer.config import BorzoiConfig
    from senformer.model.borzoi import Borzoi

    settings = dict(dim=16, depth=1, heads=2, key_size=4, stem_channels=8, stem_width=5, conv_tower_start=8,
                    conv_tower_divisible_by=4, crop=2, final_channels=12, output_heads={"human": 6})
    torch.manual_seed(seed)
    return randomize_(Borzoi(BorzoiConfig(**{**settings, **overrides})), seed, scale=0.3).eval()


def random_tokens(batch: int, length: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 5, (batch, length), generator=generator)


def training_step(model: torch.nn.Module, tokens: torch.Tensor) -> tuple[dict, dict, dict]:
    """Two forward/backward passes of a model with heads ``human`` and ``mouse``, one sequence of ``tokens``
    (2, bp) each (statistics move twice); returns the last outputs, the gradients and the buffers."""
    model.train()
    outputs = {}
    for step in range(2):
        model.zero_grad(set_to_none=True)
        predictions = model(tokens[step : step + 1], return_embeddings=True)
        loss = predictions["human"].sum() + 0.5 * predictions["mouse"].pow(2).sum()
        loss.backward()
        outputs = {name: value.detach().clone() for name, value in predictions.items()}
    gradients = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    buffers = {name: b.clone() for name, b in model.named_buffers()}
    return outputs, gradients, buffers


def write_random_chromosome(path: Path, length: int, seed: int, name: str = "chr1") -> str:
    """A one-record FASTA of ``length`` random A/C/G/T bases in 80-column lines; returns the sequence."""
    rng = np.random.default_rng(seed)
    sequence = "".join(rng.choice(list("ACGT"), length))
    path.write_text(f">{name}\n" + "\n".join(sequence[i : i + 80] for i in range(0, length, 80)) + "\n")
    return sequence


# Stopping a run in process at a chosen write ---------------------------------------------------------------------
class Killed(BaseException):
    """Stands for the process being killed: not an Exception, so nothing on the way catches it."""


def interrupt_after(monkeypatch, writer_class, appends: int, method: str = "append") -> None:
    """``writer_class.<method>`` raises :class:`Killed` when called after ``appends`` calls that ran."""
    calls = []
    original = getattr(writer_class, method)

    def interrupted(self, *args, **kwargs):
        if len(calls) == appends:
            raise Killed()
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(writer_class, method, interrupted)


# Killing a command from outside at a chosen write -------------------------------------------------------------
# The child runs the command with every durable write point (an HDF5 flush, a table append, a torch.save, a
# rename) followed by a pause: it tells the parent through a pipe and waits. The parent answers each pause, and at the
# chosen one sends SIGKILL instead, so a kill lands at the same point on every run of a seed.
_KILL_DRIVER = r"""
import os, sys
import h5py
import torch
from senformer.analysis import variant_files
from senformer.cli import main

into, out_of = int(sys.argv[1]), int(sys.argv[2])

def pause():
    os.write(out_of, b"w")
    if os.read(into, 1) != b"g":
        os._exit(99)

def after(owner, name):
    real = getattr(owner, name)
    def wrapped(*args, **kwargs):
        result = real(*args, **kwargs)
        pause()
        return result
    setattr(owner, name, wrapped)

after(h5py.File, "flush")
after(variant_files.TableWriter, "append")
after(torch, "save")
after(os, "replace")  # every atomic write, and each step of an output's finish
sys.exit(main(sys.argv[3:]))
"""


def run_killed_at(argv: list[str], kill_at: int | None, env: dict | None = None):
    """Run ``senformer argv`` in a child and SIGKILL it at its ``kill_at``-th write point (1-based; None: never).

    Returns ``(returncode, write points seen, stderr)``; the return code is ``-9`` when the kill landed.
    """
    import os
    import signal
    import subprocess
    import sys

    to_child, child_in = os.pipe()
    child_out, from_child = os.pipe()
    process = subprocess.Popen([sys.executable, "-c", _KILL_DRIVER, str(to_child), str(from_child), *argv],
                               pass_fds=(to_child, from_child), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               env={**os.environ, **(env or {})})
    os.close(to_child)
    os.close(from_child)
    seen = 0
    try:
        while os.read(child_out, 1):
            seen += 1
            if seen == kill_at:
                process.send_signal(signal.SIGKILL)
                break
            os.write(child_in, b"g")
        _, stderr = process.communicate(timeout=300)
    finally:
        os.close(child_in)
        os.close(child_out)
    return process.returncode, seen, stderr.decode("utf-8", errors="replace")


def seeded_kill_point(seed: int, argv: list[str], env: dict | None = None, spare: int = 0) -> int:
    """A write point drawn with ``seed`` among those a full run of ``argv`` makes (counted by one such run:
    give it a scratch output), leaving out the last ``spare`` (e.g. the renames of the finish)."""
    import random

    code, points, stderr = run_killed_at(argv, None, env)
    assert code == 0 and points > 1 + spare, stderr
    return random.Random(seed).randint(1, points - 1 - spare)



def training_killed_and_resumed(arguments: list[str], folder: Path, seed: int) -> Path:
    """``senformer train arguments`` run whole into ``folder/reference``, then again into ``folder/run`` SIGKILLed
    at a write point drawn with ``seed`` and rerun (``--resume`` where a checkpoint was left): the rerun's weights
    must equal the uninterrupted run's byte for byte. Returns ``folder/run``."""
    import shutil
    import signal
    import subprocess
    import sys

    from safetensors.torch import load_file

    reference, run = folder / "reference", folder / "run"
    kill_at = seeded_kill_point(seed, ["train", *arguments, "--out", str(reference)])
    code, _, stderr = run_killed_at(["train", *arguments, "--out", str(run)], kill_at)
    assert code == -signal.SIGKILL, stderr
    resume = ["--resume"] if list((run / "checkpoints").glob("step-*.pt")) else []
    if not resume:
        shutil.rmtree(run)
    # The rerun as a command like the reference run: the same threads from the same environment (an in-process
    # run after torch.set_num_threads computes other float bits), so the weights can be compared byte for byte.
    rerun = subprocess.run([sys.executable, "-m", "senformer", "train", *arguments, "--out", str(run), *resume],
                           capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    expected, resumed = (load_file(str(folder / "weights" / "model.safetensors")) for folder in (reference, run))
    assert expected.keys() == resumed.keys()
    for name, tensor in expected.items():  # exactly the uninterrupted run's weights
        assert resumed[name].numpy().tobytes() == tensor.numpy().tobytes(), name
    return run

def strand_passes(model: torch.nn.Module, sequence: torch.Tensor, **options) -> tuple[dict, dict]:
    """(forward, reverse-complement) outputs of ``model`` on ``sequence`` as ``predict_batch`` computes them: one
    call for both strands when the batch is small enough (``inference.MAX_STRAND_BATCH``), else one per strand.
    A batch's rounding can differ from a single window's; references that pin exact numbers use this."""
    from senformer.inference import MAX_STRAND_BATCH
    from senformer.sequence import reverse_complement

    batch = sequence.shape[0]
    if 2 * batch <= MAX_STRAND_BATCH:
        both = model(torch.cat([sequence, reverse_complement(sequence)]), **options)
        return ({name: value[:batch] for name, value in both.items()},
                {name: value[batch:] for name, value in both.items()})
    return model(sequence, **options), model(reverse_complement(sequence), **options)
