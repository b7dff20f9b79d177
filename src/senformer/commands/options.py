"""Command-line options that several commands share, defined once so they read and behave the same.

``--device`` (every command that runs a model) defaults to ``auto`` and is resolved by
:func:`senformer.device.resolve_device`; ``--no-progress`` turns off every progress bar.
``--tracks`` (predict, evaluate, analyze tracks/receptive-field/attribution/variants) is parsed by
:func:`senformer.data.tracks.select_tracks`; ``--length`` is resolved by
:func:`senformer.inference.resolve_sequence_length`.
"""

from __future__ import annotations

import argparse

from ..data.tracks import TRACKS_GRAMMAR


def add_tracks_argument(parser: argparse.ArgumentParser, default_help: str = "every track") -> argparse.Action:
    """``--tracks VALUE [VALUE ...]`` (``args.tracks``: a list of strings, or ``None`` when not given).

    Args:
        default_help: what the command uses when the option is absent, stated in the help text.
    """
    return parser.add_argument("--tracks", nargs="+", default=None, metavar="VALUE",
                               help=f"{TRACKS_GRAMMAR} (default: {default_help})")


def add_length_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """``--length BP`` (``args.length``: an int, or ``None`` for the model's default input length)."""
    return parser.add_argument("--length", type=int, default=None, metavar="BP",
                               help="input length in bp (default: 196,608 when valid for the model, else its "
                               "shortest valid input)")


def add_progress_argument(parser, default: bool | None = True, help: str = "no progress bars") -> None:
    """``--no-progress`` (``args.progress``: bool, or ``default`` when not given); ``--quiet`` stays
    accepted, unlisted, for old scripts."""
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=default, help=help)
    parser.add_argument("--quiet", dest="progress", action="store_false", help=argparse.SUPPRESS)


DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: auto)"


def add_device_argument(parser, help: str = DEVICE_HELP) -> argparse.Action:
    """``--device NAME`` (``args.device``: a string, ``auto`` unless given; resolve it with
    :func:`senformer.device.resolve_device`)."""
    return parser.add_argument("--device", default="auto", metavar="DEVICE", help=help)
