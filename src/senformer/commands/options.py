"""Command-line options that several commands share, defined once so they read and behave the same.

``--device`` (every command that runs a model) defaults to ``auto`` and is resolved by
:func:`senformer.device.resolve_device`; ``--no-progress`` turns off every progress bar.
``--tracks`` (predict, evaluate, analyze tracks/receptive-field/attribution/variants) is parsed by
:func:`senformer.data.tracks.select_tracks`; ``--length`` is resolved by
:func:`senformer.inference.resolve_sequence_length`.

Every numeric option states its range with :class:`Bounded` (``type=whole(1)``, ``type=real(above=0)``...):
a value outside it is one argparse line and exit 2 before anything runs (a test walks every parser).
Ranges that depend on the model or the data (an output bin, a position in the input) are checked where
those are known, as a UserError.
"""

from __future__ import annotations

import argparse
import math

from ..config import ATTENTION_KINDS
from ..data.tracks import TRACKS_GRAMMAR


MAX_WHOLE = 2**31 - 1  # no count, length or index senformer takes comes near this; larger is a typo
MAX_REAL = 1e9  # likewise for rates, sizes, seconds and weights; inf and NaN are never a setting
MAX_SEED = 2**32 - 1  # numpy's legacy seeding takes 32 bits
MAX_THREADS = 4096  # threads, workers and jobs
MAX_MEMORY_GB = 65_536.0
MAX_TIMEOUT_S = 30 * 24 * 3600.0  # a month; larger overflows the timers that enforce it
MAX_FIGURE_INCHES = 200.0  # at the figures' dpi, larger passes the 65,536-pixel limit of image files


class Bounded:
    """An argparse ``type=``: a whole number (``kind=int``) or a finite real (``kind=float``) in
    ``[at_least, at_most]``, or ``(above, at_most]``; anything else is an ``ArgumentTypeError`` naming the range.
    The bounds stay readable (``low``, ``high``, ``open_low``) for the test that walks every parser."""

    def __init__(self, kind: type, at_least: float | None = None, at_most: float | None = None,
                 above: float | None = None):
        self.kind, self.open_low = kind, above is not None
        self.low = above if above is not None else at_least
        self.high = at_most if at_most is not None else (MAX_WHOLE if kind is int else MAX_REAL)
        self.__name__ = "whole number" if kind is int else "number"  # argparse names a type by it

    def __call__(self, text: str):
        try:
            value = self.kind(text.replace("_", "")) if self.kind is int else self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a {self.__name__}, got {text!r}") from None
        problem = self.problem(value)
        if problem:
            raise argparse.ArgumentTypeError(f"must be {problem}, got {text}")
        return value

    def problem(self, value) -> str | None:
        """What ``value`` breaks (``at least 1``...), or None when it is in range."""
        if not math.isfinite(value):
            return "a finite number"
        if self.low is not None and (value <= self.low if self.open_low else value < self.low):
            return f"{'more than' if self.open_low else 'at least'} {self._text(self.low)}"
        if value > self.high:
            return f"at most {self._text(self.high)}"
        return None

    def _text(self, bound) -> str:
        return f"{bound:,}" if self.kind is int else f"{bound:g}"

    def __repr__(self) -> str:
        low = "" if self.low is None else f"{'>' if self.open_low else '>='} {self._text(self.low)}, "
        return f"Bounded({self.kind.__name__}, {low}<= {self._text(self.high)})"


def whole(at_least: int | None = 1, at_most: int = MAX_WHOLE) -> Bounded:
    """A whole number from ``at_least`` (default 1: a count) to ``at_most``."""
    return Bounded(int, at_least, at_most)


def real(at_least: float | None = None, *, above: float | None = None, at_most: float = MAX_REAL) -> Bounded:
    """A finite number in ``[at_least, at_most]`` or ``(above, at_most]``."""
    return Bounded(float, at_least, at_most, above)


SEED = whole(0, MAX_SEED)


