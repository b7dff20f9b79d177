"""Track tables, the four assay groups of Figure 4 and RNA, and the ``--tracks`` grammar."""

import argparse
import re

import numpy as np
import pandas as pd
import pytest

from senformer.commands.options import add_tracks_argument
from senformer.data.tracks import (
    ASSAY_GROUPS,
    GROUP_ORDER,
    OTHER,
    RNA,
    UNRESOLVED_CHIP,
    assay_group,
    group_counts,
    head_track_table,
    read_targets,
    select_tracks,
    select_tracks_per_head,
    track_table,
)
from senformer.errors import UserError


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
        ("RNA:my own track", RNA),
        ("RNA:aortic smooth muscle cell male adult (21 years)", RNA),  # Borzoi's RNA-seq
        ("GRO:GRO-seq WT Liver ZT1 / liver / .", RNA),  # Borzoi's mouse GRO-seq: nascent RNA
        ("PRO:my own track", OTHER),
        ("RNA-seq of K562", OTHER),  # no prefix before a colon
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


def test_the_rna_group_leaves_enformers_5313_tracks_as_they_were(shared_dir):
    """The groups of every description of the real table, counted, equal those of the table's own labels
    (the grouping before RNA existed) and the paper's: no Enformer track is RNA or other."""
    reference = pd.read_csv(shared_dir / "data" / "human_tracks_assay_types.csv")
    before = reference["assay_subtype"].replace({"DNase": "DNase/ATAC", "ATAC": "DNase/ATAC"}).value_counts()
    after = group_counts(pd.DataFrame({"assay_group": [assay_group(text) for text in reference["description"]]}))
    assert after == before.to_dict() == {"DNase/ATAC": 684, "ChIP-Histone": 1860, "ChIP-TF": 2131, "CAGE": 638}


BORZOI_GROUPS = {
    "human": {"DNase/ATAC": 906, "ChIP-Histone": 1863, "ChIP-TF": 2023, "CAGE": 1276, RNA: 1543},
    "mouse": {"DNase/ATAC": 388, "ChIP-Histone": 753, "ChIP-TF": 297, "CAGE": 720, RNA: 450},
}


@pytest.mark.parametrize("head, tracks", [("human", 7611), ("mouse", 2608)])
def test_borzoi_tables_file_rna_seq_and_gro_seq_under_rna(head, tracks):
    table = head_track_table(head, tracks)
    assert table.attrs["source"] == "shipped" and group_counts(table) == BORZOI_GROUPS[head]
    transcribed = table["description"].str.startswith(("RNA:", "GRO:")).to_numpy()
    assert ((table["assay_group"] == RNA).to_numpy() == transcribed).all()
    assert list(group_counts(table)) == [group for group in GROUP_ORDER if group in BORZOI_GROUPS[head]]


@pytest.mark.parametrize("head", ["human", "mouse"])
def test_every_prefix_of_calicos_borzoi_tables_has_its_group(shared_dir, head):
    """calico's own tables (with their file column) use six prefixes; none is left as other, and each row's
    group is the shipped table's."""
    table = read_targets(shared_dir / "data" / "borzoi" / f"targets_{head}.txt")
    prefixes = set(table["description"].str.split(":").str[0])
    assert prefixes == {"DNASE", "ATAC", "CHIP", "CAGE", "RNA"} | ({"GRO"} if head == "mouse" else set())
    assert group_counts(table) == BORZOI_GROUPS[head]
    assert list(table["assay_group"]) == list(head_track_table(head, len(table))["assay_group"])


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


# head_track_table ---------------------------------------------------------------------------------------
TARGETS_HEADER = "index\tgenome\tidentifier\tfile\tclip\tscale\tsum_stat\tdescription\n"


def write_targets(path, rows):
    """rows: (genome, identifier, description)."""
    lines = [f"{i}\t{g}\t{name}\t/x.w5\t32\t2\tmean\t{text}\n" for i, (g, name, text) in enumerate(rows)]
    path.write_text(TARGETS_HEADER + "".join(lines))
    return path


