"""Throughput of the TFRecord reader and BasenjiDataset at the real Basenji2 record size.

Writes a few records of 131,072 bp x 5,313 tracks (float16 targets, ZLIB, our writer) to a temporary
Basenji2 directory, then reads them back at each stage of the pipeline and reports examples per second
(median of repeats) and the share of the time spent in zlib decompression:

    decompress   zlib only (the floor: the bytes must be inflated)
    records      + framing and both masked CRC32C checks        (TFRecordReader)
    parse        + tf.train.Example parsing                     (protobuf)
    dataset      + decoding to float32 tensors                   (BasenjiDataset, 131,072 bp)
    dataset_196k + zero flanks to 196,608 bp                     (the model's input length)
    dataset_nocrc  dataset with the CRC checks off

With ``--model`` it also times one forward pass of the published model (196,608 bp, batch 1, same
threads) so the two can be compared: the data pipeline must not be the bottleneck of CPU evaluation.

    .venv/bin/python benchmarks/data_throughput.py --records 4 --threads 2 --model
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from senformer.constants import BASENJI_SEQUENCE_LENGTH, NUM_TRACKS, SEQUENCE_LENGTH, TARGET_LENGTH
from senformer.data.basenji import BasenjiDataset, BasenjiWriter
from senformer.data.example import parse_example
from senformer.data.tfrecord import TFRecordReader
from senformer.io import atomic_write_text
from senformer.record import machine_info

CROP_BP = 8192


def coverage_target(rng: np.random.Generator, tracks: int, smooth: bool) -> np.ndarray:
    """Coverage-like float16 values: a per-track background (constant over 8 bins when ``smooth``, i.i.d.
    per bin otherwise) plus sparse peaks, clipped at 32 and scaled by 2 like Basenji's mean tracks. The
    two profiles bracket the compressibility of real targets; each run reports its ZLIB ratio."""
    repeat = 8 if smooth else 1
    base = rng.gamma(0.6, 0.5, (TARGET_LENGTH // repeat, tracks)).repeat(repeat, axis=0)
    peaks = (rng.random((TARGET_LENGTH, tracks)) < 0.02) * rng.gamma(2.0, 4.0, (TARGET_LENGTH, tracks))
    return (np.minimum(base + peaks, 32.0) * 2.0).astype(np.float16)


def write_dataset(directory: Path, records: int, seed: int, smooth: bool = True) -> float:
    rng = np.random.default_rng(seed)
    targets = pd.DataFrame({"identifier": [f"T{i}" for i in range(NUM_TRACKS["human"])],
                            "description": ["DNASE:benchmark"] * NUM_TRACKS["human"]})
    start = time.perf_counter()
    with BasenjiWriter(directory, targets, BASENJI_SEQUENCE_LENGTH, CROP_BP, 128, records_per_file=records) as writer:
        for index in range(records):
            sequence = np.eye(4, dtype=bool)[rng.integers(0, 4, BASENJI_SEQUENCE_LENGTH)]
            position = index * BASENJI_SEQUENCE_LENGTH
            writer.add("test", ("chr1", position, position + BASENJI_SEQUENCE_LENGTH), sequence,
                       coverage_target(rng, NUM_TRACKS["human"], smooth))
    return time.perf_counter() - start


def time_decompress(path: Path) -> float:
    start = time.perf_counter()
    decompressor = zlib.decompressobj()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            decompressor.decompress(chunk)
    return time.perf_counter() - start


def time_records(path: Path, parse: bool) -> float:
    start = time.perf_counter()
    with TFRecordReader(path) as reader:
        for payload in reader:
            if parse:
                parse_example(payload)
    return time.perf_counter() - start


def time_dataset(directory: Path, **options) -> float:
    start = time.perf_counter()
    for example in BasenjiDataset(directory, "test", **options):
        assert example["target"].shape == (TARGET_LENGTH, NUM_TRACKS["human"])
    return time.perf_counter() - start


def time_model(repeats: int) -> dict:
    from senformer import Enformer, EnformerConfig

    model = Enformer(EnformerConfig()).eval()
    sequence = torch.randint(0, 4, (1, SEQUENCE_LENGTH))
    times = []
    with torch.inference_mode():
        model(sequence, heads=["human"])  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            model(sequence, heads=["human"])
            times.append(time.perf_counter() - start)
    return {"seconds_per_example": statistics.median(times), "repeats": repeats, "attention": "full"}


def measure(args: argparse.Namespace, smooth: bool) -> dict:
    with tempfile.TemporaryDirectory() as temporary:
        directory = Path(temporary) / "basenji"
        write_seconds = write_dataset(directory, args.records, seed=0, smooth=smooth)
        (path,) = sorted((directory / "tfrecords").glob("test-*.tfr"))
        raw_bytes = args.records * (BASENJI_SEQUENCE_LENGTH * 4 + TARGET_LENGTH * NUM_TRACKS["human"] * 2)
        stages = {
            "decompress": lambda: time_decompress(path),
            "records": lambda: time_records(path, parse=False),
            "parse": lambda: time_records(path, parse=True),
            "dataset": lambda: time_dataset(directory),
            "dataset_196k": lambda: time_dataset(directory, sequence_length=SEQUENCE_LENGTH),
            "dataset_nocrc": lambda: time_dataset(directory, check_crc=False),
        }
        seconds = {name: statistics.median(run() for _ in range(args.repeats)) for name, run in stages.items()}
        file_bytes = path.stat().st_size
    return {
        "raw_mb_per_record": raw_bytes / args.records / 1e6,
        "compressed_mb_per_record": file_bytes / args.records / 1e6,
        "compression_ratio": raw_bytes / file_bytes,
        "write_examples_per_second": args.records / write_seconds,
        "examples_per_second": {name: args.records / value for name, value in seconds.items()},
        "seconds_per_example": {name: value / args.records for name, value in seconds.items()},
        "decompression_share": {name: seconds["decompress"] / value for name, value in seconds.items()
                                if name != "decompress"},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", action="store_true", help="also time one forward pass of the full model")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "data_throughput.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    results = {
        "benchmark": "data_throughput",
        "record": {"sequence_bp": BASENJI_SEQUENCE_LENGTH, "tracks": NUM_TRACKS["human"], "bins": TARGET_LENGTH,
                   "target_dtype": "float16", "compression": "zlib (level 6)"},
        "records": args.records,
        "repeats": args.repeats,
        "profiles": {name: measure(args, smooth=name == "smooth") for name in ("smooth", "noisy")},
        "machine": {**machine_info(), "zlib": zlib.ZLIB_RUNTIME_VERSION, "threads": args.threads,
                    "load_average_before_model": os.getloadavg()},
        "note": "median of repeats; the machine's 2 cores were shared with other jobs during the run",
    }
    if args.model:
        model = time_model(repeats=1)
        model["examples_per_second"] = 1.0 / model["seconds_per_example"]
        data_seconds = max(p["seconds_per_example"]["dataset_196k"] for p in results["profiles"].values())
        model["data_time_share"] = data_seconds / (data_seconds + model["seconds_per_example"])
        results["model_forward_196k"] = model
    atomic_write_text(args.out, json.dumps(results, indent=2) + "\n")
    json.dump(results, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
