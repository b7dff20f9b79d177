"""Borzoi's time and memory against input length, per attention kind and precision, beside borzoi-pytorch.

Each point (length, kind, mode, precision) runs in a fresh process under a resident-memory cap
(:func:`.memory.run_isolated`): random weights, batch 1, the human head; ``inference`` is a forward pass
under ``inference_mode``, ``train`` a forward pass, Borzoi's ``poisson_mn`` loss against random targets and
the backward pass; ``bf16`` runs under autocast, only where the device multiplies bf16 natively. Time is the
median of the timed repeats after a warm-up; memory is the peak RSS above the level after set-up (CUDA: peak
allocated), and the process's whole peak (weights included) is kept beside it. A point that does not fit,
fails or times out is recorded as such. The results file is rewritten atomically after every point and a
rerun skips the points it holds. Run through ``senformer benchmark borzoi`` (the output folder's run record,
lock and machine rule) or ``benchmarks/borzoi_scaling.py``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from ..config import ATTENTION_KINDS
from . import memory

PEER = "borzoi-pytorch"
FLEX = "+flex"
"""Suffix of a kind whose bucketed position term runs inside compiled FlexAttention (:mod:`senformer.model.attention.flex`);
a kind without it runs the gathered term (``SENFORMER_FLEX_ATTENTION=0``), so both are measured explicitly."""
KINDS = (*ATTENTION_KINDS, *(kind + FLEX for kind in ATTENTION_KINDS), PEER)
MODES = ("inference", "train")
PRECISIONS = ("fp32", "bf16")
DEFAULT_LENGTHS = (262_144, 524_288, 1_048_576, 2_097_152)


def _one_hot(length: int, device: str):
    import torch

    tokens = torch.randint(0, 4, (1, length), generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.one_hot(tokens, 4).float().to(device)


def _build(kind: str, settings: dict[str, Any], device: str, length: int):
    """The model of a point and a function from the one-hot input to the human head (batch, bins, tracks)."""
    if kind == PEER:
        import borzoi_pytorch
        from borzoi_pytorch.config_borzoi import BorzoiConfig as PeerConfig

        peer = borzoi_pytorch.Borzoi(PeerConfig(depth=settings.get("depth", 8), return_center_bins_only=False))
        peer.crop.target_length = length // 32 - 32  # every bin but the 16 cropped per side, as ours
        return peer.to(device), lambda x: peer(x.transpose(1, 2)).transpose(1, 2)
    from ..config import preset
    from ..model.borzoi import Borzoi

    config = preset("borzoi", attention=kind.removesuffix(FLEX), **settings)
    model = Borzoi(config).to(device)
    return model, lambda x: model(x, heads=["human"])["human"]


def measure(payload: dict[str, Any]) -> dict[str, Any]:
    """Time and peak memory of one point (runs inside the fresh process)."""
    import torch

    from ..train.losses import poisson_multinomial_loss

    if payload.get("threads"):
        torch.set_num_threads(payload["threads"])
    os.environ["SENFORMER_FLEX_ATTENTION"] = "1" if payload["kind"].endswith(FLEX) else "0"
    device, mode = payload["device"], payload["mode"]
    autocast = (torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
                if payload.get("precision") == "bf16" else contextlib.nullcontext())
    torch.manual_seed(0)
    model, run = _build(payload["kind"], payload.get("settings", {}), device, payload["length"])
    x = _one_hot(payload["length"], device)

    def step() -> None:
        if mode == "inference":
            with torch.inference_mode(), autocast:
                run(x)
            return
        with autocast:
            prediction = run(x).float()
        target = torch.rand(prediction.shape, generator=torch.Generator().manual_seed(1)).to(device)
        poisson_multinomial_loss(prediction, target).backward()
        model.zero_grad(set_to_none=True)

    model.train(mode == "train")
    return memory.time_steps(step, device, payload.get("warmup", 1), payload.get("repeats", 1))


def point_key(point: dict[str, Any]) -> str:
    key = {name: point[name] for name in ("length", "kind", "mode", "device", "settings")}
    key["precision"] = point.get("precision", "fp32")
    return json.dumps(key, sort_keys=True)


def plan(lengths: Sequence[int], kinds: Sequence[str], modes: Sequence[str], precisions: Sequence[str],
         device: str, threads: int, settings: dict[str, Any], repeats: int) -> list[dict[str, Any]]:
    """The points of one run, ordered so that the kinds compared at one length, mode and precision are
    measured one after the other (drift of the machine touches them alike)."""
    return [{"length": length, "kind": kind, "mode": mode, "precision": precision, "device": device,
             "threads": threads, "settings": settings, "warmup": 1, "repeats": repeats}
            for mode in modes for precision in precisions for length in lengths for kind in kinds]


def run_points(points: Sequence[dict[str, Any]], out: Path, memory_cap_gb: float, timeout_s: float,
               log=lambda line: None) -> list[dict]:
    """Measure ``points`` (each a :func:`measure` payload) into ``out`` (JSON), skipping those it holds."""
    from ..device import bf16_supported, no_native_bf16_reason
    from ..io import atomic_write_text

    document = {"benchmark": "borzoi-scaling", "records": []}
    if out.exists():
        document = json.loads(out.read_text(encoding="utf-8"))
    done = {point_key(record) for record in document["records"]}
    cap = int(memory_cap_gb * 2**30)
    for number, point in enumerate(points, 1):
        if point_key(point) in done:
            continue
        label = f"[{number}/{len(points)}] {point['kind']} {point['mode']} {point.get('precision', 'fp32')} {point['length']:,} bp"
        if point.get("precision") == "bf16" and not bf16_supported(point["device"]):
            record = {**point, "status": "skipped", "reason": no_native_bf16_reason(point["device"])}
            document["records"].append(record)
            atomic_write_text(out, json.dumps(document, indent=1))
            log(f"{label}: skipped ({record['reason']})")
            continue
        log(f"{label} ...")
        run = memory.run_isolated(__name__, point, cap, timeout_s)
        record = {**point, "status": run.status, "load_average": memory.load_average(), "measured_at": memory.now(),
                  "memory_cap_gb": memory_cap_gb}
        if run.status == "ok" and run.result:
            record.update(run.result)
            record["process_peak_mb"] = record.pop("peak_rss_bytes", 0) / 2**20
        else:
            record["peak_seen_mb"] = run.peak_rss_bytes / 2**20
            if run.status == "error":
                lines = run.stderr_tail.strip().splitlines()
                record["error"] = lines[-1] if lines else f"exit {run.returncode}"
        document["records"].append(record)
        atomic_write_text(out, json.dumps(document, indent=1))
        log(f"{label}: {record['status']}" + (f", {record['median_s']:.2f} s, {record['peak_memory_mb']:.0f} MB"
                                                if record["status"] == "ok" else ""))
    return document["records"]


def comparison(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each of our points against borzoi-pytorch's at the same length, mode and precision: speed-up (the
    peer's median time over ours) and memory ratio (our peak over the peer's, above set-up and whole process)."""
    ok = [r for r in records if r["status"] == "ok"]
    peers = {(r["length"], r["mode"], r.get("precision", "fp32")): r for r in ok if r["kind"] == PEER}
    rows = []
    for r in ok:
        peer = peers.get((r["length"], r["mode"], r.get("precision", "fp32")))
        if r["kind"] == PEER or peer is None:
            continue
        rows.append({"kind": r["kind"], "mode": r["mode"], "precision": r.get("precision", "fp32"),
                     "length": r["length"], "speedup": peer["median_s"] / r["median_s"],
                     "memory_ratio": r["peak_memory_mb"] / max(peer["peak_memory_mb"], 1e-9),
                     "process_memory_ratio": (r.get("process_peak_mb", 0) / peer["process_peak_mb"]
                                              if peer.get("process_peak_mb") else None)})
    return rows


