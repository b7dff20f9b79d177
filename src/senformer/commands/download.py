"""``senformer download enformer|hg38|mm10``: fetch official weights or a genome into the cache, once."""

from __future__ import annotations

import argparse

from ..hub import GENOMES, GENOME_URL_ENV, HOME_ENV, WEIGHTS, WEIGHTS_SOURCES, WEIGHTS_URL_ENV
from .options import add_progress_argument

_EPILOG = """\
examples:
  senformer download enformer   # then: --weights enformer, or senformer.load_model("enformer")
  senformer download hg38       # then: --genome hg38

known names:
""" + "".join(f"  {name:<10}{description}\n" for name, description in
              [*((name, source.description) for name, source in WEIGHTS.items()), *GENOMES.items()]) + f"""
The cache is ${HOME_ENV} (default: the user's cache folder). Weights are checked against every CRC32C of
the checkpoint and converted to senformer's format once; genomes are recompressed as bgzip and indexed.
A cut connection resumes where it stopped, also in a later run. ${WEIGHTS_URL_ENV} and ${GENOME_URL_ENV}
replace the download servers (a mirror or a local copy).
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "download", help="fetch the official Enformer weights or a reference genome (hg38, mm10) into the cache",
        description="Download, verify and convert (weights) or index (genomes) a named resource into the cache, "
        "and print its path.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", choices=[*WEIGHTS, *GENOMES], help="what to fetch")
    parser.add_argument("--force", action="store_true", help="download and convert again even when cached")
    parser.add_argument("--source", choices=WEIGHTS_SOURCES, default="dm-enformer",
                        help="where weights come from: DeepMind's checkpoint, or the Hugging Face copy "
                        "(needs huggingface_hub) (default: %(default)s)")
    add_progress_argument(parser, help="no progress bars or status lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..hub import download_genome, download_weights

    progress = args.progress
    if args.name in GENOMES and args.source != "dm-enformer":
        raise UserError(f"--source chooses where weights come from; {args.name} comes from UCSC")
    if args.name in WEIGHTS:
        path = download_weights(args.name, force=args.force, progress=progress, source=args.source)
    else:
        path = download_genome(args.name, force=args.force, progress=progress)
    print(path)
    return 0