def test_head_track_table_reads_a_targets_file_a_dataset_folder_or_a_table(tmp_path):
    path = write_targets(tmp_path / "targets.txt", [(0, "A", "DNASE:x"), (0, "B", "CAGE:y"), (0, "C", "CHIP:CTCF:z")])
    for targets in (path, str(path), tmp_path, read_targets(path)):
        table = head_track_table("human", 3, targets)
        assert table.attrs["source"] == "targets"
        assert list(table["index"]) == [0, 1, 2]
        assert list(table["identifier"]) == ["A", "B", "C"]
        assert list(table["assay_group"]) == ["DNase/ATAC", "CAGE", "ChIP-TF"]
        assert "clip" in table.columns  # the file's other columns stay


def test_head_track_table_filters_a_barnyard_file_to_the_head(tmp_path):
    path = write_targets(tmp_path / "targets.txt",
                         [(0, "H0", "DNASE:h"), (0, "H1", "CAGE:h"), (1, "M0", "CHIP:H3K4me3:m")])
    human = head_track_table("human", 2, path)
    mouse = head_track_table("mouse", 1, path)
    assert list(human["identifier"]) == ["H0", "H1"] and human.attrs["source"] == "targets"
    assert list(mouse["identifier"]) == ["M0"] and list(mouse["index"]) == [0]
    assert list(mouse["assay_group"]) == ["ChIP-Histone"]


def test_head_track_table_falls_back_to_the_shipped_table_then_a_generated_one(tmp_path):
    path = write_targets(tmp_path / "targets.txt", [(0, "A", "DNASE:x")])
    human = head_track_table("human", 5313, path)  # the file has 1 row, the head 5,313
    assert human.attrs["source"] == "shipped"
    assert human.loc[0, "identifier"] == "ENCFF833POA"
    mouse = head_track_table("mouse", 1643)
    assert mouse.attrs["source"] == "shipped" and len(mouse) == 1643
    for head, count, targets in (("human", 4, path), ("human", 4, None), ("yeast", 3, tmp_path / "empty")):
        (tmp_path / "empty").mkdir(exist_ok=True)  # a dataset folder without targets.txt
        generated = head_track_table(head, count, targets)
        assert generated.attrs["source"] == "generated"
        assert list(generated["index"]) == list(range(count))
        assert list(generated["identifier"]) == [f"{head}-{i}" for i in range(count)]
        assert list(generated["description"]) == [""] * count
        assert list(generated["assay_group"]) == ["all"] * count
    with pytest.raises(FileNotFoundError, match="missing.txt"):
        head_track_table("human", 1, tmp_path / "missing.txt")


# select_tracks: the --tracks grammar ----------------------------------------------------------------------
@pytest.fixture
def small_table():
    return pd.DataFrame({
        "index": range(6),
        "identifier": ["ENCFF1", "ENCFF2", "CNhs1", "CNhs2", "7", "ENCFF3"],
        "description": ["DNASE:K562", "CHIP:H3K4me3:liver", "CAGE:K562", "CAGE:liver", "DNASE:K562", "CAGE:K562 b"],
    })


def test_select_tracks_tries_index_identifier_description_then_pattern(small_table):
    assert select_tracks(None, small_table).tolist() == [0, 1, 2, 3, 4, 5]
    assert select_tracks([], small_table).tolist() == [0, 1, 2, 3, 4, 5]
    assert select_tracks("0, 2-3", small_table).tolist() == [0, 2, 3]  # predict's comma string: one value
    assert select_tracks(4, small_table).tolist() == [4]
    assert select_tracks("4", small_table).tolist() == [4]  # an index before the identifier "7"
    assert select_tracks("CNhs2", small_table).tolist() == [3]
    assert select_tracks("DNASE:K562", small_table).tolist() == [0, 4]  # every track with the description
    assert select_tracks("CAGE:K562", small_table).tolist() == [2]  # exact, though also a pattern of 2 and 5
    assert select_tracks("cage.*k562", small_table).tolist() == [2, 5]
    assert select_tracks("ENCFF", small_table).tolist() == [0, 1, 5]  # searched, not anchored


def test_select_tracks_is_the_union_in_head_order(small_table):
    assert select_tracks(["5", "CNhs1", "liver", "0-1"], small_table).tolist() == [0, 1, 2, 3, 5]


