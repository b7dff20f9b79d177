"""``senformer download enformer|borzoi|flashzoi|hg38|mm10``: fetch published weights or a genome into the cache, once."""

from __future__ import annotations

import argparse

from ..hub import (
    BORZOI_URL_ENV, GENOMES, GENOME_URL_ENV, HOME_ENV, HUGGINGFACE_URL_ENV, SHORT_NAMES, WEIGHTS, WEIGHTS_SOURCES,
    WEIGHTS_URL_ENV,
)
from .options import add_progress_argument

_EPILOG = """\
examples:
  senformer download enformer   # then: --weights enformer, or senformer.load_model("enformer")
  senformer download borzoi:2   # Borzoi replicate 2, human head; then: --weights borzoi:2
  senformer download hg38       # then: --genome hg38

known names:
""" + "".join(f"  {name:<14}{description}\n" for name, description in [*SHORT_NAMES.items(), *GENOMES.items()]) + f"""
borzoi-replicate-N[-mouse] and flashzoi-replicate-N (the Hugging Face names) are the same weights as
borzoi[-mouse]:N and flashzoi:N, and share their cache folder. Sources: enformer from dm-enformer (or
huggingface), borzoi from calico (calico's Keras .h5; or huggingface, borzoi-pytorch's copy), flashzoi
from huggingface. Each file is checked against the hash its server publishes (Cloud Storage's MD5 or
CRC32C, the Hugging Face hub's SHA-256; Enformer: every CRC32C of the checkpoint) and converted to
senformer's format once; genomes are recompressed as bgzip and indexed. A cut connection resumes where it
stopped, also in a later run.

The cache is ${HOME_ENV} (default: the user's cache folder). Offline or behind a mirror:
${WEIGHTS_URL_ENV}, ${BORZOI_URL_ENV}, ${HUGGINGFACE_URL_ENV} (default $HF_ENDPOINT) and
${GENOME_URL_ENV} replace the download servers; or copy the files and run `senformer convert FILE DEST`.
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "download", help="fetch published weights (Enformer, Borzoi, Flashzoi) or a reference genome (hg38, mm10) "
        "into the cache",
        description="Download, verify and convert (weights) or index (genomes) a named resource into the cache, "
        "and print its path.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("name", metavar="NAME", help="what to fetch (known names below)")
    parser.add_argument("--force", action="store_true", help="download and convert again even when cached")
    parser.add_argument("--source", choices=WEIGHTS_SOURCES, default=None,
                        help="where weights come from (default: the original publisher: dm-enformer for enformer, "
                        "calico for borzoi, huggingface for flashzoi)")
    add_progress_argument(parser, help="no progress bars or status lines")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..errors import UserError
    from ..hub import download_genome, download_weights, known_weights

    progress = args.progress
    if args.name in GENOMES:
        if args.source is not None:
            raise UserError(f"--source chooses where weights come from; {args.name} comes from UCSC")
        path = download_genome(args.name, force=args.force, progress=progress)
    elif args.name in WEIGHTS:
        path = download_weights(args.name, force=args.force, progress=progress, source=args.source)
    else:
        raise UserError(f"unknown name {args.name!r}: {known_weights()}; genomes: {', '.join(GENOMES)}")
    print(path)
    return 0
