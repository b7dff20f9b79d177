"""One module per ``senformer`` subcommand; see :mod:`senformer.cli`."""
