"""The report's analyses: model comparison (Figure 6), tracks and over-prediction (Figure 7), receptive
field (Figure 8), attribution (gradient x input, in-silico mutagenesis) and variant effect scores.

Each module holds functions over models, datasets and arrays, and one ``run_*`` function per
``senformer analyze`` subcommand that writes that subcommand's files; the command only parses and calls it.
Models run through :mod:`senformer.inference` (gradient x input apart: it needs gradients)."""
