"""The ``senformer`` command: argparse subcommands, each a thin layer over library functions.

Each module in :data:`COMMAND_MODULES` (under ``senformer.commands``) exposes ``register(subparsers)``, which
adds its parser and sets ``run=function(args) -> int``. User mistakes (:class:`UserError` and ``OSError``:
missing files, permissions, a full disk) end in one line on stderr and exit status 2. Any other exception is a
bug, or a case no validation caught: it keeps its traceback and exits 1, so its report carries the trace.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback

from .errors import UserError
from .threads import quiet_openmp
from .version import __version__

COMMAND_MODULES = ["info", "convert", "download", "predict", "plot", "data", "evaluate", "train", "benchmark", "analyze",
                   "demo", "study"]

USER_ERRORS = (UserError, OSError)


class OneLineParser(argparse.ArgumentParser):
    """An argument mistake is one line on stderr, ``senformer COMMAND: error: ...``, and exit status 2:
    argparse's usage lines would bury it (``--help`` still shows the usage)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {' '.join(message.split())}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="senformer",
        description="Enformer with full, chunked and BigBird block-sparse attention: convert weights, "
        "predict, evaluate, train and benchmark.",
    )
    parser.add_argument("--version", action="version", version=f"senformer {__version__}")
    # Subparsers (and theirs) are made by the parser's class, so every level gets the one-line error.
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"senformer.commands.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    quiet_openmp()  # before any command imports torch (and with it OpenMP)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as error:
        message = str(error) or type(error).__name__
        if isinstance(error, OSError) and error.filename and str(error.filename) not in message:
            message = f"{message}: {error.filename}"
        print(f"senformer {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"senformer {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception:  # not a user mistake: a bug, or an input no validation caught; the trace locates it
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