@pytest.mark.parametrize("value, message", [
    ("6", "'6' is out of range: not within 0..5"),
    ("2-9", "'2-9' is out of range: not within 0..5"),
    ("3-1", "'3-1'.*runs backwards"),
    ("ATAC", "no track matches 'ATAC'"),
    ("-1", "no track matches '-1'"),
    ("CAGE[", "no track matches 'CAGE\\['.*regular expression"),
])
def test_select_tracks_errors_name_the_value(small_table, value, message):
    with pytest.raises(UserError, match=message):
        select_tracks(["0", value], small_table, head="human")


def test_select_tracks_per_head_errs_only_when_a_value_selects_nothing_anywhere(small_table):
    mouse = pd.DataFrame({"index": range(3), "identifier": ["M1", "M2", "M3"],
                          "description": ["CAGE:liver", "DNASE:liver", "ATAC:liver"]})
    tables = {"human": small_table, "mouse": mouse}
    assert {h: v.tolist() for h, v in select_tracks_per_head(None, tables).items()} == {
        "human": [0, 1, 2, 3, 4, 5], "mouse": [0, 1, 2]}
    assert {h: v.tolist() for h, v in select_tracks_per_head("liver", tables).items()} == {
        "human": [1, 3], "mouse": [0, 1, 2]}
    # ATAC selects nothing in human: human keeps what "k562" selects; 4-5 is out of range in mouse only
    assert {h: v.tolist() for h, v in select_tracks_per_head(["ATAC", "k562", "4-5"], tables).items()} == {
        "human": [0, 2, 4, 5], "mouse": [2]}
    assert list(select_tracks_per_head("CNhs", tables)) == ["human"]  # a head with nothing is left out
    with pytest.raises(UserError, match="no track matches 'brain'.*head 'human'.*head 'mouse'"):
        select_tracks_per_head(["liver", "brain"], tables)
    with pytest.raises(UserError, match="'9' is out of range: not within 0..5"):
        select_tracks_per_head("9", tables)


# The real 5,313-track table: the four kinds of value against the reference metadata ---------------------
def four_expressions(reference: pd.DataFrame) -> dict[str, tuple[str, list[int]]]:
    """A range, an identifier, a description and a pattern, with the positions the reference CSV gives."""
    identifier = "CNhs11250"
    description = "CAGE:chronic myelogenous leukemia cell line:K562"
    pattern = "cage.*k562"
    searched = (reference["identifier"].str.contains(pattern, flags=re.IGNORECASE)
                | reference["description"].str.contains(pattern, flags=re.IGNORECASE))
    return {
        "range": ("10-12,5310", [10, 11, 12, 5310]),
        "identifier": (identifier, reference.index[reference["identifier"] == identifier].tolist()),
        "description": (description, reference.index[reference["description"] == description].tolist()),
        "pattern": (pattern, reference.index[searched].tolist()),
    }


def test_the_four_kinds_of_value_on_the_real_human_table(shared_dir):
    reference = pd.read_csv(shared_dir / "data" / "human_tracks_assay_types.csv", keep_default_na=False)
    table = head_track_table("human", len(reference))
    assert table.attrs["source"] == "shipped"
    expressions = four_expressions(reference)
    assert expressions["identifier"][1] == [4828] and len(expressions["pattern"][1]) == 2
    parser = argparse.ArgumentParser()
    add_tracks_argument(parser)
    everything = []
    for value, expected in expressions.values():
        assert select_tracks(value, table).tolist() == expected
        assert select_tracks(parser.parse_args(["--tracks", value]).tracks, table).tolist() == expected
        everything += expected
    together = parser.parse_args(["--tracks", *(value for value, _ in expressions.values())]).tracks
    assert select_tracks(together, table).tolist() == sorted(set(everything))
    per_head = select_tracks_per_head(together, {"human": table, "mouse": head_track_table("mouse", 1643)})
    assert per_head["human"].tolist() == sorted(set(everything))
    # 5310 is beyond mouse's 1,643 tracks, so the range list selects nothing there, nor do the rest
    assert list(per_head) == ["human"]
    assert np.array_equal(select_tracks(None, table), np.arange(5313))
