"""``senformer data {synthetic,from-bigwig,check}``: make and verify Basenji2-layout datasets."""

from __future__ import annotations

import argparse
import json
import sys
import time

from ..data.synthetic import SIZES
from .common import add_overwrite_argument
from .options import SEED, add_progress_argument, real, whole


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="make or check Basenji2-layout datasets (synthetic, bigWig)")
    commands = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synthetic = commands.add_parser(
        "synthetic", help="a seeded synthetic genome and tracks needing long-range context",
        description="Write genome.fa, statistics.json, targets.txt, sequences.bed and ZLIB TFRecords in the "
        "Basenji2 layout (see docs/data-and-evaluation.md for the generative model).",
    )
    synthetic.add_argument("out", help="output directory")
    synthetic.add_argument("--size", choices=list(SIZES), default="tiny",
                           help="tiny: 4,096 bp records (tests); small: 8,192 bp, 16 tracks (training); study: 8,192 bp "
                           "with long-range partners tuned so attention matters (the demo and the accuracy study); "
                           "medium: 131,072 bp records as Basenji2's (default: tiny)")
    synthetic.add_argument("--seed", type=SEED, default=0, help="random seed of genome and tracks (default: 0)")
    by_size = "(default: as --size sets it)"
    synthetic.add_argument("--sequence-length", type=whole(1), help=f"input bp per record {by_size}")
    synthetic.add_argument("--crop-bp", type=whole(0), help=f"bp cropped per side: targets cover the rest {by_size}")
    synthetic.add_argument("--num-tracks", type=whole(4), help=f"tracks, at least 4 {by_size}")
    synthetic.add_argument("--train", type=whole(0), help=f"training examples {by_size}")
    synthetic.add_argument("--valid", type=whole(0), help=f"validation examples {by_size}")
    synthetic.add_argument("--test", type=whole(0), help=f"test examples {by_size}")
    synthetic.add_argument("--records-per-file", type=whole(1), help=f"records per TFRecord file {by_size}")
    synthetic.add_argument("--long-range", type=whole(1), nargs=2, metavar=("NEAR", "FAR"),
                           help=f"bp between a promoter and the enhancers that drive it {by_size}")
    add_overwrite_argument(synthetic)
    synthetic.set_defaults(run=run_synthetic)

    bigwig = commands.add_parser(
        "from-bigwig", help="a dataset from a genome FASTA, regions and your bigWig tracks",
        description="Targets per bin as Basenji makes them (sum/mean, clip, scale, float16).",
    )
    bigwig.add_argument("out", help="output directory")
    bigwig.add_argument("--genome", required=True, help="genome FASTA (indexed or indexable)")
    bigwig.add_argument("--bigwig", action="append", default=[], metavar="[NAME=]FILE",
                        help="a bigWig track (repeat); the description is --description or NAME")
    bigwig.add_argument("--tracks", help="tab-separated sheet: identifier, file, description[, sum_stat, clip, scale, clip_soft]")
    bigwig.add_argument("--description", default=None,
                        help="description prefix for --bigwig tracks, e.g. DNASE, CHIP:H3K27ac or RNA (assay group) "
                        "(default: none, the NAME alone)")
    bigwig.add_argument("--sum-stat", default="mean", help="per-bin statistic for --bigwig tracks (default: mean)")
    bigwig.add_argument("--clip", type=real(above=0), default=32.0, help="clip per-bin targets at this value (default: 32)")
    bigwig.add_argument("--scale", type=real(above=0), default=1.0, help="multiply per-bin targets by this (default: 1)")
    bigwig.add_argument("--bed", help="regions, resized to --seq-length around their centres (default: tile the "
                        "chromosomes, --chroms, with --stride)")
    bigwig.add_argument("--chroms", nargs="+", help="without --bed: the chromosomes to tile (default: all)")
    bigwig.add_argument("--stride", type=whole(1), default=None, help="tiling step in bp (default: --seq-length)")
    bigwig.add_argument("--valid-chroms", nargs="+", default=[], help="chromosomes of the valid split (default: none)")
    bigwig.add_argument("--test-chroms", nargs="+", default=[], help="chromosomes of the test split (default: none)")
    bigwig.add_argument("--seq-length", type=whole(1), default=131_072, help="bp per record (default: 131072)")
    bigwig.add_argument("--crop-bp", type=whole(0), default=8192,
                        help="bp per side without targets (default: 8192)")
    bigwig.add_argument("--pool-width", type=whole(1), default=128, help="bp per target bin (default: 128)")
    bigwig.add_argument("--sqrt", dest="root", choices=["basenji", "borzoi"], default="basenji",
                        help="how *_sqrt tracks are squashed: basenji sqrt(1 + x) - 1, or borzoi x^(3/4) as the "
                        "published Borzoi models' targets (with --seq-length 524288 --crop-bp 512 --pool-width 32) "
                        "(default: basenji)")
    bigwig.add_argument("--records-per-file", type=whole(1), default=256, help="records per TFRecord file (default: 256)")
    add_overwrite_argument(bigwig)
    add_progress_argument(bigwig)
    bigwig.set_defaults(run=run_from_bigwig)

    check = commands.add_parser("check", help="read every record of a dataset: CRCs, sizes and counts")
    check.add_argument("directory", help="dataset folder (statistics.json, tfrecords/)")
    check.add_argument("--split", action="append", help="split(s) to check (default: train, valid, test)")
    check.set_defaults(run=run_check)


