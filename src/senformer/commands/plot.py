"""``senformer plot``: predicted tracks of one region from a ``predict`` output (and experiment bigWigs)."""

from __future__ import annotations

import argparse

from .options import MAX_FIGURE_INCHES, add_tracks_argument, real

_EPILOG = """\
examples:
  senformer plot hbb.h5 --region chr11:5,225,000-5,230,000 --tracks 'CAGE:.*K562' --out hbb.png
  senformer plot peaks.h5 --region peak7 --tracks 4828 5110 --bigwig K562-CAGE=k562_cage.bw --out peak7.pdf

The figure shows one panel per chosen track along the region's predicted bins (the file's bin size: 128 bp
for Enformer, 32 bp for Borzoi; at genome coordinates), then one panel per --bigwig, averaged over the same
bins. A stranded pair (Borzoi's + and - RNA and CAGE tracks) with both strands chosen shares one panel, + above and -
mirrored below. The y-axis names the units: model output, or coverage (--coverage, or a file predicted with
it). The region asked for is shaded where the output window is wider; --gtf adds the genes below. PNG or PDF by
the --out suffix.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "plot", help="draw predicted tracks of one region from a predict output (PNG/PDF)",
        description="Draw the predicted tracks of one region of a `senformer predict` HDF5 file, with optional "
        "experiment bigWigs below them on the same bins.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("predictions", metavar="PREDICTIONS.h5", help="output of `senformer predict`")
    parser.add_argument("--region", default=None,
                        help="region: its row number, its name or chr:start-end (default: the first region)")
    parser.add_argument("--head", action="append", dest="heads", metavar="HEAD",
                        help="head to draw (repeatable; default every head in the file)")
    add_tracks_argument(parser, "every track in the file (keep it to a few)")
    parser.add_argument("--bigwig", action="append", default=[], metavar="[LABEL=]FILE",
                        help="an experiment bigWig to draw below the predictions (repeatable)")
    parser.add_argument("--coverage", action="store_true",
                        help="Borzoi: draw coverage, the squashed scale of a file of model outputs undone (as "
                        "predict --coverage)")
    parser.add_argument("--unscale", action="store_true", help="with --coverage: divide out each track's scale too")
    parser.add_argument("--gtf", metavar="GTF", help="gene models (GTF, plain or gzip) drawn in a panel below the tracks")
    parser.add_argument("--width", type=real(above=0, at_most=MAX_FIGURE_INCHES), default=10.0, help="figure width in inches (default 10)")
    parser.add_argument("--out", required=True, help="figure file: .png or .pdf")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..errors import UserError
    from ..predictions import plot_region

    out = Path(args.out)
    if out.suffix.lower() not in (".png", ".pdf"):
        raise UserError(f"--out {args.out}: the figure must be .png or .pdf")
    experiments = {}
    for item in args.bigwig:
        label, sep, file = item.partition("=")
        experiments[label if sep else Path(item).stem] = file if sep else item
    path = plot_region(args.predictions, out, region=args.region, heads=args.heads, tracks=args.tracks,
                       experiments=experiments, width=args.width, coverage=args.coverage, unscale=args.unscale,
                       gtf=args.gtf)
    print(f"wrote {path}")
    return 0
