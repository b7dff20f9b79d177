"""Track tables and the four assay groups of Figure 4."""

import pandas as pd
import pytest

from senformer.data.tracks import (
    ASSAY_GROUPS,
    OTHER,
    UNRESOLVED_CHIP,
    assay_group,
    group_counts,
    read_targets,
    track_table,
)


@pytest.mark.parametrize(
    "description, group",
    [
        ("DNASE:cerebellum male adult", "DNase/ATAC"),
        ("ATAC:GM12878", "DNase/ATAC"),
        ("CAGE:chondrosarcoma cell line:SW 1353", "CAGE"),
        ("CHIP:H3K27ac:K562", "ChIP-Histone"),
        ("CHIP:H3F3A:HepG2", "ChIP-Histone"),
        ("CHIP:H4K20me1:K562", "ChIP-TF"),  # the paper's rule: only H3* targets are histone
        ("CHIP:H2AFZ:GM12878", "ChIP-TF"),
        ("CHIP:CTCF:liver", "ChIP-TF"),
        ("CHIP:.:GSM1234", "ChIP-TF"),
        ("RNA:my own track", OTHER),
    ],
)
def test_assay_group_rule(description, group):
    assert assay_group(description) == group


def test_shipped_human_table_has_the_paper_group_sizes():
    table = track_table("human")
    assert list(table.columns[:3]) == ["index", "genome", "identifier"]
    assert len(table) == 5313
    assert list(table["index"]) == list(range(5313))
    assert group_counts(table) == {"DNase/ATAC": 684, "ChIP-Histone": 1860, "ChIP-TF": 2131, "CAGE": 638}
    assert table.loc[0, "identifier"] == "ENCFF833POA"


def test_human_groups_agree_with_the_shared_table_for_all_5313_tracks(shared_dir):
    reference = pd.read_csv(shared_dir / "data" / "human_tracks_assay_types.csv")
    expected = reference["assay_subtype"].replace({"DNase": "DNase/ATAC", "ATAC": "DNase/ATAC"})
    table = track_table("human")
    assert (table["assay_group"].to_numpy() == expected.to_numpy()).all()
    assert (table["identifier"].to_numpy() == reference["identifier"].to_numpy()).all()
    assert (table["description"].to_numpy() == reference["description"].to_numpy()).all()


def test_mouse_table_from_index_ranges():
    table = track_table("mouse")
    assert len(table) == 1643
    assert group_counts(table) == {"DNase/ATAC": 228, "ChIP-Histone": 0, "ChIP-TF": 0, "CAGE": 357, UNRESOLVED_CHIP: 1058}
    with pytest.raises(ValueError, match="no shipped track table for head 'fly'"):
        track_table("fly")


def test_read_targets_and_track_table_from_a_file(tmp_path):
    path = tmp_path / "targets.txt"
    path.write_text(
        "index\tgenome\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\n"
        "5313\t1\tENCFF1\t/x.w5\t32\t2\tmean\tCHIP:H3K4me3:liver\n"
        "5314\t1\tCNhs1\t/y.w5\t384\t1\tsum\tCAGE:liver\n"
    )
    targets = read_targets(path)
    assert list(targets["assay_group"]) == ["ChIP-Histone", "CAGE"]
    assert list(targets["index"]) == [5313, 5314]
    table = track_table("mouse", targets=path)
    assert list(table["index"]) == [0, 1]  # positions in the head's output
    assert set(ASSAY_GROUPS) >= set(table["assay_group"])


def test_read_targets_basenji_unnamed_index_column(tmp_path):
    path = tmp_path / "targets.txt"
    path.write_text("\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\n0\tA\t.\t32\t2\tmean\tDNASE:x\n")
    assert read_targets(path).loc[0, "assay_group"] == "DNase/ATAC"


def test_read_targets_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="targets file not found"):
        read_targets(tmp_path / "missing.txt")
    path = tmp_path / "bad.txt"
    path.write_text("a\tb\n1\t2\n")
    with pytest.raises(Exception, match="lacks column"):
        read_targets(path)
