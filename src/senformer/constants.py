"""The geometry of Enformer in one place (Avsec et al. 2021; DeepMind ``enformer.py``)."""

SEQUENCE_LENGTH = 196_608
"""Input length in bp of the published model (1,536 positions of 128 bp)."""

TFHUB_SEQUENCE_LENGTH = 393_216
"""TF-Hub's model takes twice the input and crops the central 196,608 bp itself."""

TARGET_LENGTH = 896
"""Output bins kept by the crop: the central 114,688 bp."""

MAX_SHIFT = 64
"""Largest input shift averaged over, in bp: half a 128-bp bin; a larger shift averages other positions."""

CROP_MARGIN = 320
"""Bins trimmed from each end with ``target_length=None``: (1,536 - 896) / 2."""

BASENJI_SEQUENCE_LENGTH = 131_072
"""Sequence length stored in the Basenji2 TFRecords; 32,768 bp of context is missing on each side."""

NUM_TRACKS = {"human": 5313, "mouse": 1643}
