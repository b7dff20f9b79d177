"""Data: Basenji2 TFRecords without TensorFlow, genomes and intervals, track tables, augmentations,
synthetic long-range data and bigWig import. Submodules are imported on use (they pull in protobuf,
pandas or pyfaidx)."""
