"""Figures a reader can trust, read from the figure objects: units on every track panel's y-axis, the region
asked for shaded, genes from a GTF, legends beside the data rather than over it."""

import numpy as np
import pytest
from matplotlib.patches import Rectangle

from helpers import tiny_model, write_random_chromosome
from senformer import plots
from senformer.cli import main
from senformer.data.genome import parse_region
from senformer.plots import figure_png, new_figure


def legend_beside(ax) -> bool:
    figure_png(ax.figure)  # lays the figure out
    return ax.get_legend().get_window_extent().x0 >= ax.get_window_extent().x1


def test_a_figure_7_panel_names_its_units_and_keeps_its_legend_off_the_data():
    ax = new_figure(5, 2).subplots()
    plots.track_panel(ax, np.arange(8.0), {"full": np.arange(8.0) + 1}, title="track 3")
    assert ax.get_ylabel() == plots.TRACK_UNITS and "model output" in ax.get_ylabel()
    assert legend_beside(ax)


def test_genes_are_drawn_exon_by_exon_with_their_name_and_strand():
    from senformer.data.gtf import Gene

    ax = new_figure(5, 1).subplots()
    genes = [Gene("g1", "HBB", "chr1", "-", ((100, 200), (300, 400))), Gene("g2", "", "chr1", "+", ((350, 500),)),
             Gene("g3", "FAR", "chr1", "+", ((5000, 5100),))]
    plots.gene_annotation(ax, genes, 0, 1000)
    exons = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sorted(round(p.get_x()) for p in exons) == [100, 300, 350]  # FAR lies outside the window
    assert {t.get_text() for t in ax.texts} == {"HBB \u2190", "g2 \u2192"}
    assert len({p.get_y() for p in exons}) == 2  # the overlapping genes take two rows
    assert ax.get_ylabel() == "genes (GTF)"


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    root = tmp_path_factory.mktemp("figure")
    write_random_chromosome(root / "genome.fa", 4_000, seed=2)
    save_model_path = root / "weights"
    from senformer import save_model

    save_model(tiny_model(seed=4), save_model_path)
    assert main(["predict", "--weights", str(save_model_path), "--fasta", str(root / "genome.fa"), "--region",
                 "chr1:1,900-2,000", "--length", "1024", "--tracks", "0", "1", "--no-progress",
                 "--out", str(root / "p.h5")]) == 0
    (root / "genes.gtf").write_text(
        'chr1\tt\texon\t1801\t1950\t.\t+\t.\tgene_id "G1"; gene_name "GENE1";\n'
        'chr1\tt\texon\t2001\t2100\t.\t+\t.\tgene_id "G1"; gene_name "GENE1";\n')
    return root


def test_plot_shades_the_region_asked_for_names_units_and_draws_the_gtf(predicted, monkeypatch):
    from senformer import io

    drawn = {}
    monkeypatch.setattr(io, "save_figure", lambda out, figure, **_: drawn.setdefault("figure", figure) and out)
    assert main(["plot", str(predicted / "p.h5"), "--head", "human", "--gtf", str(predicted / "genes.gtf"), "--out",
                 str(predicted / "p.png")]) == 0
    *tracks, genes = drawn["figure"].axes
    asked = parse_region("chr1:1,900-2,000")
    assert len(tracks) == 2
    for ax in tracks:
        assert ax.get_ylabel()  # the units: model output (or coverage)
        shaded = [p for p in ax.patches if p.get_facecolor()[:3] == pytest.approx((0xF2 / 255, 0xC1 / 255, 0x4E / 255))]
        assert len(shaded) == 1 and ax.get_legend() is None
        corners = shaded[0].get_patch_transform().transform(shaded[0].get_path().vertices)[:, 0]
        assert (corners.min(), corners.max()) == (asked.start, asked.end)
    assert any(t.get_text().startswith("GENE1") for t in genes.texts)
    assert sorted(round(p.get_x()) for p in genes.patches if isinstance(p, Rectangle)) == [1800, 2000]
