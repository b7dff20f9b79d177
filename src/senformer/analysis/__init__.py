"""The report's analyses: model comparison (Figure 6), tracks and over-prediction (Figure 7), receptive
field (Figure 8), attribution (gradient x input, in-silico mutagenesis) and variant effect scores.

Each module holds pure functions over models, datasets and arrays; ``senformer analyze`` wraps them."""