def _draw_line(time_ax, memory_ax, kind, mode, precision, overrides, rows, colours, style, marker) -> None:
    """One kind x mode x precision x settings against length; a point that did not fit is an ``x`` at the cap."""
    fits = [r for r in rows if r["status"] == "ok"]
    if fits:
        lengths = [r["length"] / 1e3 for r in fits]
        label = f"{kind}, {mode}" + (", bf16" if precision == "bf16" else "") + (f", {overrides}" if overrides else "")
        shade = {"color": colours[kind], "alpha": 0.55 if kind.endswith(FLEX) else 1.0}
        time_ax.plot(lengths, [r["median_s"] for r in fits], style, marker=marker, label=label, **shade)
        memory_ax.plot(lengths, [r["peak_memory_mb"] / 1024 for r in fits], style, marker=marker, label=label, **shade)
    for r in rows:
        if r["status"] == "oom":
            memory_ax.plot(r["length"] / 1e3, r["memory_cap_gb"], "x", color=colours[kind], markersize=8)


def draw_figure(records: Sequence[dict[str, Any]], path: Path) -> Path:
    """Time (left) and peak memory (right) against input length: one colour per kind, solid for training
    and dashed for inference; a point that did not fit is an ``x`` at its memory cap."""
    from ..io import save_figure
    from ..plots import new_figure
    from .figures import COLOURS

    colours = {**COLOURS, PEER: COLOURS.get("enformer-pytorch", "tab:gray")}
    colours.update({kind + FLEX: colours[kind] for kind in ATTENTION_KINDS})
    figure = new_figure(14.0, 4.0)
    time_ax, memory_ax = figure.subplots(1, 2)
    for kind in KINDS:
        for (mode, style), (precision, marker) in itertools.product((("train", "-"), ("inference", "--")),
                                                                     (("fp32", "o"), ("bf16", "s"))):
            same = [r for r in records if r["kind"] == kind and r["mode"] == mode and r.get("precision", "fp32") == precision]
            for overrides in dict.fromkeys(settings_label(r) for r in same):
                rows = sorted((r for r in same if settings_label(r) == overrides), key=lambda r: r["length"])
                _draw_line(time_ax, memory_ax, kind, mode, precision, overrides, rows, colours, style, marker)
    for ax, ylabel in ((time_ax, "time per pass (s)"), (memory_ax, "peak memory above set-up (GB)")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("input length (kbp)")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    if records:  # beside the panels, off the data
        memory_ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    time_ax.set_title("Borzoi, batch 1", fontsize=10)
    return save_figure(path, figure)


def settings_label(record: dict[str, Any]) -> str:
    """A point's ``--set`` overrides as ``field=value`` (JSON values), or "" for the published settings."""
    return ", ".join(f"{name}={json.dumps(value)}" for name, value in sorted((record.get("settings") or {}).items()))


def _table_order(record: dict[str, Any]) -> tuple:
    kind = record["kind"]
    return (record["mode"] != "inference", record.get("precision", "fp32") != "fp32",
            KINDS.index(kind) if kind in KINDS else len(KINDS), settings_label(record), record["length"])


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The points, then each of ours against borzoi-pytorch (plain text, also the body of ``borzoi.md``)."""
    lines = [f"{'kind':<15} {'mode':<9} {'prec':<5} {'bp':>10} {'s':>9} {'peak MB':>9} {'process MB':>10}  settings"]
    for r in sorted(records, key=_table_order):
        head = f"{r['kind']:<15} {r['mode']:<9} {r.get('precision', 'fp32'):<5} {r['length']:>10,}"
        if r["status"] == "ok":
            body = f"{head} {r['median_s']:>9.2f} {r['peak_memory_mb']:>9.0f} {r.get('process_peak_mb', 0):>10.0f}"
        else:
            body = f"{head} {r['status'].upper():>9} {'':>9} {'':>10}"
        lines.append(f"{body}  {settings_label(r)}".rstrip())
    rows = comparison(records)
    if rows:
        lines += ["", f"against {PEER} (same length, mode, precision):",
                  f"{'kind':<15} {'mode':<9} {'prec':<5} {'bp':>10} {'speed-up':>9} {'memory':>7} {'process':>8}"]
        for row in rows:
            process = f"{row['process_memory_ratio']:.2f}x" if row["process_memory_ratio"] else "-"
            lines.append(f"{row['kind']:<15} {row['mode']:<9} {row['precision']:<5} {row['length']:>10,} "
                         f"{row['speedup']:>8.2f}x {row['memory_ratio']:>6.2f}x {process:>8}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(memory.child_main(measure, sys.argv[1:]))
