"""Validation groups come from the one track table (``data.tracks.head_track_table``)."""

from senformer.train.validation import track_groups

BARNYARD = (
    "\tgenome\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\n"
    "0\t0\tENCFF1\tx\t32\t2\tmean\tDNASE:K562\n"
    "1\t0\tCNhs1\tx\t32\t2\tsum\tCAGE:K562\n"
    "2\t0\tENCFF2\tx\t32\t2\tmean\tCHIP:H3K27ac:K562\n"
    "3\t1\tENCFF3\tx\t32\t2\tmean\tDNASE:liver\n"
    "4\t1\tCNhs2\tx\t32\t2\tsum\tCAGE:liver\n"
)


def test_a_barnyard_targets_file_gives_each_head_its_own_rows(tmp_path):
    (tmp_path / "targets.txt").write_text(BARNYARD)
    assert track_groups(tmp_path, 3, head="human") == {"DNase/ATAC": [0], "ChIP-Histone": [2], "CAGE": [1]}
    assert track_groups(tmp_path, 2, head="mouse") == {"DNase/ATAC": [0], "CAGE": [1]}
    # Without a head the whole file is the table: it fits five tracks, not three.
    assert track_groups(tmp_path, 3) == {}
    assert list(track_groups(tmp_path, 5)) == ["DNase/ATAC", "ChIP-Histone", "CAGE"]


def test_no_groups_without_the_datasets_own_table(tmp_path):
    # The shipped human table has 5,313 tracks, but it says nothing about the groups of this directory's data.
    assert track_groups(tmp_path, 5313, head="human") == {}
    assert track_groups(None, 5313, head="human") == {}