def run_synthetic(args: argparse.Namespace) -> int:
    from ..data.synthetic import make_synthetic

    options = {
        "sequence_length": args.sequence_length, "crop_bp": args.crop_bp, "num_tracks": args.num_tracks,
        "train": args.train, "valid": args.valid, "test": args.test, "records_per_file": args.records_per_file,
        "long_range_bp": tuple(args.long_range) if args.long_range else None,
    }
    from ..outputs import DIRECTORY, Output

    start = time.perf_counter()
    with Output(args.out, DIRECTORY, command="data synthetic", settings=vars(args), inputs={},
                overwrite=args.overwrite) as output:
        if output.up_to_date:
            print(f"{output.out} is up to date")
            return 0
        make_synthetic(output.start(), args.size, args.seed, **{k: v for k, v in options.items() if v is not None})
        out = output.finish()
    statistics = json.loads((out / "statistics.json").read_text())
    print(
        f"wrote {out}: {statistics['train_seqs']}/{statistics['valid_seqs']}/{statistics['test_seqs']} "
        f"train/valid/test examples of {statistics['seq_length']:,} bp, {statistics['target_length']} bins x "
        f"{statistics['num_targets']} tracks ({time.perf_counter() - start:.1f} s)"
    )
    return 0


def run_from_bigwig(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.bigwig import TrackSpec, make_from_bigwig, read_track_sheet, regions_from_bed, tile_regions
    from ..data.genome import Genome
    from ..errors import UserError
    from ..outputs import DIRECTORY, Output
    from ..inputs import input_digest, large_file_digest
    from .common import resolve_genome_options

    resolve_genome_options(args)
    tracks = read_track_sheet(args.tracks) if args.tracks else []
    for item in args.bigwig:
        name, sep, file = item.partition("=")
        if not sep:
            name, file = Path(item).name.rsplit(".", 1)[0], item
        description = f"{args.description}:{name}" if args.description else name
        tracks.append(TrackSpec(name, file, description, args.sum_stat, args.clip, args.scale))
    if not tracks:
        raise UserError("give tracks with --bigwig FILE or --tracks SHEET")
    # bigWigs and the genome count by their bytes (sampled above 256 MiB), so moving them changes nothing.
    inputs = {"genome": large_file_digest(args.genome), "bed": input_digest(args.bed),
              "tracks": [[t.identifier, t.description, t.sum_stat, t.clip, t.scale,
                          large_file_digest(t.file) if Path(t.file).is_file() else t.file] for t in tracks]}
    with Output(args.out, DIRECTORY, command="data from-bigwig", settings=vars(args), inputs=inputs,
                overwrite=args.overwrite, paths=("genome", "bigwig", "tracks", "bed")) as output:
        if output.up_to_date:
            print(f"{output.out} is up to date")
            return 0
        genome = Genome(args.genome)
        if args.bed:
            regions = regions_from_bed(args.bed, args.seq_length, args.valid_chroms, args.test_chroms)
        else:
            regions = tile_regions(genome.sizes, args.seq_length, args.stride, args.chroms, args.valid_chroms,
                                   args.test_chroms)
        make_from_bigwig(output.start(), genome, tracks, regions, args.seq_length, args.crop_bp, args.pool_width,
                         args.records_per_file, progress=args.progress, root=args.root)
        out = output.finish()
    counts = {split: sum(1 for row in regions if row[3] == split) for split in ("train", "valid", "test")}
    empty = [split for split, count in counts.items() if not count]
    if empty:
        hint = "--valid-chroms/--test-chroms" if not args.bed else "the BED's 4th column or --valid-chroms/--test-chroms"
        print(f"senformer data from-bigwig: warning: the {' and '.join(empty)} split(s) are empty; choose them with {hint}",
              file=sys.stderr)
    print(f"wrote {out}: {len(tracks)} tracks; " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    return 0


def run_check(args: argparse.Namespace) -> int:
    from ..data.basenji import check_split, read_statistics, split_files

    statistics = read_statistics(args.directory)
    for split in args.split or ["train", "valid", "test"]:
        if not statistics.get(f"{split}_seqs"):
            print(f"{split}: no examples")
            continue
        start = time.perf_counter()
        count = check_split(args.directory, split)
        seconds = time.perf_counter() - start
        files = len(split_files(args.directory, split))
        print(f"{split}: {count} records OK in {files} files ({count / max(seconds, 1e-9):.1f} records/s)")
    return 0
