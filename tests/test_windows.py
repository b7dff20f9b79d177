"""Where the output window sits in the input, for both families and inputs longer than published."""

import pytest

from senformer.config import preset
from senformer.windows import Geometry


@pytest.mark.parametrize("length", [196_608, 393_216])
def test_enformer_window(length):
    geometry = Geometry.of(preset("enformer"), length)
    assert (geometry.bins, geometry.bin_size, geometry.offset_bins) == (896, 128, (length // 128 - 896) // 2)
    wide = Geometry.of(preset("enformer", target_length=None), length)
    assert (wide.bins, wide.offset_bins) == (length // 128 - 640, 320)


@pytest.mark.parametrize("length", [524_288, 1_048_576, 2_097_152])
def test_borzoi_window_at_32_bp(length):
    # All bins but Borzoi's 16 cropped per side, or the central target_length bins: centred either way.
    geometry = Geometry.of(preset("borzoi"), length)
    assert (geometry.bins, geometry.bin_size, geometry.offset_bins) == (length // 32 - 32, 32, 16)
    central = Geometry.of(preset("borzoi", target_length=6144), length)
    assert central.offset_bins == (length // 32 - 6144) // 2
    assert central.offset_bins * 32 + central.output_bp / 2 == length / 2