class WholeList:
    """An argparse ``type=``: comma-separated integers (``1,2,3``; ``_`` allowed inside numbers), each in
    the range of ``item`` -> a tuple."""

    def __init__(self, item: Bounded):
        self.item = item
        self.__name__ = "list of integers"

    def __call__(self, text: str) -> tuple[int, ...]:
        try:
            values = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
        except ValueError:
            values = ()
        if not values:
            raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")
        for value in values:
            problem = self.item.problem(value)
            if problem:
                raise argparse.ArgumentTypeError(f"each must be {problem}, got {value} in {text!r}")
        return values


# --shifts of predict and analyze variants; inference refuses more than MAX_SHIFT, saying why
SHIFTS = WholeList(whole(-MAX_WHOLE))


def add_tracks_argument(parser: argparse.ArgumentParser, default_help: str = "every track") -> argparse.Action:
    """``--tracks VALUE [VALUE ...]`` (``args.tracks``: a list of strings, or ``None`` when not given).

    Args:
        default_help: what the command uses when the option is absent, stated in the help text.
    """
    return parser.add_argument("--tracks", nargs="+", default=None, metavar="VALUE",
                               help=f"{TRACKS_GRAMMAR} (default: {default_help})")


def add_length_argument(parser: argparse.ArgumentParser) -> argparse.Action:
    """``--length BP`` (``args.length``: an int, or ``None`` for the model's default input length)."""
    return parser.add_argument("--length", type=whole(1), default=None, metavar="BP",
                               help="input length in bp (default: 196,608 when valid for the model, else its "
                               "shortest valid input)")


def add_progress_argument(parser, default: bool | None = True, help: str = "no progress bars") -> None:
    """``--no-progress`` (``args.progress``: bool, or ``default`` when not given)."""
    parser.add_argument("--no-progress", dest="progress", action="store_false", default=default, help=help)


RC_DEFAULT = False
"""The one reverse-complement default of ``predict`` and ``analyze variants``: off. One pass per window is
half the time of two, which at cohort scale is what decides whether a run fits; it is the model's own output,
as ``evaluate`` and calico's scripts (basenji_sad.py, borzoi_sed.py: ``--rc`` to average) give it; ``--rc``
averages the strands, as the published variant scores do, where the doubled time is worth a smaller
strand noise."""


def add_rc_argument(parser) -> argparse.Action:
    """``--rc`` / ``--no-rc`` (``args.rc``), default :data:`RC_DEFAULT`, the same words in every command."""
    return parser.add_argument(
        "--rc", action=argparse.BooleanOptionalAction, default=RC_DEFAULT,
        help="average with the reverse-complement prediction (default: off, in predict and analyze variants "
        "alike: one pass per window, half the time, the model's own output; --rc doubles the time and averages "
        "out strand noise, as published variant scores do)")


def add_attention_argument(parser, help: str, many: bool = False) -> argparse.Action:
    """``--attention KIND`` (``args.attention``: one of :data:`ATTENTION_KINDS` or None; with ``many``, a
    list of them, one model per kind)."""
    return parser.add_argument("--attention", action="append" if many else "store", default=None,
                               choices=ATTENTION_KINDS, help=help)


def add_set_argument(parser, help: str = "override one config field (JSON value), e.g. --set depth=1 --set dim=768"
                     ) -> argparse.Action:
    """``--set FIELD=VALUE`` (``args.set``: a list of strings; parse with
    :func:`senformer.commands.common.parse_set_options`)."""
    return parser.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help=help)


DEVICE_HELP = "auto (CUDA when available, else CPU), cpu, cuda or cuda:N (default: auto)"


def add_device_argument(parser, help: str = DEVICE_HELP) -> argparse.Action:
    """``--device NAME`` (``args.device``: a string, ``auto`` unless given; resolve it with
    :func:`senformer.device.resolve_device`)."""
    return parser.add_argument("--device", default="auto", metavar="DEVICE", help=help)
